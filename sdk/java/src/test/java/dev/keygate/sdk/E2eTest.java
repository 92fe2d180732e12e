package dev.keygate.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.net.httpserver.HttpServer;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import okhttp3.MediaType;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.RequestBody;
import okhttp3.Response;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.springframework.http.HttpEntity;
import org.springframework.http.HttpHeaders;
import org.springframework.http.HttpMethod;
import org.springframework.http.ResponseEntity;
import org.springframework.http.client.SimpleClientHttpRequestFactory;
import org.springframework.web.client.RestTemplate;

/** Against the real keygate binary (env KEYGATE_BIN) and a JDK upstream. */
class E2eTest {
    static final String AK = "AKSDKJAVA0000001";
    static final String SECRET = "sdk-java-e2e-secret";
    static final String TRICKY = "/v1/things/a%20b;v=1?b=2&a=1&a=0&p=%2B+x&u=%E4%BD%A0&e=&k=!*'()";
    static final List<byte[]> SEEN = new CopyOnWriteArrayList<>();
    static Process keygate;
    static HttpServer upstream;
    static String gw;

    @BeforeAll
    static void start() throws Exception {
        String bin = System.getenv("KEYGATE_BIN");
        boolean have = bin != null && Files.exists(Path.of(bin));
        if (!have && "true".equals(System.getenv("CI"))) throw new IllegalStateException("KEYGATE_BIN is not set or missing: build it with `cargo build -p keygate`");
        Assumptions.assumeTrue(have, "KEYGATE_BIN not set");
        upstream = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        upstream.createContext("/", ex -> {
            SEEN.add(ex.getRequestBody().readAllBytes());
            ex.sendResponseHeaders(200, 2);
            ex.getResponseBody().write("ok".getBytes(StandardCharsets.US_ASCII));
            ex.close();
        });
        upstream.start();
        Path dir = Files.createTempDirectory("kgjava");
        Path cfg = dir.resolve("keygate.toml");
        Files.writeString(cfg, "[store]\nurl = \"sqlite://" + dir + "/keygate.db\"\n\n[[routes]]\npath_prefix = \"/\"\nupstream = \"http://127.0.0.1:"
                + upstream.getAddress().getPort() + "\"\n\n[[apps]]\nid = \"sdk\"\n[[apps.keys]]\naccess_key = \"" + AK + "\"\nsecret_env = \"SDK_SK\"\n");
        ProcessBuilder pb = new ProcessBuilder(bin, "--log-format", "json", "serve", "--config", cfg.toString(), "--listen", "127.0.0.1:0");
        pb.environment().put("KEYGATE_MASTER_KEY", "v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
        pb.environment().put("KEYGATE_LOG", "info");
        pb.environment().put("SDK_SK", SECRET);
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
        keygate = pb.start();
        BufferedReader err = new BufferedReader(new InputStreamReader(keygate.getErrorStream(), StandardCharsets.UTF_8));
        Pattern addr = Pattern.compile("\"addr\":\"([^\"]+)\"");
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        String line;
        while (gw == null && System.nanoTime() < deadline && (line = err.readLine()) != null) {
            Matcher m = addr.matcher(line);
            if (line.contains("inbound listening") && m.find()) gw = "http://" + m.group(1);
        }
        assertNotNull(gw, "keygate did not start");
        Thread drain = new Thread(() -> {
            try {
                while (err.readLine() != null) { /* keep the pipe empty */ }
            } catch (java.io.IOException ignored) {
                // process ended
            }
        });
        drain.setDaemon(true);
        drain.start();
    }

    @AfterAll
    static void stop() {
        if (keygate != null) keygate.destroyForcibly();
        if (upstream != null) upstream.stop(0);
    }

    static byte[] binary() {
        byte[] b = new byte[1024];
        for (int i = 0; i < b.length; i++) b[i] = (byte) i;
        return b;
    }

    @Test
    void okhttpSignedAcceptedTamperedRefusedSkewCorrected() throws Exception {
        OkHttpClient c = new OkHttpClient.Builder()
                .addInterceptor(new KeygateOkHttpInterceptor(new Signer(AK, SECRET, List.of("host", "content-type")))).build();
        try (Response r = c.newCall(new Request.Builder().url(gw + TRICKY).build()).execute()) {
            assertEquals(200, r.code(), r.body().string());
        }
        byte[] body = binary();
        try (Response r = c.newCall(new Request.Builder().url(gw + TRICKY).post(RequestBody.create(MediaType.get("application/octet-stream"), body)).build()).execute()) {
            assertEquals(200, r.code(), r.body().string());
        }
        assertArrayEquals(body, SEEN.get(SEEN.size() - 1));
        try (Response r = c.newCall(new Request.Builder().url(gw + "/v1/put").put(RequestBody.create(MediaType.get("application/json"), "{\"a\":\"ü\"}")).build()).execute()) {
            assertEquals(200, r.code());
        }
        // Tampered: signed for ?a=1, sent as ?a=2.
        Signer plain = new Signer(AK, SECRET, List.of("host"));
        Map<String, String> h = plain.sign("POST", gw + "/v1/x?a=1", List.of(), body);
        Request.Builder rb = new Request.Builder().url(gw + "/v1/x?a=2").post(RequestBody.create(null, body));
        h.forEach(rb::header);
        try (Response r = new OkHttpClient().newCall(rb.build()).execute()) {
            KeygateException e = KeygateException.fromEnvelope(r.code(), r.body().string(), r.header("X-Request-Id"));
            assertNotNull(e);
            assertEquals("signature_mismatch", e.code());
            assertEquals(401, e.status());
            assertNotNull(e.requestId());
        }
        // An hour behind: corrected after one refusal.
        Signer skewed = new Signer(AK, SECRET.getBytes(StandardCharsets.UTF_8), List.of("host"), () -> System.currentTimeMillis() / 1000 - 3600);
        OkHttpClient sc = new OkHttpClient.Builder().addInterceptor(new KeygateOkHttpInterceptor(skewed)).build();
        try (Response r = sc.newCall(new Request.Builder().url(gw + "/v1/skew?x=1").build()).execute()) {
            assertEquals(200, r.code());
        }
        assertTrue(Math.abs(skewed.offset() - 3600) <= 2, "offset " + skewed.offset());
    }

    @Test
    void springRestTemplate() throws Exception {
        Signer skewed = new Signer(AK, SECRET.getBytes(StandardCharsets.UTF_8), List.of("host", "content-type"), () -> System.currentTimeMillis() / 1000 + 7200);
        // HttpURLConnection cannot read a 401 after streaming a body (HttpRetryException): turn
        // output streaming off so the refusal (and its server_time) can be read and retried.
        SimpleClientHttpRequestFactory f = new SimpleClientHttpRequestFactory();
        f.setOutputStreaming(false);
        RestTemplate rt = new RestTemplate(f);
        rt.getInterceptors().add(new KeygateSpringInterceptor(skewed));
        HttpHeaders h = new HttpHeaders();
        h.set("Content-Type", "application/octet-stream");
        ResponseEntity<byte[]> r = rt.exchange(new URI(gw + TRICKY), HttpMethod.POST, new HttpEntity<>(binary(), h), byte[].class);
        assertEquals(200, r.getStatusCodeValue());
        assertTrue(Math.abs(skewed.offset() + 7200) <= 2, "offset " + skewed.offset());
        assertArrayEquals(binary(), SEEN.get(SEEN.size() - 1));
        RestTemplate bad = new RestTemplate(new SimpleClientHttpRequestFactory());
        bad.getInterceptors().add(new KeygateSpringInterceptor(new Signer(AK, "wrong", List.of("host"))));
        try {
            bad.getForEntity(new URI(gw + "/v1/x"), String.class);
            throw new AssertionError("wrong secret accepted");
        } catch (org.springframework.web.client.HttpClientErrorException e) {
            assertEquals(401, e.getRawStatusCode());
            assertEquals("signature_mismatch", KeygateException.fromEnvelope(401, e.getResponseBodyAsString(), null).code());
        }
    }
}
