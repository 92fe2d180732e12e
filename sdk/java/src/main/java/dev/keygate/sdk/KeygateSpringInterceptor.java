package dev.keygate.sdk;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.springframework.http.HttpHeaders;
import org.springframework.http.HttpRequest;
import org.springframework.http.HttpStatus;
import org.springframework.http.client.ClientHttpRequestExecution;
import org.springframework.http.client.ClientHttpRequestInterceptor;
import org.springframework.http.client.ClientHttpResponse;

/**
 * Spring RestTemplate interceptor: signs each request and retries once after a clock-skew refusal.
 * With {@code SimpleClientHttpRequestFactory} call {@code setOutputStreaming(false)}: HttpURLConnection
 * cannot read a 401 after streaming a body, so the skew refusal could not be read.
 */
public final class KeygateSpringInterceptor implements ClientHttpRequestInterceptor {
    private final Signer signer;

    public KeygateSpringInterceptor(Signer signer) { this.signer = signer; }

    @Override
    public ClientHttpResponse intercept(HttpRequest request, byte[] body, ClientHttpRequestExecution execution) throws IOException {
        sign(request, body);
        ClientHttpResponse resp = execution.execute(request, body);
        if (resp.getRawStatusCode() != 401) return resp;
        byte[] content = resp.getBody().readAllBytes();
        if (signer.learnSkew(401, new String(content, StandardCharsets.UTF_8), resp.getHeaders().getFirst("Date"))) {
            resp.close();
            sign(request, body);
            return execution.execute(request, body);
        }
        return new Buffered(resp, content);
    }

    private void sign(HttpRequest request, byte[] body) {
        HttpHeaders h = request.getHeaders();
        List<Map.Entry<String, String>> headers = new ArrayList<>();
        h.forEach((n, vs) -> {
            if (!n.toLowerCase().startsWith("x-kg-")) vs.forEach(v -> headers.add(Map.entry(n, v)));
        });
        for (Map.Entry<String, String> e : signer.sign(request.getMethod().name(), request.getURI().toString(), headers, body).entrySet()) {
            h.set(e.getKey(), e.getValue());
        }
    }

    /** The refusal with its body already read. */
    private static final class Buffered implements ClientHttpResponse {
        private final ClientHttpResponse inner;
        private final byte[] content;

        Buffered(ClientHttpResponse inner, byte[] content) { this.inner = inner; this.content = content; }

        @Override public HttpStatus getStatusCode() throws IOException { return inner.getStatusCode(); }
        @Override public int getRawStatusCode() throws IOException { return inner.getRawStatusCode(); }
        @Override public String getStatusText() throws IOException { return inner.getStatusText(); }
        @Override public void close() { inner.close(); }
        @Override public InputStream getBody() { return new ByteArrayInputStream(content); }
        @Override public HttpHeaders getHeaders() { return inner.getHeaders(); }
    }
}
