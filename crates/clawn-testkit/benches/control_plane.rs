//! Control-plane benchmark (not a test; it reports, it never asserts on time).
//!
//! 1. Device create -> the node's version bumped and the delta received by a connected
//!    protocol client: p50/p99 over N sequential creates (default 10,000).
//! 2. Creates per second with 8 concurrent clients.
//! 3. Revoke -> delta received by the protocol client, with the live peers of step 1 and 2
//!    on the node: p50/p99 over M revokes (default 1,000); also the API round trip, which
//!    includes waiting for the node's ack.
//!
//! Runs on SQLite, and on PostgreSQL when `CLAWN_TEST_PG_URL` is set (scripts/bench.sh
//! starts one). Sizes: `CLAWN_BENCH_CREATES`, `CLAWN_BENCH_REVOKES`.

use clawn_testkit::bench::{env_usize, summary};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use clawn_proto::WgPublicKey;
use clawn_testkit::node::Applied;
use clawn_testkit::{Client, Db, TestServer};
use serde_json::json;
use tokio::sync::mpsc;

/// Node events: each key seen added or removed, with the time it arrived.
type Events = mpsc::UnboundedReceiver<(WgPublicKey, bool, Instant)>;

async fn wait_key(
    events: &mut Events,
    pending: &mut HashMap<(WgPublicKey, bool), Instant>,
    key: WgPublicKey,
    added: bool,
) -> Instant {
    if let Some(t) = pending.remove(&(key, added)) {
        return t;
    }
    loop {
        let (k, a, t) = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .expect("node receives the change within 30 s")
            .expect("node task alive");
        if k == key && a == added {
            return t;
        }
        pending.insert((k, a), t);
    }
}

async fn run(db: Db, creates: usize, revokes: usize) -> Vec<String> {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    // One region with a /12 sub-pool per node: room for a million peers on one node.
    let (st, r) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": "eu", "name": "EU", "cidr": "10.0.0.0/8", "node_prefix": 12}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{r}");
    let mut node = srv.node(&admin, "eu", 1_000_000).await;
    let (_, uid) = srv.user(&admin, "bench@example.com", 1).await;
    sqlx::query("UPDATE users SET device_slots = 1000000 WHERE id = $1")
        .bind(&uid)
        .execute(srv.app.store.pool())
        .await
        .expect("slots");
    let user = srv
        .login("bench@example.com", clawn_testkit::USER_PASSWORD)
        .await;
    // Node task: apply and ack everything, report each key's arrival.
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut twin = node.twin();
    tokio::spawn(async move {
        loop {
            let Ok(applied) = node.next_state(Duration::from_secs(3600)).await else {
                return;
            };
            let now = Instant::now();
            if let Applied::Delta { added, removed, .. } = applied {
                for k in removed {
                    let _ = tx.send((k, false, now));
                }
                for k in added {
                    let _ = tx.send((k, true, now));
                }
            }
        }
    });
    let mut pending = HashMap::new();
    let mut out = Vec::new();

    // 1. Sequential creates.
    let mut lat = Vec::with_capacity(creates);
    let mut ids = Vec::with_capacity(creates);
    let started = Instant::now();
    for i in 0..creates {
        let t0 = Instant::now();
        let (s, b, kp) = user.add_device(&format!("d{i}"), "eu").await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
        let t1 = wait_key(&mut events, &mut pending, kp.public(), true).await;
        lat.push(t1 - t0);
        ids.push((
            b["device"]["id"].as_str().unwrap_or_default().to_string(),
            kp.public(),
        ));
        if (i + 1) % 2000 == 0 {
            eprintln!(
                "  {db:?}: {} creates ({:.0}/s)",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    out.push(summary("create → delta at node (sequential)", lat));

    // 2. 8 concurrent clients, each its own user (one user's creates serialise on that
    //    user's slot counter by design, which is not what a busy server sees).
    let per = (creates / 8).clamp(1, 1000);
    let mut clients = Vec::with_capacity(8);
    for c in 0..8 {
        let email = format!("bench{c}@example.com");
        let (_, uid) = srv.user(&admin, &email, 1).await;
        sqlx::query("UPDATE users SET device_slots = 1000000 WHERE id = $1")
            .bind(&uid)
            .execute(srv.app.store.pool())
            .await
            .expect("slots");
        clients.push(srv.login(&email, clawn_testkit::USER_PASSWORD).await);
    }
    let t0 = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, user)| {
            let user: Client = user;
            tokio::spawn(async move {
                let mut keys = Vec::with_capacity(per);
                for i in 0..per {
                    let (s, b, kp) = user.add_device(&format!("c{c}-{i}"), "eu").await;
                    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
                    keys.push(kp.public());
                }
                keys
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    let api_done = t0.elapsed();
    for k in &all {
        wait_key(&mut events, &mut pending, *k, true).await;
    }
    let pushed = t0.elapsed();
    out.push(format!(
        "| creates/s, 8 concurrent clients, 8 users ({} creates) | API: {:.0}/s | pushed to node: {:.0}/s |",
        all.len(),
        all.len() as f64 / api_done.as_secs_f64(),
        all.len() as f64 / pushed.as_secs_f64()
    ));

    // 3. Revokes with the live peers in place.
    let live = ids.len() + all.len();
    let mut to_node = Vec::with_capacity(revokes);
    let mut api = Vec::with_capacity(revokes);
    let mut acked = 0;
    for (id, key) in ids.iter().take(revokes) {
        let t0 = Instant::now();
        let (s, b) = user
            .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
            .await;
        let t_api = t0.elapsed();
        assert_eq!(s, reqwest::StatusCode::OK, "{b}");
        if b["node_ack"]["status"] == "acknowledged" {
            acked += 1;
        }
        let t1 = wait_key(&mut events, &mut pending, *key, false).await;
        to_node.push(t1 - t0);
        api.push(t_api);
    }
    out.push(summary(
        &format!("revoke → delta at node ({live} live peers)"),
        to_node,
    ));
    out.push(summary("revoke API round trip incl. node ack", api));
    out.push(format!(
        "| revokes acknowledged by the node within the bound | {acked}/{} |",
        revokes.min(ids.len())
    ));
    // 4. A full snapshot with every live peer, as a reconnecting node gets it: request to
    //    verified and applied (signature over the whole payload included).
    let mut snaps = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        twin.connect().await.expect("connect");
        let applied = twin
            .next_state(Duration::from_secs(60))
            .await
            .expect("snapshot");
        snaps.push(t0.elapsed());
        assert!(matches!(applied, Applied::Snapshot { .. }));
        twin.disconnect().await;
    }
    out.push(summary(
        &format!(
            "reconnect → full snapshot verified ({} live peers)",
            twin.peers.len()
        ),
        snaps,
    ));
    srv.stop().await;
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let creates = env_usize("CLAWN_BENCH_CREATES", 10_000);
    let revokes = env_usize("CLAWN_BENCH_REVOKES", 1_000);
    let mut dbs = vec![Db::Sqlite];
    if std::env::var("CLAWN_TEST_PG_URL").is_ok() {
        dbs.push(Db::Postgres);
    } else {
        eprintln!("CLAWN_TEST_PG_URL not set: PostgreSQL skipped (scripts/bench.sh starts one)");
    }
    for db in dbs {
        eprintln!("== {db:?}: {creates} creates, {revokes} revokes");
        println!(
            "\n### {db:?}\n\n| measurement | n | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|"
        );
        for line in run(db, creates, revokes).await {
            println!("{line}");
        }
    }
}
