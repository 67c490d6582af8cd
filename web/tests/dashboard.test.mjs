/**
 * The dashboard in a real browser against a real control plane, a real node and a real
 * WireGuard client (see lab.mjs for the namespaces). The tests run in order and build on
 * each other, as an operator and a user would: the admin creates a region, enrolls a node
 * with the command the page shows, and creates a user; the user adds a device (keys made
 * in the browser), brings the tunnel up with the downloaded config, rotates and revokes;
 * a second user proves they can see none of it; the admin console does the rest.
 *
 * Run: `npm test` in web/ as root, after `cargo build --workspace --bins` and `npm run build`
 * (scripts/test.sh does all of it). Screenshots land in web/test-results/screenshots.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createLab, waitFor } from './lab.mjs';
import {
  confValue,
  decodeQr,
  keySpellings,
  launch,
  newSession,
  overflowsHorizontally,
  privateKeyIn,
  publicKeyOf,
  shoot,
  signIn,
} from './browser.mjs';

const ALICE = { email: 'alice@example.com', password: 'alice-password-1' };
const BOB = { email: 'bob@example.com', password: 'bob-password-12' };
const PLACEHOLDER = '<insert-your-private-key>';
/** Live views refresh every 3 s; allow a few rounds plus the node's 1 s telemetry. */
const LIVE = 20_000;

let lab;
let browser;
let admin; // API client (bearer) for set-up and cross-checks
const sessions = []; // every browser session, checked for CSP violations at the end
const state = {}; // what earlier tests learned, for later ones

async function session(opts) {
  const s = await newSession(browser, lab, opts);
  sessions.push(s);
  const page = await s.context.newPage();
  return { ...s, page };
}

/** The first host of a node's pool: the node's own tunnel address. */
function nodeTunnelIp(pool) {
  const [net] = pool.split('/');
  const o = net.split('.').map(Number);
  o[3] += 1;
  return o.join('.');
}

/** Downloads the config the delivery dialog offers; resolves {name, text}. */
async function downloadConf(page) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  const file = await dl.path();
  return { name: dl.suggestedFilename(), text: fs.readFileSync(file, 'utf8') };
}

/** The three deliveries of one config must be the same text; resolves it. */
async function deliveries(page) {
  const dialog = page.getByTestId('config-delivery');
  await dialog.waitFor();
  assert.match(await page.getByTestId('private-key-warning').innerText(), /private key is shown only this once/);
  const conf = await downloadConf(page);
  await page.getByTestId('copy').click();
  await page.getByTestId('copy').filter({ hasText: 'Copied' }).waitFor();
  const clip = await page.evaluate(() => navigator.clipboard.readText());
  const qr = decodeQr(await page.getByTestId('qr').screenshot());
  assert.equal(clip, conf.text, 'the clipboard holds the downloaded config');
  assert.equal(qr, conf.text, 'the QR code decodes to the downloaded config');
  return conf;
}

/** Fails if any recorded request carries the private key in any spelling. */
async function assertKeyNeverSent(rec, privateKey, what) {
  const requests = await rec.requests();
  assert.ok(requests.length > 0, `${what}: requests were recorded`);
  const spellings = keySpellings(privateKey);
  for (const r of requests) {
    const haystack = [r.url, JSON.stringify(r.headers), r.body].join('\n');
    for (const s of spellings) {
      assert.ok(!haystack.includes(s), `${what}: ${r.method} ${r.url} carries the private key`);
    }
  }
  return requests;
}

before(async () => {
  lab = await createLab({ nodes: 2, clients: 1, serverArgs: ['--login-limit-per-addr', '1000'] });
  browser = await launch(lab);
  admin = await lab.admin();
});

after(async () => {
  await browser?.close().catch(() => {});
  await lab?.close();
});

