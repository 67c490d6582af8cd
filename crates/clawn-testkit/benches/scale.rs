//! Scale benchmark: the release `clawn-server` binary as N replicas on one PostgreSQL
//! database (or one process on SQLite), with many protocol nodes connected at once.
//! It reports; it never asserts on time. Results and how to read them: docs/benchmarks.md.
//!
//! Set-up: `CLAWN_BENCH_NODES` protocol nodes (default 1,000), spread round-robin over the
//! replicas, each applying and acknowledging every state, answering the control plane's
//! 1 Hz ping probes and sending telemetry every 5 s; `CLAWN_BENCH_DEVICES` devices
//! (default 10,000) created through the API by 8 concurrent clients.
//!
//! Measured, while all nodes stay connected:
//! 1. API p50/p99 of list, create and revoke (sequential, through replica 1);
//! 2. cross-replica revoke: the call on replica 1 for a device whose node is held by
//!    replica 2 -> the API answer (which waits for the node's ack) and the delta's arrival;
//! 3. fan-out: a user with a device on every node is disabled -> the last node applies;
//! 4. reconnect storm: replica 2 stops (SIGKILL) -> every node it held reconnects to
//!    another replica and has verified its full snapshot;
//! 5. peak CPU and RSS of each replica (from /proc), and how many nodes ended up
//!    `degraded` under 1 Hz probing.
//!
//! `CLAWN_TEST_PG_URL` selects PostgreSQL (scripts/bench.sh starts one); without it the
//! benchmark runs one replica on SQLite. `CLAWN_BENCH_REPLICAS` (default 2) on PostgreSQL.
//! Needs `cargo build --release -p clawn-server` first (scripts/bench.sh does it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clawn_proto::WgPublicKey;
use clawn_proto::node::{HostMetrics, Telemetry};
use clawn_testkit::bench::{env_usize, summary};
use clawn_testkit::node::Applied;
use clawn_testkit::{Client, ProtoNode, TempDir};
use serde_json::json;

const ADMIN: &str = "bench-admin@example.com";
const PASSWORD: &str = "bench-password-1";

struct Replica {
    url: String,
    child: Child,
    _dir: TempDir,
}

