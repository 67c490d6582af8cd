//! Control-plane replicas end to end: PostgreSQL, three `clawn-server` replicas and
//! HAProxy in the lab's hub namespace; two real node agents and a wireguard-go client.
//!
//! * Rolling restart of every replica, one at a time (SIGTERM, start again), while the
//!   client pings through its tunnel: no ping is lost, the node's WireGuard interface is
//!   never torn down, and a revoke made while a replica is down is acknowledged by the
//!   node.
//! * SIGKILL of the replica that runs the monitor: another replica takes the monitor, and
//!   a node that dies afterwards still fails over (its device moves to the other node).
//!
//! Needs root (namespaces, TUN), haproxy and PostgreSQL's server binaries (scripts/test.sh
//! installs both) and the workspace binaries (`cargo build --workspace --bins`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use clawn_testkit::Client;
use reqwest::StatusCode;
use serde_json::json;
use support::*;

const REPLICAS: [u16; 3] = [8081, 8082, 8083];
/// PostgreSQL inside the hub namespace (its own loopback: no clash with the host's).
const PG_PORT: u16 = 5432;

fn pg_script() -> String {
    format!(
        "{}/../../scripts/pg-test-cluster.sh",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Stops the lab's PostgreSQL (the lab's teardown would kill it anyway).
struct Postgres(std::path::PathBuf);

impl Postgres {
    /// Starts a cluster in the namespace the calling thread entered; returns its URL.
    fn start(lab: &Lab) -> (Self, String) {
        let dir = lab.dir.join("pg");
        must(
            Command::new("bash")
                .arg(pg_script())
                .arg("start")
                .arg(&dir)
                .arg(PG_PORT.to_string()),
        );
        let base = format!("postgres://clawn@127.0.0.1:{PG_PORT}");
        must(
            Command::new(
                std::fs::read_dir("/usr/lib/postgresql")
                    .expect("postgresql installed")
                    .flatten()
                    .map(|e| e.path().join("bin/psql"))
                    .find(|p| p.exists())
                    .expect("psql"),
            )
            .args([&format!("{base}/postgres"), "-c", "CREATE DATABASE clawn"]),
        );
        (Self(dir), format!("{base}/clawn"))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(pg_script())
            .arg("stop")
            .arg(&self.0)
            .status();
    }
}

fn replica_label(port: u16) -> String {
    format!("r{port}")
}

/// Starts (or restarts, same data directory) the replica on `port` in the hub.
fn start_replica(lab: &mut Lab, port: u16, db: &str) {
    let data = lab.dir.join(format!("server-{port}"));
    std::fs::create_dir_all(&data).expect("data dir");
    // Every replica signs with the same key: copied from the first one's data directory.
    let first = lab
        .dir
        .join(format!("server-{}", REPLICAS[0]))
        .join("signing.key");
    if port != REPLICAS[0] && !data.join("signing.key").exists() {
        // The first replica listens before it has written its key: wait for the file.
        wait_for(
            "the first replica's signing key",
            Duration::from_secs(30),
            Duration::from_millis(25),
            || first.exists(),
        );
        std::fs::copy(&first, data.join("signing.key")).expect("copy the signing key");
    }
    let health = lab.dir.join("server-health.toml");
    std::fs::write(
        &health,
        "[health]\ncpu_percent = 100.0\nlatency_floor_ms = 1000.0\n",
    )
    .expect("write server config");
    let mut c = Command::new(bin("clawn-server"));
    c.arg("--config")
        .arg(&health)
        .args(["--listen", &format!("{HUB_IP}:{port}")])
        .args(["--public-url", &lab.server_url()])
        .arg("--data-dir")
        .arg(&data)
        .args(["--database-url", db])
        .args([
            "--client-allowed-ips",
            "0.0.0.0/0",
            "--ack-timeout-ms",
            "5000",
        ])
        // A dead node fails over within seconds, so the leader-kill part stays short.
        .args([
            "--offline-grace-secs",
            "3",
            "--failover-delay-secs",
            "3",
            "--node-lease-secs",
            "5",
        ])
        .env("CLAWN_ADMIN_EMAIL", ADMIN_EMAIL)
        .env("CLAWN_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CLAWN_LOG", "info,clawn_server=debug");
    lab.spawn(&replica_label(port), c);
    let sa: SocketAddr = format!("{HUB_IP}:{port}").parse().expect("addr");
    wait_for(
        &format!("replica {port} listening"),
        Duration::from_secs(30),
        Duration::from_millis(25),
        || std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok(),
    );
}

/// HAProxy on the lab's server address, active health checks on `/healthz`, requests
/// refused by a stopped replica redispatched to another.
fn start_haproxy(lab: &mut Lab) {
    let servers: String = REPLICAS
        .iter()
        .map(|p| format!("    server r{p} {HUB_IP}:{p} check inter 300ms fall 1 rise 2\n"))
        .collect();
    let cfg = format!(
        "global\n    maxconn 2000\n\
         defaults\n    mode http\n    timeout connect 1s\n    timeout client 1h\n    timeout server 1h\n    \
         timeout tunnel 1h\n    retries 3\n    option redispatch\n\
         frontend clawn\n    bind {HUB_IP}:{SERVER_PORT}\n    default_backend replicas\n\
         backend replicas\n    balance roundrobin\n    option httpchk GET /healthz\n    \
         http-check expect status 200\n{servers}"
    );
    let path = lab.dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).expect("haproxy config");
    must(Command::new("haproxy").arg("-c").arg("-f").arg(&path));
    let mut c = Command::new("haproxy");
    c.arg("-db").arg("-f").arg(&path);
    lab.spawn("haproxy", c);
    let sa: SocketAddr = format!("{HUB_IP}:{SERVER_PORT}").parse().expect("addr");
    wait_for(
        "haproxy listening",
        Duration::from_secs(10),
        Duration::from_millis(25),
        || std::net::TcpStream::connect_timeout(&sa, Duration::from_millis(200)).is_ok(),
    );
}