test('the dashboard is served with a strict CSP, no inline script and safe cookies', async () => {
  const { page, context } = await session();
  const resp = await page.goto('/');
  const headers = resp.headers();
  const csp = headers['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.match(csp, /style-src 'self';/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
  const html = await resp.text();
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.ok(scripts.length > 0, 'the page loads its script');
  for (const [, attrs, body] of scripts) {
    assert.match(attrs, /src="\/assets\//, 'every script is a same-origin file');
    assert.equal(body.trim(), '', 'no inline script');
  }
  assert.doesNotMatch(html, /\son[a-z]+=/i, 'no inline event handlers');
  assert.doesNotMatch(html, /style=/i, 'no inline styles');
  // A client-side route answers the app; an unknown API route stays a JSON 404.
  const probe = await page.evaluate(async () => {
    const route = await fetch('/admin/nodes');
    const api = await fetch('/api/v1/nope');
    return { route: [route.status, route.headers.get('content-type')], api: [api.status, (await api.json()).code] };
  });
  assert.equal(probe.route[0], 200);
  assert.match(probe.route[1], /text\/html/);
  assert.deepEqual(probe.api, [404, 'not_found']);

  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  const cookies = await context.cookies();
  const sessionCookie = cookies.find((c) => c.name === '__Host-clawn_session');
  assert.ok(sessionCookie, 'a session cookie was set');
  assert.equal(sessionCookie.httpOnly, true);
  assert.equal(sessionCookie.secure, true);
  assert.equal(sessionCookie.sameSite, 'Strict');
  const csrf = cookies.find((c) => c.name === '__Host-clawn_csrf');
  assert.equal(csrf?.sameSite, 'Strict');
  assert.equal(csrf?.secure, true);
  // The page's script cannot read the session token.
  const visible = await page.evaluate(() => document.cookie);
  assert.ok(!visible.includes(sessionCookie.value), 'the session cookie is not readable by scripts');
  // A state-changing request without the CSRF header is refused and changes nothing.
  const forged = await page.evaluate(async () => {
    const r = await fetch('/api/v1/admin/regions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code: 'forged', name: 'Forged', cidr: '10.99.0.0/16' }),
    });
    return { status: r.status, body: await r.json() };
  });
  assert.equal(forged.status, 403);
  assert.equal(forged.body.code, 'csrf_failed');
  const regions = await admin.get('/api/v1/admin/regions');
  assert.ok(!regions.body.some((r) => r.code === 'forged'), 'the forged request created nothing');
  await shoot(page, '01-devices-empty-admin');
  // A sign-out the server did not confirm says so and leaves the user signed in (and a
  // later poll does not quietly bring the session back either way).
  await page.route('**/api/v1/auth/logout', (route) =>
    route.fulfill({ status: 503, contentType: 'application/json', body: '{"code":"internal","message":"down"}' }),
  );
  await page.getByTestId('sign-out').click();
  const failed = page.getByTestId('error');
  await failed.waitFor();
  assert.match(await failed.innerText(), /Sign-out failed, you are still signed in/);
  await page.unroute('**/api/v1/auth/logout');
  await page.getByTestId('sign-out').click();
  await page.getByTestId('sign-in').waitFor();
  assert.equal(await page.evaluate(async () => (await fetch('/api/v1/me')).status), 401, 'the session ended');
  await shoot(page, '00-sign-in');
});

test('sign-in failures show the server message and keep the form', async () => {
  const { page } = await session();
  await page.goto('/');
  await page.getByLabel('Email', { exact: true }).fill(ADMIN_EMAIL);
  await page.getByLabel('Password', { exact: true }).fill('wrong-password-123');
  await page.getByTestId('sign-in').click();
  const err = page.getByTestId('error');
  await err.waitFor();
  assert.match(await err.innerText(), /invalid_credentials/);
  assert.equal(await page.getByLabel('Email', { exact: true }).inputValue(), ADMIN_EMAIL);
});

test('admin: creates a region, enrolls a node with the join command the page shows once, creates a user', async () => {
  const { page } = await session();
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);

  // Region.
  await page.goto('/admin/regions');
  await page.getByTestId('empty').waitFor();
  await page.getByTestId('add-region').click();
  await page.getByLabel('Code', { exact: true }).fill('eu');
  await page.getByLabel('Name', { exact: true }).fill('Europe');
  await page.getByLabel('Tunnel pool (IPv4)', { exact: true }).fill('10.100.0.0/16');
  await page.getByLabel('DNS servers for device configs', { exact: true }).fill('1.1.1.1, 9.9.9.9');
  await page.getByTestId('save-region').click();
  await page.locator('[data-testid=region][data-region=eu]').waitFor();
  // A bad pool is refused with the server's message, and nothing is created.
  await page.getByTestId('add-region').click();
  await page.getByLabel('Code', { exact: true }).fill('bad');
  await page.getByLabel('Name', { exact: true }).fill('Bad');
  await page.getByLabel('Tunnel pool (IPv4)', { exact: true }).fill('10.300.0.0/16');
  await page.getByTestId('save-region').click();
  assert.match(await page.getByTestId('error').innerText(), /invalid_cidr/);
  await page.getByRole('button', { name: 'Cancel' }).click();
  assert.equal(await page.locator('[data-testid=region][data-region=bad]').count(), 0);
  // Edit: the name changes.
  await page.locator('[data-testid=region][data-region=eu]').getByTestId('edit-region').click();
  await page.getByLabel('Name', { exact: true }).fill('Europe West');
  await page.getByTestId('save-region').click();
  await page.locator('[data-testid=region][data-region=eu]', { hasText: 'Europe West' }).waitFor();
  await shoot(page, '20-admin-regions');

  // Node: the token's command, shown once, is what the node runs.
  await page.goto('/admin/nodes');
  await page.getByTestId('add-node').click();
  await page.getByTestId('create-token').click();
  const command = (await page.getByTestId('join-command').innerText()).trim();
  assert.match(command, /^clawn-node join --server http:\/\/10\.200\.0\.1:\d+ --token clawn_join_\S+$/);
  await shoot(page, '21-admin-join-command');
  await page.getByTestId('done').click();
  assert.equal(await page.getByTestId('join-command').count(), 0, 'the command is gone once closed');
  await lab.joinNode('n1', command, { args: ['--exit-ipv4', lab.nodeIp('n1')] });
  lab.runNode('n1');
  // The node appears online with its telemetry, without reloading the page.
  const row = page.locator(`[data-testid=node][data-node-name="${lab.nodeName('n1')}"]`);
  await row.locator('[data-testid=node-state][data-state=online]').waitFor({ timeout: LIVE });
  await row.getByTestId('node-cpu').filter({ hasText: '%' }).waitFor({ timeout: LIVE });
  assert.match(await row.getByTestId('node-memory').innerText(), /iB \/ .*iB/);
  assert.match(await row.getByTestId('node-peers').innerText(), /^0 \/ 1000$/);
  await page.locator('[data-testid=node-region][data-region=eu] [data-state=healthy]').waitFor({ timeout: LIVE });
  await shoot(page, '22-admin-nodes');

  // User.
  await page.goto('/admin/users');
  await page.getByTestId('add-user').click();
  await page.getByLabel('Email', { exact: true }).fill(ALICE.email);
  await page.getByLabel('Initial password', { exact: true }).fill(ALICE.password);
  await page.getByLabel('Device slots', { exact: true }).fill('2');
  await page.getByTestId('save-user').click();
  const alice = page.locator(`[data-testid=user][data-email="${ALICE.email}"]`);
  await alice.waitFor();
  assert.equal((await alice.getByTestId('user-slots').innerText()).trim(), '0 / 2');
  // A weak password is refused with the server's reason.
  await page.getByTestId('add-user').click();
  await page.getByLabel('Email', { exact: true }).fill('weak@example.com');
  await page.getByLabel('Initial password', { exact: true }).fill('short');
  await page.getByTestId('save-user').click();
  assert.match(await page.getByTestId('error').innerText(), /weak_password/);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await shoot(page, '23-admin-users');

  const audit = await admin.get('/api/v1/admin/audit?action=node_token.');
  assert.ok(audit.body.items.length >= 1, 'the token creation is audited');
});

