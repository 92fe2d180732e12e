package dev.keygate.sdk;

import dev.keygate.sdk.KeygateException.SignException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.time.ZonedDateTime;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongSupplier;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * KG1-HMAC-SHA256 signer for one access key (docs/signing.md section 1). JDK only. Thread-safe; keeps the
 * clock offset learned from {@code timestamp_out_of_window} refusals.
 */
public final class Signer {
    public static final String ALGORITHM = "KG1-HMAC-SHA256";
    private static final SecureRandom RANDOM = new SecureRandom();
    private static final Pattern NONCE = Pattern.compile("[A-Za-z0-9_-]{16,64}");
    private static final Pattern TCHAR = Pattern.compile("[!#$%&'*+\\-.^_`|~0-9a-zA-Z]+");
    private static final Pattern DOTS = Pattern.compile("(?:\\.|%2[eE]){1,2}");
    private static final HexFormat HEX = HexFormat.of();

    private final String accessKey;
    private final byte[] secret;
    private final List<String> signedHeaders;
    private final LongSupplier clockSeconds;
    private final AtomicLong offset = new AtomicLong();
    private volatile boolean destroyed;

    public Signer(String accessKey, byte[] secret, List<String> signedHeaders, LongSupplier clockSeconds) {
        this.accessKey = accessKey;
        this.secret = secret.clone();
        this.signedHeaders = List.copyOf(signedHeaders);
        this.clockSeconds = clockSeconds;
    }

    public Signer(String accessKey, String secret, List<String> signedHeaders) {
        this(accessKey, secret.getBytes(StandardCharsets.UTF_8), signedHeaders, () -> System.currentTimeMillis() / 1000);
    }

    public String accessKey() { return accessKey; }
    public long offset() { return offset.get(); }
    public long now() { return clockSeconds.getAsLong() + offset.get(); }

    @Override
    public String toString() { return "Signer(" + accessKey + ")"; }

    /** Wipes the secret copy held by this signer. */
    public void destroy() {
        destroyed = true;
        Arrays.fill(secret, (byte) 0);
    }

    /** X-Kg-* headers for this request; only configured signed headers that are present (host: from the URL). */
    public Map<String, String> sign(String method, String url, List<Map.Entry<String, String>> headers, byte[] body) {
        return sign(method, url, headers, body, now(), null);
    }

    public Map<String, String> sign(String method, String url, List<Map.Entry<String, String>> headers, byte[] body,
            long timestamp, String nonce) {
        if (destroyed) throw new SignException("this signer was destroyed", "malformed_auth");
        String authority = splitUrl(url)[0];
        List<String> names = new ArrayList<>();
        for (String n : signedHeaders) {
            String l = n.toLowerCase(Locale.ROOT);
            boolean present = headers.stream().anyMatch(e -> e.getKey().equalsIgnoreCase(l));
            if (present || (l.equals("host") && authority != null)) names.add(l);
        }
        return sign(method, url, headers, body, accessKey, secret, names, timestamp, nonce);
    }

