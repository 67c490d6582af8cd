//! A lab of network namespaces for end-to-end tests: a hub bridge with the control plane,
//! nodes, clients (Debian's wireguard-go + wg-quick), and an "outside" host behind node 1.
//!
//! Layout (every address lives inside the lab's own namespaces, so addresses repeat
//! across parallel labs; only host-global names carry the lab's tag):
//!
//! ```text
//!   hub  br0 10.200.0.1/24  ── control plane listens here
//!   n1   eth0 10.200.0.11   ext0 203.0.113.1/24 ── out eth0 203.0.113.100 (n1's default route)
//!   n2   eth0 10.200.0.12
//!   cK   eth0 10.200.0.(20+K)
//! ```
//!
//! Everything started is killed and every namespace deleted in `Drop`, also when a test
//! panics; stale labs of killed test processes are swept at start.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod stub;

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clawn_testkit::Client;
use serde_json::{Value, json};

pub const HUB_IP: &str = "10.200.0.1";
pub const SERVER_PORT: u16 = 8080;
pub const OUT_IP: &str = "203.0.113.100";
pub const EXIT_IP: &str = "203.0.113.1";
pub const ADMIN_EMAIL: &str = "admin@lab.test";
pub const ADMIN_PASSWORD: &str = "lab-admin-password-1";
const LOCK_DIR: &str = "/run/clawn-e2e";

/// Where the workspace's binaries are (next to this test's own `clawn-node`).
pub fn bin(name: &str) -> PathBuf {
    let node = PathBuf::from(env!("CARGO_BIN_EXE_clawn-node"));
    let p = node.with_file_name(name);
    assert!(
        p.exists(),
        "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
        p.display()
    );
    p
}

/// Runs a command, returning its output (not checking the status).
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command and panics with its stderr unless it succeeds.
pub fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    must(Command::new("ip").args(args))
}

/// Waits for a condition nothing can notify (a ping answering, a log line, an
/// interface's peers), bounded: the testkit's shared helper.
pub use clawn_testkit::poll_until as wait_for;

/// Waits up to `within` for `child` to exit (on a thread blocked in `wait`, no polling),
/// then SIGKILLs it; always reaps it.
fn reap(mut child: Child, within: Duration) {
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    if rx.recv_timeout(within).is_err() {
        let _ = Command::new("kill")
            .args(["-KILL", &pid])
            .stderr(Stdio::null())
            .status();
    }
    let _ = waiter.join();
}

pub struct Lab {
    /// Telemetry interval of the nodes this lab starts (the agent's default is 5 s; tests
    /// use 1 s to see telemetry quickly).
    pub telemetry_secs: u64,
    pub tag: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<(String, Child)>,
    lock: PathBuf,
}