test('user: adds a device with browser-made keys; .conf, clipboard and QR agree; the tunnel comes up and shows live', async () => {
  const s = await session();
  const { page } = s;
  await signIn(page, ALICE.email, ALICE.password);
  await page.getByTestId('empty').waitFor();
  assert.equal((await page.getByTestId('slots').innerText()).trim(), '0 of 2 slots used');
  await shoot(page, '10-devices-empty');

  s.reset();
  await page.getByTestId('add-device').click();
  await page.getByLabel('Name', { exact: true }).fill('laptop');
  assert.match(await page.getByLabel('Region', { exact: true }).locator('option').first().innerText(), /Europe West \(eu\)/);
  await page.getByTestId('create').click();
  const conf = await deliveries(page);
  await shoot(page, '11-device-config-qr');
  await page.getByTestId('done').click();
  await page.getByTestId('config-delivery').waitFor({ state: 'detached' });
  // Once the dialog is closed the key is nowhere in the page, its storage or the clipboard.
  const leftovers = await page.evaluate(async () => ({
    html: document.documentElement.outerHTML,
    storage: JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }),
    idb: (await indexedDB.databases()).length,
    clipboard: await navigator.clipboard.readText(),
  }));
  assert.equal(leftovers.clipboard, '', 'closing the dialog empties the clipboard');
  assert.equal(leftovers.idb, 0, 'no IndexedDB');

  assert.equal(conf.name, 'laptop.conf');
  const privateKey = privateKeyIn(conf.text);
  assert.notEqual(privateKey, PLACEHOLDER);
  for (const sp of keySpellings(privateKey)) {
    assert.ok(!leftovers.html.includes(sp) && !leftovers.storage.includes(sp), 'the key stayed in the page');
  }
  const requests = await assertKeyNeverSent(s, privateKey, 'add device');
  const create = requests.find((r) => r.method === 'POST' && r.url.endsWith('/api/v1/devices'));
  assert.ok(create, 'the create request was recorded');
  const sent = JSON.parse(create.body);
  assert.deepEqual(Object.keys(sent).sort(), ['name', 'public_key', 'region']);
  assert.equal(sent.public_key, publicKeyOf(privateKey), 'the browser sent the public half of the key in the config');

  // The config is the server's template with the browser's key: nothing else differs.
  const devices = (await (await lab.login(ALICE.email, ALICE.password)).get('/api/v1/devices')).body;
  assert.equal(devices.length, 1);
  const device = devices[0];
  const template = (await (await lab.login(ALICE.email, ALICE.password)).get(`/api/v1/devices/${device.id}/config`)).body;
  assert.equal(conf.text, template.config_text.replace(PLACEHOLDER, privateKey));
  assert.equal(confValue(conf.text, 'DNS'), '1.1.1.1, 9.9.9.9');
  state.alice = { device, privateKey, conf: conf.text };

  // The tunnel works with exactly the downloaded file, and the page shows it live.
  const nodes = (await admin.get('/api/v1/admin/nodes')).body;
  const node = nodes.find((n) => n.id === device.node.id);
  state.nodeIp = nodeTunnelIp(node.pool);
  const card = page.locator(`[data-testid=device][data-device-name=laptop]`);
  await card.locator('[data-testid=tunnel-status][data-state=inactive]').waitFor();
  assert.equal((await card.getByTestId('last-seen').innerText()).trim(), 'never');
  await page.evaluate(() => {
    window.__noReload = 'still here';
  });
  await lab.clientUp('c1', conf.text);
  await lab.pingUntil('c1', state.nodeIp, 20_000);
  await card.locator('[data-testid=tunnel-status][data-state=active]').waitFor({ timeout: LIVE });
  await card.getByTestId('traffic').filter({ hasNotText: '↓ 0 B · ↑ 0 B' }).waitFor({ timeout: LIVE });
  assert.equal(await page.evaluate(() => window.__noReload), 'still here', 'updated without a reload');
  assert.equal((await card.getByTestId('exit-ip').innerText()).trim(), lab.nodeIp('n1'));
  assert.equal((await card.getByTestId('tunnel-ip').innerText()).trim(), device.tunnel_ip);
  assert.notEqual((await card.getByTestId('last-seen').innerText()).trim(), 'never');
  assert.equal((await page.getByTestId('slots').innerText()).trim(), '1 of 2 slots used');
  await shoot(page, '12-devices-active');

  // The detail page shows the config without any private key.
  await card.getByRole('link', { name: 'laptop' }).click();
  await page.getByText('Config without the private key').waitFor();
  const detail = await page.locator('pre.config-text').innerText();
  assert.ok(detail.includes(PLACEHOLDER) && !detail.includes(privateKey));
  // Renaming: a name that looks like a key (a pasted private key) is refused with the
  // server's reason. A random stand-in, never the device's real key.
  await page.getByLabel('Device name', { exact: true }).fill(randomBytes(32).toString('base64'));
  await page.getByTestId('rename').click();
  assert.match(await page.getByTestId('error').innerText(), /name_looks_like_key/);
  await page.getByLabel('Device name', { exact: true }).fill('work laptop');
  await page.getByTestId('rename').click();
  await page.locator('main h1', { hasText: 'work laptop' }).waitFor();
  await page.getByLabel('Device name', { exact: true }).fill('laptop');
  await page.getByTestId('rename').click();
  await page.locator('main h1', { hasText: /^laptop$/ }).waitFor();
  await shoot(page, '13-device-detail');
  state.aliceSession = s;
});

