package dev.keygate.sdk;

/** A refusal or signing error with a stable {@code code} (docs/errors.md) and the request id. */
public class KeygateException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final String code;
    private final int status;
    private final String requestId;

    public KeygateException(String code, String message, int status, String requestId) {
        super(code + ": " + message);
        this.code = code;
        this.status = status;
        this.requestId = requestId;
    }

    public String code() { return code; }
    public int status() { return status; }
    public String requestId() { return requestId; }

    /** The request cannot be signed as given (keygate would refuse it). */
    public static final class SignException extends KeygateException {
        private static final long serialVersionUID = 1L;
        public SignException(String message, String code) { super(code, message, 0, null); }
    }

    /** Parses a keygate error envelope; null if {@code body} is not one. */
    public static KeygateException fromEnvelope(int status, String body, String requestIdHeader) {
        String code = Signer.jsonString(body, "code");
        if (code == null) return null;
        String msg = Signer.jsonString(body, "message");
        String rid = Signer.jsonString(body, "request_id");
        return new KeygateException(code, msg == null ? "" : msg, status, rid != null ? rid : requestIdHeader);
    }
}
