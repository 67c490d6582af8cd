/**
 * First start from the browser: a server with no accounts prints a one-time setup link
 * (token in the URL fragment); opening it creates the first admin with a cookie session.
 * The token works once and leaves the address bar at once.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createLab, waitFor } from './lab.mjs';
import { launch, newSession } from './browser.mjs';

let lab;
let browser;

before(async () => {
  lab = await createLab({ nodes: 0, clients: 0, startServer: false });
  // No CLAWN_ADMIN_* (empty counts as unset): the server prints a setup token instead.
  await lab.startServer({ env: { CLAWN_ADMIN_EMAIL: '', CLAWN_ADMIN_PASSWORD: '' } });
  browser = await launch(lab);
});

after(async () => {
  await browser?.close().catch(() => {});
  await lab?.close();
});

test('the printed setup link creates the first admin in the browser, once', async () => {
  const link = await waitFor('the setup link in the server output', 10_000, 50, () =>
    /http:\/\/\S+\/setup#token=(clawn_setup_\S+)/.exec(lab.log('server')),
  );
  const token = link[1];
  const s = await newSession(browser, lab);
  const page = await s.context.newPage();
  // The printed link names the public URL (for nodes); the browser here uses localhost.
  await page.goto(`/setup#token=${token}`);
  assert.equal(await page.getByLabel('Setup token', { exact: true }).inputValue(), token, 'prefilled from the link');
  assert.equal(await page.evaluate(() => window.location.hash), '', 'the token left the address bar');
  await page.getByLabel('Admin email', { exact: true }).fill('root@example.com');
  await page.getByLabel('Password', { exact: true }).fill('root-password-123');
  await page.getByLabel('Password again', { exact: true }).fill('root-password-12');
  assert.equal(await page.getByTestId('set-up').isDisabled(), true, 'differing passwords cannot be sent');
  await page.getByLabel('Password again', { exact: true }).fill('root-password-123');
  await page.getByTestId('set-up').click();
  await page.getByTestId('whoami').filter({ hasText: 'root@example.com' }).waitFor({ state: 'attached' });
  await page.getByTestId('admin-menu').waitFor();
  const cookies = await s.context.cookies();
  assert.ok(cookies.some((c) => c.name === '__Host-clawn_session' && c.httpOnly), 'a cookie session, not a bearer token');
  const requests = await s.requests();
  const setup = requests.find((r) => r.url.endsWith('/api/v1/auth/setup'));
  assert.ok(setup && !setup.url.includes(token), 'the token travels in the body only');

  // The same link again: refused with the server's reason, and no second admin.
  const other = await (await newSession(browser, lab)).context.newPage();
  await other.goto(`/setup#token=${token}`);
  await other.getByLabel('Admin email', { exact: true }).fill('second@example.com');
  await other.getByLabel('Password', { exact: true }).fill('second-password-1');
  await other.getByLabel('Password again', { exact: true }).fill('second-password-1');
  await other.getByTestId('set-up').click();
  assert.match(await other.getByTestId('error').innerText(), /invalid_setup_token/);
  const admin = await lab.login('root@example.com', 'root-password-123');
  const users = (await admin.get('/api/v1/admin/users')).body;
  assert.deepEqual(users.map((u) => u.email), ['root@example.com']);
  // The server's log says nothing of the password.
  assert.ok(!lab.log('server').includes('root-password-123'));
});