test('user: rotates keys in the browser; the old key stops working, the new config works', async () => {
  const s = state.aliceSession;
  const { page } = s;
  await page.goto('/');
  s.reset();
  await page.locator('[data-testid=device][data-device-name=laptop]').getByTestId('rotate').click();
  await page.getByTestId('confirm-rotate').click();
  await page.getByTestId('rotate-ack').filter({ hasText: 'The node switched to the new key' }).waitFor();
  const conf = await deliveries(page);
  await page.getByTestId('done').click();
  const newKey = privateKeyIn(conf.text);
  assert.notEqual(newKey, state.alice.privateKey);
  assert.equal(confValue(conf.text, 'Address'), confValue(state.alice.conf, 'Address'), 'same tunnel address');
  const requests = await assertKeyNeverSent(s, newKey, 'rotate');
  await assertKeyNeverSent(s, state.alice.privateKey, 'rotate (old key)');
  const rotate = requests.find((r) => r.method === 'POST' && r.url.endsWith('/rotate'));
  assert.equal(JSON.parse(rotate.body).public_key, publicKeyOf(newKey));

  // The node acknowledged before the page said so: the old key gets no answer now.
  assert.equal(await lab.ping('c1', state.nodeIp), false, 'the old key is cut off');
  await lab.clientDown('c1');
  await lab.clientUp('c1', conf.text);
  await lab.pingUntil('c1', state.nodeIp, 20_000);
  state.alice.conf = conf.text;
  state.alice.privateKey = newKey;
});

