// Drives keygate's web console in Debian's headless Chromium (playwright-core, executablePath
// /usr/bin/chromium): logs in as each role, creates an app and a key, signs a request with the
// secret the page showed (keygate's JS SDK) and sees it accepted, rotates and revokes, rolls back a
// version, and checks that forbidden actions are absent from the pages and refused when forced.
// Input (env): KG_ADMIN, KG_INBOUND (base URLs), KG_TOKENS (JSON: admin, t1_dev, t2_admin),
// KG_SHOTS (directory for screenshots, optional). Exit 0 = every check held.
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { Signer } = require('../../sdk/js/index.js');
const ADMIN = process.env.KG_ADMIN;
const INBOUND = process.env.KG_INBOUND;
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
  const signedGet = async (accessKey, secret) => {
    const signer = new Signer(accessKey, secret);
    const url = `${INBOUND}/api/orders?x=1`;
    const headers = signer.sign('GET', url, {}, '');
    const res = await fetch(url, { headers });
    return res.status;
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
    await shot(page, 'console-alerts');
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
    try { console.error(`page ${lastPage.url()}:\n${(await lastPage.content()).slice(0, 3000)}`); } catch (_) { /* closed */ }
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
