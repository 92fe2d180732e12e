'use strict';
// KG1-HMAC-SHA256 signing for keygate (docs/signing.md section 1). Node >= 18, no dependencies.
const crypto = require('node:crypto');

const ALGORITHM = 'KG1-HMAC-SHA256';
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const HEX = /^[0-9A-Fa-f]{2}$/;
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9a-zA-Z]+$/;
const NONCE_RE = /^[A-Za-z0-9_-]{16,64}$/;

class KeygateError extends Error {
  constructor(code, message, { status, requestId, body } = {}) {
    super(`${code}: ${message}`);
    this.name = 'KeygateError';
    this.code = code;
    this.status = status;
    this.requestId = requestId;
    this.body = body;
  }
}
class SignError extends KeygateError {
  constructor(message, code = 'malformed_auth') { super(code, message); this.name = 'SignError'; }
}

function percentDecode(text) {
  const raw = Buffer.from(text, 'utf8');
  const out = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x25) {
      const pair = raw.subarray(i + 1, i + 3).toString('latin1');
      if (!HEX.test(pair)) throw new SignError('invalid percent-encoding in query');
      out.push(parseInt(pair, 16));
      i += 2;
    } else out.push(raw[i]);
  }
  return Buffer.from(out);
}
function percentEncode(buf) {
  let s = '';
  for (const b of buf) {
    const c = String.fromCharCode(b);
    s += UNRESERVED.test(c) ? c : '%' + b.toString(16).toUpperCase().padStart(2, '0');
  }
  return s;
}
function canonicalQuery(raw) {
  const pairs = [];
  for (const piece of (raw || '').split('&')) {
    if (piece === '') continue;
    const i = piece.indexOf('=');
    const name = i < 0 ? piece : piece.slice(0, i);
    const value = i < 0 ? '' : piece.slice(i + 1);
    pairs.push([percentEncode(percentDecode(name)), percentEncode(percentDecode(value))]);
  }
  // ASCII only after encoding: code-unit order equals byte order.
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([n, v]) => n + '=' + v).join('&');
}
function checkRawPath(path) {
  const bad = (m) => { throw new SignError(m, 'invalid_path'); };
  if (!path.startsWith('/')) bad('path must start with /');
  const raw = Buffer.from(path, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i];
    if (c < 0x21 || c > 0x7e) bad('control character, space or non-ASCII byte in path');
    if (c === 0x5c) bad('backslash in path');
    if (c === 0x25) {
      const pair = raw.subarray(i + 1, i + 3).toString('latin1');
      if (!HEX.test(pair)) bad('invalid percent-encoding in path');
      if ([0x00, 0x2f, 0x5c].includes(parseInt(pair, 16))) bad('encoded NUL, slash or backslash in path');
    }
  }
  for (const seg of path.slice(1).split('/')) {
    if (/^(?:\.|%2[eE]){1,2}$/.test(seg.split(';')[0])) bad('dot segment in path');
  }
}
function canonicalHeaderValue(v) {
  if (!/^[\x20-\x7e\t]*$/.test(v)) throw new SignError('header value is not visible ASCII');
  return v.replace(/[ \t]+/g, ' ').replace(/^ +| +$/g, '');
}
function headerItems(headers) {
  if (!headers) return [];
  if (typeof headers.entries === 'function' && !Array.isArray(headers)) return [...headers.entries()];
  if (Array.isArray(headers)) return headers;
  return Object.entries(headers).flatMap(([n, v]) => (Array.isArray(v) ? v.map((x) => [n, x]) : [[n, String(v)]]));
}
function splitUrl(url) {
  let authority = null;
  const m = /^(https?):\/\//i.exec(url);
  if (m) {
    const scheme = m[1].toLowerCase();
    const rest = url.slice(m[0].length);
    let end = rest.length;
    for (const sep of '/?#') { const p = rest.indexOf(sep); if (p !== -1) end = Math.min(end, p); }
    authority = rest.slice(0, end).split('@').pop().toLowerCase();
    const def = scheme === 'http' ? ':80' : ':443';
    if (authority.endsWith(def)) authority = authority.slice(0, -def.length);
    url = rest.slice(end);
  }
  url = url.split('#')[0];
  const q = url.indexOf('?');
  return { authority, path: q < 0 ? url : url.slice(0, q), query: q < 0 ? null : url.slice(q + 1) };
}
function toBytes(body) {
  if (body == null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (Buffer.isBuffer(body)) return body;
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString(), 'utf8');
  throw new SignError('unsupported body type: pass a string, Buffer, ArrayBuffer or typed array (streams cannot be hashed as sent)');
}
function stringToSign({ method, path, query, headers, body, accessKey, timestamp, nonce, signedHeaders = [], authority = null }) {
  path = path || '/';
  checkRawPath(path);
  let out = [ALGORITHM, method.toUpperCase(), path, canonicalQuery(query), accessKey, String(timestamp), nonce, signedHeaders.join(';')].join('\n') + '\n';
  const items = headerItems(headers);
  for (const name of signedHeaders) {
    let values = items.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);
    if (!values.length && name === 'host' && authority !== null) values = [authority];
    if (!values.length) throw new SignError(`signed header ${name} is not in the request`);
    out += name + ':' + values.map(canonicalHeaderValue).join(',') + '\n';
  }
  return out + crypto.createHash('sha256').update(toBytes(body)).digest('hex');
}
function normaliseSignedHeaders(names) {
  const r = [...new Set(names.map((n) => n.toLowerCase()))].sort();
  for (const n of r) {
    if (!TCHAR.test(n)) throw new SignError(`invalid signed header name ${JSON.stringify(n)}`);
    if (n.startsWith('x-kg-')) throw new SignError('x-kg-* headers cannot be signed');
  }
  return r;
}
/** Returns the X-Kg-* headers to add. */
function sign({ method, url, headers, body, accessKey, secret, signedHeaders = [], timestamp, nonce }) {
  if (timestamp == null) timestamp = Math.floor(Date.now() / 1000);
  if (nonce == null) nonce = crypto.randomBytes(16).toString('hex');
  if (!NONCE_RE.test(nonce)) throw new SignError('nonce must be 16-64 characters of [A-Za-z0-9_-]');
  if (!/^[\x21-\x7e]{1,128}$/.test(accessKey)) throw new SignError('access key must be 1-128 visible ASCII characters');
  const names = normaliseSignedHeaders(signedHeaders);
  const { authority, path, query } = splitUrl(url);
  const sts = stringToSign({ method, path, query, headers, body, accessKey, timestamp, nonce, signedHeaders: names, authority });
  const out = { 'X-Kg-Key': accessKey, 'X-Kg-Timestamp': String(timestamp), 'X-Kg-Nonce': nonce };
  if (names.length) out['X-Kg-Signed-Headers'] = names.join(';');
  out['X-Kg-Signature'] = crypto.createHmac('sha256', typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret).update(sts, 'ascii').digest('hex');
  return out;
}

