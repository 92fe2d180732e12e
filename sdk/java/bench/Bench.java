import dev.keygate.sdk.Signer;
import java.security.SecureRandom;
import java.util.List;
import java.util.Map;

/** Sign time per request with a 1 KB body: sdk/java/build.sh bench */
public final class Bench {
    public static void main(String[] args) {
        Signer s = new Signer("AKBENCH000000001", "bench-secret", List.of("host", "content-type"));
        byte[] body = new byte[1024];
        new SecureRandom().nextBytes(body);
        List<Map.Entry<String, String>> h = List.of(Map.entry("Content-Type", "application/octet-stream"));
        String url = "https://gw.example.com/v1/orders/123?b=2&a=1&q=hello%20world";
        int sink = 0;
        for (int i = 0; i < 100_000; i++) sink += s.sign("POST", url, h, body).size();
        int n = 200_000;
        long best = Long.MAX_VALUE;
        for (int r = 0; r < 3; r++) {
            long t = System.nanoTime();
            for (int i = 0; i < n; i++) sink += s.sign("POST", url, h, body).size();
            best = Math.min(best, System.nanoTime() - t);
        }
        System.out.printf("java %s: %.1f us/sign (1 KB body, 2 signed headers) [%d]%n", System.getProperty("java.version"), best / 1e3 / n, sink % 7);
    }
}
