'use strict';
const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const kg = require('..');

const load = (n) => JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'docs', 'vectors', n), 'utf8'));
const KG1 = load('kg1.json');
const bodyOf = (v) => (v.body_hex !== undefined ? Buffer.from(v.body_hex, 'hex') : Buffer.from(v.body_utf8, 'utf8'));
const secretOf = (v) => (v.secret_hex !== undefined ? Buffer.from(v.secret_hex, 'hex') : Buffer.from(v.secret_utf8, 'utf8'));

for (const v of KG1.vectors) {
  test(`kg1 vector ${v.name}`, () => {
    const e = v.expected;
    assert.strictEqual(kg.canonicalQuery(v.raw_query), e.canonical_query);
    assert.strictEqual(crypto.createHash('sha256').update(bodyOf(v)).digest('hex'), e.body_sha256);
    const sts = kg.stringToSign({ method: v.method, path: v.raw_path, query: v.raw_query, headers: v.headers, body: bodyOf(v), accessKey: v.access_key, timestamp: v.timestamp, nonce: v.nonce, signedHeaders: v.signed_headers, authority: v.authority });
    assert.strictEqual(sts, e.string_to_sign);
    let url = v.raw_path + (v.raw_query === null ? '' : '?' + v.raw_query);
    if (v.authority !== null) url = 'https://' + v.authority + url;
    const out = kg.sign({ method: v.method, url, headers: v.headers, body: new Uint8Array(bodyOf(v)), accessKey: v.access_key, secret: secretOf(v), signedHeaders: v.signed_headers, timestamp: v.timestamp, nonce: v.nonce });
    assert.strictEqual(out['X-Kg-Signature'], e.signature);
  });
}
for (const c of KG1.canonical_query_cases) {
  test(`canonical query ${JSON.stringify(c.raw)}`, () => {
    if (c.error) assert.throws(() => kg.canonicalQuery(c.raw), (err) => err instanceof kg.SignError && err.code === c.error);
    else assert.strictEqual(kg.canonicalQuery(c.raw), c.canonical);
  });
}
for (const c of KG1.path_cases) {
  test(`path ${JSON.stringify(c.raw_path)}`, () => {
    if (c.valid) kg.checkRawPath(c.raw_path);
    else assert.throws(() => kg.checkRawPath(c.raw_path), (err) => err.code === 'invalid_path');
  });
}
test('skew learning', () => {
  const s = new kg.Signer('AK', 's', { clock: () => 1000 });
  assert.ok(s.learnSkew(401, { code: 'timestamp_out_of_window', server_time: 1600 }, null));
  assert.strictEqual(s.now(), 1600);
  assert.ok(s.learnSkew(401, { code: 'timestamp_out_of_window' }, 'Thu, 01 Jan 1970 00:20:00 GMT'));
  assert.strictEqual(s.offset, 200);
  assert.ok(!s.learnSkew(401, { code: 'signature_mismatch', server_time: 5 }, null));
  assert.strictEqual(s.offset, 200);
});
test('random nonces, secret not exposed', () => {
  const s = new kg.Signer('AK', 'topsecret');
  const n = new Set(Array.from({ length: 100 }, () => s.sign('GET', '/a')['X-Kg-Nonce']));
  assert.strictEqual(n.size, 100);
  assert.ok(!JSON.stringify(s).includes('topsecret'));
  assert.ok(!require('node:util').inspect(s).includes('topsecret'));
});
test('destroyed signer refuses', () => {
  const s = new kg.Signer('AK', 's3cret');
  s.sign('GET', '/a');
  s.destroy();
  assert.throws(() => s.sign('GET', '/a'), (e) => e instanceof kg.SignError);
});
