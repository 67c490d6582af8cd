//! Node benchmarks (report, never assert on time). Needs root; run `scripts/bench.sh node`
//! (or `cargo build --release --bins && cargo bench -p clawn-node --bench node`).
//!
//! 1. Revocation with N live peers (default 10,000) on a uapi node (wireguard-go): the
//!    API revoke call, which returns once the node acknowledged, i.e. after the peer left
//!    the interface and the state was saved; p50/p99 over M revokes (default 500), against
//!    a bare UAPI `remove` on the same interface.
//! 2. Full sync: P peers (default 100,000) in one signed snapshot from a stub control plane
//!    onto an empty interface, send → ack, against one raw UAPI `set` of the same peers on
//!    a fresh wireguard-go; and the agent's peak RSS (wireguard-go is another process).
//! 3. Throughput: iperf3 TCP for 10 s from a wireguard-go client to a node running the
//!    embedded backend, and to a node running wireguard-go (uapi), median of 3 each.
//!
//! Sizes: `CLAWN_BENCH_PEERS`, `CLAWN_BENCH_REVOKES`, `CLAWN_BENCH_SYNC_PEERS`,
//! `CLAWN_BENCH_IPERF_SECS`; `CLAWN_BENCH_ONLY=revoke|sync|throughput` runs one part.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use clawn_testkit::bench::{env_usize, pct};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use clawn_proto::keys::WgKeyPair;
use clawn_proto::node::{DesiredState, NodeMessage, NodePolicy, PeerSpec, ServerMessage, Snapshot};
use ed25519_dalek::SigningKey;
use reqwest::StatusCode;
use serde_json::json;
use support::*;
use uuid::Uuid;

/// One UAPI request on a socket path; returns the time it took.
fn uapi(sock: &str, cmd: &str) -> Duration {
    let t = Instant::now();
    let mut s = UnixStream::connect(sock).expect("uapi socket");
    s.write_all(cmd.as_bytes()).expect("write");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).expect("read") > 0, "uapi closed");
        if let Some(code) = line.trim().strip_prefix("errno=") {
            assert_eq!(code, "0", "uapi error for {}", &cmd[..cmd.len().min(80)]);
            break;
        }
    }
    t.elapsed()
}

fn peer_ip(i: usize) -> std::net::Ipv4Addr {
    // 10.0.0.0/14: index 0 is the node itself.
    std::net::Ipv4Addr::from(0x0a00_0000u32 + i as u32 + 2)
}

fn revocation(peers: usize, revokes: usize) {
    let mut lab = Lab::new(1, 0);
    // The agent's default interval: a telemetry read of every peer competes with applies.
    lab.telemetry_secs = 5;
    lab.enter("hub");
    lab.start_server(&[]);
    let rt = runtime();
    rt.block_on(async {
        let admin = admin(&lab).await;
        let (s, b) = admin
            .post(
                "/api/v1/admin/regions",
                json!({"code": "eu", "name": "EU", "cidr": "10.96.0.0/12", "node_prefix": 17, "dns": []}),
            )
            .await;
        assert!(s.is_success(), "{b}");
        lab.start_node(&admin, "n1", "eu", "uapi").await;
        // 1000 device slots per user at most: spread the peers over users.
        let mut users = Vec::new();
        for u in 0..peers.div_ceil(1000) {
            users.push(user(&lab, &admin, &format!("u{u}@lab.test"), 1000).await);
        }
        eprintln!("creating {peers} devices ...");
        let started = Instant::now();
        let mut ids: Vec<(usize, String)> = Vec::with_capacity(peers);
        let mut set = tokio::task::JoinSet::new();
        for i in 0..peers {
            let c = users[i / 1000].clone();
            set.spawn(async move {
                let (s, b, _) = c.add_device(&format!("d{i}"), "eu").await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
                (i / 1000, b["device"]["id"].as_str().expect("id").to_string())
            });
            if set.len() >= 8 {
                ids.push(set.join_next().await.expect("task").expect("join"));
            }
        }
        while let Some(r) = set.join_next().await {
            ids.push(r.expect("join"));
        }
        eprintln!("  {peers} devices in {:.1} s", started.elapsed().as_secs_f64());
        let sock = format!("/var/run/wireguard/{}.sock", lab.wg_if("n1"));
        // Wait until the node has them all (the last create's delta acknowledged).
        wait_for("node has every peer", Duration::from_secs(120), Duration::from_millis(200), || {
            let out = must(lab.cmd("n1", "wg").args(["show", &lab.wg_if("n1"), "peers"]));
            out.lines().count() >= peers
        });
        let mut api = Vec::with_capacity(revokes);
        for (u, id) in ids.iter().take(revokes) {
            let t = Instant::now();
            let (s, b) = users[*u].post(&format!("/api/v1/devices/{id}/revoke"), json!({})).await;
            let d = t.elapsed();
            assert_eq!(s, StatusCode::OK, "{b}");
            assert_eq!(b["node_ack"]["status"], "acknowledged", "{b}");
            api.push(d);
        }
        // Baseline: bare UAPI removes of peers that exist, on the same interface.
        let mut raw = Vec::with_capacity(revokes);
        for i in 0..revokes {
            let k = WgKeyPair::generate().public();
            let ip = std::net::Ipv4Addr::from(0x0a70_0000u32 + i as u32);
            uapi(&sock, &format!("set=1\npublic_key={}\nallowed_ip={ip}/32\n\n", k.to_hex()));
            raw.push(uapi(&sock, &format!("set=1\npublic_key={}\nremove=true\n\n", k.to_hex())));
        }
        api.sort();
        raw.sort();
        let metrics = node_metrics(1).await;
        println!("\n### Revocation, {peers} live peers, {revokes} revokes (uapi backend, wireguard-go)\n");
        println!("| measure | p50 ms | p99 ms | max ms |");
        println!("|---|---|---|---|");
        println!(
            "| API revoke → node ack (peer gone, state saved) | {:.2} | {:.2} | {:.2} |",
            pct(&api, 0.5),
            pct(&api, 0.99),
            pct(&api, 1.0)
        );
        println!(
            "| bare UAPI `remove` on the same interface | {:.2} | {:.2} | {:.2} |",
            pct(&raw, 0.5),
            pct(&raw, 0.99),
            pct(&raw, 1.0)
        );
        println!(
            "\nratio p50 {:.1}×, p99 {:.1}×",
            pct(&api, 0.5) / pct(&raw, 0.5),
            pct(&api, 0.99) / pct(&raw, 0.99)
        );
        for m in ["clawn_node_apply_seconds", "clawn_node_save_seconds"] {
            for l in metrics.lines().filter(|l| l.starts_with(m) && !l.contains("_bucket")) {
                println!("    {l}");
            }
        }
    });
}

