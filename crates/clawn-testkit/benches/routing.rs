//! Routing benchmark (not a test; it reports, it never asserts on time).
//!
//! 1. Placement cost: device create → delta at the chosen node, p50/p99, in a region of
//!    1 node and in a region of 50 nodes (every create scores every eligible node).
//! 2. Failover: N devices (default 2,000) on one node; the node's stream ends; with the
//!    failover delay at 0, the time from the disconnect until each device's peer arrives
//!    at one of the two other nodes of the region (p50/p99/max), and the evacuation rate.
//!
//! SQLite, and PostgreSQL when `CLAWN_TEST_PG_URL` is set. Size: `CLAWN_BENCH_FAILOVER`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use clawn_proto::WgPublicKey;
use clawn_testkit::bench::{env_usize, summary};
use clawn_testkit::node::{Applied, ProtoNode};
use clawn_testkit::{Client, Db, TestServer};
use serde_json::json;
use tokio::sync::mpsc;

/// Applies and acks everything a node gets; reports each added key with its arrival time.
fn drive(mut node: ProtoNode, tx: mpsc::UnboundedSender<(WgPublicKey, Instant)>) {
    tokio::spawn(async move {
        while let Ok(applied) = node.next_state(Duration::from_secs(3600)).await {
            let now = Instant::now();
            if let Applied::Delta { added, .. } = applied {
                for k in added {
                    let _ = tx.send((k, now));
                }
            }
        }
    });
}

async fn bench_user(srv: &TestServer, admin: &Client, email: &str) -> Client {
    let (_, uid) = srv.user(admin, email, 1).await;
    sqlx::query("UPDATE users SET device_slots = 1000000 WHERE id = $1")
        .bind(&uid)
        .execute(srv.app.store.pool())
        .await
        .expect("slots");
    srv.login(email, clawn_testkit::USER_PASSWORD).await
}

async fn region(admin: &Client, code: &str, cidr: &str, prefix: u8) {
    let (s, r) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": code, "name": code, "cidr": cidr, "node_prefix": prefix}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{r}");
}

async fn creates(
    user: &Client,
    region: &str,
    n: usize,
    events: &mut mpsc::UnboundedReceiver<(WgPublicKey, Instant)>,
) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    let mut early: HashSet<WgPublicKey> = HashSet::new();
    for i in 0..n {
        let t0 = Instant::now();
        let (s, b, kp) = user.add_device(&format!("{region}{i}"), region).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        if !early.remove(&kp.public()) {
            loop {
                let (k, t) = tokio::time::timeout(Duration::from_secs(30), events.recv())
                    .await
                    .expect("delta within 30 s")
                    .expect("nodes alive");
                if k == kp.public() {
                    lat.push(t - t0);
                    break;
                }
                early.insert(k);
            }
        } else {
            lat.push(t0.elapsed());
        }
    }
    lat
}

async fn run(db: Db, n: usize) -> Vec<String> {
    let srv = TestServer::start_with(db, |c| {
        c.health.failover_delay_secs = 0;
        c.placement.priority_reserve_percent = 0;
    })
    .await;
    let admin = srv.admin().await;
    let user = bench_user(&srv, &admin, "bench@example.com").await;
    let mut out = Vec::new();

    // 1. Placement cost: one node vs fifty.
    region(&admin, "one", "10.0.0.0/12", 16).await;
    region(&admin, "many", "10.16.0.0/12", 20).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    drive(srv.node(&admin, "one", 1_000_000).await, tx.clone());
    for _ in 0..50 {
        drive(srv.node(&admin, "many", 1_000_000).await, tx.clone());
    }
    let per = n.min(1000);
    out.push(summary(
        "create → delta, region of 1 node",
        creates(&user, "one", per, &mut events).await,
    ));
    out.push(summary(
        "create → delta, region of 50 nodes",
        creates(&user, "many", per, &mut events).await,
    ));

    // 2. Failover of n devices off one node.
    region(&admin, "eu", "10.32.0.0/11", 14).await;
    let mut a = srv.node(&admin, "eu", 1_000_000).await;
    let (atx, mut aev) = mpsc::unbounded_channel();
    let mut keys = Vec::with_capacity(n);
    let mut early = HashSet::new();
    for i in 0..n {
        let (s, b, kp) = user.add_device(&format!("eu{i}"), "eu").await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        keys.push(kp.public());
        // Keep the node in step (it acks), so its stream stays healthy.
        if !early.remove(&kp.public()) {
            loop {
                let applied = a.next_state(Duration::from_secs(30)).await.expect("delta");
                if let Applied::Delta { added, .. } = applied {
                    let hit = added.contains(&kp.public());
                    early.extend(added.into_iter().filter(|k| *k != kp.public()));
                    if hit {
                        break;
                    }
                }
            }
        }
    }
    drive(srv.node(&admin, "eu", 1_000_000).await, atx.clone());
    drive(srv.node(&admin, "eu", 1_000_000).await, atx.clone());
    let t0 = Instant::now();
    a.disconnect().await;
    let mut want: HashSet<WgPublicKey> = keys.iter().copied().collect();
    let mut lat = Vec::with_capacity(n);
    while !want.is_empty() {
        let (k, t) = tokio::time::timeout(Duration::from_secs(120), aev.recv())
            .await
            .expect("every device moves within 120 s")
            .expect("nodes alive");
        if want.remove(&k) {
            lat.push(t - t0);
        }
    }
    let total = lat.iter().max().copied().unwrap_or_default();
    out.push(summary(
        &format!("node gone → device's peer at another node ({n} devices)"),
        lat,
    ));
    out.push(format!(
        "| evacuation rate | {n} | {:.0} devices/s | | | {:.2} s total |",
        n as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    ));
    srv.stop().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_usize("CLAWN_BENCH_FAILOVER", 2_000);
    let mut dbs = vec![Db::Sqlite];
    if std::env::var("CLAWN_TEST_PG_URL").is_ok() {
        dbs.push(Db::Postgres);
    } else {
        eprintln!("CLAWN_TEST_PG_URL not set: PostgreSQL skipped (scripts/bench.sh starts one)");
    }
    for db in dbs {
        eprintln!("== {db:?}: placement and failover of {n} devices");
        println!(
            "\n### {db:?}\n\n| measurement | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|"
        );
        for line in run(db, n).await {
            println!("{line}");
        }
    }
}