test('user: revokes with confirmation; the page shows the node confirmed and traffic stops at once', async () => {
  const s = state.aliceSession;
  const { page } = s;
  await page.goto('/');
  // A second device, to show the list with more than one entry and keep one for later.
  await page.getByTestId('add-device').click();
  await page.getByLabel('Name', { exact: true }).fill('phone');
  await page.getByTestId('create').click();
  await page.getByTestId('config-delivery').waitFor();
  await page.getByTestId('done').click();
  await page.locator('[data-testid=device][data-device-name=phone]').waitFor();
  assert.equal(await page.getByTestId('add-device').isDisabled(), true, 'no slot left');
  await page.getByTestId('no-slots').waitFor();

  assert.equal(await lab.ping('c1', state.nodeIp), true, 'the tunnel works before the revocation');
  await page.locator('[data-testid=device][data-device-name=laptop]').getByTestId('revoke').click();
  await page.getByText('This cannot be undone').waitFor();
  await shoot(page, '14-revoke-confirm');
  await page.getByTestId('confirm').click();
  const notice = page.getByTestId('notice');
  await notice.waitFor();
  assert.match(await notice.innerText(), /laptop is revoked\. The node confirmed the peer is removed/);
  assert.equal(await lab.ping('c1', state.nodeIp), false, 'no traffic once the page said revoked');
  await page.locator('[data-testid=revoked-list] [data-testid=device][data-device-name=laptop]').waitFor();
  assert.equal((await page.getByTestId('slots').innerText()).trim(), '1 of 2 slots used');
  await shoot(page, '15-devices-after-revoke');
  await lab.clientDown('c1');
  const phone = (await (await lab.login(ALICE.email, ALICE.password)).get('/api/v1/devices')).body.find(
    (d) => d.name === 'phone',
  );
  state.alicePhone = phone;
});