fn vm_hwm_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

async fn wait_ack(rx: &mut tokio::sync::mpsc::Receiver<NodeMessage>, want: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(NodeMessage::Ack { version })) if version == want => return,
            Ok(Some(_)) => {}
            Ok(None) => panic!("stream ended"),
            Err(_) => panic!("no ack for version {want}"),
        }
    }
}

/// Full sync of `n` peers through the agent on `backend`, against one raw `set` of the
/// same peers on a fresh instance of the same WireGuard implementation.
fn full_sync(n: usize, backend: &'static str) {
    let mut lab = Lab::new(1, 0);
    lab.enter("hub");
    let rt = runtime();
    let node_id = Uuid::new_v4();
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let peers: Vec<PeerSpec> = (0..n)
        .map(|i| PeerSpec {
            public_key: WgKeyPair::generate().public(),
            allowed_ips: vec![format!("{}/32", peer_ip(i))],
            device_id: Uuid::new_v4(),
            class: Default::default(),
        })
        .collect();
    let mut cmd = String::from("set=1\n");
    for p in &peers {
        cmd.push_str(&format!(
            "public_key={}\nreplace_allowed_ips=true\nallowed_ip={}\n",
            p.public_key.to_hex(),
            p.allowed_ips[0]
        ));
    }
    cmd.push('\n');
    // The baseline first, on its own, then the agent (so neither runs beside the other's
    // peers).
    let raw = if backend == "uapi" {
        let raw_if = format!("{}r", lab.wg_if("n1"));
        let mut c = lab.cmd("n1", "wireguard-go");
        c.args(["-f", &raw_if]);
        lab.spawn("raw-wg", c);
        let sock = format!("/var/run/wireguard/{raw_if}.sock");
        wait_for(
            "raw socket",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || std::path::Path::new(&sock).exists(),
        );
        let kp = WgKeyPair::generate();
        uapi(
            &sock,
            &format!(
                "set=1\nprivate_key={}\nlisten_port=51821\n\n",
                kp.private_hex()
            ),
        );
        let took = uapi(&sock, &cmd);
        lab.stop("raw-wg", "TERM");
        took
    } else {
        // The same boringtun device the agent embeds, driven raw in this process.
        let name = format!("{}r", lab.wg_if("n1"));
        lab.in_ns("n1", move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt");
            rt.block_on(async move {
                let cfg = clawn_node::wireguard::IfaceConfig {
                    name,
                    key: WgKeyPair::generate(),
                    listen_port: 51821,
                    address: "10.4.0.1/14".parse().expect("net"),
                    userspace_bin: None,
                };
                let mut dev = clawn_node::wireguard::embedded::EmbeddedBackend::open(&cfg)
                    .await
                    .expect("embedded device");
                let t = Instant::now();
                dev.conn.raw(&cmd).await.expect("raw set");
                t.elapsed()
            })
        })
    };
    let (agent, rss) = rt.block_on(async {
        let iface = support::stub::iface("10.0.0.1/14", "10.0.0.0/14");
        let (out_tx, mut in_rx) = support::stub::start(node_id, key.clone(), iface.clone()).await;
        lab.join_node("n1", "x", backend);
        lab.run_node("n1");
        let snap = |version, peers: Vec<PeerSpec>| {
            ServerMessage::State(clawn_proto::sign::sign(
                &key,
                &DesiredState::Snapshot(Snapshot {
                    node_id,
                    version,
                    issued_at: 1,
                    interface: iface.clone(),
                    policy: NodePolicy::default(),
                    peers,
                }),
            ))
        };
        out_tx.send(snap(1, vec![])).await.expect("send");
        wait_ack(&mut in_rx, 1).await;
        let msg = snap(2, peers.clone());
        let t = Instant::now();
        out_tx.send(msg).await.expect("send");
        wait_ack(&mut in_rx, 2).await;
        (t.elapsed(), vm_hwm_kb(lab.pid("n1")))
    });
    if backend == "uapi" {
        let count = must(
            lab.cmd("n1", "wg")
                .args(["show", &lab.wg_if("n1"), "peers"]),
        )
        .lines()
        .count();
        assert_eq!(count, n, "the agent did not apply every peer");
    }
    println!("\n### Full sync, {n} peers onto an empty interface ({backend} backend)\n");
    println!("| measure | seconds |");
    println!("|---|---|");
    println!(
        "| agent: signed snapshot sent → ack (verify, validate, plan, apply, save) | {:.2} |",
        agent.as_secs_f64()
    );
    println!(
        "| one raw UAPI `set` of the same peers, same implementation | {:.2} |",
        raw.as_secs_f64()
    );
    let what = if backend == "uapi" {
        "agent only; wireguard-go is another process"
    } else {
        "agent including the embedded WireGuard and its peers"
    };
    println!(
        "\nratio {:.2}×; agent peak RSS (VmHWM) {:.0} MB ({what})",
        agent.as_secs_f64() / raw.as_secs_f64(),
        rss as f64 / 1024.0
    );
}