const secrets = new WeakMap();
/** One access key; remembers the clock offset learned from timestamp_out_of_window refusals. */
class Signer {
  constructor(accessKey, secret, { signedHeaders = ['host'], clock = () => Date.now() / 1000 } = {}) {
    this.accessKey = accessKey;
    secrets.set(this, Buffer.from(typeof secret === 'string' ? Buffer.from(secret, 'utf8') : secret));
    this.signedHeaders = signedHeaders;
    this.clock = clock;
    this.offset = 0;
  }
  now() { return Math.floor(this.clock()) + this.offset; }
  /** Overwrites the secret copy; the signer refuses to sign afterwards. */
  destroy() { const b = secrets.get(this); if (b) b.fill(0); secrets.delete(this); }
  sign(method, url, headers, body, { timestamp, nonce } = {}) {
    if (!secrets.has(this)) throw new SignError('this signer was destroyed');
    const present = new Set(headerItems(headers).map(([n]) => n.toLowerCase()));
    const { authority } = splitUrl(url);
    const names = this.signedHeaders.filter((n) => present.has(n.toLowerCase()) || (n.toLowerCase() === 'host' && authority !== null));
    return sign({ method, url, headers, body, accessKey: this.accessKey, secret: secrets.get(this), signedHeaders: names, timestamp: timestamp ?? this.now(), nonce });
  }
  /** If (status, envelope, Date) is a skew refusal, adjusts the offset and returns true. */
  learnSkew(status, envelope, dateHeader) {
    if (status !== 401 || !envelope || envelope.code !== 'timestamp_out_of_window') return false;
    let server = Number.isInteger(envelope.server_time) ? envelope.server_time : null;
    if (server === null && dateHeader) { const t = Date.parse(dateHeader); if (!Number.isNaN(t)) server = Math.floor(t / 1000); }
    if (server === null) return false;
    this.offset = server - Math.floor(this.clock());
    return true;
  }
  toJSON() { return { accessKey: this.accessKey, offset: this.offset }; }
  [Symbol.for('nodejs.util.inspect.custom')]() { return `Signer(${this.accessKey})`; }
}

