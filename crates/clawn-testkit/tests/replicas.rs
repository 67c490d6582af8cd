//! Control-plane replicas on one PostgreSQL database: any replica serves any request,
//! a node's stream may live on another replica than the API call that changes it, and
//! only one replica runs the monitor, fenced by its term.

use std::time::Duration;

use clawn_testkit::node::Applied;
use clawn_testkit::{Db, ProtoNode, Retry, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// Raw SQL for set-up the API refuses (a node that went silent long ago).
async fn pg(url: &str) -> sqlx::postgres::PgConnection {
    use sqlx::Connection as _;
    sqlx::postgres::PgConnection::connect(url)
        .await
        .expect("connect to the test database")
}

#[tokio::test]
async fn a_change_on_one_replica_reaches_a_node_held_by_another_and_is_acknowledged() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.replica().await;
    let admin = a.admin().await;
    a.region(&admin, "eu", "10.100.0.0/16").await;
    let (_, t) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    let mut node = ProtoNode::enroll(&a.url, t["token"].as_str().expect("token"))
        .await
        .expect("enroll on A");
    // The node's stream lives on B; every API call below goes to A.
    node.use_server(&b.url);
    node.connect().await.expect("connect to B");
    assert_eq!(
        node.next_state(Duration::from_secs(5))
            .await
            .expect("snapshot from B"),
        Applied::Snapshot {
            version: 1,
            peers: 0
        }
    );
    // A sees the node connected although it holds no stream of it.
    let nodes = admin
        .get_until("/api/v1/admin/nodes", Duration::from_secs(5), |n| {
            n[0]["connected"] == true
        })
        .await;
    assert_eq!(nodes[0]["state"], "online");

    let (alice, _) = a.user(&admin, "alice@example.com", 2).await;
    let (_, d, kp) = alice.add_device("laptop", "eu").await;
    assert_eq!(
        node.next_state(Duration::from_secs(5))
            .await
            .expect("add pushed through B"),
        Applied::Delta {
            from: 1,
            to: 2,
            added: vec![kp.public()],
            removed: vec![]
        }
    );
    // Revoke on A: B's node applies and acks; A answers `acknowledged`.
    let id = d["device"]["id"].as_str().expect("id").to_string();
    let alice2 = alice.clone();
    let revoke = tokio::spawn(async move {
        alice2
            .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
            .await
    });
    assert_eq!(
        node.next_state(Duration::from_secs(5))
            .await
            .expect("removal pushed through B"),
        Applied::Delta {
            from: 2,
            to: 3,
            added: vec![],
            removed: vec![kp.public()]
        }
    );
    let (s, r) = revoke.await.expect("join");
    assert_eq!(
        (
            s,
            r["node_ack"]["status"].as_str(),
            r["node_ack"]["version"].as_u64()
        ),
        (StatusCode::OK, Some("acknowledged"), Some(3)),
        "{r}"
    );

    // Rolling restart: the node moves to A while its old stream on B is still open; when
    // B's stream ends afterwards, the node must stay online (B no longer holds it).
    let mut moved = node.twin();
    moved.use_server(&a.url);
    moved.connect().await.expect("connect to A");
    moved
        .next_state(Duration::from_secs(5))
        .await
        .expect("snapshot from A");
    node.disconnect().await;
    let retry = Retry::new(
        "B's old stream ends",
        Duration::from_secs(5),
        Duration::from_millis(20),
    );
    while b.app.hub.is_connected(node.node_id) {
        retry.again("still held on B").await;
    }
    b.stop().await;
    let (bob, _) = a.user(&admin, "bob@example.com", 1).await;
    let (_, _, kb) = bob.add_device("phone", "eu").await;
    let added = moved
        .next_state(Duration::from_secs(5))
        .await
        .expect("add after the move");
    assert!(
        matches!(&added, Applied::Delta { added, .. } if added == &vec![kb.public()]),
        "{added:?}"
    );
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(
        (nodes[0]["state"].as_str(), nodes[0]["connected"].as_bool()),
        (Some("online"), Some(true)),
        "the late close on B must not mark the node offline: {nodes}"
    );
    moved.disconnect().await;
    a.stop().await;
}

