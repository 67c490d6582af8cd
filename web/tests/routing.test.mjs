/**
 * Routing and operations in the dashboard, in a real browser against a real control plane,
 * three real nodes (two in `eu`, one in `us`) and a real WireGuard client: the load score,
 * eligibility and health on the Nodes page, the Diagnostics page, priority tokens, a
 * device the system moved (drain) and one its user moves to another region (keys made
 * in the browser both times, the new config passing traffic), waiting for capacity, and
 * quarantine review. Like dashboard.test.mjs the tests run in order and build on each
 * other; every value the page shows is checked against what the API says.
 *
 * Run: `npm test` in web/ as root, after `cargo build --workspace --bins` and `npm run build`.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ADMIN_EMAIL, ADMIN_PASSWORD, createLab, waitFor } from './lab.mjs';
import { confValue, keySpellings, launch, newSession, overflowsHorizontally, privateKeyIn, publicKeyOf, shoot, signIn } from './browser.mjs';

const ALICE = { email: 'alice@example.com', password: 'alice-password-1' };
const BOB = { email: 'bob@example.com', password: 'bob-password-12' };
/** Live views refresh every 3 s; allow a few rounds plus the node's 1 s telemetry. */
const LIVE = 20_000;

let lab;
let browser;
let admin; // API client (bearer) for set-up and cross-checks
const sessions = [];
const nodes = {}; // short name -> node view at enrollment
const state = {};

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

async function nodeView(short) {
  const all = (await admin.get('/api/v1/admin/nodes')).body;
  const n = all.find((x) => x.name === lab.nodeName(short));
  assert.ok(n, `node ${short} is listed`);
  return n;
}

async function aliceDevice() {
  const list = (await (await lab.login(ALICE.email, ALICE.password)).get('/api/v1/devices')).body;
  return list.find((d) => d.name === 'laptop');
}

/** Downloads the config the delivery dialog offers; resolves its text. */
async function downloadConf(page) {
  await page.getByTestId('config-delivery').waitFor();
  const [dl] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download').click()]);
  return fs.readFileSync(await dl.path(), 'utf8');
}

/** Fails if any request recorded since the last reset carries the private key. */
async function assertKeyNeverSent(rec, privateKey, what) {
  const requests = await rec.requests();
  assert.ok(requests.length > 0, `${what}: requests were recorded`);
  for (const r of requests) {
    const haystack = [r.url, JSON.stringify(r.headers), r.body].join('\n');
    for (const sp of keySpellings(privateKey)) assert.ok(!haystack.includes(sp), `${what}: ${r.method} ${r.url} carries the private key`);
  }
  return requests;
}

/** Brings c1 up with `conf` (after taking any previous tunnel down) and pings `short`'s tunnel address. */
async function tunnelThrough(conf, short) {
  if (state.clientUp) await lab.clientDown('c1');
  await lab.clientUp('c1', conf);
  state.clientUp = true;
  await lab.pingUntil('c1', nodeTunnelIp(nodes[short].pool), 20_000);
}

function nodeRow(page, short) {
  return page.locator(`[data-testid=node][data-node-name="${lab.nodeName(short)}"]`);
}

