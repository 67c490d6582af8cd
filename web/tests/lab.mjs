/**
 * A lab of network namespaces for the dashboard's browser tests: a real control plane, real
 * nodes (`clawn-node`) and real WireGuard clients (Debian's wireguard-go + wg-quick). The
 * JavaScript sibling of `crates/clawn-node/tests/support/mod.rs`.
 *
 * Layout (every address lives inside the lab's own namespaces, so addresses repeat across
 * parallel labs; only host-global names carry the lab's 6-hex-digit tag):
 *
 *   cw<tag>-hub  br0 10.200.0.1/24   clawn-server on 0.0.0.0:<port>; Chromium runs here too
 *   cw<tag>-n1   eth0 10.200.0.11    clawn-node, WireGuard interface v<tag>n1, UDP 51820
 *   cw<tag>-nK   eth0 10.200.0.(10+K)
 *   cw<tag>-cK   eth0 10.200.0.(20+K) wg-quick client, interface v<tag>cK
 *
 * Every eth0 is one end of a veth pair whose other end (`p<short>`) is a port of the hub's
 * br0, so the hub, the nodes and the clients share one /24 and nothing else: there is no
 * route out of the lab.
 *
 * Reaching the control plane:
 *  - the browser runs inside the hub (see `chromiumWrapper()`) and uses
 *    `serverUrl` = http://127.0.0.1:<port>: localhost is a secure context, so WebCrypto and
 *    `Secure` cookies work over plain HTTP;
 *  - nodes use `nodeServerUrl` = http://10.200.0.1:<port> (the server's `--public-url`, which
 *    is what join commands carry);
 *  - this (test) process is not in the hub, so the API helper (`lab.login`, `lab.api`) goes
 *    through a relay: one small Node process inside the hub that accepts connections on a unix
 *    socket in the lab directory (a filesystem object, visible from every namespace) and pipes
 *    each to 127.0.0.1:<port>.
 *
 * Host-global names, all carrying the tag: namespaces `cw<tag>-*`, WireGuard interfaces
 * `v<tag><short>` (their UAPI sockets `/var/run/wireguard/<iface>.sock` are NOT per
 * namespace), the lab directory `<tmp>/clawn-web-<tag>` and the lock file
 * `/run/clawn-web-lab/<tag>.lock` (holding the test process's PID).
 *
 * Clean-up: `await lab.close()` stops everything the lab started (SIGTERM, then SIGKILL after
 * a bounded wait), kills whatever else runs in its namespaces (wg-quick's daemonised
 * wireguard-go, a browser a test forgot to close), deletes the namespaces and the lab's UAPI
 * sockets, and removes the lab directory unless `CLAWN_E2E_KEEP` is set or `lab.keep` is true
 * (set it when a test fails, to read the logs). If the process exits or is signalled without
 * `close()`, handlers tear the lab down synchronously (keeping its directory on a plain exit:
 * something went wrong); labs of processes killed outright are swept by the next `createLab`.
 *
 * Needs root and: ip, wg, wg-quick, wireguard-go, ping, nft (and /usr/bin/chromium for the
 * browser), plus the workspace binaries (`cargo build --workspace --bins`).
 */

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// ---- constants ----------------------------------------------------------------------------

export const HUB_IP = '10.200.0.1';
export const DEFAULT_PORT = 8080;
export const NODE_WG_PORT = 51820;
export const ADMIN_EMAIL = 'admin@lab.test';
export const ADMIN_PASSWORD = 'lab-admin-password-1';
/** Where the workspace binaries are: `CLAWN_BIN_DIR`, else `<repo>/target/debug`. */
export const BIN_DIR =
  process.env.CLAWN_BIN_DIR ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../target/debug');
const LOCK_DIR = '/run/clawn-web-lab';
const WG_RUN_DIR = '/var/run/wireguard';
const CHROMIUM = '/usr/bin/chromium';
const TOOLS = ['ip', 'wg', 'wg-quick', 'wireguard-go', 'ping', 'nft'];
/** How long a stopped process gets between SIGTERM and SIGKILL. */
const STOP_GRACE_MS = 5000;
/** Upper bound for short commands (ip, wg-quick, clawn-node join, ...). */
const COMMAND_TIMEOUT_MS = 30000;
/** Upper bound for one API request through the relay. */
const REQUEST_TIMEOUT_MS = 15000;

