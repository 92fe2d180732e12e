package dev.keygate.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

@SuppressWarnings("unchecked")
class VectorsTest {
    static Map<String, Object> load(String name) throws Exception {
        Path dir = Path.of(System.getProperty("keygate.vectors", "../../docs/vectors"));
        return (Map<String, Object>) MiniJson.parse(Files.readString(dir.resolve(name)));
    }

    static byte[] bytes(Map<String, Object> v, String field) {
        Object hex = v.get(field + "_hex");
        return hex != null ? HexFormat.of().parseHex((String) hex) : ((String) v.get(field + "_utf8")).getBytes(StandardCharsets.UTF_8);
    }

    static List<Map.Entry<String, String>> headers(Object raw) {
        List<Map.Entry<String, String>> out = new ArrayList<>();
        if (raw instanceof Map<?, ?> m) {
            m.forEach((k, val) -> out.add(Map.entry((String) k, (String) val)));
        } else {
            for (Object p : (List<Object>) raw) {
                List<Object> pair = (List<Object>) p;
                out.add(Map.entry((String) pair.get(0), (String) pair.get(1)));
            }
        }
        return out;
    }

    @TestFactory
    Stream<DynamicTest> kg1Vectors() throws Exception {
        List<Object> vectors = (List<Object>) load("kg1.json").get("vectors");
        assertTrue(vectors.size() >= 15);
        return vectors.stream().map(o -> (Map<String, Object>) o).map(v -> DynamicTest.dynamicTest((String) v.get("name"), () -> {
            Map<String, Object> e = (Map<String, Object>) v.get("expected");
            String rawQuery = (String) v.get("raw_query");
            String authority = (String) v.get("authority");
            byte[] body = bytes(v, "body");
            List<String> signed = (List<String>) (List<?>) v.get("signed_headers");
            assertEquals(e.get("canonical_query"), Signer.canonicalQuery(rawQuery));
            assertEquals(e.get("body_sha256"), HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(body)));
            String sts = Signer.stringToSign((String) v.get("method"), (String) v.get("raw_path"), rawQuery, headers(v.get("headers")), body,
                    (String) v.get("access_key"), (Long) v.get("timestamp"), (String) v.get("nonce"), signed, authority);
            assertEquals(e.get("string_to_sign"), sts);
            String url = v.get("raw_path") + (rawQuery == null ? "" : "?" + rawQuery);
            if (authority != null) url = "https://" + authority + url;
            Map<String, String> out = Signer.sign((String) v.get("method"), url, headers(v.get("headers")), body, (String) v.get("access_key"),
                    bytes(v, "secret"), signed, (Long) v.get("timestamp"), (String) v.get("nonce"));
            assertEquals(e.get("signature"), out.get("X-Kg-Signature"));
            assertEquals(String.join(";", signed), out.getOrDefault("X-Kg-Signed-Headers", ""));
        }));
    }

    @TestFactory
    Stream<DynamicTest> canonicalQueryCases() throws Exception {
        return ((List<Object>) load("kg1.json").get("canonical_query_cases")).stream().map(o -> (Map<String, Object>) o)
                .map(c -> DynamicTest.dynamicTest("query " + c.get("raw"), () -> {
                    if (c.containsKey("error")) {
                        KeygateException ex = assertThrows(KeygateException.class, () -> Signer.canonicalQuery((String) c.get("raw")));
                        assertEquals(c.get("error"), ex.code());
                    } else {
                        assertEquals(c.get("canonical"), Signer.canonicalQuery((String) c.get("raw")));
                    }
                }));
    }

    @TestFactory
    Stream<DynamicTest> pathCases() throws Exception {
        return ((List<Object>) load("kg1.json").get("path_cases")).stream().map(o -> (Map<String, Object>) o)
                .map(c -> DynamicTest.dynamicTest("path " + c.get("raw_path"), () -> {
                    if ((Boolean) c.get("valid")) {
                        Signer.checkRawPath((String) c.get("raw_path"));
                    } else {
                        KeygateException ex = assertThrows(KeygateException.class, () -> Signer.checkRawPath((String) c.get("raw_path")));
                        assertEquals("invalid_path", ex.code());
                    }
                }));
    }

    @Test
    void skewLearning() {
        Signer s = new Signer("AK", "s".getBytes(StandardCharsets.UTF_8), List.of("host"), () -> 1000);
        assertTrue(s.learnSkew(401, "{\"code\":\"timestamp_out_of_window\",\"message\":\"m\",\"request_id\":\"r\",\"server_time\":1600}", null));
        assertEquals(1600, s.now());
        assertTrue(s.learnSkew(401, "{\"code\":\"timestamp_out_of_window\",\"message\":\"m\"}", "Thu, 1 Jan 1970 00:20:00 GMT"));
        assertEquals(200, s.offset());
        assertFalse(s.learnSkew(401, "{\"code\":\"signature_mismatch\",\"server_time\":5}", null));
        assertEquals(200, s.offset());
    }

    @Test
    void randomNoncesAndNoSecretInToString() {
        Signer s = new Signer("AK", "topsecret", List.of("host"));
        Set<String> nonces = new HashSet<>();
        for (int i = 0; i < 100; i++) nonces.add(s.sign("GET", "/a", List.of(), new byte[0]).get("X-Kg-Nonce"));
        assertEquals(100, nonces.size());
        assertFalse(s.toString().contains("topsecret"));
    }

    @Test
    void envelope() {
        KeygateException e = KeygateException.fromEnvelope(401, "{\"code\":\"unknown_key\",\"message\":\"no \\\"key\\\"\",\"request_id\":\"abc\"}", null);
        assertEquals("unknown_key", e.code());
        assertEquals("abc", e.requestId());
        assertEquals(null, KeygateException.fromEnvelope(502, "not json", null));
    }

    @Test
    void destroyedSignerRefuses() {
        Signer s = new Signer("AK", "s3cret", List.of("host"));
        s.sign("GET", "/a", List.of(), new byte[0]);
        s.destroy();
        assertThrows(KeygateException.class, () -> s.sign("GET", "/a", List.of(), new byte[0]));
    }
}
