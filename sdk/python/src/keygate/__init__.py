"""keygate client SDK: KG1-HMAC-SHA256 and legacy-sorted signing, HTTP client integrations.

    import keygate
    signer = keygate.Signer("AKID", os.environ["KG_SECRET"])
    headers = signer.sign("POST", "https://gw.example.com/v1/orders?x=1", {"Content-Type": "application/json"}, body)

requests: `requests.post(url, data=body, auth=keygate.RequestsAuth(signer))`
httpx:    `httpx.Client(auth=keygate.HttpxAuth(signer))`
"""

import email.utils
import threading
import time

from . import legacy
from ._kg1 import ALGORITHM, canonical_query, check_raw_path, sign, split_url, string_to_sign
from .errors import GatewayError, KeygateError, SignError, parse_envelope

__all__ = [
    "ALGORITHM", "GatewayError", "HttpxAuth", "KeygateError", "RequestsAuth", "SignError", "Signer",
    "canonical_query", "check_raw_path", "legacy", "outbound_url", "raise_for_keygate", "sign", "split_url",
    "string_to_sign",
]
__version__ = "0.1.0"

SKEW_CODE = "timestamp_out_of_window"


class _Secret:
    """Holds the secret as bytes; never shown by repr/str."""

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = bytearray(value.encode("utf-8") if isinstance(value, str) else value)

    def __repr__(self):
        return "<secret>"

    __str__ = __repr__


class Signer:
    """Signs requests for one access key; remembers the clock offset learned from the gateway.

    signed_headers: header names to cover in addition to the always-signed parts (e.g. host,
    content-type). The offset is shared by all requests made with this signer (thread-safe).
    """

    def __init__(self, access_key, secret, signed_headers=("host",), clock=time.time):
        self.access_key = access_key
        self._secret = _Secret(secret)
        self.signed_headers = tuple(signed_headers)
        self._clock = clock
        self._offset = 0
        self._lock = threading.Lock()

    def __repr__(self):
        return "Signer(access_key=%r, offset=%d)" % (self.access_key, self._offset)

    def destroy(self):
        """Overwrites the secret bytes held by this signer; it cannot sign afterwards."""
        buf = self._secret._value
        buf[:] = b"\0" * len(buf)
        self._secret._value = bytearray()

    @property
    def offset(self):
        """Seconds added to the local clock (server time - local time), learned from skew refusals."""
        return self._offset

    def now(self):
        return int(self._clock()) + self._offset

    def sign(self, method, url, headers=None, body=b"", timestamp=None, nonce=None, signed_headers=None):
        """Returns the X-Kg-* headers (dict) for this request. `body` is what will be sent."""
        if not self._secret._value:
            raise SignError("this signer has no secret (empty, or destroyed)")
        names = self.signed_headers if signed_headers is None else signed_headers
        items = list(headers.items()) if hasattr(headers, "items") else list(headers or [])
        present = {n.lower() for n, _ in items}
        authority = split_url(url)[0]
        # Only sign headers the request actually has (host comes from the URL).
        names = [n for n in names if n.lower() in present or (n.lower() == "host" and authority is not None)]
        return sign(method, url, items, body, self.access_key, bytes(self._secret._value), names,
                    self.now() if timestamp is None else timestamp, nonce)

    def learn_skew(self, status, headers, body):
        """If the response is a timestamp_out_of_window refusal, adjusts the offset; returns True then."""
        if status != 401:
            return False
        err = parse_envelope(status, headers, body)
        if err is None or err.code != SKEW_CODE:
            return False
        server = err.body.get("server_time")
        if not isinstance(server, int):
            date = _header(headers, "date")
            parsed = email.utils.parsedate_to_datetime(date) if date else None
            if parsed is None:
                return False
            server = int(parsed.timestamp())
        with self._lock:
            self._offset = server - int(self._clock())
        return True


def _header(headers, name):
    from .errors import _get

    return _get(headers, name)


def outbound_url(base_url, provider, path):
    """URL of the outbound proxy: <base>/out/<provider>/<path>, signed like any other request."""
    if not provider or "/" in provider:
        raise SignError("provider must be a non-empty name without '/'")
    return base_url.rstrip("/") + "/out/" + provider + "/" + path.lstrip("/")


def raise_for_keygate(status, headers, body):
    """Raises GatewayError for a keygate error envelope (status >= 400)."""
    if status >= 400:
        err = parse_envelope(status, headers, body)
        if err is not None:
            raise err


class RequestsAuth:
    """`requests` auth: signs each request; on a clock-skew refusal corrects the offset and retries once."""

    def __init__(self, signer):
        self.signer = signer

    def _apply(self, r):
        for k in ("X-Kg-Key", "X-Kg-Timestamp", "X-Kg-Nonce", "X-Kg-Signed-Headers", "X-Kg-Signature"):
            r.headers.pop(k, None)
        body = r.body
        if body is not None and not isinstance(body, (bytes, str)) and not hasattr(body, "seek"):
            raise SignError("streamed bodies must be seekable (a file) so they can be hashed as sent")
        r.headers.update(self.signer.sign(r.method, r.url, dict(r.headers), body if body is not None else b""))
        return r

    def __call__(self, r):
        self._apply(r)
        r.register_hook("response", self._on_response)
        return r

    def _on_response(self, resp, **kwargs):
        if getattr(resp.request, "_kg_retried", False):
            return resp
        if not self.signer.learn_skew(resp.status_code, resp.headers, resp.content):
            return resp
        req = resp.request.copy()
        req._kg_retried = True
        if hasattr(req.body, "seek"):
            req.body.seek(0)
        self._apply(req)
        resp.close()
        new = resp.connection.send(req, **kwargs)
        new.history.append(resp)
        return new


try:  # optional: only needed for HttpxAuth
    import httpx as _httpx

    _HttpxBase = _httpx.Auth
except ImportError:  # pragma: no cover - httpx not installed
    _HttpxBase = object


class HttpxAuth(_HttpxBase):
    """`httpx` auth flow (sync and async): signs; on a clock-skew refusal corrects the offset and retries once."""

    requires_request_body = True
    requires_response_body = True

    def __init__(self, signer):
        self.signer = signer

    def _apply(self, request):
        for k in ("x-kg-key", "x-kg-timestamp", "x-kg-nonce", "x-kg-signed-headers", "x-kg-signature"):
            if k in request.headers:
                del request.headers[k]
        hdrs = list(request.headers.items())
        request.headers.update(self.signer.sign(request.method, str(request.url), hdrs, request.content))

    def auth_flow(self, request):
        self._apply(request)
        response = yield request
        if self.signer.learn_skew(response.status_code, response.headers, response.content):
            self._apply(request)
            yield request
