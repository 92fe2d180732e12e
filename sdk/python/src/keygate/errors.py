"""Typed errors: every refusal from keygate carries a stable `code` and a `request_id`."""


class KeygateError(Exception):
    """Base class. `code` is stable (docs/errors.md); `message` is for humans only."""

    def __init__(self, code, message, status=None, request_id=None, body=None):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message
        self.status = status
        self.request_id = request_id
        self.body = body or {}


class SignError(KeygateError, ValueError):
    """The request cannot be signed as given (keygate would refuse it)."""

    def __init__(self, message, code="malformed_auth"):
        super().__init__(code, message)


class GatewayError(KeygateError):
    """keygate refused the request (status >= 400 with a JSON error envelope)."""


def parse_envelope(status, headers, body):
    """Returns a GatewayError for a keygate error envelope, or None if `body` is not one."""
    import json

    try:
        data = json.loads(body.decode("utf-8") if isinstance(body, (bytes, bytearray)) else body)
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("code"), str):
        return None
    rid = data.get("request_id") or _get(headers, "x-request-id")
    return GatewayError(data["code"], str(data.get("message", "")), status, rid, data)


def _get(headers, name):
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        for n, v in headers:
            if n.lower() == name:
                return v
    return None