/** fetch wrapper: signs, retries once after a clock-skew refusal. Body must be string/bytes. */
function signedFetch(signer, fetchImpl = globalThis.fetch) {
  return async function kgFetch(url, init = {}) {
    const method = (init.method || 'GET').toUpperCase();
    const doOnce = () => {
      const h = new Headers(init.headers || {});
      for (const k of ['x-kg-key', 'x-kg-timestamp', 'x-kg-nonce', 'x-kg-signed-headers', 'x-kg-signature']) h.delete(k);
      for (const [k, v] of Object.entries(signer.sign(method, String(url), h, init.body))) h.set(k, v);
      return fetchImpl(url, { ...init, method, headers: h });
    };
    let res = await doOnce();
    if (res.status === 401) {
      const env = await res.clone().json().catch(() => null);
      if (signer.learnSkew(res.status, env, res.headers.get('date'))) res = await doOnce();
    }
    return res;
  };
}

/** Throws KeygateError for a keygate error envelope. */
async function raiseForKeygate(res) {
  if (res.status < 400) return;
  const env = await res.clone().json().catch(() => null);
  if (env && typeof env.code === 'string') {
    throw new KeygateError(env.code, String(env.message || ''), { status: res.status, requestId: env.request_id || res.headers.get('x-request-id'), body: env });
  }
}

/** axios request interceptor + response error handler for skew retry: install(axiosInstance, signer). */
function axiosInstall(axios, signer) {
  axios.interceptors.request.use((config) => {
    const url = axios.getUri(config);
    const headers = config.headers || {};
    const flat = typeof headers.toJSON === 'function' ? headers.toJSON() : headers;
    const hdrs = Object.entries(flat).filter(([, v]) => typeof v === 'string' || typeof v === 'number').map(([n, v]) => [n, String(v)]);
    const body = config.data == null ? '' : typeof config.data === 'string' || ArrayBuffer.isView(config.data) || config.data instanceof ArrayBuffer ? config.data : JSON.stringify(config.data);
    config.data = body === '' ? undefined : body;
    for (const [k, v] of Object.entries(signer.sign(config.method || 'get', url, hdrs, body))) config.headers[k] = v;
    return config;
  });
  // The skew refusal arrives as an error (default validateStatus) or as a response (custom validateStatus).
  const retry = (r) => {
    if (!r || !r.config || r.config.__kgRetried) return null;
    const date = r.headers && (typeof r.headers.get === 'function' ? r.headers.get('date') : r.headers.date);
    if (!signer.learnSkew(r.status, r.data, date)) return null;
    r.config.__kgRetried = true;
    return axios.request(r.config);
  };
  axios.interceptors.response.use(
    (res) => retry(res) || res,
    async (err) => {
      const again = retry(err.response);
      if (again) return again;
      throw err;
    },
  );
}

module.exports = { ALGORITHM, KeygateError, SignError, Signer, sign, stringToSign, canonicalQuery, checkRawPath, splitUrl, signedFetch, raiseForKeygate, axiosInstall, outboundUrl };
function outboundUrl(base, provider, path) {
  if (!provider || provider.includes('/')) throw new SignError("provider must be a non-empty name without '/'");
  return base.replace(/\/+$/, '') + '/out/' + provider + '/' + path.replace(/^\/+/, '');
}