test("user B never sees user A's devices, and A's device ids answer 404", async () => {
  const r = await admin.post('/api/v1/admin/users', { email: BOB.email, password: BOB.password, device_slots: 1 });
  assert.equal(r.status, 201);
  const s = await session({ width: 390, height: 844 });
  const { page } = s;
  await signIn(page, BOB.email, BOB.password);
  await page.getByTestId('empty').waitFor();
  await page.getByTestId('add-device').click();
  await page.getByLabel('Name', { exact: true }).fill('bob-tablet');
  await page.getByTestId('create').click();
  await page.getByTestId('config-delivery').waitFor();
  await page.getByTestId('done').click();
  await page.locator('[data-testid=device][data-device-name=bob-tablet]').waitFor();
  const names = await page.locator('[data-testid=device]').evaluateAll((els) => els.map((e) => e.dataset.deviceName));
  assert.deepEqual(names, ['bob-tablet']);

  const aliceIds = [state.alice.device.id, state.alicePhone.id];
  const freshKey = publicKeyOf(randomBytes(32).toString('base64'));
  const probe = await page.evaluate(async ([ids, key]) => {
    const csrf = document.cookie.match(/__Host-clawn_csrf=([^;]+)/)?.[1] ?? '';
    const out = [];
    const call = async (method, path) => {
      const r = await fetch(path, {
        method,
        headers: { 'X-CSRF-Token': csrf, 'Content-Type': 'application/json' },
        body: method === 'GET' ? undefined : method === 'PATCH' ? '{"name":"mine"}' : method === 'POST' && path.endsWith('rotate') ? JSON.stringify({ public_key: key }) : undefined,
      });
      return { method, path, status: r.status, body: await r.text() };
    };
    for (const id of [...ids, '01890000-0000-7000-8000-000000000000']) {
      out.push(await call('GET', `/api/v1/devices/${id}`));
      out.push(await call('GET', `/api/v1/devices/${id}/config`));
      out.push(await call('PATCH', `/api/v1/devices/${id}`));
      out.push(await call('POST', `/api/v1/devices/${id}/rotate`));
      out.push(await call('POST', `/api/v1/devices/${id}/revoke`));
    }
    return out;
  }, [aliceIds, freshKey]);
  const missing = probe.slice(-5);
  for (const [i, p] of probe.entries()) {
    assert.equal(p.status, 404, `${p.method} ${p.path}`);
    assert.equal(p.body, missing[i % 5].body, `${p.method} ${p.path} answers exactly like a missing device`);
  }
  // The UI route for A's device says "not found", like any unknown id.
  await page.goto(`/devices/${state.alice.device.id}`);
  await page.getByTestId('device-not-found').waitFor();
  await shoot(page, '16-other-users-device-not-found');
  // Nothing of A ever reached B's browser.
  const bodies = (await s.responseBodies()).join('\n');
  for (const secret of [...aliceIds, state.alice.device.public_key, state.alicePhone.public_key, 'laptop', ALICE.email]) {
    assert.ok(!bodies.includes(secret), `B's browser received ${secret}`);
  }
  // A's devices are untouched by B's attempts.
  const aliceDevices = (await (await lab.login(ALICE.email, ALICE.password)).get('/api/v1/devices')).body;
  assert.equal(aliceDevices.find((d) => d.name === 'phone')?.state, 'active');
  state.bobSession = s;
});