before(async () => {
  lab = await createLab({ nodes: 3, clients: 1, startServer: false });
  // The lab shares the host's CPU and scheduler with whatever else runs: keep the CPU and
  // latency alerts out of reach so that only what a test does degrades a node. Region
  // load is sampled every second (window / 360, at least 1 s) and a short window lets
  // scale-out show. Three region switches within the window quarantine a device.
  const conf = path.join(lab.dir, 'server.toml');
  fs.writeFileSync(
    conf,
    [
      '[health]',
      'cpu_percent = 100.0',
      'latency_floor_ms = 10000.0',
      'loss_percent = 50.0',
      'scale_out_window_secs = 4',
      '[abuse]',
      'region_switches = 3',
      '[placement]',
      'reassign_per_hour = 10',
      '',
    ].join('\n'),
  );
  await lab.startServer({ args: ['--config', conf, '--login-limit-per-addr', '1000'] });
  browser = await launch(lab);
  admin = await lab.admin();
  for (const [code, name, cidr] of [
    ['eu', 'Europe', '10.100.0.0/16'],
    ['us', 'United States', '10.101.0.0/16'],
  ]) {
    const r = await admin.post('/api/v1/admin/regions', { code, name, cidr });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
  for (const [short, region] of [
    ['n1', 'eu'],
    ['n2', 'eu'],
    ['n3', 'us'],
  ]) {
    const tok = await admin.post('/api/v1/admin/node-tokens', { region });
    assert.equal(tok.status, 201, JSON.stringify(tok.body));
    await lab.joinNode(short, tok.body.join_command, { args: ['--exit-ipv4', lab.nodeIp(short)] });
    lab.runNode(short);
  }
  for (const short of ['n1', 'n2', 'n3']) nodes[short] = await lab.waitNodeOnline(admin, short);
  for (const [u, slots] of [
    [ALICE, 2],
    [BOB, 1],
  ]) {
    const r = await admin.post('/api/v1/admin/users', { email: u.email, password: u.password, device_slots: slots });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
});

after(async () => {
  await browser?.close().catch(() => {});
  await lab?.close();
});

test('admin nodes page: the real node score, eligibility and health; link and capacity are editable', async () => {
  const s = await session();
  const { page } = s;
  state.admin = s;
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  // The control plane probes every node once a second: wait for measurements.
  await admin.getUntil('/api/v1/admin/nodes', LIVE, (b) =>
    ['n1', 'n2', 'n3'].every((short) => {
      const n = b.find((x) => x.name === lab.nodeName(short));
      return n && n.health.probes > 0 && n.health.rtt_ms !== null;
    }),
  );
  await page.goto('/admin/nodes');
  const n1 = nodeRow(page, 'n1');
  await n1.locator('[data-testid=node-state][data-state=online]').waitFor({ timeout: LIVE });
  await n1.locator('[data-testid=node-eligible][data-eligible=true]').waitFor();

  // The score the page shows is the server's, to two decimals (it follows CPU, so compare
  // a page refresh with an API read until they agree).
  await waitFor('the page score to match the API', LIVE, 250, async () => {
    const api = await nodeView('n1');
    const shown = (await n1.getByTestId('node-score-total').innerText()).trim();
    return shown === api.score.total.toFixed(2) ? shown : false;
  });
  const api1 = await nodeView('n1');
  assert.equal(api1.score.peers, 0, 'no devices yet');
  assert.ok(api1.score.total >= 0 && api1.score.total <= 1, `score ${api1.score.total} within 0..1`);
  const parts = await n1.getByTestId('node-score-parts').innerText();
  assert.match(parts, /^peers 0\.00 · bandwidth \d\.\d\d · CPU \d\.\d\d · latency \d\.\d\d \(band \d\)$/);
  assert.match(parts, new RegExp(`\\(band ${api1.score.latency_band}\\)$`));
  const rtt = (await n1.getByTestId('node-rtt').innerText()).trim();
  assert.match(rtt, /^\d+(\.\d+)? ms$/, 'a measured round trip');
  assert.ok(Number(await n1.getByTestId('node-health').getAttribute('data-probes')) > 0);
  assert.equal(await n1.getByTestId('node-alerts').count(), 0, 'no alert on a healthy node');
  assert.match(await n1.getByTestId('node-link').innerText(), /^link 1000 Mbit\/s$/, 'the default link capacity');

  // Link capacity: edited on the page, stored by the server.
  await n1.getByTestId('node-actions').click();
  await n1.getByTestId('edit-node').click();
  await page.getByLabel('Link capacity (Mbit/s)', { exact: true }).fill('250');
  await page.getByTestId('save-node').click();
  await n1.getByTestId('node-link').filter({ hasText: 'link 250 Mbit/s' }).waitFor();
  assert.equal((await nodeView('n1')).link_mbps, 250);
  // A refused value shows the server's reason and changes nothing.
  await n1.getByTestId('node-actions').click();
  await n1.getByTestId('edit-node').click();
  await page.getByLabel('Link capacity (Mbit/s)', { exact: true }).fill('20000000');
  // The browser's own max check would stop the form: lift it to reach the server.
  await page.getByLabel('Link capacity (Mbit/s)', { exact: true }).evaluate((el) => el.removeAttribute('max'));
  await page.getByTestId('save-node').click();
  assert.match(await page.getByTestId('error').innerText(), /invalid_link_mbps/);
  await page.getByRole('button', { name: 'Cancel' }).click();
  assert.equal((await nodeView('n1')).link_mbps, 250);

  // Capacity 0 on n2: full, so not eligible, and the page says why. (It also makes n1
  // the only eu node that takes devices, which the next tests rely on.)
  const n2 = nodeRow(page, 'n2');
  await n2.getByTestId('node-actions').click();
  await n2.getByTestId('edit-node').click();
  await page.getByLabel('Capacity (max peers)', { exact: true }).fill('0');
  await page.getByTestId('save-node').click();
  await n2.locator('[data-testid=node-eligible][data-eligible=false]').waitFor({ timeout: LIVE });
  assert.equal((await n2.getByTestId('node-ineligible-reason').innerText()).trim(), 'full (no free capacity)');
  const api2 = await nodeView('n2');
  assert.equal(api2.eligible, false);
  assert.equal(api2.ineligible_reason, 'full');
  await shoot(page, '30-admin-nodes-score-health');
});

test('admin diagnostics: region load, every node with score, health and state changes; nothing waits or is quarantined', async () => {
  const { page } = state.admin;
  await page.goto('/admin/diagnostics');
  for (const r of ['eu', 'us']) {
    const row = page.locator(`[data-testid=diag-region][data-region=${r}]`);
    await row.waitFor({ timeout: LIVE });
    assert.equal((await row.getByTestId('region-load').innerText()).trim(), '0 %');
    assert.equal(await row.getByTestId('scale-out').getAttribute('data-scale-out'), 'false');
  }
  const card = page.locator(`[data-testid=diag-node][data-node-name="${lab.nodeName('n1')}"]`);
  await card.waitFor();
  assert.equal(await page.locator('[data-testid=diag-node]').count(), 3, 'every node is shown');
  await waitFor('the diagnostics score to match the API', LIVE, 250, async () => {
    const api = (await admin.get(`/api/v1/admin/diagnostics/nodes/${nodes.n1.id}`)).body;
    const shown = (await card.getByTestId('node-score-total').innerText()).trim();
    return shown === api.node.score.total.toFixed(2);
  });
  assert.match((await card.getByTestId('node-rtt').innerText()).trim(), /^\d+(\.\d+)? ms$/);
  // The recent state changes are the node's audit trail, newest first.
  const diag = (await admin.get(`/api/v1/admin/diagnostics/nodes/${nodes.n1.id}`)).body;
  const actions = await card.getByTestId('state-change').evaluateAll((els) => els.map((e) => e.dataset.action));
  assert.deepEqual(actions, diag.state_changes.slice(0, 8).map((e) => e.action));
  for (const a of ['node.enroll', 'node.online', 'node.update']) assert.ok(actions.includes(a), `${a} is listed`);
  assert.equal((await card.getByTestId('node-waiting').innerText()).trim(), '0 devices waiting to leave');

  // Nothing quarantined, nothing waiting: the page says so, and so does the server.
  await page.getByTestId('diag-quarantined-empty').waitFor();
  await page.getByTestId('diag-waiting-empty').waitFor();
  const overview = (await admin.get('/api/v1/admin/diagnostics')).body;
  assert.deepEqual(overview.quarantined, []);
  assert.deepEqual(overview.waiting, []);
  assert.deepEqual((await admin.get('/api/v1/admin/devices?quarantined=true')).body, []);
  await shoot(page, '31-admin-diagnostics');
});

test('user: a device on a node; an over-capacity node is marked degraded with the reason, then recovers', async () => {
  const s = await session();
  const { page } = s;
  state.alice = s;
  await signIn(page, ALICE.email, ALICE.password);
  s.reset();
  await page.getByTestId('add-device').click();
  await page.getByLabel('Name', { exact: true }).fill('laptop');
  await page.getByLabel('Region', { exact: true }).selectOption('eu');
  await page.getByTestId('create').click();
  const conf = await downloadConf(page);
  await page.getByTestId('done').click();
  await assertKeyNeverSent(s, privateKeyIn(conf), 'add device');
  assert.equal(confValue(conf, 'Endpoint'), `${lab.nodeIp('n1')}:51820`, 'n1 is the only eu node with room');
  await tunnelThrough(conf, 'n1');
  const card = page.locator('[data-testid=device][data-device-name=laptop]');
  await card.locator('[data-testid=tunnel-status][data-state=active]').waitFor({ timeout: LIVE });
  assert.equal(await card.getAttribute('data-class'), 'standard');
  assert.equal(await card.getAttribute('data-placement'), 'assigned');
  assert.equal(await card.getByTestId('moved-notice').count(), 0, 'a new device was never moved');
  state.device = await aliceDevice();

  // Capacity below the live peers: over capacity, the node degrades, and the page shows
  // the reason the server gives. Its peer stays (degraded nodes keep serving).
  const { page: adm } = state.admin;
  await adm.goto('/admin/nodes');
  const n1 = nodeRow(adm, 'n1');
  await n1.getByTestId('node-actions').click();
  await n1.getByTestId('edit-node').click();
  await adm.getByLabel('Capacity (max peers)', { exact: true }).fill('0');
  await adm.getByTestId('save-node').click();
  await n1.locator('[data-testid=node-state][data-state=degraded]').waitFor({ timeout: LIVE });
  const reason = await n1.getByTestId('node-health-reason').innerText();
  const api = await nodeView('n1');
  assert.equal(api.state, 'degraded');
  assert.deepEqual(api.health.alerts, ['over_capacity']);
  assert.equal(reason.trim(), `Degraded: ${api.health.reason}`);
  assert.match(reason, /1 live peers > capacity 0/);
  assert.equal(await n1.locator('[data-testid=node-alerts] [data-alert=over_capacity]').count(), 1);
  assert.match((await n1.getAttribute('class')) ?? '', /table-warning/, 'the row is marked');
  assert.equal(await lab.ping('c1', nodeTunnelIp(nodes.n1.pool)), true, 'a degraded node keeps its tunnels');
  await shoot(adm, '32-admin-node-degraded');

  await admin.patch(`/api/v1/admin/nodes/${nodes.n1.id}`, { capacity: 1000 });
  await n1.locator('[data-testid=node-state][data-state=online]').waitFor({ timeout: LIVE });
  assert.equal(await n1.getByTestId('node-alerts').count(), 0);
  await adm.goto('/admin/diagnostics');
  const changes = adm.locator(`[data-testid=diag-node][data-node-name="${lab.nodeName('n1')}"] [data-testid=state-change]`);
  await changes.first().waitFor();
  const actions = await changes.evaluateAll((els) => els.map((e) => e.dataset.action));
  assert.equal(actions[0], 'node.recovered', 'the newest change is the recovery');
  assert.ok(actions.includes('node.degraded'));
});

test('admin grants a priority token, sees it listed and the device gets the class; revokes it, sees it revoked', async () => {
  const { page } = state.admin;
  await page.goto('/admin/priority-tokens');
  await page.getByTestId('empty').waitFor();
  await page.getByTestId('grant-priority').click();
  await page.getByLabel('User email', { exact: true }).fill(ALICE.email);
  await page.getByLabel('Region', { exact: true }).selectOption('eu');
  await page.getByLabel('Duration', { exact: true }).fill('2');
  await page.getByLabel('Duration unit', { exact: true }).selectOption('hours');
  await page.getByLabel('Note', { exact: true }).fill('conference week');
  await page.getByTestId('save-priority').click();
  const row = page.locator(`[data-testid=priority-token][data-email="${ALICE.email}"]`);
  await row.waitFor();
  const tokens = (await admin.get('/api/v1/admin/priority-tokens')).body;
  assert.equal(tokens.length, 1);
  const t = tokens[0];
  assert.equal(t.email, ALICE.email);
  assert.equal(t.region, 'eu');
  assert.equal(t.status, 'active');
  assert.equal(t.note, 'conference week');
  assert.ok(Math.abs(t.expires_at - t.starts_at - 2 * 3600_000) < 1000, 'a two-hour window');
  assert.equal(await row.getAttribute('data-token-id'), t.id);
  assert.equal(await row.getByTestId('token-status').getAttribute('data-state'), 'active');
  assert.equal(await row.getAttribute('data-status'), 'active');
  await page.getByTestId('notice').filter({ hasText: `${ALICE.email} has priority in eu` }).waitFor();
  // The holder's device in eu has the class now, and its owner sees it.
  const alice = state.alice.page;
  await alice.goto('/');
  await alice.locator('[data-testid=device][data-device-name=laptop] [data-testid=device-class][data-class=priority]').waitFor({ timeout: LIVE });
  assert.equal((await aliceDevice()).class, 'priority');
  // An unknown user is refused with the server's reason.
  await page.getByTestId('grant-priority').click();
  await page.getByLabel('User email', { exact: true }).fill('nobody@example.com');
  await page.getByTestId('save-priority').click();
  assert.match(await page.getByTestId('error').innerText(), /not_found/);
  await page.getByRole('button', { name: 'Cancel' }).click();
  await shoot(page, '33-admin-priority-tokens');

  await row.getByTestId('revoke-token').click();
  await page.getByTestId('confirm').click();
  await row.locator('[data-testid=token-status][data-state=revoked]').waitFor();
  assert.equal(await row.getByTestId('revoke-token').count(), 0, 'a revoked token cannot be revoked again');
  const revoked = (await admin.get('/api/v1/admin/priority-tokens')).body[0];
  assert.equal(revoked.status, 'revoked');
  assert.ok(revoked.revoked_at > 0);
  await alice.locator('[data-testid=device][data-device-name=laptop][data-class=standard]').waitFor({ timeout: LIVE });
  assert.equal(await alice.locator('[data-testid=device][data-device-name=laptop] [data-testid=device-class]').count(), 0);
  assert.equal(await lab.ping('c1', nodeTunnelIp(nodes.n1.pool)), true, 'the class changed without a disconnect');
});

test('user: a device the system moved says its config changed; new keys made here give a config that works', async () => {
  const s = state.alice;
  const { page } = s;
  // Room on n2 again, then drain n1: the device moves to n2 and its config changes.
  await admin.patch(`/api/v1/admin/nodes/${nodes.n2.id}`, { capacity: 1000 });
  await admin.patch(`/api/v1/admin/nodes/${nodes.n1.id}`, { state: 'draining' });
  await page.goto('/');
  const card = page.locator('[data-testid=device][data-device-name=laptop]');
  const notice = card.locator('[data-testid=moved-notice][data-moved-reason=drain]');
  await notice.waitFor({ timeout: LIVE });
  const moved = await aliceDevice();
  assert.equal(moved.node.name, lab.nodeName('n2'));
  assert.equal(moved.moved_reason, 'drain');
  assert.match(await notice.innerText(), new RegExp(`Your config changed on .+ \\(its node is being emptied\\): get the new config\\.`));
  assert.match(await notice.innerText(), new RegExp(`now connects through ${lab.nodeName('n2')}`));
  await shoot(page, '34-device-moved-notice');
  // The old config points at n1, which no longer serves the device.
  await waitFor('the old config to stop working', 10_000, 200, async () => !(await lab.ping('c1', nodeTunnelIp(nodes.n1.pool))));

  s.reset();
  await notice.getByTestId('moved-rotate').click();
  await page.getByTestId('confirm-rotate').click();
  await page.getByTestId('rotate-ack').filter({ hasText: 'The node switched to the new key' }).waitFor();
  const conf = await downloadConf(page);
  await page.getByTestId('done').click();
  const key = privateKeyIn(conf);
  await assertKeyNeverSent(s, key, 'config after a move');
  assert.equal(confValue(conf, 'Endpoint'), `${lab.nodeIp('n2')}:51820`);
  assert.equal(confValue(conf, 'PublicKey'), nodes.n2.wg_public_key);
  // The notice goes once the new config was made here, before the device even connects.
  await card.getByTestId('moved-notice').waitFor({ state: 'detached', timeout: LIVE });
  await tunnelThrough(conf, 'n2');
  await card.locator('[data-testid=tunnel-status][data-state=active]').waitFor({ timeout: LIVE });
  // Even in another browser (no local memory of the rotation) the handshake after the move says it is done.
  const other = await session();
  await signIn(other.page, ALICE.email, ALICE.password);
  await other.page.locator('[data-testid=device][data-device-name=laptop]').waitFor();
  assert.equal(await other.page.getByTestId('moved-notice').count(), 0);
  await other.context.close();
  await admin.patch(`/api/v1/admin/nodes/${nodes.n1.id}`, { state: 'online' });
});

test('user: moves the device to another region; the browser makes new keys and the new config works there', async () => {
  const s = state.alice;
  const { page } = s;
  await page.goto('/');
  const card = page.locator('[data-testid=device][data-device-name=laptop]');
  s.reset();
  await card.getByTestId('move-region').click();
  const options = await page.getByLabel('New region', { exact: true }).locator('option').evaluateAll((els) => els.map((e) => e.value));
  assert.deepEqual(options, ['us'], 'every other region with room, not the current one');
  await shoot(page, '35-move-region');
  await page.getByTestId('confirm-move').click();
  await page.getByTestId('move-done').waitFor({ timeout: LIVE });
  assert.match(await page.getByTestId('move-done').innerText(), new RegExp(`through ${lab.nodeName('n3')} in us`));
  const conf = await downloadConf(page);
  await page.getByTestId('done').click();
  const key = privateKeyIn(conf);
  const requests = await assertKeyNeverSent(s, key, 'move region');
  const move = requests.find((r) => r.method === 'POST' && r.url.endsWith('/region'));
  assert.deepEqual(JSON.parse(move.body), { region: 'us' });
  const rotate = requests.find((r) => r.method === 'POST' && r.url.endsWith('/rotate'));
  assert.equal(JSON.parse(rotate.body).public_key, publicKeyOf(key), 'the new public key, after the move');
  assert.ok(requests.indexOf(move) < requests.indexOf(rotate), 'moved first, then the keys');
  assert.equal(confValue(conf, 'Endpoint'), `${lab.nodeIp('n3')}:51820`);
  await tunnelThrough(conf, 'n3');
  await card.getByTestId('device-region').filter({ hasText: 'us' }).waitFor({ timeout: LIVE });
  await card.locator('[data-testid=tunnel-status][data-state=active]').waitFor({ timeout: LIVE });
  assert.equal(await card.getByTestId('moved-notice').count(), 0, 'the config was handed over with the move');
  const d = await aliceDevice();
  assert.equal(d.region, 'us');
  assert.equal(d.moved_reason, 'reassign');
  assert.equal(d.node.exit_ipv4, lab.nodeIp('n3'));
  assert.equal((await card.getByTestId('exit-ip').innerText()).trim(), lab.nodeIp('n3'));

  // The admin reaches the device's diagnostics from All devices: node, exit IP, moves, signals.
  const { page: adm } = state.admin;
  await adm.goto('/admin/devices');
  await adm.locator('[data-testid=admin-device][data-device-name=laptop]').getByTestId('device-diagnostics').click();
  const diag = adm.getByTestId('device-diagnostics');
  await diag.waitFor();
  assert.equal(await diag.getAttribute('data-device-id'), d.id);
  assert.equal((await adm.getByTestId('diag-owner').innerText()).trim(), ALICE.email);
  assert.match(await adm.getByTestId('diag-node').innerText(), new RegExp(lab.nodeName('n3')));
  assert.equal((await adm.getByTestId('diag-exit-ip').innerText()).trim(), lab.nodeIp('n3'));
  await adm.getByTestId('diag-handshake').filter({ hasText: 'ago' }).waitFor({ timeout: LIVE });
  await adm.getByTestId('diag-traffic').filter({ hasNotText: '↓ 0 B · ↑ 0 B' }).waitFor({ timeout: LIVE });
  const api = (await admin.get(`/api/v1/admin/diagnostics/devices/${d.id}`)).body;
  const shownMoves = await adm.getByTestId('diag-move').evaluateAll((els) => els.map((e) => e.dataset.action));
  assert.deepEqual(shownMoves, api.moves.map((m) => m.action));
  assert.deepEqual(shownMoves, ['device.reassign', 'device.drain']);
  // From and to, with the node names (once the node list is loaded).
  const reassign = adm.getByTestId('diag-move').first();
  await reassign.filter({ hasText: `us / ${lab.nodeName('n3')}` }).waitFor();
  assert.match(await reassign.innerText(), new RegExp(`eu / ${lab.nodeName('n2')}[\\s\\S]*us / ${lab.nodeName('n3')}`));
  assert.equal(api.signals.region_switches, 1);
  assert.equal((await adm.getByTestId('signal-region-switches').innerText()).trim(), '1');
  await shoot(adm, '36-admin-device-diagnostics');
  state.device = d;
});

test('a full region signals scale-out; a drained node with nowhere to go leaves its device waiting, shown to both', async () => {
  const { page: adm } = state.admin;
  const alice = state.alice.page;
  // us has one node; one peer on a capacity of 1 is a full region: p95 above 70 %.
  await admin.patch(`/api/v1/admin/nodes/${nodes.n3.id}`, { capacity: 1 });
  await adm.goto('/admin/diagnostics');
  const us = adm.locator('[data-testid=diag-region][data-region=us]');
  await us.locator('[data-testid=scale-out][data-scale-out=true]').waitFor({ timeout: LIVE });
  assert.equal((await us.getByTestId('region-load').innerText()).trim(), '100 %');
  const load = (await admin.get('/api/v1/admin/diagnostics')).body.regions.find((r) => r.region === 'us');
  assert.equal(load.scale_out, true);
  assert.equal(await adm.locator('[data-testid=diag-region][data-region=eu] [data-scale-out=false]').count(), 1);
  await admin.patch(`/api/v1/admin/nodes/${nodes.n3.id}`, { capacity: 1000 });

  // Drain the only us node: no room elsewhere in us, so the device waits where it is.
  await admin.patch(`/api/v1/admin/nodes/${nodes.n3.id}`, { state: 'draining' });
  const waiting = adm.locator(`[data-testid=diag-waiting] [data-testid=diag-device][data-device-id="${state.device.id}"]`);
  await waiting.waitFor({ timeout: LIVE });
  await waiting.locator('[data-testid=device-placement][data-placement=waiting_for_capacity]').waitFor();
  const n3 = adm.locator(`[data-testid=diag-node][data-node-name="${lab.nodeName('n3')}"]`);
  await n3.getByTestId('node-waiting').filter({ hasText: '1 device waiting to leave' }).waitFor({ timeout: LIVE });
  assert.equal((await admin.get('/api/v1/admin/devices?waiting=true')).body.map((d) => d.id).join(), state.device.id);
  await shoot(adm, '37-admin-diagnostics-waiting');
  const card = alice.locator('[data-testid=device][data-device-name=laptop]');
  await alice.goto('/');
  await card.getByTestId('waiting-notice').waitFor({ timeout: LIVE });
  assert.match(await card.getByTestId('waiting-notice').innerText(), /no\s+other node in us has room/);
  assert.equal(await lab.ping('c1', nodeTunnelIp(nodes.n3.pool)), true, 'it keeps working where it is');
  await shoot(alice, '38-device-waiting');

  // Back online: the mark goes, for both.
  await admin.patch(`/api/v1/admin/nodes/${nodes.n3.id}`, { state: 'online' });
  await adm.getByTestId('diag-waiting-empty').waitFor({ timeout: LIVE });
  await card.getByTestId('waiting-notice').waitFor({ state: 'detached', timeout: LIVE });
});

test('too many region switches quarantine a device; the admin reviews it in Diagnostics and releases it', async () => {
  const bobApi = await lab.login(BOB.email, BOB.password);
  const created = await bobApi.post('/api/v1/devices', {
    name: 'bob-phone',
    public_key: publicKeyOf(randomBytes(32).toString('base64')),
    region: 'eu',
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.device.id;
  // Two switches are allowed; the third (from the page) crosses the threshold.
  assert.equal((await bobApi.post(`/api/v1/devices/${id}/region`, { region: 'us' })).status, 200);
  const same = await bobApi.post(`/api/v1/devices/${id}/region`, { region: 'us' });
  assert.equal(same.status, 409);
  assert.equal(same.body.code, 'same_region');
  const s = await session({ width: 390, height: 844 });
  const { page } = s;
  await signIn(page, BOB.email, BOB.password);
  const card = page.locator('[data-testid=device][data-device-name=bob-phone]');
  await card.getByTestId('move-region').click();
  await page.getByLabel('New region', { exact: true }).selectOption('eu');
  await page.getByTestId('confirm-move').click();
  const err = page.getByTestId('error');
  await err.waitFor();
  assert.match(await err.innerText(), /quarantined/);
  assert.match(await err.innerText(), /code: device_quarantined/);
  assert.match(await err.innerText(), /ask yours to release it/, "the server's hint is shown");
  await page.getByRole('button', { name: 'Cancel' }).click();
  await card.getByTestId('quarantine-notice').waitFor({ timeout: LIVE });
  assert.equal(await card.getByTestId('move-region').isDisabled(), true, 'no moves while quarantined');
  await shoot(page, '39-device-quarantined');

  const { page: adm } = state.admin;
  await adm.goto('/admin/diagnostics');
  const row = adm.locator(`[data-testid=diag-quarantined] [data-testid=diag-device][data-device-id="${id}"]`);
  await row.waitFor({ timeout: LIVE });
  const q = (await admin.get('/api/v1/admin/devices?quarantined=true')).body;
  assert.deepEqual(q.map((d) => d.id), [id]);
  assert.equal((await row.getByTestId('quarantine-reason').innerText()).trim(), q[0].quarantine_reason);
  assert.match(q[0].quarantine_reason, /3 region switches/);
  assert.equal(await adm.locator('[data-testid=diag-quarantined] [data-testid=diag-device]').count(), 1, 'only that one');
  await shoot(adm, '40-admin-diagnostics-quarantined');
  await row.getByTestId('release').click();
  await adm.getByText('Releasing lifts the block').waitFor();
  await adm.getByTestId('confirm').click();
  await adm.getByTestId('notice').filter({ hasText: 'bob-phone is released' }).waitFor();
  await adm.getByTestId('diag-quarantined-empty').waitFor({ timeout: LIVE });
  const after = (await admin.get(`/api/v1/admin/diagnostics/devices/${id}`)).body;
  assert.equal(after.device.quarantined, false);
  assert.equal(after.signals.region_switches, 3, 'the signals keep counting');
  await card.getByTestId('quarantine-notice').waitFor({ state: 'detached', timeout: LIVE });
  assert.equal(await card.getByTestId('move-region').isDisabled(), false);
});

test('the new pages fit a phone, and nothing broke the CSP or threw', async () => {
  const { page } = await session({ width: 390, height: 844 });
  await signIn(page, ADMIN_EMAIL, ADMIN_PASSWORD);
  for (const route of ['/admin/nodes', '/admin/diagnostics', `/admin/diagnostics/devices/${state.device.id}`, '/admin/priority-tokens']) {
    await page.goto(route);
    await page.locator('main h1').waitFor();
    await page.getByTestId('loading').waitFor({ state: 'detached' });
    assert.equal(await overflowsHorizontally(page), false, `${route} fits 390 px`);
  }
  for (const s of sessions) {
    assert.deepEqual(s.cspViolations, [], 'no CSP violations');
    assert.deepEqual(s.pageErrors, [], 'no uncaught page errors');
  }
});