    /** Static form: every listed signed header must be in the request. */
    public static Map<String, String> sign(String method, String url, List<Map.Entry<String, String>> headers,
            byte[] body, String accessKey, byte[] secret, List<String> signedHeaders, long timestamp, String nonce) {
        if (nonce == null) {
            byte[] b = new byte[16];
            RANDOM.nextBytes(b);
            nonce = HEX.formatHex(b);
        }
        if (!NONCE.matcher(nonce).matches()) throw new SignException("nonce must be 16-64 characters of [A-Za-z0-9_-]", "malformed_auth");
        if (accessKey.isEmpty() || accessKey.length() > 128 || !accessKey.chars().allMatch(c -> c >= 0x21 && c <= 0x7e)) {
            throw new SignException("access key must be 1-128 visible ASCII characters", "malformed_auth");
        }
        TreeSet<String> set = new TreeSet<>();
        for (String n : signedHeaders) {
            String l = n.toLowerCase(Locale.ROOT);
            if (!TCHAR.matcher(l).matches()) throw new SignException("invalid signed header name", "malformed_auth");
            if (l.startsWith("x-kg-")) throw new SignException("x-kg-* headers cannot be signed", "malformed_auth");
            set.add(l);
        }
        List<String> names = new ArrayList<>(set);
        String[] u = splitUrl(url);
        String sts = stringToSign(method, u[1], u[2], headers, body, accessKey, timestamp, nonce, names, u[0]);
        Map<String, String> out = new LinkedHashMap<>();
        out.put("X-Kg-Key", accessKey);
        out.put("X-Kg-Timestamp", Long.toString(timestamp));
        out.put("X-Kg-Nonce", nonce);
        if (!names.isEmpty()) out.put("X-Kg-Signed-Headers", String.join(";", names));
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            out.put("X-Kg-Signature", HEX.formatHex(mac.doFinal(sts.getBytes(StandardCharsets.US_ASCII))));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 unavailable", e);
        }
        return out;
    }

    public static String stringToSign(String method, String rawPath, String rawQuery, List<Map.Entry<String, String>> headers,
            byte[] body, String accessKey, long timestamp, String nonce, List<String> signedHeaders, String authority) {
        String path = rawPath == null || rawPath.isEmpty() ? "/" : rawPath;
        checkRawPath(path);
        StringBuilder sb = new StringBuilder();
        for (String line : List.of(ALGORITHM, method.toUpperCase(Locale.ROOT), path, canonicalQuery(rawQuery), accessKey,
                Long.toString(timestamp), nonce, String.join(";", signedHeaders))) {
            sb.append(line).append('\n');
        }
        for (String name : signedHeaders) {
            List<String> values = new ArrayList<>();
            for (Map.Entry<String, String> e : headers) {
                if (e.getKey().equalsIgnoreCase(name)) values.add(canonicalHeaderValue(e.getValue()));
            }
            if (values.isEmpty() && name.equals("host") && authority != null) values.add(authority);
            if (values.isEmpty()) throw new SignException("signed header " + name + " is not in the request", "malformed_auth");
            sb.append(name).append(':').append(String.join(",", values)).append('\n');
        }
        try {
            sb.append(HEX.formatHex(MessageDigest.getInstance("SHA-256").digest(body == null ? new byte[0] : body)));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("SHA-256 unavailable", e);
        }
        return sb.toString();
    }

    static String canonicalHeaderValue(String v) {
        for (int i = 0; i < v.length(); i++) {
            char c = v.charAt(i);
            if (!(c == '\t' || (c >= 0x20 && c <= 0x7e))) throw new SignException("header value is not visible ASCII", "malformed_auth");
        }
        return v.replaceAll("[ \\t]+", " ").replaceAll("^ +| +$", "");
    }

    private static int hexVal(byte b) {
        if (b >= '0' && b <= '9') return b - '0';
        if (b >= 'a' && b <= 'f') return b - 'a' + 10;
        if (b >= 'A' && b <= 'F') return b - 'A' + 10;
        return -1;
    }

    private static byte[] percentDecode(String text) {
        byte[] raw = text.getBytes(StandardCharsets.UTF_8);
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream(raw.length);
        for (int i = 0; i < raw.length; i++) {
            if (raw[i] == '%') {
                if (i + 2 >= raw.length) {
                    throw new SignException("invalid percent-encoding in query", "malformed_auth");
                }
                int h = hexVal(raw[i + 1]);
                int l = hexVal(raw[i + 2]);
                if (h < 0 || l < 0) throw new SignException("invalid percent-encoding in query", "malformed_auth");
                out.write(h * 16 + l);
                i += 2;
            } else {
                out.write(raw[i]);
            }
        }
        return out.toByteArray();
    }

    private static String percentEncode(byte[] data) {
        StringBuilder sb = new StringBuilder();
        for (byte b : data) {
            int c = b & 0xff;
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~') {
                sb.append((char) c);
            } else {
                sb.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16))).append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
            }
        }
        return sb.toString();
    }

    /** Spec 1.4. */
    public static String canonicalQuery(String raw) {
        List<String[]> pairs = new ArrayList<>();
        for (String piece : (raw == null ? "" : raw).split("&", -1)) {
            if (piece.isEmpty()) continue;
            int i = piece.indexOf('=');
            String n = i < 0 ? piece : piece.substring(0, i);
            String v = i < 0 ? "" : piece.substring(i + 1);
            pairs.add(new String[] {percentEncode(percentDecode(n)), percentEncode(percentDecode(v))});
        }
        pairs.sort((a, b) -> {
            int c = a[0].compareTo(b[0]);
            return c != 0 ? c : a[1].compareTo(b[1]);
        });
        StringBuilder sb = new StringBuilder();
        for (String[] p : pairs) {
            if (sb.length() > 0) sb.append('&');
            sb.append(p[0]).append('=').append(p[1]);
        }
        return sb.toString();
    }

    /** Spec 1.3: throws SignException(invalid_path) for a path keygate refuses. */
    public static void checkRawPath(String path) {
        if (!path.startsWith("/")) throw new SignException("path must start with /", "invalid_path");
        byte[] raw = path.getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < raw.length; i++) {
            int c = raw[i] & 0xff;
            if (c < 0x21 || c > 0x7e) throw new SignException("control character, space or non-ASCII byte in path", "invalid_path");
            if (c == '\\') throw new SignException("backslash in path", "invalid_path");
            if (c == '%') {
                if (i + 2 >= raw.length) throw new SignException("invalid percent-encoding in path", "invalid_path");
                int h = hexVal(raw[i + 1]);
                int l = hexVal(raw[i + 2]);
                if (h < 0 || l < 0) throw new SignException("invalid percent-encoding in path", "invalid_path");
                int v = h * 16 + l;
                if (v == 0 || v == 0x2f || v == 0x5c) throw new SignException("encoded NUL, slash or backslash in path", "invalid_path");
            }
        }
        for (String seg : path.substring(1).split("/", -1)) {
            int semi = seg.indexOf(';');
            if (DOTS.matcher(semi < 0 ? seg : seg.substring(0, semi)).matches()) throw new SignException("dot segment in path", "invalid_path");
        }
    }

    /** {authority or null, path, query or null}. */
    public static String[] splitUrl(String url) {
        String authority = null;
        Matcher m = Pattern.compile("(?i)^(https?)://").matcher(url);
        if (m.find()) {
            String scheme = m.group(1).toLowerCase(Locale.ROOT);
            String rest = url.substring(m.end());
            int end = rest.length();
            for (char sep : new char[] {'/', '?', '#'}) {
                int p = rest.indexOf(sep);
                if (p != -1) end = Math.min(end, p);
            }
            authority = rest.substring(0, end);
            authority = authority.substring(authority.lastIndexOf('@') + 1).toLowerCase(Locale.ROOT);
            String def = scheme.equals("http") ? ":80" : ":443";
            if (authority.endsWith(def)) authority = authority.substring(0, authority.length() - def.length());
            url = rest.substring(end);
        }
        int hash = url.indexOf('#');
        if (hash >= 0) url = url.substring(0, hash);
        int q = url.indexOf('?');
        return new String[] {authority, q < 0 ? url : url.substring(0, q), q < 0 ? null : url.substring(q + 1)};
    }

    /** If this is a {@code timestamp_out_of_window} refusal, sets the offset (server_time, else Date) and returns true. */
    public boolean learnSkew(int status, String body, String dateHeader) {
        if (status != 401 || body == null || !"timestamp_out_of_window".equals(jsonString(body, "code"))) return false;
        Long server = null;
        Matcher m = Pattern.compile("\"server_time\"\\s*:\\s*(-?\\d{1,15})").matcher(body);
        if (m.find()) server = Long.parseLong(m.group(1));
        if (server == null && dateHeader != null) {
            try {
                server = ZonedDateTime.parse(dateHeader, DateTimeFormatter.RFC_1123_DATE_TIME).toEpochSecond();
            } catch (RuntimeException e) {
                return false;
            }
        }
        if (server == null) return false;
        offset.set(server - clockSeconds.getAsLong());
        return true;
    }

    /** The string value of a top-level key in a flat JSON object (the error envelope); null if absent. */
    static String jsonString(String body, String key) {
        Matcher m = Pattern.compile("\"" + Pattern.quote(key) + "\"\\s*:\\s*\"((?:[^\"\\\\]|\\\\.)*)\"").matcher(body);
        return m.find() ? m.group(1).replace("\\\"", "\"").replace("\\\\", "\\") : null;
    }
}