impl Lab {
    /// Creates the hub, `nodes` nodes (n1 with the outside host), and `clients` clients.
    pub fn new(nodes: usize, clients: usize) -> Self {
        for tool in ["ip", "wg", "wg-quick", "wireguard-go", "ping", "nft"] {
            assert!(
                run(Command::new("sh").args(["-c", &format!("command -v {tool}")]))
                    .status
                    .success(),
                "{tool} is not installed (scripts/test.sh installs wireguard-go wireguard-tools nftables iputils-ping)"
            );
        }
        std::fs::create_dir_all(LOCK_DIR).expect("lock dir");
        sweep_stale();
        let (tag, lock) = loop {
            let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
            let lock = Path::new(LOCK_DIR).join(format!("{tag}.lock"));
            if let Ok(mut f) = File::create_new(&lock) {
                use std::io::Write as _;
                writeln!(f, "{}", std::process::id()).expect("write lock");
                break (tag, lock);
            }
        };
        let dir = std::env::temp_dir().join(format!("clawn-e2e-{tag}"));
        std::fs::create_dir_all(&dir).expect("lab dir");
        let mut lab = Self {
            telemetry_secs: 1,
            tag,
            dir,
            namespaces: vec![],
            children: vec![],
            lock,
        };
        lab.add_ns("hub");
        let hub = lab.ns("hub");
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &hub,
            "addr",
            "add",
            &format!("{HUB_IP}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 1..=nodes {
            lab.attach(&format!("n{i}"), &format!("10.200.0.{}", 10 + i));
        }
        for i in 1..=clients {
            lab.attach(&format!("c{i}"), &format!("10.200.0.{}", 20 + i));
        }
        if nodes >= 1 {
            lab.add_ns("out");
            let (n1, out) = (lab.ns("n1"), lab.ns("out"));
            ip(&[
                "link", "add", "name", "ext0", "netns", &n1, "type", "veth", "peer", "name",
                "eth0", "netns", &out,
            ]);
            ip(&[
                "-n",
                &n1,
                "addr",
                "add",
                &format!("{EXIT_IP}/24"),
                "dev",
                "ext0",
            ]);
            ip(&["-n", &n1, "link", "set", "ext0", "up"]);
            ip(&["-n", &n1, "route", "add", "default", "via", OUT_IP]);
            ip(&[
                "-n",
                &out,
                "addr",
                "add",
                &format!("{OUT_IP}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &out, "link", "set", "eth0", "up"]);
        }
        lab
    }

    /// The host-global name of a lab namespace.
    pub fn ns(&self, short: &str) -> String {
        format!("cn{}-{short}", self.tag)
    }

    /// A host-unique WireGuard interface name for `short` (≤ 15 characters).
    pub fn wg_if(&self, short: &str) -> String {
        format!("w{}{short}", self.tag)
    }

    fn add_ns(&mut self, short: &str) {
        let ns = self.ns(short);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
    }

    fn attach(&mut self, short: &str, addr: &str) {
        self.add_ns(short);
        let (ns, hub) = (self.ns(short), self.ns("hub"));
        let port = format!("p{short}");
        ip(&[
            "link", "add", "name", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port,
            "netns", &hub,
        ]);
        ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
    }

    /// `ip netns exec <ns> <args...>` as a command.
    pub fn cmd(&self, short: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(short)]).arg(program);
        c
    }

    /// Starts a long-running process in a namespace, its output going to `<label>.log`.
    pub fn spawn(&mut self, label: &str, mut cmd: Command) {
        let log = self.dir.join(format!("{label}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("dup"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        self.children.push((label.to_string(), child));
    }

    /// The PID of a started process.
    pub fn pid(&self, label: &str) -> u32 {
        self.children
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, c)| c.id())
            .unwrap_or_else(|| panic!("no process {label}"))
    }

    /// Sends `signal` to a started process and waits for it to exit.
    pub fn stop(&mut self, label: &str, signal: &str) {
        let idx = self
            .children
            .iter()
            .position(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        let (_, child) = self.children.remove(idx);
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        reap(child, Duration::from_secs(15));
    }

    /// The log of a process so far.
    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// Moves the calling thread into a namespace (threads it spawns afterwards follow).
    pub fn enter(&self, short: &str) {
        let f = File::open(format!("/run/netns/{}", self.ns(short))).expect("netns file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    }

    /// Runs `f` on a new thread inside a namespace and returns its result.
    pub fn in_ns<T: Send + 'static>(
        &self,
        short: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> T {
        let path = format!("/run/netns/{}", self.ns(short));
        std::thread::spawn(move || {
            let file = File::open(path).expect("netns file");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    // ---- the control plane -------------------------------------------------------

    pub fn server_url(&self) -> String {
        format!("http://{HUB_IP}:{SERVER_PORT}")
    }

    /// Starts (or restarts, same data) the control plane in the hub.
    pub fn start_server(&mut self, extra: &[&str]) {
        // Real nodes report the host's CPU, and every test of a parallel suite on two
        // cores shares it; probe round trips on a loaded box are scheduling noise. Health
        // alerts are tested with controlled inputs in clawn-testkit; here they would only
        // make placement depend on what else the machine runs.
        let health = self.dir.join("server-health.toml");
        std::fs::write(
            &health,
            "[health]\ncpu_percent = 100.0\nlatency_floor_ms = 1000.0\n",
        )
        .expect("write server config");
        let mut c = self.cmd("hub", bin("clawn-server"));
        c.arg("--config").arg(&health);
        c.args(["--listen", &format!("{HUB_IP}:{SERVER_PORT}")])
            .arg("--data-dir")
            .arg(self.dir.join("server"))
            .args([
                "--client-allowed-ips",
                "0.0.0.0/0",
                "--ack-timeout-ms",
                "3000",
            ])
            .args(extra)
            .env("CLAWN_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("CLAWN_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "info");
        self.spawn("server", c);
        let url = format!("{HUB_IP}:{SERVER_PORT}");
        let sa: SocketAddr = url.parse().expect("addr");
        self.in_ns("hub", move || {
            wait_for(
                "control plane listening",
                Duration::from_secs(30),
                Duration::from_millis(25),
                || TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok(),
            )
        });
    }

    // ---- nodes ----------------------------------------------------------------------

    /// Joins node `short` (`n1`, ...) with a fresh token for `region`, then runs it.
    pub async fn start_node(&mut self, admin: &Client, short: &str, region: &str, backend: &str) {
        let (s, body) = admin
            .post(
                "/api/v1/admin/node-tokens",
                json!({"region": region, "capacity": 20000}),
            )
            .await;
        assert!(s.is_success(), "node token: {body}");
        let token = body["token"].as_str().expect("token").to_string();
        self.join_node(short, &token, backend);
        self.run_node(short);
        // Online once its stream is up and it acknowledged the first snapshot.
        let name = format!("{short}-{}", self.tag);
        admin
            .get_until("/api/v1/admin/nodes", Duration::from_secs(30), |b| {
                b.as_array().is_some_and(|ns| {
                    ns.iter()
                        .any(|n| n["name"] == name.as_str() && n["state"] == "online")
                })
            })
            .await;
    }

    /// `clawn-node join` in `short` with `token` (any server, e.g. a stub); panics on failure.
    pub fn join_node(&self, short: &str, token: &str, backend: &str) {
        let n: u8 = short[1..].parse().expect("node number");
        must(
            self.cmd(short, bin("clawn-node"))
                .arg("--state-dir")
                .arg(self.dir.join(short))
                .args(["join", "--server", &self.server_url(), "--token", token])
                .args(["--backend", backend, "--interface", &self.wg_if(short)])
                .args(["--name", &format!("{short}-{}", self.tag)])
                .args(["--endpoint", &format!("10.200.0.{}:51820", 10 + n)]),
        );
    }

    /// Starts the agent of an already joined node.
    pub fn run_node(&mut self, short: &str) {
        let mut c = self.cmd(short, bin("clawn-node"));
        c.arg("--state-dir")
            .arg(self.dir.join(short))
            .args([
                "--log",
                "info,clawn_node=debug",
                "run",
                "--backoff-cap-secs",
                "1",
            ])
            .args(["--telemetry-secs", &self.telemetry_secs.to_string()])
            .args([
                "--metrics-listen",
                &format!(
                    "10.200.0.{}:9101",
                    10 + short[1..].parse::<u8>().expect("n")
                ),
            ]);
        self.spawn(short, c);
    }

    // ---- clients ----------------------------------------------------------------------

    /// Brings a wg-quick client up in `short` (`c1`, ...) from a config text (DNS lines
    /// dropped: the lab has no resolver to configure).
    pub fn client_up(&self, short: &str, config: &str) {
        let iface = self.wg_if(short);
        let path = self.dir.join(format!("{iface}.conf"));
        let text: String = config
            .lines()
            .filter(|l| !l.trim_start().starts_with("DNS"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, text).expect("write conf");
        must(
            self.cmd(short, "wg-quick")
                .env("WG_QUICK_USERSPACE_IMPLEMENTATION", "wireguard-go")
                .env("WG_SUDO", "1")
                .arg("up")
                .arg(&path),
        );
    }

    /// Takes a client's tunnel down (its wireguard-go exits).
    pub fn client_down(&self, short: &str) {
        let path = self.dir.join(format!("{}.conf", self.wg_if(short)));
        must(self.cmd(short, "wg-quick").arg("down").arg(&path));
    }

    /// One ping from a namespace, 1 s timeout.
    pub fn ping(&self, short: &str, dst: &str) -> bool {
        run(self.cmd(short, "ping").args(["-c", "1", "-W", "1", dst]))
            .status
            .success()
    }

    /// Pings until one answer comes (handshakes take a moment), bounded.
    pub fn ping_until_ok(&self, short: &str, dst: &str, within: Duration) {
        wait_for(
            &format!("{short} reaches {dst}"),
            within,
            Duration::from_millis(10),
            || self.ping(short, dst),
        );
    }

    /// The public keys of the peers on the real WireGuard interface of node or client
    /// `short` (the uapi backend or wireguard-go; the embedded one has no UAPI socket).
    pub fn wg_peers(&self, short: &str) -> Vec<String> {
        must(
            self.cmd(short, "wg")
                .args(["show", &self.wg_if(short), "peers"]),
        )
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }

    /// The latest handshake (Unix seconds, 0 = never) of every peer of a client interface.
    pub fn client_handshakes(&self, short: &str) -> Vec<u64> {
        let out =
            must(
                self.cmd(short, "wg")
                    .args(["show", &self.wg_if(short), "latest-handshakes"]),
            );
        out.lines()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect()
    }

    /// TCP echo round trip from `from` to `dst:port`, where an echo server runs in `server_ns`.
    pub fn tcp_exchange(&self, server_ns: &str, bind: &str, from: &str) -> String {
        let bind: SocketAddr = bind.parse().expect("bind");
        let listener = self.in_ns(server_ns, move || {
            TcpListener::bind(bind).expect("bind echo")
        });
        let server = std::thread::spawn(move || {
            use std::io::{Read as _, Write as _};
            let (mut s, peer) = listener.accept().expect("accept");
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).expect("read");
            s.write_all(&buf[..n]).expect("echo");
            peer
        });
        let answer = self.in_ns(from, move || {
            use std::io::{Read as _, Write as _};
            let mut s = TcpStream::connect_timeout(&bind, Duration::from_secs(5)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            s.write_all(b"clawn-echo").expect("write");
            let mut buf = [0u8; 64];
            let n = s.read(&mut buf).expect("read");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let peer = server.join().expect("echo server");
        format!("{answer}@{}", peer.ip())
    }
}

/// Fills in the private key of a config the server rendered with a placeholder.
pub fn with_key(config_text: &str, kp: &clawn_proto::keys::WgKeyPair) -> String {
    config_text.replace(
        clawn_proto::config::PRIVATE_KEY_PLACEHOLDER,
        &kp.private_base64(),
    )
}

/// The `tunnel_ip` of a device body, without the prefix.
pub fn tunnel_ip(device: &Value) -> String {
    device["tunnel_ip"]
        .as_str()
        .expect("tunnel ip")
        .split('/')
        .next()
        .expect("ip")
        .to_string()
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in self.children.drain(..) {
            reap(c, deadline.saturating_duration_since(Instant::now()));
        }
        teardown(&self.tag, &self.namespaces);
        if std::env::var_os("CLAWN_E2E_KEEP").is_none() && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("lab files kept in {}", self.dir.display());
        }
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Kills every process in the lab's namespaces (wg-quick's daemonised wireguard-go
/// among them), deletes the namespaces and the lab's UAPI sockets.
fn teardown(tag: &str, namespaces: &[String]) {
    for ns in namespaces {
        let pids = run(Command::new("ip").args(["netns", "pids", ns]));
        let me = std::process::id().to_string();
        // Never ourselves: a thread of this process may have entered the namespace.
        for pid in String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter(|p| *p != me)
        {
            let _ = Command::new("kill")
                .args(["-KILL", pid])
                .stderr(Stdio::null())
                .status();
        }
        let _ = Command::new("ip").args(["netns", "del", ns]).status();
    }
    if let Ok(entries) = std::fs::read_dir("/var/run/wireguard") {
        for e in entries.flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("w{tag}"))
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Removes labs whose test process is gone (a timeout SIGKILLs a test before `Drop`).
fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(LOCK_DIR) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(tag) = name.strip_suffix(".lock") else {
            continue;
        };
        let pid = std::fs::read_to_string(e.path()).unwrap_or_default();
        let alive = !pid.trim().is_empty() && Path::new(&format!("/proc/{}", pid.trim())).exists();
        if alive {
            continue;
        }
        let prefix = format!("cn{tag}-");
        let list = run(Command::new("ip").args(["netns", "list"]));
        let namespaces: Vec<String> = String::from_utf8_lossy(&list.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .filter(|n| n.starts_with(&prefix))
            .map(str::to_string)
            .collect();
        teardown(tag, &namespaces);
        let _ = std::fs::remove_file(e.path());
    }
}

/// A node's own tunnel address: the first host of its pool (`"10.100.0.0/20"`).
pub fn first_host(pool: &str) -> String {
    let net: ipnet::Ipv4Net = pool.parse().expect("pool is a CIDR");
    std::net::Ipv4Addr::from(u32::from(net.network()) + 1).to_string()
}

/// Signs in as the lab admin.
pub async fn admin(lab: &Lab) -> Client {
    login(lab, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

pub async fn login(lab: &Lab, email: &str, password: &str) -> Client {
    let c = Client::new(&lab.server_url(), None);
    let (s, body) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password, "session": "bearer"}),
        )
        .await;
    assert!(s.is_success(), "login {email}: {body}");
    Client::new(
        &lab.server_url(),
        body["token"].as_str().map(str::to_string),
    )
}

pub const USER_PASSWORD: &str = "lab-user-password-1";

/// Creates a user with `slots` device slots and signs them in.
pub async fn user(lab: &Lab, admin: &Client, email: &str, slots: u32) -> Client {
    let (s, body) = admin
        .post(
            "/api/v1/admin/users",
            json!({"email": email, "password": USER_PASSWORD, "device_slots": slots}),
        )
        .await;
    assert!(s.is_success(), "create user: {body}");
    login(lab, email, USER_PASSWORD).await
}

/// Creates a region with pool `cidr`.
pub async fn region(admin: &Client, code: &str, cidr: &str) {
    let (s, body) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": code, "name": code.to_uppercase(), "cidr": cidr, "dns": []}),
        )
        .await;
    assert!(s.is_success(), "create region: {body}");
}

/// The Prometheus text of node `n` (`--metrics-listen` on its hub address).
pub async fn node_metrics(n: u8) -> String {
    reqwest::get(format!("http://10.200.0.{}:9101/metrics", 10 + n))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text")
}

/// The usual start: control plane in the hub (with `server_args`), region `eu`
/// (10.100.0.0/16) and node `n1` on `backend`, online. Returns the admin client.
pub async fn eu_with_node(lab: &mut Lab, backend: &str) -> Client {
    let admin = admin(lab).await;
    region(&admin, "eu", "10.100.0.0/16").await;
    lab.start_node(&admin, "n1", "eu", backend).await;
    admin
}

/// A multi-thread runtime for a test thread that has entered the hub.
pub fn runtime() -> tokio::runtime::Runtime {
    clawn_testkit::init_crypto();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