// ---- small helpers ------------------------------------------------------------------------

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `fn` (sync or async) every `everyMs` until it returns a truthy value, which is
 * returned; throws naming `label` once `withinMs` have passed. A throw from `fn` counts as
 * "not yet" (the last one is quoted in the timeout error). Bounded in time and in the number
 * of attempts; a call of `fn` that hangs is abandoned at the deadline.
 *
 * @template T
 * @param {string} label what is awaited, for the error message
 * @param {number} withinMs
 * @param {number} everyMs
 * @param {() => T | Promise<T>} fn
 * @returns {Promise<T>}
 */
export async function waitFor(label, withinMs, everyMs, fn) {
  const start = Date.now();
  const deadline = start + withinMs;
  const maxAttempts = Math.ceil(withinMs / Math.max(1, everyMs)) + 2;
  let lastError;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    const left = deadline - Date.now();
    if (left <= 0) break;
    let timer;
    const timedOut = Symbol('timeout');
    try {
      const value = await Promise.race([
        Promise.resolve().then(fn),
        new Promise((resolve) => {
          timer = setTimeout(() => resolve(timedOut), left);
        }),
      ]);
      if (value === timedOut) break;
      if (value) return value;
    } catch (e) {
      lastError = e;
    } finally {
      clearTimeout(timer);
    }
    const pause = Math.min(everyMs, deadline - Date.now());
    if (pause > 0) await delay(pause);
  }
  const why = lastError ? ` (last error: ${lastError.message ?? lastError})` : '';
  throw new Error(`timed out after ${Date.now() - start} ms waiting for ${label}${why}`);
}

/** The path of a workspace binary; throws with a hint when it has not been built. */
export function bin(name) {
  const p = path.join(BIN_DIR, name);
  if (!fs.existsSync(p)) {
    throw new Error(`${p} is missing: build the workspace binaries first (cargo build --workspace --bins)`);
  }
  return p;
}

/**
 * Runs a command (argv array, no shell) to completion, bounded by `timeoutMs` (then
 * SIGKILL). Resolves `{code, signal, stdout, stderr, timedOut}`; never rejects for a
 * non-zero exit.
 */
function runCommand(argv, { env, timeoutMs = COMMAND_TIMEOUT_MS } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: env ? { ...process.env, ...env } : process.env,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let settled = false;
    let status = null;
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      clearTimeout(graceTimer);
      resolve({ ...status, stdout, stderr, timedOut });
    };
    const killTimer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    let graceTimer;
    child.on('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      reject(new Error(`cannot run ${argv[0]}: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      status = { code, signal };
      // A daemon the command left behind could hold our pipes open: do not wait for them
      // to close for long once the command itself has exited.
      graceTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, 2000);
    });
    child.on('close', () => status && finish());
  });
}

/** `runCommand`, throwing with the command's output unless it exits 0; returns stdout. */
async function mustRun(argv, opts) {
  const r = await runCommand(argv, opts);
  if (r.code !== 0) {
    const how = r.timedOut ? `timed out after ${opts?.timeoutMs ?? COMMAND_TIMEOUT_MS} ms` : `exited ${r.code ?? r.signal}`;
    throw new Error(`${argv.join(' ')} ${how}:\n${r.stdout}${r.stderr}`);
  }
  return r.stdout;
}

/** Synchronous `ip ...` for setup (throws with stderr) and teardown (`check = false`). */
function ipSync(args, check = true) {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS });
  if (check && r.status !== 0) {
    throw new Error(`ip ${args.join(' ')} failed: ${r.stderr || r.error?.message || r.status}`);
  }
  return r.stdout ?? '';
}