impl Replica {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("bench path");
    let p = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("clawn-server");
    assert!(
        p.exists(),
        "{} is missing: cargo build --release -p clawn-server",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn spawn_replica(db: &str, key_from: Option<&std::path::Path>) -> Replica {
    let dir = TempDir::new("scale");
    if let Some(from) = key_from {
        std::fs::copy(from.join("signing.key"), dir.0.join("signing.key")).expect("copy key");
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let db = if db.starts_with("sqlite") {
        format!("sqlite://{}", dir.0.join("clawn.db").display())
    } else {
        db.to_string()
    };
    let child = Command::new(server_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--public-url", &url])
        .arg("--data-dir")
        .arg(&dir.0)
        .args(["--database-url", &db])
        .args(["--ack-timeout-ms", "5000"])
        .env("CLAWN_ADMIN_EMAIL", ADMIN)
        .env("CLAWN_ADMIN_PASSWORD", PASSWORD)
        .env("CLAWN_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start clawn-server");
    let anon = Client::new(&url, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if anon.get("/healthz").await.0 == reqwest::StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica on {url} did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Replica {
        url,
        child,
        _dir: dir,
    }
}

/// CPU seconds (user + system) and RSS (bytes) of a process.
fn cpu_rss(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let rss_pages: u64 = f.get(21)?.parse().ok()?;
    Some((ticks / 100.0, rss_pages * 4096))
}

/// Samples CPU (% of one core) and RSS of each replica every second; keeps the peaks.
fn sampler(pids: Vec<u32>) -> Arc<Mutex<Vec<(f64, u64)>>> {
    let peaks = Arc::new(Mutex::new(vec![(0.0f64, 0u64); pids.len()]));
    let out = peaks.clone();
    tokio::spawn(async move {
        let mut last: Vec<Option<(f64, Instant)>> = vec![None; pids.len()];
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for (i, pid) in pids.iter().enumerate() {
                let Some((cpu, rss)) = cpu_rss(*pid) else {
                    continue;
                };
                let now = Instant::now();
                let mut p = out.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((c0, t0)) = last[i] {
                    let pct = (cpu - c0) / now.duration_since(t0).as_secs_f64() * 100.0;
                    p[i].0 = p[i].0.max(pct);
                }
                p[i].1 = p[i].1.max(rss);
                last[i] = Some((cpu, now));
            }
        }
    });
    peaks
}

/// What the nodes saw: when each key was added or removed, and each node's snapshots.
#[derive(Default)]
struct Seen {
    keys: HashMap<(WgPublicKey, bool), Instant>,
    snapshots: HashMap<usize, Instant>,
}

type Shared = Arc<Mutex<Seen>>;

async fn node_task(idx: usize, mut node: ProtoNode, fallback: String, seen: Shared) {
    let mut last_tel = Instant::now() - Duration::from_secs(idx as u64 % 5);
    loop {
        match node.next_state(Duration::from_secs(1)).await {
            Ok(applied) => {
                let now = Instant::now();
                let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                match applied {
                    Applied::Snapshot { .. } => {
                        s.snapshots.insert(idx, now);
                    }
                    Applied::Delta { added, removed, .. } => {
                        for k in added {
                            s.keys.insert((k, true), now);
                        }
                        for k in removed {
                            s.keys.insert((k, false), now);
                        }
                    }
                }
            }
            Err(e) if e.to_string().contains("timed out") => {}
            Err(_) => {
                // The stream is gone (its replica stopped): reconnect to another one.
                node.disconnect().await;
                node.use_server(&fallback);
                let mut backoff = Duration::from_millis(50 + (idx as u64 % 200));
                loop {
                    if node.connect().await.is_ok() {
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                continue;
            }
        }
        if last_tel.elapsed() >= Duration::from_secs(5) {
            last_tel = Instant::now();
            let t = Telemetry {
                at: clawn_proto::time::now_millis(),
                host: HostMetrics {
                    cpu_percent: 10.0,
                    memory_used_bytes: 1 << 30,
                    memory_total_bytes: 4 << 30,
                    load1: 0.2,
                    active_peers: node.peers.len() as u64,
                    ..HostMetrics::default()
                },
                peers: Vec::new(),
                exit_ipv4: None,
            };
            let _ = node.telemetry(t).await;
        }
    }
}

async fn wait_seen(seen: &Shared, key: (WgPublicKey, bool), within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .get(&key)
        {
            return Some(*t);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn login(url: &str, email: &str, password: &str) -> Client {
    let c = Client::new(url, None);
    let (s, b) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": email, "password": password, "session": "bearer"}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "login: {b}");
    Client::new(url, b["token"].as_str().map(str::to_string))
}

async fn new_user(admin: &Client, url: &str, email: &str, slots: u32) -> (Client, String) {
    let (s, b) = admin
        .post(
            "/api/v1/admin/users",
            json!({"email": email, "password": clawn_testkit::USER_PASSWORD, "device_slots": slots}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "user: {b}");
    let id = b["id"].as_str().expect("id").to_string();
    (login(url, email, clawn_testkit::USER_PASSWORD).await, id)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    clawn_testkit::init_crypto();
    let nodes_n = env_usize("CLAWN_BENCH_NODES", 1_000);
    let devices_n = env_usize("CLAWN_BENCH_DEVICES", 10_000);
    let pg = std::env::var("CLAWN_TEST_PG_URL").ok();
    let (db, replicas_n, label) = match &pg {
        Some(base) => {
            use sqlx::Connection as _;
            let name = format!("clawn_scale_{}", uuid::Uuid::new_v4().simple());
            let mut c = sqlx::postgres::PgConnection::connect(base)
                .await
                .expect("connect");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await
                .expect("create db");
            let (prefix, _) = base.rsplit_once('/').expect("db path");
            let n = env_usize("CLAWN_BENCH_REPLICAS", 2);
            (
                format!("{prefix}/{name}"),
                n,
                format!("PostgreSQL, {n} replicas"),
            )
        }
        None => ("sqlite".to_string(), 1, "SQLite, 1 process".to_string()),
    };
    eprintln!("== scale benchmark: {label}, {nodes_n} nodes, {devices_n} devices");
    let first = spawn_replica(&db, None).await;
    let first_dir = first._dir.0.clone();
    let mut replicas = vec![first];
    for _ in 1..replicas_n {
        replicas.push(spawn_replica(&db, Some(&first_dir)).await);
    }
    let peaks = sampler(replicas.iter().map(Replica::pid).collect());
    let url0 = replicas[0].url.clone();
    let admin = login(&url0, ADMIN, PASSWORD).await;
    let (s, r) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": "eu", "name": "EU", "cidr": "10.0.0.0/8", "node_prefix": 20}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{r}");

    // Nodes: enrolled through replica 1, streams spread over the replicas.
    let seen: Shared = Arc::default();
    let t0 = Instant::now();
    let mut holders = Vec::with_capacity(nodes_n);
    for i in 0..nodes_n {
        let (s, b) = admin
            .post(
                "/api/v1/admin/node-tokens",
                json!({"region": "eu", "capacity": 4000}),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        let mut node = ProtoNode::enroll(&url0, b["token"].as_str().expect("token"))
            .await
            .expect("enroll");
        let holder = i % replicas.len();
        node.use_server(&replicas[holder].url);
        node.connect().await.expect("connect");
        holders.push((node.node_id, holder));
        let fallback = replicas[(holder + 1) % replicas.len()].url.clone();
        tokio::spawn(node_task(i, node, fallback, seen.clone()));
    }
    let retry_until = Instant::now() + Duration::from_secs(120);
    while seen
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .snapshots
        .len()
        < nodes_n
    {
        assert!(
            Instant::now() < retry_until,
            "not every node got its snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{nodes_n} nodes enrolled and connected in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let holder_of: HashMap<uuid::Uuid, usize> = holders.iter().copied().collect();

    // The fan-out user first: one device per node while the nodes are empty (placement
    // spreads them by load).
    let (fan, fan_id) = new_user(&admin, &url0, "fan@example.com", nodes_n as u32).await;
    let mut fan_keys = Vec::new();
    for i in 0..nodes_n {
        let (s, b, kp) = fan.add_device(&format!("f{i}"), "eu").await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        fan_keys.push(kp.public());
    }

    // The bulk devices: 8 concurrent clients.
    let t0 = Instant::now();
    let per = devices_n.div_ceil(8);
    let mut tasks = Vec::new();
    for w in 0..8 {
        // A user holds at most 1,000 devices: as many users per client as needed.
        let mut users = Vec::new();
        for u in 0..per.div_ceil(1_000) {
            let slots = (per - u * 1_000).min(1_000) as u32;
            users.push((
                new_user(&admin, &url0, &format!("bulk{w}-{u}@example.com"), slots)
                    .await
                    .0,
                slots as usize,
            ));
        }
        tasks.push(tokio::spawn(async move {
            for (user, n) in users {
                for i in 0..n {
                    let (s, b, _) = user.add_device(&format!("d{i}"), "eu").await;
                    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("bulk");
    }
    let took = t0.elapsed();
    let mut rows: Vec<String> = Vec::new();
    let mut lines = vec![
        format!("### {label}, {nodes_n} connected nodes"),
        String::new(),
        format!(
            "- bulk create: {} devices by 8 clients in {:.1} s = {:.0} creates/s",
            per * 8,
            took.as_secs_f64(),
            (per * 8) as f64 / took.as_secs_f64()
        ),
    ];

    // 1. API latencies under load.
    let (probe, _) = new_user(&admin, &url0, "probe@example.com", 1_000).await;
    let n_api = env_usize("CLAWN_BENCH_API", 200);
    let (mut list, mut create, mut revoke) = (Vec::new(), Vec::new(), Vec::new());
    let mut revoke_ack = Vec::new();
    for i in 0..n_api {
        let t = Instant::now();
        let (s, b, _) = probe.add_device(&format!("p{i}"), "eu").await;
        create.push(t.elapsed());
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        let id = b["device"]["id"].as_str().expect("id").to_string();
        let t = Instant::now();
        let (s, _) = probe.get("/api/v1/devices").await;
        list.push(t.elapsed());
        assert_eq!(s, reqwest::StatusCode::OK);
        let t = Instant::now();
        let (s, r) = probe
            .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
            .await;
        revoke.push(t.elapsed());
        assert_eq!(s, reqwest::StatusCode::OK, "{r}");
        if r["node_ack"]["status"] == "acknowledged" {
            revoke_ack.push(());
        }
    }
    rows.push(summary("API list devices (one user, 1 device)", list));
    rows.push(summary("API create", create));
    rows.push(summary("API revoke (waits for the node's ack)", revoke));
    lines.push(format!(
        "- revokes acknowledged: {}/{n_api}",
        revoke_ack.len()
    ));

    // 2. Cross-replica revoke.
    if replicas.len() > 1 {
        let (x, _) = new_user(&admin, &url0, "cross@example.com", (n_api * 4) as u32).await;
        let (mut answer, mut delta) = (Vec::new(), Vec::new());
        let mut acked = 0;
        let mut tries = 0;
        while answer.len() < n_api && tries < n_api * 4 {
            tries += 1;
            let (s, b, kp) = x.add_device(&format!("x{tries}"), "eu").await;
            assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
            let id = b["device"]["id"].as_str().expect("id").to_string();
            let node: uuid::Uuid = b["device"]["node"]["id"]
                .as_str()
                .expect("node")
                .parse()
                .expect("uuid");
            if holder_of.get(&node) == Some(&0) {
                // Held by the replica that serves the call: not what this measures. Kept
                // (placement is deterministic: freeing the seat would pick the same node).
                continue;
            }
            let t = Instant::now();
            let (s, r) = x
                .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
                .await;
            answer.push(t.elapsed());
            assert_eq!(s, reqwest::StatusCode::OK, "{r}");
            if r["node_ack"]["status"] == "acknowledged" {
                acked += 1;
            }
            if let Some(at) = wait_seen(&seen, (kp.public(), false), Duration::from_secs(30)).await
            {
                delta.push(at.saturating_duration_since(t));
            }
        }
        rows.push(summary(
            "cross-replica revoke: call on replica 1 -> answer with the ack of a node on another replica",
            answer,
        ));
        rows.push(summary(
            "cross-replica revoke: call -> delta applied on the node",
            delta,
        ));
        lines.push(format!("- cross-replica revokes acknowledged: {acked}"));
    }

    // 3. Fan-out: disable the user with a device on (nearly) every node.
    let t = Instant::now();
    let (s, r) = admin
        .patch(
            &format!("/api/v1/admin/users/{fan_id}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::OK, "{r}");
    let answered = t.elapsed();
    let mut arrivals = Vec::new();
    for k in &fan_keys {
        if let Some(at) = wait_seen(&seen, (*k, false), Duration::from_secs(60)).await {
            arrivals.push(at.saturating_duration_since(t));
        }
    }
    arrivals.sort();
    lines.push(format!(
        "- fan-out (disable a user with {} devices over the nodes): API answer {:.0} ms; removal applied on {} nodes: p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms",
        fan_keys.len(),
        ms(answered),
        arrivals.len(),
        ms(arrivals.get(arrivals.len() / 2).copied().unwrap_or_default()),
        ms(arrivals
            .get((arrivals.len() * 99 / 100).min(arrivals.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()),
        ms(arrivals.last().copied().unwrap_or_default()),
    ));

    // 5a. Health under 1 Hz probing, before the storm.
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    let degraded = nodes
        .as_array()
        .map(|ns| ns.iter().filter(|n| n["state"] == "degraded").count())
        .unwrap_or(0);
    let offline = nodes
        .as_array()
        .map(|ns| ns.iter().filter(|n| n["state"] == "offline").count())
        .unwrap_or(0);
    lines.push(format!(
        "- node states under 1 Hz probing after the load: {degraded} degraded, {offline} offline of {nodes_n}"
    ));

    // 4. Reconnect storm: SIGKILL the last replica.
    if replicas.len() > 1 {
        let victim = replicas.len() - 1;
        let held: Vec<usize> = holders
            .iter()
            .enumerate()
            .filter(|(_, (_, h))| *h == victim)
            .map(|(i, _)| i)
            .collect();
        let before: HashMap<usize, Instant> = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshots
            .clone();
        let t = Instant::now();
        if let Some(r) = replicas.pop() {
            drop(r); // kill + wait
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        let done = loop {
            let reconnected = {
                let s = seen.lock().unwrap_or_else(|e| e.into_inner());
                held.iter()
                    .filter(|i| {
                        s.snapshots
                            .get(i)
                            .is_some_and(|at| Some(at) != before.get(i) && *at > t)
                    })
                    .count()
            };
            if reconnected == held.len() || Instant::now() > deadline {
                break reconnected;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        lines.push(format!(
            "- reconnect storm: replica {} killed (SIGKILL) holding {} nodes; {done} reconnected to another replica and verified their snapshot in {:.1} s",
            victim + 1,
            held.len(),
            t.elapsed().as_secs_f64()
        ));
    }
    for (i, (cpu, rss)) in peaks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .enumerate()
    {
        lines.push(format!(
            "- replica {}: peak CPU {cpu:.0} % of one core, peak RSS {:.0} MB",
            i + 1,
            *rss as f64 / 1e6
        ));
    }
    println!("{}", lines.join("\n"));
    println!(
        "\n| measure (ms) | n | p50 | p90 | p99 | max |\n| --- | --- | --- | --- | --- | --- |"
    );
    println!("{}", rows.join("\n"));
}