#[tokio::test]
async fn one_monitor_at_a_time_and_a_deposed_one_cannot_write() {
    let a = TestServer::start(Db::Postgres).await;
    let b = a.replica().await;
    // One of the two takes the monitor.
    let retry = Retry::new(
        "a replica takes the monitor",
        Duration::from_secs(10),
        Duration::from_millis(100),
    );
    let first = loop {
        let lease = a.app.store.monitor_lease().await.expect("lease");
        if lease.holder.is_some() && a.app.store.monitor_lock_pid().await.expect("pid").is_some() {
            break lease;
        }
        retry.again(format!("{lease:?}")).await;
    };
    let (leader, follower) = if first.holder.as_deref() == Some(&a.app.replica_id.to_string()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    // Each replica says over /healthz whether it runs the monitor: exactly the holder.
    let retry = Retry::new(
        "the holder reports the monitor, the other does not",
        Duration::from_secs(5),
        Duration::from_millis(50),
    );
    loop {
        let (_, l) = leader.anon().get("/healthz").await;
        let (_, f) = follower.anon().get("/healthz").await;
        if l["monitor"] == true && f["monitor"] == false {
            assert_eq!(l["replica"], leader.app.replica_id.to_string());
            break;
        }
        retry.again(format!("leader {l}, follower {f}")).await;
    }

    // A node that went silent long ago, online in the database.
    let admin = a.admin().await;
    let node = a.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    drop(node);
    let now = clawn_proto::time::now_millis();
    let mut conn = pg(&a.app.config.database_url).await;
    sqlx::query("UPDATE nodes SET state = 'online', last_heartbeat = $1, stream_conn = NULL")
        .bind(now - 600_000)
        .execute(&mut conn)
        .await
        .expect("age the node");

    // The leader is cut off (its lock session dropped) but does not know yet: it still
    // holds a handle fenced with its old term.
    let stale = leader.app.store.fenced(first.term);
    let pid = leader
        .app
        .store
        .monitor_lock_pid()
        .await
        .expect("pid")
        .expect("the leader holds the lock");
    assert!(a.app.store.terminate_backend(pid).await.expect("terminate"));
    let retry = Retry::new(
        "the other replica takes the monitor with a new term",
        Duration::from_secs(15),
        Duration::from_millis(100),
    );
    let second = loop {
        let lease = a.app.store.monitor_lease().await.expect("lease");
        if lease.term > first.term {
            break lease;
        }
        retry.again(format!("{lease:?}")).await;
    };
    // Either replica may win the new term (the old leader reconnects too); what matters
    // is that the old term is dead.
    assert!(second.holder.is_some());

    // The stale leader's pass is refused before it writes anything.
    let err = clawn_server::monitor::step(&leader.app, &stale, now, now - 60_000)
        .await
        .expect_err("a deposed leader's write is refused");
    assert!(err.to_string().contains("fenced"), "{err}");
    let state: String = sqlx::query_scalar("SELECT state FROM nodes")
        .fetch_one(&mut conn)
        .await
        .expect("state");
    assert_eq!(state, "online", "the stale leader wrote nothing");
    // A plain write through the stale handle is refused the same way.
    let err = stale
        .set_setting("probe", "x")
        .await
        .expect_err("fenced write");
    assert!(
        matches!(err, clawn_server::store::StoreError::Fenced { held, current } if held == first.term && current == second.term),
        "{err}"
    );
    // The current term's pass does the work.
    let fresh = follower.app.store.fenced(second.term);
    clawn_server::monitor::step(&follower.app, &fresh, now, now - 60_000)
        .await
        .expect("the current leader writes");
    let state: String = sqlx::query_scalar("SELECT state FROM nodes")
        .fetch_one(&mut conn)
        .await
        .expect("state");
    assert_eq!(state, "offline");
    b.stop().await;
    a.stop().await;
}