/// `GET /healthz` of one replica, directly.
async fn health(port: u16) -> Option<serde_json::Value> {
    let (s, body) = Client::new(&format!("http://{HUB_IP}:{port}"), None)
        .get("/healthz")
        .await;
    (s == StatusCode::OK).then_some(body)
}

/// The replica that reports running the monitor, waiting (bounded) until exactly one
/// of `among` does.
async fn leader(among: &[u16], within: Duration) -> u16 {
    let retry = clawn_testkit::Retry::new(
        "exactly one replica runs the monitor",
        within,
        Duration::from_millis(100),
    );
    loop {
        let mut leading = Vec::new();
        for &p in among {
            if health(p).await.is_some_and(|h| h["monitor"] == true) {
                leading.push(p);
            }
        }
        if let [one] = leading[..] {
            return one;
        }
        retry.again(format!("leading: {leading:?}")).await;
    }
}

/// The interface index of the node's WireGuard interface (a teardown gives a new one).
fn ifindex(lab: &Lab, short: &str) -> String {
    must(
        lab.cmd(short, "cat")
            .arg(format!("/sys/class/net/{}/ifindex", lab.wg_if(short))),
    )
    .trim()
    .to_string()
}

/// "N packets transmitted, M received" from a ping log.
fn ping_summary(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary in:\n{log}"));
    let num = |word: &str| -> u64 {
        let words: Vec<&str> = line.split([',', ' ']).filter(|w| !w.is_empty()).collect();
        let i = words
            .iter()
            .position(|w| *w == word)
            .unwrap_or_else(|| panic!("no '{word}' in {line}"));
        words[i - 1].parse().expect("count")
    };
    (num("packets"), num("received"))
}

