'use strict';
const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const kg = require('..');

const BIN = process.env.KEYGATE_BIN;
const have = BIN && fs.existsSync(BIN);
if (!have && process.env.CI === 'true') throw new Error('KEYGATE_BIN is not set or missing: build it with `cargo build -p keygate`');
const AK = 'AKSDKJS000000001';
const SECRET = 'sdk-js-e2e-secret';

test('e2e against keygate', { skip: !have && 'KEYGATE_BIN not set' }, async (t) => {
  const seen = [];
  const up = http.createServer((req, res) => { const c = []; req.on('data', (d) => c.push(d)); req.on('end', () => { seen.push(Buffer.concat(c)); res.end('ok'); }); });
  await new Promise((r) => up.listen(0, '127.0.0.1', r));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kgjs-'));
  const cfg = path.join(dir, 'keygate.toml');
  fs.writeFileSync(cfg, `[store]\nurl = "sqlite://${dir}/keygate.db"\n\n[[routes]]\npath_prefix = "/"\nupstream = "http://127.0.0.1:${up.address().port}"\n\n[[apps]]\nid = "sdk"\n[[apps.keys]]\naccess_key = "${AK}"\nsecret_env = "SDK_SK"\n`);
  const child = spawn(BIN, ['--log-format', 'json', 'serve', '--config', cfg, '--listen', '127.0.0.1:0'], { env: { ...process.env, KEYGATE_MASTER_KEY: 'v1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=', KEYGATE_LOG: 'info', SDK_SK: SECRET }, stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => { child.kill(); up.close(); });
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('keygate did not start')), 30000);
    readline.createInterface({ input: child.stderr }).on('line', (l) => {
      try { const v = JSON.parse(l); if (String(v.message || '').startsWith('inbound listening')) { clearTimeout(timer); resolve(v.addr); } } catch { /* not JSON */ }
    });
  });
  const gw = `http://${addr}`;
  const tricky = "/v1/things/a%20b;v=1?b=2&a=1&a=0&p=%2B+x&u=%E4%BD%A0&e=&k=!*'()";
  const f = kg.signedFetch(new kg.Signer(AK, SECRET, { signedHeaders: ['host', 'content-type'] }));
  let r = await f(gw + tricky);
  assert.strictEqual(r.status, 200, await r.text());
  const bin = new Uint8Array(1024).map((_, i) => i % 256);
  r = await f(gw + tricky, { method: 'POST', body: bin, headers: { 'content-type': 'application/octet-stream' } });
  assert.strictEqual(r.status, 200, await r.text());
  assert.deepStrictEqual(seen.at(-1), Buffer.from(bin));
  r = await f(gw + '/v1/put', { method: 'PUT', body: '{"a":"ü"}' });
  assert.strictEqual(r.status, 200);
  // tampered: signed for one query, sent with another
  const h = new kg.Signer(AK, SECRET).sign('POST', gw + '/v1/x?a=1', {}, bin);
  r = await fetch(gw + '/v1/x?a=2', { method: 'POST', body: bin, headers: h });
  await assert.rejects(kg.raiseForKeygate(r), (e) => e.code === 'signature_mismatch' && e.status === 401 && !!e.requestId);
  // clock skew: an hour behind, corrected after one refusal
  const skewed = new kg.Signer(AK, SECRET, { clock: () => Date.now() / 1000 - 3600 });
  r = await kg.signedFetch(skewed)(gw + '/v1/skew?x=1');
  assert.strictEqual(r.status, 200);
  assert.ok(Math.abs(skewed.offset - 3600) <= 2);

  // axios: interceptor signs the body as sent (binary and JSON), skew corrected once, tamper refused.
  const axios = require('axios');
  const ax = axios.create({ baseURL: gw, validateStatus: () => true });
  const axSkewed = new kg.Signer(AK, SECRET, { signedHeaders: ['host', 'content-type'], clock: () => Date.now() / 1000 + 7200 });
  kg.axiosInstall(ax, axSkewed);
  r = await ax.post(tricky, Buffer.from(bin), { headers: { 'content-type': 'application/octet-stream' } });
  assert.strictEqual(r.status, 200, JSON.stringify(r.data));
  assert.ok(Math.abs(axSkewed.offset + 7200) <= 2);
  assert.deepStrictEqual(seen.at(-1), Buffer.from(bin));
  r = await ax.put('/v1/json?z=1&a=2', { a: 'ü', n: [1, 2] });
  assert.strictEqual(r.status, 200, JSON.stringify(r.data));
  assert.deepStrictEqual(JSON.parse(seen.at(-1).toString('utf8')), { a: 'ü', n: [1, 2] });
  const axDefault = axios.create({ baseURL: gw });
  const behind = new kg.Signer(AK, SECRET, { clock: () => Date.now() / 1000 - 900 });
  kg.axiosInstall(axDefault, behind);
  assert.strictEqual((await axDefault.get('/v1/skew?q=%E4%BD%A0')).status, 200);
  assert.ok(Math.abs(behind.offset - 900) <= 2);
  const axBad = axios.create({ baseURL: gw, validateStatus: () => true });
  kg.axiosInstall(axBad, new kg.Signer(AK, 'wrong'));
  r = await axBad.get('/v1/x');
  assert.strictEqual(r.status, 401);
  assert.strictEqual(r.data.code, 'signature_mismatch');
});
