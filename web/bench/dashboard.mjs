/**
 * Dashboard benchmark: what a user waits for and what an open tab costs the server.
 * Reports; never passes or fails. Run as root after `npm run build` and
 * `cargo build --release --bins` (scripts/bench.sh dashboard does both):
 *
 *   CLAWN_BIN_DIR=../target/release node bench/dashboard.mjs
 *
 * 1. Bundle: every file of web/dist, raw and as the server sends it (gzip / brotli).
 * 2. Time to a usable devices page, from navigation to every device card drawn, with 10 and
 *    with 200 devices: cold (new browser profile, empty HTTP cache, signed-in cookie) and
 *    warm (reload with cached assets). CLAWN_BENCH_LOADS loads each (default 20).
 * 3. The live refresh an open page repeats every 3 s: GET /api/v1/devices as the page's
 *    own fetch sees it (Resource Timing), and its bytes.
 */

import { generateKeyPairSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import { createLab } from '../tests/lab.mjs';
import { launch, newSession, signIn } from '../tests/browser.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const LOADS = Number(process.env.CLAWN_BENCH_LOADS ?? 20);
const SIZES = [10, 200];

function pct(xs, p) {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}
const fmt = (ms) => ms.toFixed(1);
function row(label, xs) {
  return `| ${label} | ${xs.length} | ${fmt(pct(xs, 50))} | ${fmt(pct(xs, 95))} | ${fmt(Math.max(...xs))} |`;
}

function publicKey() {
  const { publicKey: pk } = generateKeyPairSync('x25519');
  return Buffer.from(pk.export({ format: 'jwk' }).x, 'base64url').toString('base64');
}

// ---- 1. bundle
const dist = path.join(here, '..', 'dist');
const files = [];
for (const dir of [dist, path.join(dist, 'assets')]) {
  for (const f of fs.readdirSync(dir)) {
    const p = path.join(dir, f);
    if (!fs.statSync(p).isFile()) continue;
    const data = fs.readFileSync(p);
    files.push({
      name: path.relative(dist, p),
      raw: data.length,
      gzip: zlib.gzipSync(data).length,
      br: zlib.brotliCompressSync(data).length,
    });
  }
}
const kib = (n) => (n / 1024).toFixed(1);
console.log('## Bundle (web/dist)\n\n| file | raw KiB | gzip KiB | brotli KiB |\n|---|---|---|---|');
for (const f of files) console.log(`| ${f.name} | ${kib(f.raw)} | ${kib(f.gzip)} | ${kib(f.br)} |`);
const total = files.reduce((a, f) => ({ raw: a.raw + f.raw, gzip: a.gzip + f.gzip, br: a.br + f.br }), { raw: 0, gzip: 0, br: 0 });
console.log(`| total | ${kib(total.raw)} | ${kib(total.gzip)} | ${kib(total.br)} |\n`);

// ---- 2 and 3. the page against a real server and node
const lab = await createLab({ nodes: 1, clients: 0, serverArgs: ['--login-limit-per-addr', '10000'] });
let browser;
try {
  const admin = await lab.admin();
  await admin.post('/api/v1/admin/regions', { code: 'eu', name: 'Europe', cidr: '10.100.0.0/16' });
  const tok = await admin.post('/api/v1/admin/node-tokens', { region: 'eu', capacity: 10000 });
  await lab.joinNode('n1', tok.body.join_command);
  lab.runNode('n1');
  await lab.waitNodeOnline(admin, 'n1');
  browser = await launch(lab);

  const load = [];
  const refresh = [];
  for (const n of SIZES) {
    const email = `bench${n}@example.com`;
    const password = 'bench-password-1';
    await admin.post('/api/v1/admin/users', { email, password, device_slots: n });
    const user = await lab.login(email, password);
    for (let i = 0; i < n; i++) {
      const r = await user.post('/api/v1/devices', { name: `device-${i}`, public_key: publicKey(), region: 'eu' });
      if (r.status !== 201) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`);
    }
    const first = await newSession(browser, lab);
    const page0 = await first.context.newPage();
    await signIn(page0, email, password);
    const storageState = await first.context.storageState();
    await first.context.close();

    const drawn = async (page) => {
      const t0 = performance.now();
      await page.goto('/');
      await page.locator(`[data-testid=device] >> nth=${n - 1}`).waitFor({ timeout: 60_000 });
      return performance.now() - t0;
    };
    const cold = [];
    for (let i = 0; i < LOADS; i++) {
      const ctx = await browser.newContext({ baseURL: lab.serverUrl, storageState, viewport: { width: 1280, height: 900 } });
      const page = await ctx.newPage();
      cold.push(await drawn(page));
      await ctx.close();
    }
    const ctx = await browser.newContext({ baseURL: lab.serverUrl, storageState, viewport: { width: 1280, height: 900 } });
    const page = await ctx.newPage();
    await drawn(page);
    const warm = [];
    for (let i = 0; i < LOADS; i++) warm.push(await drawn(page));
    // The live refresh: let the page poll, then read its own timings of GET /api/v1/devices.
    await page.evaluate(() => performance.clearResourceTimings());
    const polls = Math.max(5, Math.round(LOADS / 2));
    await page.waitForFunction(
      (k) => performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/api/v1/devices')).length >= k,
      polls,
      { timeout: polls * 3000 + 15_000, polling: 500 },
    );
    const entries = await page.evaluate(() =>
      performance
        .getEntriesByType('resource')
        .filter((e) => e.name.endsWith('/api/v1/devices'))
        .map((e) => ({ ms: e.responseEnd - e.startTime, bytes: e.encodedBodySize, raw: e.decodedBodySize })),
    );
    await ctx.close();
    load.push(row(`${n} devices, cold (empty cache)`, cold), row(`${n} devices, warm (reload)`, warm));
    refresh.push({ n, ms: entries.map((e) => e.ms), bytes: entries[0].bytes, raw: entries[0].raw });
  }
  console.log('## Time to a drawn devices page (navigation → every device card in the DOM)\n');
  console.log('| page | loads | p50 ms | p95 ms | max ms |\n|---|---|---|---|---|');
  for (const l of load) console.log(l);
  console.log('\n## Live refresh (GET /api/v1/devices every 3 s, as the page sees it)\n');
  console.log('| devices | polls | p50 ms | p95 ms | max ms | bytes sent (compressed) | JSON bytes |\n|---|---|---|---|---|---|---|');
  for (const r of refresh) {
    console.log(`| ${r.n} | ${r.ms.length} | ${fmt(pct(r.ms, 50))} | ${fmt(pct(r.ms, 95))} | ${fmt(Math.max(...r.ms))} | ${r.bytes} | ${r.raw} |`);
  }
  const [small, big] = refresh;
  console.log(
    `\nRatio ${big.n} : ${small.n} devices: refresh p50 ${(pct(big.ms, 50) / pct(small.ms, 50)).toFixed(2)}×, bytes ${(big.bytes / small.bytes).toFixed(1)}×`,
  );
} finally {
  await browser?.close().catch(() => {});
  await lab.close();
}
