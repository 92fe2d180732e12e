package dev.keygate.sdk;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import okhttp3.Interceptor;
import okhttp3.Request;
import okhttp3.Response;
import okio.Buffer;

/** OkHttp interceptor: signs each request (body hashed as sent) and retries once after a clock-skew refusal. */
public final class KeygateOkHttpInterceptor implements Interceptor {
    private final Signer signer;

    public KeygateOkHttpInterceptor(Signer signer) { this.signer = signer; }

    @Override
    public Response intercept(Chain chain) throws IOException {
        Request original = chain.request();
        byte[] body = new byte[0];
        if (original.body() != null) {
            Buffer buf = new Buffer();
            original.body().writeTo(buf);
            body = buf.readByteArray();
        }
        Response resp = chain.proceed(signed(original, body));
        if (resp.code() == 401) {
            String text = resp.peekBody(65536).string();
            if (signer.learnSkew(resp.code(), text, resp.header("Date"))) {
                resp.close();
                return chain.proceed(signed(original, body));
            }
        }
        return resp;
    }

    private Request signed(Request r, byte[] body) {
        List<Map.Entry<String, String>> headers = new ArrayList<>();
        for (int i = 0; i < r.headers().size(); i++) headers.add(Map.entry(r.headers().name(i), r.headers().value(i)));
        if (r.body() != null && r.body().contentType() != null && r.header("Content-Type") == null) {
            headers.add(Map.entry("Content-Type", r.body().contentType().toString()));
        }
        Request.Builder b = r.newBuilder();
        for (Map.Entry<String, String> e : signer.sign(r.method(), r.url().toString(), headers, body).entrySet()) {
            b.header(e.getKey(), e.getValue());
        }
        return b.build();
    }
}
