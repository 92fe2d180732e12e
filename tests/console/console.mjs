// Drives keygate's web console in Debian's headless Chromium (playwright-core, executablePath
// /usr/bin/chromium): logs in as each role, creates an app and a key, signs a request with the
// secret the page showed (keygate's JS SDK) and sees it accepted, rotates and revokes, rolls back a
// version, and checks that forbidden actions are absent from the pages and refused when forced.
// As a tenant admin it publishes a route and an alert rule through the forms, sees refusals with
// the API's reason, edits and deletes them, signs a request through the new route, fires the rule,
// and edits and creates provider documents; a developer sees all of it read-only.
// Input (env): KG_ADMIN, KG_INBOUND (base URLs), KG_UPSTREAM (host:port tenant routes may forward
// to), KG_TOKENS (JSON: admin, t1_admin, t1_dev, t2_admin),
// KG_SHOTS (directory for screenshots, optional). Exit 0 = every check held.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Signer } = require('../../sdk/js/index.js');
const ADMIN = process.env.KG_ADMIN;
const INBOUND = process.env.KG_INBOUND;
const UPSTREAM = process.env.KG_UPSTREAM;
const TOKENS = JSON.parse(process.env.KG_TOKENS);
const SHOTS = process.env.KG_SHOTS || '';

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
let step = 'start';
let lastPage = null;
try {
  const shot = async (page, name) => {
    if (SHOTS) await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  };
  const login = async (token) => {
    const ctx = await browser.newContext({ viewport: { width: 1180, height: 760 } });
    const page = await ctx.newPage();
    lastPage = page;
    await page.goto(`${ADMIN}/console/`);
    assert.match(page.url(), /\/console\/login$/, 'unauthenticated visits go to the login page');
    await page.fill('#token', token);
    await page.click('button[type=submit]');
    return { ctx, page };
  };
  const signedGet = async (accessKey, secret, path = '/api/orders?x=1') => {
    const signer = new Signer(accessKey, secret);
    const url = `${INBOUND}${path}`;
    const headers = signer.sign('GET', url, {}, '');
    const res = await fetch(url, { headers });
    return res.status;
  };
  // Polls until a signed GET answers `want` (routes and keys reach the data plane at a reload).
  const signedUntil = async (accessKey, secret, path, want) => {
    let got = 0;
    for (let i = 0; i < 100 && got !== want; i++) {
      got = await signedGet(accessKey, secret, path);
      if (got !== want) await new Promise((r) => setTimeout(r, 50));
    }
    return got;
  };
  // Submits a form by clicking `button` and returns the HTTP status of the page it led to.
  const submit = async (page, button) => {
    const [resp] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().startsWith(`${ADMIN}/console/`)),
      page.click(button),
    ]);
    await page.waitForLoadState();
    return resp.status();
  };

  step = 'login page and bad tokens';
  {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    await page.goto(`${ADMIN}/console/login`);
    await shot(page, 'console-login');
    const csp = (await page.request.get(`${ADMIN}/console/login`)).headers()['content-security-policy'];
    assert.match(csp, /default-src 'none'/);
    await page.fill('#token', 'kgadm_not-a-real-token');
    await page.click('button[type=submit]');
    assert.match(await page.textContent('.error'), /not valid/);
    await ctx.close();
  }

  step = 'gateway admin: overview, create app, create key, sign with the shown secret';
  const { ctx: adminCtx, page } = await login(TOKENS.admin);
  assert.match(page.url(), /\/console\/$/);
  const cookies = await adminCtx.cookies();
  const session = cookies.find((c) => c.name === 'kg_console');
  assert.ok(session.httpOnly && session.sameSite === 'Strict', 'session cookie is HttpOnly and SameSite=Strict');
  assert.ok(await page.isVisible('text=t1'));
  await page.click('a[href="/console/tenants/t1"]');
  await page.fill('#app-id', 'web');
  await page.fill('#app-name', 'Web shop');
  await page.click('text=Create app');
  assert.match(page.url(), /\/console\/apps\/web$/);
  await page.fill('#key-desc', 'created in the console');
  await page.click('text=Create key');
  const accessKey = (await page.textContent('#access-key')).trim();
  const secret = (await page.textContent('#secret')).trim();
  assert.match(accessKey, /^AK[0-9A-F]{20}$/);
  assert.ok(secret.length >= 43);
  // Reloading never shows the secret again.
  await page.goto(`${ADMIN}/console/apps/web`);
  assert.equal(await page.locator('#secret').count(), 0);
  assert.ok(!(await page.content()).includes(secret));
  let status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = await signedGet(accessKey, secret);
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 200, 'a request signed with the secret the console showed is accepted');
  await shot(page, 'console-app');

  step = 'rotate: the page shows the new secret once, and it signs';
  await page.click(`form[action="/console/keys/${accessKey}/rotate"] button`);
  const newKey = (await page.textContent('#access-key')).trim();
  const newSecret = (await page.textContent('#secret')).trim();
  assert.notEqual(newKey, accessKey);
  status = 0;
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = await signedGet(newKey, newSecret);
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 200);

  step = 'revoke, then roll the revoke back through the versions page';
  await page.goto(`${ADMIN}/console/apps/web`);
  await page.click(`form[action="/console/keys/${newKey}/revoke"] button`);
  assert.ok(await page.isVisible('text=revoked'));
  for (let i = 0; i < 100 && status !== 401; i++) {
    status = await signedGet(newKey, newSecret);
    if (status !== 401) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 401, 'the revoked key is refused');
  await page.goto(`${ADMIN}/console/tenants/t1/versions`);
  await shot(page, 'console-versions');
  const rows = page.locator('tbody tr');
  const latest = await rows.nth(0).locator('a').textContent();
  assert.match(await rows.nth(0).textContent(), new RegExp(`revoke key ${newKey}`));
  const before = Number(latest.slice(1)) - 1;
  await page.click(`a[href="/console/tenants/t1/versions/${latest.slice(1)}"]`);
  assert.ok(await page.isVisible('pre.diff .del'), 'the diff shows what the revoke changed');
  await shot(page, 'console-version-diff');
  await page.goto(`${ADMIN}/console/tenants/t1/versions/${before}`);
  await page.fill('#rb-comment', 'undo revoke');
  await page.click('button.rollback');
  assert.match(await page.textContent('#rollback-summary'), /1 to update/);
  for (let i = 0; i < 100 && status !== 200; i++) {
    status = await signedGet(newKey, newSecret);
    if (status !== 200) await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(status, 200, 'after the rollback the key works again');

  step = 'alerts: a bad signature fires the rule, the page lists it without the channel URL';
  {
    const signer = new Signer(newKey, 'not-the-secret-0123456789');
    const url = `${INBOUND}/api/orders`;
    // The rule fires above its threshold (1): three bad signatures.
    for (let i = 0; i < 3; i++) {
      assert.equal((await fetch(url, { headers: signer.sign('GET', url, {}, '') })).status, 401);
    }
    let seen = false;
    for (let i = 0; i < 100 && !seen; i++) {
      await page.goto(`${ADMIN}/console/alerts`);
      seen = (await page.locator('#recent-alerts td', { hasText: 'bad signatures' }).count()) > 0;
      if (!seen) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(seen, 'the fired alert is listed');
    assert.ok(!(await page.content()).includes('alerts-webhook'), 'channel addresses are never shown');
  }

  step = 'traffic chart and the request audit';
  let found = false;
  for (let i = 0; i < 100 && !found; i++) {
    await page.goto(`${ADMIN}/console/requests?app=web`);
    found = (await page.locator('td.bad', { hasText: 'key_disabled' }).count()) > 0
      && (await page.locator('td', { hasText: /^ok$/ }).count()) > 0;
    if (!found) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(found, 'accepted and refused requests of app web are in the audit log');
  await page.locator('tr.detail summary').first().click();
  assert.match(await page.locator('tr.detail pre').first().textContent(), /request id /);
  assert.ok(!(await page.content()).includes(newSecret), 'no secret in the audit pages');
  await shot(page, 'console-requests');
  await page.goto(`${ADMIN}/console/`);
  assert.equal(await page.locator('svg.chart text', { hasText: /^web$/ }).count(), 1, 'the chart has a bar for web');
  assert.match(await page.locator('svg.chart').textContent(), /auth failures/);
  await shot(page, 'console-overview');

  step = 'provider: write-only binding, script editor with versions, test run';
  await page.goto(`${ADMIN}/console/tenants/t1`);
  await page.click('a[href="/console/providers/sigpay"]');
  assert.match(await page.textContent('p.error'), /Missing: ApiKey/);
  assert.ok(await page.isVisible('pre.code .js-helper'), 'the script is highlighted');
  const bindingValue = 'console-binding-value-0123456789';
  await page.fill('#secret-name', 'ApiKey');
  await page.fill('#secret-value', bindingValue);
  await page.click('text=Store (write-only)');
  assert.equal(await page.locator('p.error').count(), 0, 'no binding missing any more');
  assert.ok(!(await page.content()).includes(bindingValue), 'a stored binding is never shown');
  assert.equal(await page.locator('td code', { hasText: 'ApiKey' }).count(), 1);
  const edited = (await page.inputValue('#script-source')).replace("'X-Sign'", "'X-Signature'");
  await page.fill('#script-source', edited);
  await page.fill('#script-comment', 'rename the header');
  await page.click('text=Save version');
  assert.equal(await page.locator('tbody tr', { hasText: 'rename the header' }).locator('text=active').count(), 1);
  await page.fill('#tr-path', '/pay');
  await page.fill('#tr-body', '{"amount": 1, "order": "A-1"}');
  await page.click('form[action="/console/providers/sigpay/test-run"] button');
  const outgoing = await page.textContent('#test-run-request');
  assert.match(outgoing, /^POST http:\/\/127\.0\.0\.1:9\/pay/);
  assert.match(outgoing, /x-signature: [0-9a-f]{64}/i, 'the edited script ran');
  assert.ok(!outgoing.includes(bindingValue), 'test runs never see real bindings');
  await shot(page, 'console-provider');
  // Roll the script back to v1 in one click.
  await page.click('form[action="/console/providers/sigpay/scripts/1/activate"] button');
  await page.fill('#tr-path', '/pay');
  await page.click('form[action="/console/providers/sigpay/test-run"] button');
  assert.match(await page.textContent('#test-run-request'), /x-sign: [0-9a-f]{64}/i);

  step = 'members: a new developer token, used, then revoked (its session ends)';
  await page.goto(`${ADMIN}/console/tenants/t1/members`);
  await page.fill('#m-name', 'helper');
  await page.selectOption('#m-grant', 'web');
  await page.click('text=Create token');
  const helperToken = (await page.textContent('#member-token')).trim();
  assert.match(helperToken, /^kgadm_/);
  {
    const { ctx, page: hp } = await login(helperToken);
    await hp.goto(`${ADMIN}/console/apps/web`);
    assert.equal(await hp.locator('text=Create key').count(), 1, 'the granted app can get keys');
    await page.goto(`${ADMIN}/console/tenants/t1/members`);
    await page.locator('tr', { hasText: 'helper' }).locator('button.revoke').click();
    assert.equal(await page.locator('tr', { hasText: 'helper' }).locator('text=revoked').count(), 1);
    await hp.goto(`${ADMIN}/console/apps/web`);
    assert.match(hp.url(), /\/console\/login$/, 'a revoked token ends its console session');
    await ctx.close();
  }
  lastPage = page;

  step = 'cross-site and forged posts are refused';
  const forged = await page.request.post(`${ADMIN}/console/keys/${newKey}/revoke`, {
    form: { csrf: 'wrong' }, headers: { origin: ADMIN },
  });
  assert.equal(forged.status(), 403, 'a wrong CSRF token is refused');
  const csrf = await page.getAttribute('input[name=csrf]', 'value');
  const crossSite = await page.request.post(`${ADMIN}/console/keys/${newKey}/revoke`, {
    form: { csrf }, headers: { origin: 'http://evil.example' },
  });
  assert.equal(crossSite.status(), 403, 'a cross-origin post is refused');
  await adminCtx.close();

  step = 'tenant admin: create a route through the form, see it listed, sign a request through it';
  const { ctx: ownerCtx, page: owner } = await login(TOKENS.t1_admin);
  lastPage = owner;
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  assert.equal(await owner.locator('a[href="/console/tenants/t1/alerts"]').count() > 0, true, 'links to the tenant alerts');
  await owner.fill('#route-name', 'orders');
  await owner.fill('#route-prefix', '/t/t1/orders');
  await owner.fill('#route-upstream', `http://${UPSTREAM}`);
  await owner.fill('#route-more', '{"strip_prefix": true, "timeout_ms": 5000}');
  assert.equal(await submit(owner, 'text=Create route'), 303);
  assert.match(owner.url(), /\/console\/tenants\/t1(#routes)?$/);
  const orderRow = owner.locator('#route-table tbody tr', { hasText: 'orders' });
  assert.equal(await orderRow.count(), 1, 'the new route is listed');
  assert.match(await orderRow.textContent(), /\/t\/t1\/orders/);
  assert.match(await orderRow.textContent(), new RegExp(`http://${UPSTREAM.replace(/\./g, '\\.')}`));
  assert.match(await orderRow.textContent(), /signature/);
  assert.match(await orderRow.textContent(), /owner/, 'updated by the tenant admin');
  assert.equal(await signedUntil(newKey, newSecret, '/t/t1/orders/items?x=1', 200), 200,
    "a request signed by the tenant's app is accepted on the tenant's new route");

  step = 'tenant admin: a route to a forbidden upstream is refused with the reason, input kept';
  await owner.fill('#route-name', 'metadata');
  await owner.fill('#route-prefix', '/t/t1/meta');
  await owner.fill('#route-upstream', 'http://169.254.169.254');
  assert.equal(await submit(owner, 'text=Create route'), 400);
  assert.match(await owner.textContent('#route-error'), /not allowed for tenant routes/);
  assert.equal(await owner.inputValue('#route-upstream'), 'http://169.254.169.254', 'the input is kept');
  assert.equal(await owner.inputValue('#route-name'), 'metadata');
  await shot(owner, 'console-route-refused');
  await owner.fill('#route-name', 'outside');
  await owner.fill('#route-prefix', '/t/t2/orders');
  await owner.fill('#route-upstream', `http://${UPSTREAM}`);
  assert.equal(await submit(owner, 'text=Create route'), 400);
  assert.match(await owner.textContent('#route-error'), /path_prefix must be \/t\/t1/);
  await owner.fill('#route-name', 'orders');
  await owner.fill('#route-prefix', '/t/t1/other');
  await owner.fill('#route-more', '');
  assert.equal(await submit(owner, 'text=Create route'), 409, 'a create form never replaces a route');
  assert.match(await owner.textContent('#route-error'), /already exists/);
  assert.equal(await owner.locator('#route-table tbody tr', { hasText: 'metadata' }).count(), 0);

  step = 'tenant admin: create an alert rule; a gauge rule is refused';
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  await owner.fill('#rule-name', 'gauge');
  await owner.fill('#rule-doc', '{"kind": "gauge_above", "gauge": "audit_spill_bytes", "threshold": 1.0}');
  assert.equal(await submit(owner, 'text=Create alert rule'), 400);
  assert.ok(await owner.isVisible('#rule-error'), 'the refusal is shown');
  await owner.fill('#rule-name', 'sig-burst');
  await owner.fill('#rule-doc', '{"kind": "signature_failures", "per": "app", "threshold": 1, "window_secs": 60}');
  assert.equal(await submit(owner, 'text=Create alert rule'), 303);
  const ruleRow = owner.locator('#rule-table tbody tr', { hasText: 'sig-burst' });
  assert.equal(await ruleRow.count(), 1, 'the new rule is listed');
  assert.match(await ruleRow.textContent(), /signature_failures\s*app\s*1\s*60 s/);
  await shot(owner, 'console-tenant');

  step = 'tenant admin: edit the route document; a refused edit keeps the text';
  await owner.click('#route-table a:text("orders")');
  assert.match(owner.url(), /\/console\/tenants\/t1\/routes\/orders$/);
  const doc = JSON.parse(await owner.inputValue('#doc'));
  assert.equal(doc.path_prefix, '/t/t1/orders');
  assert.equal(doc.strip_prefix, true, 'the more settings were merged');
  doc.timeout_ms = 7000;
  await owner.fill('#doc', JSON.stringify(doc, null, 2));
  assert.equal(await submit(owner, '#save'), 200);
  assert.ok(await owner.isVisible('#saved'));
  assert.equal(JSON.parse(await owner.inputValue('#doc')).timeout_ms, 7000, 'the saved document is shown');
  await shot(owner, 'console-route');
  const bad = { ...doc, upstream: 'http://169.254.169.254' };
  await owner.fill('#doc', JSON.stringify(bad, null, 2));
  assert.equal(await submit(owner, '#save'), 400);
  assert.match(await owner.textContent('#doc-error'), /not allowed for tenant routes/);
  assert.match(await owner.inputValue('#doc'), /169\.254\.169\.254/, 'the refused edit is kept');
  await owner.fill('#doc', '{"path_prefix": ');
  assert.equal(await submit(owner, '#save'), 400);
  assert.match(await owner.textContent('#doc-error'), /not JSON/);
  await owner.goto(`${ADMIN}/console/tenants/t1/routes/orders`);
  assert.equal(JSON.parse(await owner.inputValue('#doc')).upstream, `http://${UPSTREAM}`, 'refused edits changed nothing');
  assert.equal(await signedUntil(newKey, newSecret, '/t/t1/orders/items', 200), 200);

  step = 'tenant admin: delete a route from its page; the gateway stops serving it';
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  await owner.fill('#route-name', 'scratch');
  await owner.fill('#route-prefix', '/t/t1/scratch');
  await owner.fill('#route-upstream', `http://${UPSTREAM}`);
  assert.equal(await submit(owner, 'text=Create route'), 303);
  assert.equal(await signedUntil(newKey, newSecret, '/t/t1/scratch/x', 200), 200);
  await owner.goto(`${ADMIN}/console/tenants/t1/routes/scratch`);
  assert.equal(await submit(owner, '#delete'), 303);
  assert.match(owner.url(), /\/console\/tenants\/t1(#routes)?$/);
  assert.equal(await owner.locator('#route-table tbody tr', { hasText: 'scratch' }).count(), 0, 'the deleted route is gone');
  assert.equal(await signedUntil(newKey, newSecret, '/t/t1/scratch/x', 404), 404, 'and no longer served');
  const gone = await owner.goto(`${ADMIN}/console/tenants/t1/routes/scratch`);
  assert.equal(gone.status(), 404);

  step = 'tenant admin: edit and delete an alert rule';
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  await owner.fill('#rule-name', 'replay-burst');
  await owner.fill('#rule-doc', '{"kind": "replays", "per": "ip", "threshold": 3}');
  assert.equal(await submit(owner, 'text=Create alert rule'), 303);
  await owner.click('#rule-table a:text("replay-burst")');
  const rule = JSON.parse(await owner.inputValue('#doc'));
  rule.threshold = 9;
  await owner.fill('#doc', JSON.stringify(rule));
  assert.equal(await submit(owner, '#save'), 200);
  assert.equal(JSON.parse(await owner.inputValue('#doc')).threshold, 9);
  assert.equal(await submit(owner, '#delete'), 303);
  assert.equal(await owner.locator('#rule-table tbody tr', { hasText: 'replay-burst' }).count(), 0);

  step = "tenant admin: the tenant's rule fires on its app's bad signatures and is listed on its alerts page";
  {
    const signer = new Signer(newKey, 'not-the-secret-0123456789');
    const url = `${INBOUND}/t/t1/orders/items`;
    let seen = false;
    for (let i = 0; i < 60 && !seen; i++) {
      // Bad signatures until the rule (loaded at a reload) fires.
      for (let j = 0; j < 2; j++) {
        assert.equal((await fetch(url, { headers: signer.sign('GET', url, {}, '') })).status, 401);
      }
      await owner.goto(`${ADMIN}/console/tenants/t1/alerts`);
      seen = (await owner.locator('#recent-alerts td', { hasText: 'sig-burst' }).count()) > 0;
      if (!seen) await new Promise((r) => setTimeout(r, 150));
    }
    assert.ok(seen, "the tenant's fired alert is listed on its alerts page");
    assert.match(await owner.textContent('#fired'), /Fired [1-9]/);
    assert.equal(await owner.locator('#recent-alerts td', { hasText: /^bad signatures$/ }).count(), 0,
      "the operator's rules are not the tenant's");
    assert.equal(await owner.locator('#alert-rule-table td', { hasText: 'sig-burst' }).count(), 1);
    assert.ok(!(await owner.content()).includes('alerts-webhook'), 'channel addresses are never shown');
    await shot(owner, 'console-tenant-alerts');
  }

  step = 'tenant admin: provider document edit round-trip, bindings untouched';
  await owner.goto(`${ADMIN}/console/providers/sigpay`);
  const pdoc = JSON.parse(await owner.inputValue('#provider-config'));
  assert.equal(pdoc.base_url, 'http://127.0.0.1:9');
  assert.match(pdoc.recipe.source, /X-Sign/, 'the whole document, script included');
  pdoc.timeout_ms = 4321;
  pdoc.granted_apps = ['shop', 'web'];
  await owner.fill('#provider-config', JSON.stringify(pdoc, null, 2));
  assert.equal(await submit(owner, '#save-document'), 200);
  assert.ok(await owner.isVisible('#saved'));
  const saved = JSON.parse(await owner.inputValue('#provider-config'));
  assert.equal(saved.timeout_ms, 4321);
  assert.deepEqual(saved.granted_apps, ['shop', 'web']);
  assert.equal(saved.recipe.source, pdoc.recipe.source, 'the script survives a document save');
  assert.equal(await owner.locator('td code', { hasText: 'ApiKey' }).count(), 1, 'the stored binding is kept');
  assert.ok(!(await owner.content()).includes('console-binding-value-0123456789'), 'and never shown');
  await owner.goto(`${ADMIN}/console/providers/sigpay`);
  assert.equal(JSON.parse(await owner.inputValue('#provider-config')).timeout_ms, 4321, 'stored');
  await owner.fill('#provider-config', JSON.stringify({ ...saved, granted_apps: ['nope'] }, null, 2));
  assert.equal(await submit(owner, '#save-document'), 400);
  assert.match(await owner.textContent('#doc-error'), /app nope does not exist in tenant t1/);
  assert.match(await owner.inputValue('#provider-config'), /nope/, 'the refused document is kept');
  await shot(owner, 'console-provider-document');

  step = 'tenant admin: a new provider from the tenant page';
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  const newDoc = { base_url: 'http://127.0.0.1:9', allow_private_addresses: true, paths: ['POST /*'], recipe: { type: 'hmac_header' } };
  await owner.fill('#provider-id', 'newpay');
  await owner.fill('#provider-doc', JSON.stringify(newDoc, null, 2));
  assert.equal(await submit(owner, 'text=Create provider'), 303);
  assert.match(owner.url(), /\/console\/providers\/newpay$/);
  assert.match(await owner.textContent('p.error'), /Missing: /, 'its bindings are to be stored next');
  await owner.goto(`${ADMIN}/console/tenants/t1`);
  assert.equal(await owner.locator('#providers a[href="/console/providers/newpay"]').count(), 1);
  await owner.fill('#provider-id', 'newpay');
  await owner.fill('#provider-doc', JSON.stringify(newDoc));
  assert.equal(await submit(owner, 'text=Create provider'), 409);
  assert.match(await owner.textContent('#provider-error'), /already exists/);
  await owner.fill('#provider-id', 'broken');
  await owner.fill('#provider-doc', '{"base_url": "http://127.0.0.1:9"}');
  assert.equal(await submit(owner, 'text=Create provider'), 400);
  assert.ok(await owner.isVisible('#provider-error'));
  assert.equal(await owner.inputValue('#provider-id'), 'broken', 'the input is kept');
  await ownerCtx.close();

  step = 'developer of t1 (granted app shop): no admin actions shown, and refused when forced';
  {
    const { ctx, page } = await login(TOKENS.t1_dev);
    await page.goto(`${ADMIN}/console/apps/web`);
    assert.equal(await page.locator('button.rotate, button.revoke').count(), 0, 'no rotate/revoke for a developer');
    assert.equal(await page.locator('text=Create key').count(), 0, 'web is not granted: no create form');
    const csrf = await page.getAttribute('input[name=csrf]', 'value');
    const forced = await page.request.post(`${ADMIN}/console/keys/${newKey}/revoke`, { form: { csrf }, headers: { origin: ADMIN } });
    assert.equal(forced.status(), 403, 'the API refuses it for the console too');
    await page.goto(`${ADMIN}/console/apps/shop`);
    assert.equal(await page.locator('text=Create key').count(), 1, 'a granted app can get keys');
    await page.goto(`${ADMIN}/console/tenants/t1/versions/${before}`);
    assert.equal(await page.locator('button.rollback').count(), 0, 'no rollback for a developer');
    const members = await page.goto(`${ADMIN}/console/tenants/t1/members`);
    assert.equal(members.status(), 403, 'developers do not manage members');
    assert.equal(await page.locator('a[href="/console/alerts"]').count(), 0, 'no alerts link for tenant roles');
    const alerts = await page.goto(`${ADMIN}/console/alerts`);
    assert.equal(alerts.status(), 403);
    step = 'developer of t1: routes, rules and provider documents read-only; writes refused';
    await page.goto(`${ADMIN}/console/tenants/t1`);
    assert.equal(await page.locator('#route-table tbody tr', { hasText: 'orders' }).count(), 1, 'developers see the routes');
    assert.equal(await page.locator('#rule-table tbody tr', { hasText: 'sig-burst' }).count(), 1, 'and the rules');
    assert.equal(await page.locator('#new-route, #new-rule, #new-provider, #app-id').count(), 0, 'but no forms');
    const devCsrf = await page.getAttribute('input[name=csrf]', 'value');
    const forcedRoute = await page.request.post(`${ADMIN}/console/tenants/t1/routes`, {
      form: { csrf: devCsrf, name: 'dev-route', path_prefix: '/t/t1/dev', upstream: `http://${UPSTREAM}` },
      headers: { origin: ADMIN },
    });
    assert.equal(forcedRoute.status(), 403, 'the API refuses a developer route');
    assert.match(await forcedRoute.text(), /Not allowed/);
    const forcedRule = await page.request.post(`${ADMIN}/console/tenants/t1/alert-rules`, {
      form: { csrf: devCsrf, name: 'dev-rule', rule: '{"kind": "replays", "per": "app", "threshold": 1}' },
      headers: { origin: ADMIN },
    });
    assert.equal(forcedRule.status(), 403);
    await page.goto(`${ADMIN}/console/tenants/t1/routes/orders`);
    assert.ok(await page.locator('#doc').getAttribute('readonly') !== null, 'the document is read-only');
    assert.equal(await page.locator('#delete, #save').count(), 0, 'no save or delete');
    const forcedEdit = await page.request.post(`${ADMIN}/console/tenants/t1/routes/orders`, {
      form: { csrf: devCsrf, config: '{"path_prefix": "/t/t1/orders", "upstream": "http://127.0.0.1:1"}' },
      headers: { origin: ADMIN },
    });
    assert.equal(forcedEdit.status(), 403);
    const forcedDelete = await page.request.post(`${ADMIN}/console/tenants/t1/alert-rules/sig-burst/delete`, {
      form: { csrf: devCsrf }, headers: { origin: ADMIN },
    });
    assert.equal(forcedDelete.status(), 403);
    await page.goto(`${ADMIN}/console/providers/sigpay`);
    assert.equal(await page.locator('#provider-config').count(), 0, 'no document editor for a developer');
    const forcedDoc = await page.request.post(`${ADMIN}/console/providers/sigpay/document`, {
      form: { csrf: devCsrf, config: '{}' }, headers: { origin: ADMIN },
    });
    assert.equal(forcedDoc.status(), 403);
    const forcedProvider = await page.request.post(`${ADMIN}/console/tenants/t1/providers`, {
      form: { csrf: devCsrf, id: 'devpay', document: JSON.stringify({ base_url: 'http://127.0.0.1:9', allow_private_addresses: true, paths: ['POST /*'], recipe: { type: 'hmac_header' } }) },
      headers: { origin: ADMIN },
    });
    assert.equal(forcedProvider.status(), 403);
    assert.equal(await page.locator('a[href="/console/tenants/t1/alerts"]').count() > 0, true, 'tenant roles get their alerts page');
    const devAlerts = await page.goto(`${ADMIN}/console/tenants/t1/alerts`);
    assert.equal(devAlerts.status(), 200, "a developer reads the tenant's alerts");
    assert.equal(await page.locator('#alert-rule-table td', { hasText: 'sig-burst' }).count(), 1);
    await ctx.close();
  }

  step = 'admin of t2: t1 does not exist for it';
  {
    const { ctx, page } = await login(TOKENS.t2_admin);
    assert.ok(!(await page.content()).includes('href="/console/tenants/t1"'));
    const r = await page.goto(`${ADMIN}/console/tenants/t1`);
    assert.equal(r.status(), 404);
    const r2 = await page.goto(`${ADMIN}/console/apps/web`);
    assert.equal(r2.status(), 404);
    const r3 = await page.goto(`${ADMIN}/console/requests?app=web`);
    assert.equal(r3.status(), 404, "another tenant's request log is hidden");
    const r4 = await page.goto(`${ADMIN}/console/tenants/t1/routes/orders`);
    assert.equal(r4.status(), 404, "another tenant's routes are hidden");
    const r5 = await page.goto(`${ADMIN}/console/tenants/t1/alerts`);
    assert.equal(r5.status(), 404, "another tenant's alerts are hidden");
    const csrf2 = await page.getAttribute('input[name=csrf]', 'value');
    const r6 = await page.request.post(`${ADMIN}/console/tenants/t1/routes`, {
      form: { csrf: csrf2, name: 'x', path_prefix: '/t/t1/x', upstream: `http://${UPSTREAM}` }, headers: { origin: ADMIN },
    });
    assert.equal(r6.status(), 404, "no route into another tenant's subtree");
    await ctx.close();
  }

  step = "gateway admin: the alerts page names the tenant of a tenant's alert";
  {
    const { ctx, page } = await login(TOKENS.admin);
    await page.goto(`${ADMIN}/console/alerts`);
    const row = page.locator('#recent-alerts tbody tr', { hasText: 'sig-burst' });
    assert.ok((await row.count()) > 0, "tenants' alerts are on the gateway page too");
    assert.equal(await page.locator('#recent-alerts th', { hasText: 'Tenant' }).count(), 1, 'with a tenant column');
    assert.match(await row.first().textContent(), /t1/);
    assert.equal(await page.locator('#tenant-rules tr', { hasText: 'sig-burst' }).count(), 1, "and the tenants' rules");
    await shot(page, 'console-alerts');
    await ctx.close();
  }

  step = 'login throttling';
  {
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    let last = 0;
    for (let i = 0; i < 7; i++) {
      const r = await page.request.post(`${ADMIN}/console/login`, { form: { token: `kgadm_wrong${i}` }, headers: { origin: ADMIN } });
      last = r.status();
    }
    assert.equal(last, 429, 'repeated failed logins are throttled');
    await ctx.close();
  }
  console.log('console e2e ok');
} catch (e) {
  console.error(`console e2e failed at: ${step}`);
  console.error(e);
  if (lastPage) {
    try { console.error(`page ${lastPage.url()}:\n${(await lastPage.innerText('main')).slice(0, 4000)}`); } catch (_) { /* closed */ }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