test("a second tab signing in as someone else replaces the first tab's view at once", async () => {
  const s = await session();
  const first = s.page;
  await signIn(first, ALICE.email, ALICE.password);
  await first.locator('[data-testid=device][data-device-name=phone]').waitFor();
  const second = await s.context.newPage();
  await second.goto('/');
  // Signing out in one tab signs out every tab of the browser (the cookie is shared).
  await second.getByTestId('sign-out').click();
  await first.getByTestId('sign-in').waitFor({ timeout: 10_000 });
  await signIn(second, BOB.email, BOB.password);
  // And a sign-in as Bob makes the first tab Bob's, not a view of Alice's devices.
  await first.getByTestId('whoami').filter({ hasText: BOB.email }).waitFor({ state: 'attached', timeout: 10_000 });
  await first.locator('[data-testid=device][data-device-name=bob-tablet]').waitFor({ timeout: 10_000 });
  assert.equal(await first.locator('[data-testid=device][data-device-name=phone]').count(), 0);
  await s.context.close();
});

test('user: the session list shows where they are signed in, and "sign out everywhere" ends them all', async () => {
  const cli = await lab.login(ALICE.email, ALICE.password);
  const { page } = state.aliceSession;
  await page.goto('/sessions');
  await page.locator('[data-testid=session]').nth(1).waitFor();
  assert.ok((await page.locator('[data-testid=session]').count()) >= 2);
  await page.getByText('this session').waitFor();
  await shoot(page, '17-sessions');
  await page.getByTestId('sign-out-everywhere').click();
  await page.getByTestId('confirm').click();
  await page.getByTestId('sign-in').waitFor();
  assert.equal((await cli.get('/api/v1/me')).status, 401, 'the CLI session ended too');
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  assert.equal(me, 401);
});