#[test]
fn replicas_behind_haproxy_survive_a_rolling_restart_and_a_killed_leader() {
    assert!(
        run(Command::new("sh").args(["-c", "command -v haproxy"]))
            .status
            .success(),
        "haproxy is not installed (scripts/test.sh installs it)"
    );
    let mut lab = Lab::new(2, 1);
    lab.enter("hub");
    let (_pg, db) = Postgres::start(&lab);
    for port in REPLICAS {
        start_replica(&mut lab, port, &db);
    }
    start_haproxy(&mut lab);
    let rt = runtime();
    rt.block_on(async {
        let admin = admin(&lab).await;
        region(&admin, "eu", "10.100.0.0/16").await;
        lab.start_node(&admin, "n1", "eu", "embedded").await;
        lab.start_node(&admin, "n2", "eu", "embedded").await;
        let alice = user(&lab, &admin, "alice@lab.test", 2).await;
        let (s, created, key) = alice.add_device("laptop", "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{created}");
        let id = created["device"]["id"].as_str().expect("id").to_string();
        let (s, spare, _) = alice.add_device("spare", "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{spare}");
        let spare_id = spare["device"]["id"].as_str().expect("id").to_string();

        // The client's tunnel, and the node that serves it.
        let (s, nodes) = admin.get("/api/v1/admin/nodes").await;
        assert_eq!(s, StatusCode::OK, "{nodes}");
        let node_id = created["device"]["node"]["id"]
            .as_str()
            .expect("node")
            .to_string();
        let serving = nodes
            .as_array()
            .expect("nodes")
            .iter()
            .find(|n| n["id"] == node_id.as_str())
            .expect("serving node listed");
        let short = if serving["name"] == format!("n1-{}", lab.tag).as_str() {
            "n1"
        } else {
            "n2"
        };
        let node_tunnel_ip = first_host(serving["pool"].as_str().expect("pool"));
        lab.client_up(
            "c1",
            &with_key(created["config_text"].as_str().expect("config"), &key),
        );
        lab.ping_until_ok("c1", &node_tunnel_ip, Duration::from_secs(20));
        let index_before = ifindex(&lab, short);
        let mut ping = lab.cmd("c1", "ping");
        ping.args(["-i", "0.05", "-W", "1", &node_tunnel_ip]);
        lab.spawn("ping", ping);
        wait_for(
            "the tunnel ping answers before the restart starts",
            Duration::from_secs(10),
            Duration::from_millis(10),
            || lab.log("ping").contains("bytes from"),
        );

        // Rolling restart, one replica at a time.
        for (i, port) in REPLICAS.into_iter().enumerate() {
            let label = replica_label(port);
            lab.stop(&label, "TERM");
            if i == 1 {
                // A revoke while a replica is down lands and is acknowledged, once the
                // nodes it held have reconnected to the others (until then the honest
                // answer is `offline`).
                admin
                    .get_until("/api/v1/admin/nodes", Duration::from_secs(30), |b| {
                        b.as_array().is_some_and(|ns| {
                            ns.len() == 2 && ns.iter().all(|n| n["connected"] == true)
                        })
                    })
                    .await;
                let (s, r) = alice
                    .post(&format!("/api/v1/devices/{spare_id}/revoke"), json!({}))
                    .await;
                assert_eq!(s, StatusCode::OK, "{r}");
                assert_eq!(r["node_ack"]["status"], "acknowledged", "{r}");
            }
            start_replica(&mut lab, port, &db);
            let retry = clawn_testkit::Retry::new(
                format!("replica {port} healthy again"),
                Duration::from_secs(20),
                Duration::from_millis(100),
            );
            while health(port).await.is_none() {
                retry.again("not yet").await;
            }
            // Both nodes are connected again (to whichever replica) before the next one.
            admin
                .get_until("/api/v1/admin/nodes", Duration::from_secs(30), |b| {
                    b.as_array().is_some_and(|ns| {
                        ns.len() == 2
                            && ns
                                .iter()
                                .all(|n| n["connected"] == true && n["state"] == "online")
                    })
                })
                .await;
        }
        // Let the last pings of the restart come back, then read the tally.
        lab.ping_until_ok("c1", &node_tunnel_ip, Duration::from_secs(5));
        lab.stop("ping", "INT");
        let (sent, received) = ping_summary(&lab.log("ping"));
        eprintln!("rolling restart: {sent} pings sent, {received} answered");
        assert!(sent > 0, "the ping ran through the restart");
        assert_eq!(sent, received, "pings lost during the rolling restart");
        assert_eq!(
            ifindex(&lab, short),
            index_before,
            "the node's WireGuard interface was torn down"
        );

        // Kill -9 the leader: another replica takes the monitor.
        let old = leader(&REPLICAS, Duration::from_secs(15)).await;
        let killed = Instant::now();
        lab.stop(&replica_label(old), "KILL");
        let rest: Vec<u16> = REPLICAS.into_iter().filter(|p| *p != old).collect();
        let new = leader(&rest, Duration::from_secs(15)).await;
        eprintln!(
            "leader {old} killed; {new} runs the monitor {:.1} s later",
            killed.elapsed().as_secs_f64()
        );

        // A node that dies now still fails over: its device moves to the other node.
        let died = Instant::now();
        lab.stop(short, "KILL");
        let moved = alice
            .get_until(
                &format!("/api/v1/devices/{id}"),
                Duration::from_secs(45),
                |v| v["node"]["id"].as_str().is_some_and(|n| n != node_id),
            )
            .await;
        assert_eq!(moved["state"], "active", "{moved}");
        eprintln!(
            "node {short} killed; device moved {:.1} s later",
            died.elapsed().as_secs_f64()
        );
    });
}