/** Blocks the thread for `ms` (only for the synchronous exit path, where nothing else runs). */
function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether a PID names a live (not zombie) process. */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function killQuietly(pid, signal) {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

// ---- teardown (synchronous: also runs from process exit handlers) -------------------------

/** The namespaces on this host whose names start with `prefix`. */
function namespacesWithPrefix(prefix) {
  return ipSync(['netns', 'list'], false)
    .split('\n')
    .map((l) => l.split(/\s+/)[0])
    .filter((n) => n && n.startsWith(prefix));
}

/**
 * Kills every process left in the lab's namespaces (never this process), deletes the
 * namespaces (their veths and bridge go with them) and the lab's UAPI sockets.
 */
function teardownNamespaces(tag, namespaces) {
  for (const ns of namespaces) {
    for (let round = 0; round < 3; round++) {
      const pids = ipSync(['netns', 'pids', ns], false)
        .split(/\s+/)
        .filter((p) => p && Number(p) !== process.pid);
      if (pids.length === 0) break;
      for (const pid of pids) killQuietly(Number(pid), 'SIGKILL');
      for (let i = 0; i < 100 && pids.some((p) => alive(p)); i++) sleepSync(10);
    }
    ipSync(['netns', 'del', ns], false);
  }
  let sockets = [];
  try {
    sockets = fs.readdirSync(WG_RUN_DIR);
  } catch {
    // no userspace WireGuard ever ran
  }
  for (const name of sockets) {
    if (name.startsWith(`v${tag}`)) fs.rmSync(path.join(WG_RUN_DIR, name), { force: true });
  }
}

/** Tears down labs whose test process is gone (killed before it could clean up). */
function sweepStale() {
  let locks = [];
  try {
    locks = fs.readdirSync(LOCK_DIR);
  } catch {
    return;
  }
  for (const name of locks) {
    const m = /^([0-9a-f]{6})\.lock$/.exec(name);
    if (!m) continue;
    const lock = path.join(LOCK_DIR, name);
    let pid = 0;
    try {
      pid = Number(fs.readFileSync(lock, 'utf8').trim());
    } catch {
      continue;
    }
    if (pid > 0 && fs.existsSync(`/proc/${pid}`)) continue;
    teardownNamespaces(m[1], namespacesWithPrefix(`cw${m[1]}-`));
    fs.rmSync(lock, { force: true });
  }
}

// ---- process-wide safety net ---------------------------------------------------------------

/** Labs created and not yet closed, for the exit and signal handlers. */
const liveLabs = new Set();
let handlersInstalled = false;

function onSignal(signal) {
  for (const lab of [...liveLabs]) lab._teardownSync({ failed: false });
  removeHandlers();
  // Every listener got this signal; if ours was the only one, re-raise it so that the
  // default action (termination with the signal's status) still happens.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function onExit() {
  // Exiting with a lab still open means the test never reached `close()`: keep its files.
  for (const lab of [...liveLabs]) lab._teardownSync({ failed: true });
}

function installHandlers() {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', onExit);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
}

function removeHandlers() {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', onExit);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  process.off('SIGHUP', onSignal);
}

// ---- the relay ---------------------------------------------------------------------------

/**
 * Runs inside the hub: accepts connections on a unix socket and pipes each to
 * 127.0.0.1:<port>. Exits when its stdin (a pipe from the test process) closes, so it never
 * outlives the test process.
 */
const RELAY_SOURCE = `// Written by web/tests/lab.mjs: unix socket -> 127.0.0.1:<port> inside the hub namespace.
import fs from 'node:fs';
import net from 'node:net';
const [socketPath, port] = process.argv.slice(2);
fs.rmSync(socketPath, { force: true });
const server = net.createServer((down) => {
  const up = net.connect({ host: '127.0.0.1', port: Number(port) });
  down.pipe(up);
  up.pipe(down);
  down.on('error', () => up.destroy());
  up.on('error', () => down.destroy());
});
server.listen(socketPath, () => {
  fs.chmodSync(socketPath, 0o600);
  console.log('relay listening on ' + socketPath + ' for 127.0.0.1:' + port);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();
`;

// ---- the API client ------------------------------------------------------------------------

/**
 * A JSON API client that talks to the control plane through the lab's relay. Every method
 * resolves `{status, body, headers}`: `body` is parsed JSON when the answer is JSON, else
 * text. Requests are bounded by a timeout.
 */
export class ApiClient {
  /** @param {{socketPath: string, host: string, token?: string}} opts */
  constructor({ socketPath, host, token }) {
    this.socketPath = socketPath;
    this.host = host;
    /** The bearer token sent as `Authorization: Bearer`, if any. */
    this.token = token;
  }

  /**
   * @param {string} method
   * @param {string} urlPath e.g. `/api/v1/devices`
   * @param {unknown} [body] sent as JSON when given
   * @param {Record<string, string>} [headers]
   * @returns {Promise<{status: number, body: any, headers: import('node:http').IncomingHttpHeaders}>}
   */
  request(method, urlPath, body, headers = {}) {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const h = { host: this.host, accept: 'application/json', ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    if (payload) {
      h['content-type'] = 'application/json';
      h['content-length'] = String(payload.length);
    }
    return new Promise((resolve, reject) => {
      const req = http.request(
        { socketPath: this.socketPath, method, path: urlPath, headers: h, timeout: REQUEST_TIMEOUT_MS },
        (res) => {
          const chunks = [];
          res.on('data', (c) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed = text;
            if (/json/.test(res.headers['content-type'] ?? '') && text) {
              try {
                parsed = JSON.parse(text);
              } catch {
                // leave it as text
              }
            }
            resolve({ status: res.statusCode, body: parsed, headers: res.headers });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer in ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  get(urlPath, headers) {
    return this.request('GET', urlPath, undefined, headers);
  }
  post(urlPath, body, headers) {
    return this.request('POST', urlPath, body, headers);
  }
  put(urlPath, body, headers) {
    return this.request('PUT', urlPath, body, headers);
  }
  patch(urlPath, body, headers) {
    return this.request('PATCH', urlPath, body, headers);
  }
  delete(urlPath, body, headers) {
    return this.request('DELETE', urlPath, body, headers);
  }

  /**
   * GETs `urlPath` until it answers 2xx and `pred(body)` holds, bounded; returns the body.
   * @param {string} urlPath
   * @param {number} withinMs
   * @param {(body: any) => unknown} pred
   */
  async getUntil(urlPath, withinMs, pred, everyMs = 50) {
    let last;
    try {
      return await waitFor(`GET ${urlPath} to match`, withinMs, everyMs, async () => {
        last = await this.get(urlPath);
        return last.status >= 200 && last.status < 300 && pred(last.body) ? last.body : false;
      });
    } catch (e) {
      e.message += `; last answer: ${last ? `${last.status} ${JSON.stringify(last.body)}` : 'none'}`;
      throw e;
    }
  }
}

// ---- the lab -------------------------------------------------------------------------------

/** The number of a node (`n1`..`n9`) or client (`c1`..`c9`) short name. */
function hostNumber(short, kind) {
  const m = new RegExp(`^${kind}([1-9])$`).exec(short);
  if (!m) throw new Error(`${JSON.stringify(short)} is not a ${kind === 'n' ? 'node (n1..n9)' : 'client (c1..c9)'} name`);
  return Number(m[1]);
}

/** Flags `joinNode` sets itself (and refuses or skips when the join command has them). */
function hasFlag(args, flag) {
  return args.some((a) => a === flag || a.startsWith(`${flag}=`));
}

export class Lab {
  /** @private use `createLab` */
  constructor(tag, lock, port) {
    /** The lab's 6-hex-digit tag, part of every host-global name. */
    this.tag = tag;
    /** The lab directory: server data, node state, logs, client configs, relay socket. */
    this.dir = path.join(os.tmpdir(), `clawn-web-${tag}`);
    /** The control plane's port (inside the hub). */
    this.port = port;
    /** For the browser, which runs inside the hub. */
    this.serverUrl = `http://127.0.0.1:${port}`;
    /** For nodes: the server's `--public-url`, what join commands carry. */
    this.nodeServerUrl = `http://${HUB_IP}:${port}`;
    /** Keep the lab directory on `close()` (set it when a test failed). */
    this.keep = Boolean(process.env.CLAWN_E2E_KEEP);
    this.socketPath = path.join(this.dir, 'api.sock');
    /** @type {string[]} */
    this.namespaces = [];
    /** @type {Map<string, {child: import('node:child_process').ChildProcess, exited: Promise<void>, exit: null | {code: number | null, signal: string | null}}>} */
    this.children = new Map();
    this.lock = lock;
    this.closed = false;
  }

  // -- names

  /** The host-global name of a lab namespace (`hub`, `n1`, `c1`, ...). */
  ns(short) {
    return `cw${this.tag}-${short}`;
  }

  /** The host-unique WireGuard interface name of a node or client (≤ 15 characters). */
  wgIf(short) {
    return `v${this.tag}${short}`;
  }

  /** The name node `short` enrolls with (`n1-<tag>`), as admins see it. */
  nodeName(short) {
    return `${short}-${this.tag}`;
  }

  /** Node `nK`'s address on the hub bridge (10.200.0.(10+K)), also its WireGuard endpoint host. */
  nodeIp(short) {
    return `10.200.0.${10 + hostNumber(short, 'n')}`;
  }

  /** Client `cK`'s address on the hub bridge (10.200.0.(20+K)). */
  clientIp(short) {
    return `10.200.0.${20 + hostNumber(short, 'c')}`;
  }

  // -- namespaces

  _addNs(short) {
    const ns = this.ns(short);
    ipSync(['netns', 'add', ns]);
    this.namespaces.push(ns);
    ipSync(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  _buildHub() {
    this._addNs('hub');
    const hub = this.ns('hub');
    ipSync(['-n', hub, 'link', 'add', 'br0', 'type', 'bridge']);
    ipSync(['-n', hub, 'addr', 'add', `${HUB_IP}/24`, 'dev', 'br0']);
    ipSync(['-n', hub, 'link', 'set', 'br0', 'up']);
  }

  /** A namespace with eth0 at `addr`/24, its veth peer `p<short>` a port of the hub's br0. */
  _attach(short, addr) {
    this._addNs(short);
    const ns = this.ns(short);
    const hub = this.ns('hub');
    const port = `p${short}`;
    ipSync(['link', 'add', 'name', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', hub]);
    ipSync(['-n', hub, 'link', 'set', port, 'master', 'br0', 'up']);
    ipSync(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    ipSync(['-n', ns, 'link', 'set', 'eth0', 'up']);
  }

  // -- processes

  /** The argv of `ip netns exec <ns> ...argv`. */
  _inNs(short, argv) {
    if (!this.namespaces.includes(this.ns(short))) throw new Error(`no namespace ${short} in this lab`);
    return ['ip', 'netns', 'exec', this.ns(short), ...argv];
  }

  /**
   * Runs a short command in namespace `short` (argv array, no shell), bounded; resolves
   * `{code, signal, stdout, stderr, timedOut}` whatever the exit status.
   */
  exec(short, argv, { env, timeoutMs } = {}) {
    return runCommand(this._inNs(short, argv), { env, timeoutMs });
  }

  /** `exec`, throwing with the command's output unless it exits 0; resolves its stdout. */
  must(short, argv, { env, timeoutMs } = {}) {
    return mustRun(this._inNs(short, argv), { env, timeoutMs });
  }

  /**
   * Starts a long-running process in namespace `short`, stdout and stderr appended to
   * `<dir>/<label>.log`. The label names it for `stop`, `pid`, `log`; a label can be reused
   * once its process has exited (a restart appends to the same log).
   */
  spawn(label, short, argv, { env, stdin = 'ignore' } = {}) {
    const prev = this.children.get(label);
    if (prev && !prev.exit) throw new Error(`process ${label} is already running`);
    const full = this._inNs(short, argv);
    const fd = fs.openSync(this.logPath(label), 'a');
    let child;
    try {
      fs.writeSync(fd, `---- ${new Date().toISOString()} ${full.join(' ')}\n`);
      child = spawn(full[0], full.slice(1), {
        stdio: [stdin, fd, fd],
        env: env ? { ...process.env, ...env } : process.env,
      });
    } finally {
      fs.closeSync(fd);
    }
    const entry = { child, exit: null, exited: null };
    entry.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        entry.exit = { code, signal };
        resolve();
      });
      child.on('error', (e) => {
        entry.exit = { code: null, signal: null, error: e.message };
        resolve();
      });
    });
    // A lab a test forgot to close must not keep the test process alive: the exit handler
    // tears it down then.
    child.unref();
    child.stdin?.unref?.();
    this.children.set(label, entry);
    return child;
  }

  /** The PID of a started process. */
  pid(label) {
    const entry = this.children.get(label);
    if (!entry) throw new Error(`no process ${label}`);
    return entry.child.pid;
  }

  /** How a started process exited (`{code, signal}`), or null while it runs. */
  exitStatus(label) {
    return this.children.get(label)?.exit ?? null;
  }

  /**
   * Sends `signal` to a started process and waits (bounded by `withinMs`) for it to exit,
   * then SIGKILLs it. Resolves its exit status.
   */
  async stop(label, signal = 'SIGTERM', withinMs = STOP_GRACE_MS) {
    const entry = this.children.get(label);
    if (!entry) throw new Error(`no process ${label}`);
    if (!entry.exit) {
      killQuietly(entry.child.pid, signal);
      if (!(await this._exitedWithin(entry, withinMs))) {
        killQuietly(entry.child.pid, 'SIGKILL');
        await this._exitedWithin(entry, 2000);
      }
    }
    return entry.exit;
  }

  async _exitedWithin(entry, ms) {
    let timer;
    const done = await Promise.race([
      entry.exited.then(() => true),
      new Promise((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
    clearTimeout(timer);
    return done;
  }

  /** The path of a process's log. */
  logPath(label) {
    return path.join(this.dir, `${label}.log`);
  }

  /** A process's log so far (`server`, `relay`, `n1`, ...), '' if none. */
  log(label) {
    try {
      return fs.readFileSync(this.logPath(label), 'utf8');
    } catch {
      return '';
    }
  }

  // -- the control plane

  /**
   * Starts (or, after `stop('server')`, restarts with the same data) the control plane in
   * the hub and waits until `GET /healthz` answers 200 through the relay.
   *
   * @param {{clientAllowedIps?: string, args?: string[], env?: Record<string, string>, withinMs?: number}} [opts]
   *   `clientAllowedIps`: the AllowedIPs put in device configs (default `0.0.0.0/0`, IPv4
   *   only: the lab has no IPv6); `args`: extra `clawn-server` flags.
   */
  async startServer({ clientAllowedIps = '0.0.0.0/0', args = [], env = {}, withinMs = 30000 } = {}) {
    // Real nodes report the host's CPU, shared with the browser and everything else on a
    // 2-core machine, and loopback probe round trips are scheduling noise: unless a test
    // brings its own config, the CPU and latency alerts are out of reach so placement
    // does not depend on machine load (health is tested with controlled inputs elsewhere).
    if (!args.includes('--config')) {
      const conf = path.join(this.dir, 'server-health.toml');
      fs.writeFileSync(conf, '[health]\ncpu_percent = 100.0\nlatency_floor_ms = 1000.0\n');
      args = ['--config', conf, ...args];
    }
    this.spawn(
      'server',
      'hub',
      [
        bin('clawn-server'),
        '--listen', `0.0.0.0:${this.port}`,
        '--public-url', this.nodeServerUrl,
        '--data-dir', path.join(this.dir, 'server'),
        '--client-allowed-ips', clientAllowedIps,
        ...args,
      ],
      {
        env: {
          CLAWN_ADMIN_EMAIL: ADMIN_EMAIL,
          CLAWN_ADMIN_PASSWORD: ADMIN_PASSWORD,
          RUST_LOG: 'info',
          ...env,
        },
      },
    );
    const anon = this.api();
    const logs = () => `\n--- server log:\n${this.log('server')}\n--- relay log:\n${this.log('relay')}`;
    const outcome = await waitFor('the control plane to answer /healthz', withinMs, 25, async () => {
      // Fail fast (not after the whole wait) when the server or the relay died.
      for (const label of ['server', 'relay']) {
        if (this.exitStatus(label)) return { exited: label };
      }
      return (await anon.get('/healthz')).status === 200 ? { up: true } : false;
    }).catch((e) => {
      throw new Error(e.message + logs());
    });
    if (outcome.exited) {
      const how = JSON.stringify(this.exitStatus(outcome.exited));
      throw new Error(`the ${outcome.exited} exited (${how}) before the control plane answered${logs()}`);
    }
  }

  _startRelay() {
    const script = path.join(this.dir, 'relay.mjs');
    fs.writeFileSync(script, RELAY_SOURCE);
    this.spawn('relay', 'hub', [process.execPath, script, this.socketPath, String(this.port)], { stdin: 'pipe' });
  }

  /** An API client through the relay, anonymous or with a bearer `token`. */
  api(token) {
    return new ApiClient({ socketPath: this.socketPath, host: `127.0.0.1:${this.port}`, token });
  }

  /**
   * Signs in with a bearer session; resolves a client that sends it. Throws with the answer
   * unless the sign-in succeeds.
   */
  async login(email, password) {
    const r = await this.api().post('/api/v1/auth/login', { email, password, session: 'bearer' });
    if (r.status !== 200 || typeof r.body?.token !== 'string') {
      throw new Error(`login ${email}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    return this.api(r.body.token);
  }

  /** Signs in as the lab admin (`ADMIN_EMAIL`). */
  admin() {
    return this.login(ADMIN_EMAIL, ADMIN_PASSWORD);
  }

  // -- nodes

  /**
   * Enrolls node `short` (`n1`..`n9`) by running the join command text a test got from the
   * dashboard (`clawn-node join --server ... --token ...`), with the lab's state dir,
   * backend, interface, name and endpoint added. Throws with the output unless it succeeds;
   * resolves its stdout.
   *
   * @param {string} short
   * @param {string} joinCommandText
   * @param {{backend?: 'embedded' | 'uapi', args?: string[]}} [opts] `args`: extra join flags
   */
  async joinNode(short, joinCommandText, { backend = 'embedded', args = [] } = {}) {
    const words = String(joinCommandText).trim().split(/\s+/);
    if (words[0] !== 'clawn-node' || words[1] !== 'join') {
      throw new Error(`not a clawn-node join command: ${JSON.stringify(joinCommandText)}`);
    }
    const given = words.slice(1);
    if (hasFlag(given, '--state-dir')) {
      throw new Error(`the join command must not choose the state directory: ${joinCommandText}`);
    }
    const ours = [
      ['--backend', backend],
      ['--interface', this.wgIf(short)],
      ['--name', this.nodeName(short)],
      ['--endpoint', `${this.nodeIp(short)}:${NODE_WG_PORT}`],
    ];
    const added = [];
    for (const [flag, value] of ours) {
      // The dashboard may already offer some of these (a backend choice): keep its choice.
      if (!hasFlag(given, flag)) added.push(flag, value);
    }
    const argv = [bin('clawn-node'), '--state-dir', path.join(this.dir, short), ...given, ...added, ...args];
    return this.must(short, argv);
  }

  /**
   * Starts the agent of joined node `short` (1 s telemetry, 1 s reconnect backoff ceiling),
   * its output in `<dir>/<short>.log`.
   * @param {string} short
   * @param {{args?: string[]}} [opts] extra `run` flags
   */
  runNode(short, { args = [] } = {}) {
    hostNumber(short, 'n');
    return this.spawn(short, short, [
      bin('clawn-node'),
      '--state-dir', path.join(this.dir, short),
      '--log', 'info,clawn_node=debug',
      'run',
      '--telemetry-secs', '1',
      '--backoff-cap-secs', '1',
      ...args,
    ]);
  }

  /**
   * Waits until the admin node list shows node `short` online; resolves its node view.
   * @param {ApiClient} admin
   */
  async waitNodeOnline(admin, short, withinMs = 30000) {
    const name = this.nodeName(short);
    const nodes = await admin
      .getUntil('/api/v1/admin/nodes', withinMs, (b) =>
        Array.isArray(b) && b.some((n) => n.name === name && n.state === 'online'),
      )
      .catch((e) => {
        throw new Error(`${e.message}\n--- ${short} log:\n${this.log(short)}`);
      });
    return nodes.find((n) => n.name === name);
  }

  // -- clients

  _clientConf(short) {
    return path.join(this.dir, `${this.wgIf(short)}.conf`);
  }

  /**
   * Brings up a wg-quick client in `short` (`c1`..`c9`) from a config text (DNS lines
   * dropped: there is no resolvconf here). The config must carry a real private key; take
   * the client down before bringing up another config in the same namespace.
   */
  async clientUp(short, confText) {
    hostNumber(short, 'c');
    const text = String(confText)
      .split(/\r?\n/)
      .filter((l) => !/^\s*DNS\s*=/i.test(l))
      .join('\n');
    const file = this._clientConf(short);
    fs.writeFileSync(file, text.endsWith('\n') ? text : `${text}\n`, { mode: 0o600 });
    fs.chmodSync(file, 0o600);
    await this.must(short, ['wg-quick', 'up', file], {
      env: { WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go', WG_SUDO: '1' },
    });
  }

  /** Takes a client's tunnel down (its wireguard-go exits). */
  async clientDown(short) {
    await this.must(short, ['wg-quick', 'down', this._clientConf(short)], {
      env: { WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go', WG_SUDO: '1' },
    });
  }

  /** One ping from a namespace to `dst`, 1 s timeout; resolves whether it was answered. */
  async ping(short, dst) {
    const r = await this.exec(short, ['ping', '-n', '-q', '-c', '1', '-W', '1', dst], { timeoutMs: 5000 });
    return r.code === 0;
  }

  /** Pings until one answer comes (the first handshake takes a moment), bounded. */
  async pingUntil(short, dst, withinMs) {
    await waitFor(`${short} to reach ${dst}`, withinMs, 10, () => this.ping(short, dst));
  }

  /** The latest handshake (Unix seconds, 0 = never) of every peer of a client's interface. */
  async clientHandshakes(short) {
    const out = await this.must(short, ['wg', 'show', this.wgIf(short), 'latest-handshakes']);
    return out
      .split('\n')
      .map((l) => l.trim().split(/\s+/)[1])
      .filter((v) => v !== undefined && /^\d+$/.test(v))
      .map(Number);
  }

  // -- the browser

  /**
   * Writes `<dir>/chromium` running /usr/bin/chromium inside the hub and returns its path,
   * for playwright-core's `chromium.launch({executablePath})` (Playwright drives it over a
   * pipe, so the namespace does not get in the way of control). Launch it with
   * `--no-sandbox` (root).
   */
  chromiumWrapper() {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is not installed`);
    const wrapper = path.join(this.dir, 'chromium');
    fs.writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${this.ns('hub')} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
    fs.chmodSync(wrapper, 0o755);
    return wrapper;
  }

  // -- clean-up

  /**
   * Stops everything and deletes the lab (see the top of this file). Idempotent. Keeps the
   * lab directory when `lab.keep` is true or `CLAWN_E2E_KEEP` is set.
   */
  async close() {
    if (this.closed) return;
    liveLabs.delete(this);
    if (liveLabs.size === 0) removeHandlers();
    const running = [...this.children.values()].filter((e) => !e.exit);
    for (const e of running) killQuietly(e.child.pid, 'SIGTERM');
    const deadline = Date.now() + STOP_GRACE_MS;
    for (const e of running) {
      if (!(await this._exitedWithin(e, Math.max(0, deadline - Date.now())))) {
        killQuietly(e.child.pid, 'SIGKILL');
        await this._exitedWithin(e, 2000);
      }
    }
    this._teardownSync({ failed: false });
  }

  /**
   * The synchronous part of the clean-up, also the whole of it from exit and signal
   * handlers: stops the lab's processes, deletes namespaces, sockets, lock and (unless kept)
   * the directory.
   */
  _teardownSync({ failed }) {
    if (this.closed) return;
    this.closed = true;
    liveLabs.delete(this);
    const running = [...this.children.values()].filter((e) => !e.exit && alive(e.child.pid));
    for (const e of running) killQuietly(e.child.pid, 'SIGTERM');
    for (let i = 0; i < STOP_GRACE_MS / 10 && running.some((e) => alive(e.child.pid)); i++) sleepSync(10);
    for (const e of running) if (alive(e.child.pid)) killQuietly(e.child.pid, 'SIGKILL');
    teardownNamespaces(this.tag, this.namespaces);
    if (this.keep || failed) {
      process.stderr.write(`lab files kept in ${this.dir}\n`);
    } else {
      fs.rmSync(this.dir, { recursive: true, force: true });
    }
    fs.rmSync(this.lock, { force: true });
  }
}

/**
 * Creates a lab: the hub with the control plane running (admin `ADMIN_EMAIL` /
 * `ADMIN_PASSWORD`), node namespaces `n1..n<nodes>` and client namespaces `c1..c<clients>`
 * (nodes are not joined: tests do that with a join command from the dashboard).
 *
 * @param {{nodes?: number, clients?: number, serverArgs?: string[], clientAllowedIps?: string,
 *          port?: number, startServer?: boolean}} [opts]
 * @returns {Promise<Lab>}
 */
export async function createLab({
  nodes = 1,
  clients = 1,
  serverArgs = [],
  clientAllowedIps = '0.0.0.0/0',
  port = DEFAULT_PORT,
  startServer = true,
} = {}) {
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces)');
  if (!(nodes >= 0 && nodes <= 9 && clients >= 0 && clients <= 9)) throw new Error('at most 9 nodes and 9 clients');
  for (const tool of TOOLS) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0) {
      throw new Error(`${tool} is not installed (wireguard-go wireguard-tools nftables iputils-ping iproute2)`);
    }
  }
  bin('clawn-server');
  bin('clawn-node');

  fs.mkdirSync(LOCK_DIR, { recursive: true });
  sweepStale();
  let tag;
  let lock;
  for (let attempt = 0; attempt < 16 && !lock; attempt++) {
    const t = randomBytes(3).toString('hex');
    const l = path.join(LOCK_DIR, `${t}.lock`);
    try {
      fs.writeFileSync(l, `${process.pid}\n`, { flag: 'wx' });
      [tag, lock] = [t, l];
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
  }
  if (!lock) throw new Error(`no free lab tag in ${LOCK_DIR}`);

  const lab = new Lab(tag, lock, port);
  installHandlers();
  liveLabs.add(lab);
  try {
    fs.mkdirSync(lab.dir, { recursive: true, mode: 0o700 });
    lab._buildHub();
    for (let i = 1; i <= nodes; i++) lab._attach(`n${i}`, lab.nodeIp(`n${i}`));
    for (let i = 1; i <= clients; i++) lab._attach(`c${i}`, lab.clientIp(`c${i}`));
    lab._startRelay();
    if (startServer) await lab.startServer({ clientAllowedIps, args: serverArgs });
  } catch (e) {
    lab.keep = true;
    await lab.close();
    throw e;
  }
  return lab;
}
