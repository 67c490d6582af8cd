/**
 * Browser helpers for the dashboard tests: Debian's Chromium driven by playwright-core
 * inside the lab's hub namespace, contexts that record every request (to prove no private
 * key leaves the page) and every CSP violation, QR decoding of real screenshots, and the
 * screenshots a person can look at afterwards.
 */

import { createPrivateKey, createPublicKey } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Where screenshots go (git-ignored): web/test-results/screenshots. */
export const SHOTS_DIR = path.join(here, '..', 'test-results', 'screenshots');

/** The flags this machine's closed network needs (see the env notes). */
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Chromium inside the lab's hub namespace, so http://127.0.0.1 is the control plane. */
export function launch(lab) {
  return chromium.launch({ executablePath: lab.chromiumWrapper(), args: CHROMIUM_ARGS, timeout: 60_000 });
}

/**
 * A fresh browser profile at `width` px, recording what it sends and any CSP violation.
 * `rec.requests` resolves to `{url, method, headers, body}` per request.
 */
export async function newSession(browser, lab, { width = 1280, height = 900 } = {}) {
  const context = await browser.newContext({
    baseURL: lab.serverUrl,
    viewport: { width, height },
    acceptDownloads: true,
  });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: lab.serverUrl });
  const pending = [];
  const responses = [];
  const rec = {
    context,
    cspViolations: [],
    pageErrors: [],
    /** Forget what was recorded so far. */
    reset() {
      pending.length = 0;
      responses.length = 0;
    },
    /** Every request sent since the last reset, with all headers and the body. */
    async requests() {
      return Promise.all(pending);
    },
    /** Every API answer body since the last reset (text). */
    async responseBodies() {
      return Promise.all(responses);
    },
  };
  context.on('request', (req) => {
    const seen = { url: req.url(), method: req.method(), body: req.postData() ?? '' };
    pending.push(
      req.allHeaders().then(
        (headers) => ({ ...seen, headers }),
        // The page or context closed before the headers could be read (a request still in
        // flight at the end of a test): keep URL and body, and say the headers are missing
        // rather than leave a rejection nobody handles.
        () => ({ ...seen, headers: { 'x-clawn-recorder': 'headers unavailable: page closed' } }),
      ),
    );
  });
  context.on('response', (resp) => {
    if (new URL(resp.url()).pathname.startsWith('/api/')) {
      responses.push(resp.text().catch(() => ''));
    }
  });
  // Violations are reported as DOM events; surface them as console messages we collect.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  context.on('console', (msg) => {
    if (/CSP violation|Content Security Policy/i.test(msg.text())) rec.cspViolations.push(msg.text());
  });
  context.on('weberror', (err) => rec.pageErrors.push(String(err.error())));
  return rec;
}

/** Signs in through the form and waits for the signed-in shell. */
export async function signIn(page, email, password) {
  await page.goto('/');
  await page.getByLabel('Email', { exact: true }).fill(email);
  await page.getByLabel('Password', { exact: true }).fill(password);
  await page.getByTestId('sign-in').click();
  await page.getByTestId('whoami').filter({ hasText: email }).waitFor({ state: 'attached', timeout: 15_000 });
}

/** Decodes the QR code in a PNG (a screenshot of what a phone camera would see). */
export function decodeQr(png) {
  const img = PNG.sync.read(png);
  const code = jsQR(new Uint8ClampedArray(img.data.buffer, img.data.byteOffset, img.data.length), img.width, img.height);
  if (!code) throw new Error(`no QR code found in a ${img.width}x${img.height} screenshot`);
  return code.data;
}

/** The WireGuard public key (base64) of a base64 X25519 private key, by node:crypto. */
export function publicKeyOf(privateB64) {
  const raw = Buffer.from(privateB64, 'base64');
  if (raw.length !== 32) throw new Error(`a private key is 32 bytes, got ${raw.length}`);
  // PKCS#8 wrapping of a raw X25519 private key (RFC 8410).
  const der = Buffer.concat([Buffer.from('302e020100300506032b656e04220420', 'hex'), raw]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' });
  return Buffer.from(jwk.x, 'base64url').toString('base64');
}

/** The spellings a leaked private key could take in a URL, header or body. */
export function keySpellings(privateB64) {
  const raw = Buffer.from(privateB64, 'base64');
  const b64url = raw.toString('base64url');
  return [privateB64, privateB64.replace(/=+$/, ''), encodeURIComponent(privateB64), b64url, raw.toString('hex')];
}

/** The private key in a wg-quick config text. */
export function privateKeyIn(conf) {
  const m = /^PrivateKey = (\S+)$/m.exec(conf);
  if (!m) throw new Error(`no PrivateKey line in:\n${conf}`);
  return m[1];
}

/** A `key = value` line of a config. */
export function confValue(conf, key) {
  const m = new RegExp(`^${key} = (.+)$`, 'm').exec(conf);
  return m ? m[1].trim() : undefined;
}

/**
 * Full-page screenshots of what `page` shows at 1280 px and at 390 px (a phone), written
 * to SHOTS_DIR as `<name>-1280.png` and `<name>-390.png`. The viewport is restored after.
 */
export async function shoot(page, name) {
  fs.mkdirSync(SHOTS_DIR, { recursive: true });
  const before = page.viewportSize();
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width === 390 ? 844 : 900 });
    await page.screenshot({ path: path.join(SHOTS_DIR, `${name}-${width}.png`), fullPage: true });
  }
  if (before) await page.setViewportSize(before);
}

/** Whether a page has horizontal overflow (something does not fit the phone width). */
export function overflowsHorizontally(page) {
  return page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1);
}