fn iperf(lab: &Lab, secs: usize) -> f64 {
    let out =
        must(
            lab.cmd("c1", "iperf3")
                .args(["-c", "10.100.0.1", "-t", &secs.to_string(), "-J"]),
        );
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf json");
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .expect("bps")
        / 1e6
}

fn throughput(secs: usize) {
    let mut results = Vec::new();
    for backend in ["embedded", "uapi"] {
        let mut lab = Lab::new(1, 1);
        lab.enter("hub");
        lab.start_server(&[]);
        let rt = runtime();
        let mbps = rt.block_on(async {
            let admin = eu_with_node(&mut lab, backend).await;
            let alice = user(&lab, &admin, "alice@lab.test", 1).await;
            let (_, d, k) = alice.add_device("bench", "eu").await;
            // Tunnel to the node only: iperf3 talks to its tunnel address.
            let conf = with_key(d["config_text"].as_str().expect("c"), &k)
                .replace("AllowedIPs = 0.0.0.0/0", "AllowedIPs = 10.100.0.0/16");
            lab.client_up("c1", &conf);
            lab.ping_until_ok("c1", "10.100.0.1", Duration::from_secs(20));
            let mut srv = lab.cmd("n1", "iperf3");
            srv.args(["-s", "-B", "10.100.0.1"]);
            lab.spawn("iperf-server", srv);
            let sa: std::net::SocketAddr = "10.100.0.1:5201".parse().expect("addr");
            lab.in_ns("c1", move || {
                wait_for(
                    "iperf3 server",
                    Duration::from_secs(10),
                    Duration::from_millis(20),
                    || {
                        std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200))
                            .is_ok()
                    },
                )
            });
            let mut runs: Vec<f64> = (0..3).map(|_| iperf(&lab, secs)).collect();
            runs.sort_by(f64::total_cmp);
            eprintln!("  {backend}: {runs:?} Mbit/s");
            runs[1]
        });
        results.push((backend, mbps));
    }
    println!("\n### Throughput, iperf3 TCP {secs} s, wireguard-go client → node (median of 3)\n");
    println!("| node backend | Mbit/s |");
    println!("|---|---|");
    for (b, m) in &results {
        println!("| {b} | {m:.0} |");
    }
    println!(
        "\nratio embedded / wireguard-go: {:.2}",
        results[0].1 / results[1].1
    );
}

/// Runs one part on its own thread: it enters the lab's namespaces, the main thread never
/// does (so the lab's clean-up, which kills every process in them, never finds us).
fn part(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("benchmark part failed");
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let only = std::env::var("CLAWN_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "revoke" {
        revocation(
            env_usize("CLAWN_BENCH_PEERS", 10_000),
            env_usize("CLAWN_BENCH_REVOKES", 500),
        );
    }
    if only.is_empty() || only == "sync" {
        // wireguard-go holds at most 65,536 peers (MaxPeers); the embedded one has no cap.
        let n = env_usize("CLAWN_BENCH_SYNC_PEERS", 100_000);
        let go = n.min(65_000);
        part(move || full_sync(go, "uapi"));
        part(move || full_sync(n, "embedded"));
    }
    if only.is_empty() || only == "throughput" {
        let secs = env_usize("CLAWN_BENCH_IPERF_SECS", 10);
        part(move || throughput(secs));
    }
}