test('admin: node state, degraded regions in the picker, users, all devices, audit log', async () => {
  const s = await session();
  const { page } = s;
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);

  // A second node in eu, then maintenance: the user's region picker marks eu degraded and says why.
  const tok = await admin.post('/api/v1/admin/node-tokens', { region: 'eu' });
  await lab.joinNode('n2', tok.body.join_command);
  lab.runNode('n2');
  await page.goto('/admin/nodes');
  const n2 = page.locator(`[data-testid=node][data-node-name="${lab.nodeName('n2')}"]`);
  await n2.locator('[data-testid=node-state][data-state=online]').waitFor({ timeout: LIVE });
  await n2.getByTestId('node-actions').click();
  await n2.getByTestId('set-maintenance').click();
  await n2.locator('[data-testid=node-state][data-state=maintenance]').waitFor();
  const nodeAudit = await admin.get('/api/v1/admin/audit?action=node.');
  assert.ok(nodeAudit.body.items.some((e) => JSON.stringify(e.metadata).includes('maintenance')), 'state change audited');

  const bob = state.bobSession.page;
  await bob.goto('/');
  // Bob's only slot is used: give him another one from the users page first.
  await page.goto('/admin/users');
  const bobRow = page.locator(`[data-testid=user][data-email="${BOB.email}"]`);
  await bobRow.getByRole('button', { name: 'Edit' }).click();
  await page.getByLabel('Device slots', { exact: true }).fill('2');
  await page.getByTestId('save-user').click();
  await bobRow.getByTestId('user-slots').filter({ hasText: '1 / 2' }).waitFor();
  await bob.reload();
  await bob.getByTestId('add-device').click();
  const degraded = bob.getByTestId('region-degraded');
  await degraded.waitFor({ timeout: LIVE });
  assert.match(await degraded.innerText(), /degraded: .+\(1 of 2 nodes available\)/);
  assert.match(await bob.getByLabel('Region', { exact: true }).locator('option').first().innerText(), /eu\): degraded/);
  await shoot(bob, '18-add-device-degraded-region');
  await bob.getByRole('button', { name: 'Cancel' }).click();

  // Reset Bob's password: his sessions end and the new one works.
  await bobRow.getByRole('button', { name: 'Reset password' }).click();
  await page.getByLabel('New password', { exact: true }).fill('bob-new-password-1');
  await page.getByTestId('save-password').click();
  await page.getByTestId('notice').filter({ hasText: 'was reset' }).waitFor();
  await bob.getByTestId('sign-in').waitFor({ timeout: LIVE });
  await lab.login(BOB.email, 'bob-new-password-1');

  // Disable, then enable.
  await bobRow.getByTestId('disable-user').click();
  await page.getByTestId('confirm').click();
  await bobRow.getByText('disabled').waitFor();
  const refused = await lab.api().post('/api/v1/auth/login', { email: BOB.email, password: 'bob-new-password-1', session: 'bearer' });
  assert.equal(refused.body.code, 'account_disabled');
  await bobRow.getByRole('button', { name: 'Enable' }).click();
  await bobRow.getByText('active').waitFor();

  // All devices: filter, then revoke one of Bob's.
  await page.goto('/admin/devices');
  await page.locator('[data-testid=admin-device]').first().waitFor();
  await page.getByTestId('device-search').fill('bob@');
  await waitFor('filter applied', 5000, 50, async () => (await page.locator('[data-testid=admin-device]').count()) === 1);
  const bobDev = page.locator('[data-testid=admin-device][data-device-name=bob-tablet]');
  await shoot(page, '24-admin-all-devices');
  await bobDev.getByTestId('admin-revoke').click();
  await page.getByTestId('confirm').click();
  await page.getByTestId('notice').filter({ hasText: 'bob-tablet is revoked' }).waitFor();
  const bobDevices = (await (await lab.login(BOB.email, 'bob-new-password-1')).get('/api/v1/devices')).body;
  assert.equal(bobDevices[0].state, 'revoked');

  // Audit log: filter by action prefix, then page back through more than one page.
  for (let i = 0; i < 55; i++) {
    const r = await admin.patch('/api/v1/admin/regions/eu', { name: `Europe ${i}` });
    assert.equal(r.status, 200);
  }
  await page.goto('/admin/audit');
  await page.locator('[data-testid=audit-event]').first().waitFor();
  assert.equal(await page.locator('[data-testid=audit-event]').count(), 50);
  await page.getByTestId('audit-more').click();
  await waitFor('second page', 10_000, 50, async () => (await page.locator('[data-testid=audit-event]').count()) > 50);
  await page.getByLabel('Action', { exact: true }).fill('device.');
  await page.getByTestId('audit-apply').click();
  await waitFor('filtered log', 10_000, 50, async () => {
    const actions = await page.locator('[data-testid=audit-event]').evaluateAll((els) => els.map((e) => e.dataset.action));
    return actions.length > 0 && actions.every((a) => a.startsWith('device.'));
  });
  const actions = await page.locator('[data-testid=audit-event]').evaluateAll((els) => els.map((e) => e.dataset.action));
  for (const a of ['device.create', 'device.rotate', 'device.revoke']) assert.ok(actions.includes(a), `${a} is in the log`);
  await shoot(page, '25-admin-audit');
});

test('no page broke the CSP, threw, talked to another origin, or overflowed the phone width', async () => {
  const { page } = await session({ width: 390, height: 844 });
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  for (const route of ['/', '/sessions', '/admin/nodes', '/admin/regions', '/admin/users', '/admin/devices', '/admin/diagnostics', '/admin/priority-tokens', '/admin/audit']) {
    await page.goto(route);
    await page.locator('main h1').waitFor();
    await page.getByTestId('loading').waitFor({ state: 'detached' });
    assert.equal(await overflowsHorizontally(page), false, `${route} fits 390 px`);
  }
  for (const s of sessions) {
    assert.deepEqual(s.cspViolations, [], 'no CSP violations');
    assert.deepEqual(s.pageErrors, [], 'no uncaught page errors');
    for (const r of await s.requests()) {
      const u = new URL(r.url);
      assert.ok(u.origin === lab.serverUrl || u.protocol === 'blob:' || u.protocol === 'data:', `request to ${r.url}`);
    }
  }
  // The server's log never saw a private key either.
  const log = lab.log('server');
  assert.ok(log.length > 0);
  for (const s of keySpellings(state.alice.privateKey)) assert.ok(!log.includes(s), 'private key in the server log');
});
