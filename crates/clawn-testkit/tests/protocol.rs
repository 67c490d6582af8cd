//! The node protocol end to end with the Rust protocol client: enrollment, a signed full
//! snapshot first, deltas for add and revoke, acks reported by the API, resync on
//! request, catch-up after a disconnect, scoping to the node's own peers, telemetry.

use std::time::Duration;

use clawn_proto::node::{HostMetrics, NodeMessage, PeerStats, Telemetry};
use clawn_proto::sign::{Rejection, Verified};
use clawn_proto::time::now_millis;
use clawn_testkit::node::Applied;
use clawn_testkit::{Db, TestServer, both_dbs};
use reqwest::StatusCode;
use serde_json::json;

both_dbs!(
    snapshot_then_deltas_with_acks,
    resync_and_catch_up_after_disconnect,
    nodes_only_get_their_own_peers,
    telemetry_is_stored_and_drives_tunnel_status,
    stream_refuses_bad_credentials,
    stream_needs_the_enrolled_identity_key,
    replayed_and_foreign_state_is_rejected,
);

async fn snapshot_then_deltas_with_acks(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let (_, t) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    let mut node = clawn_testkit::ProtoNode::enroll(&srv.url, t["token"].as_str().expect("t"))
        .await
        .expect("enroll");
    assert_eq!(node.enrollment.interface.address, "10.100.0.1/20");
    assert_eq!(node.enrollment.region, "eu");
    node.connect().await.expect("connect");
    let first = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("snapshot");
    assert_eq!(
        first,
        Applied::Snapshot {
            version: 1,
            peers: 0
        }
    );
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (_, d, kp) = alice.add_device("a", "eu").await;
    let add = node.next_state(Duration::from_secs(5)).await.expect("add");
    assert_eq!(
        add,
        Applied::Delta {
            from: 1,
            to: 2,
            added: vec![kp.public()],
            removed: vec![]
        }
    );
    // The API reports the ack.
    let nodes = admin
        .get_until("/api/v1/admin/nodes", Duration::from_secs(5), |n| {
            n[0]["acked_version"] == 2
        })
        .await;
    assert_eq!(nodes[0]["version"], 2);
    let id = d["device"]["id"].as_str().expect("id").to_string();
    let a2 = alice.clone();
    let rev = tokio::spawn(async move {
        a2.post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
            .await
    });
    let removed = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("remove");
    assert_eq!(
        removed,
        Applied::Delta {
            from: 2,
            to: 3,
            added: vec![],
            removed: vec![kp.public()]
        }
    );
    let (s, r) = rev.await.expect("join");
    assert_eq!(
        (
            s,
            r["node_ack"]["status"].as_str(),
            r["node_ack"]["version"].as_u64()
        ),
        (StatusCode::OK, Some("acknowledged"), Some(3))
    );
}

async fn resync_and_catch_up_after_disconnect(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 3).await;
    let (_, d1, k1) = alice.add_device("a", "eu").await;
    node.next_state(Duration::from_secs(5))
        .await
        .expect("add a");
    let (_, d2, k2) = alice.add_device("b", "eu").await;
    node.next_state(Duration::from_secs(5))
        .await
        .expect("add b");
    // Ask for a full snapshot at any time.
    node.send(&NodeMessage::Resync).await.expect("send");
    let snap = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("snapshot");
    assert_eq!(
        snap,
        Applied::Snapshot {
            version: 3,
            peers: 2
        }
    );
    // Changes made while the node is away arrive in the snapshot on reconnect.
    node.disconnect().await;
    let id1 = d1["device"]["id"].as_str().expect("id");
    let id2 = d2["device"]["id"].as_str().expect("id");
    let (s, r) = alice
        .post(&format!("/api/v1/devices/{id1}/revoke"), json!({}))
        .await;
    assert_eq!(
        (s, r["node_ack"]["status"].as_str()),
        (StatusCode::OK, Some("offline"))
    );
    let k3 = clawn_proto::WgKeyPair::generate();
    let (s, _) = alice
        .post(
            &format!("/api/v1/devices/{id2}/rotate"),
            json!({"public_key": k3.public()}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    node.connect().await.expect("reconnect");
    let snap = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("catch-up");
    assert_eq!(
        snap,
        Applied::Snapshot {
            version: 5,
            peers: 1
        }
    );
    assert!(!node.peers.contains_key(&k1.public()), "revoked while away");
    assert!(
        !node.peers.contains_key(&k2.public()),
        "rotated away while away"
    );
    assert!(node.peers.contains_key(&k3.public()));
    // Back online: new devices are placed on it again.
    let (_, _, k4) = alice.add_device("c", "eu").await;
    node.next_state(Duration::from_secs(5))
        .await
        .expect("add c");
    assert!(node.peers.contains_key(&k4.public()));
}

async fn nodes_only_get_their_own_peers(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut eu = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut sg = srv.region_with_node(&admin, "sg", "10.101.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (_, _, k_eu) = alice.add_device("a", "eu").await;
    let (_, _, k_sg) = alice.add_device("b", "sg").await;
    eu.next_state(Duration::from_secs(5))
        .await
        .expect("eu delta");
    sg.next_state(Duration::from_secs(5))
        .await
        .expect("sg delta");
    assert_eq!(
        eu.peers.keys().copied().collect::<Vec<_>>(),
        vec![k_eu.public()]
    );
    assert_eq!(
        sg.peers.keys().copied().collect::<Vec<_>>(),
        vec![k_sg.public()]
    );
    // Nothing else is queued for either node.
    assert!(eu.recv_signed(Duration::from_millis(300)).await.is_err());
    // Acks for versions a node never had are ignored.
    eu.send(&NodeMessage::Ack { version: 999 })
        .await
        .expect("send");
    sg.send(&NodeMessage::Resync).await.expect("send");
    sg.next_state(Duration::from_secs(5))
        .await
        .expect("sg snapshot");
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    for n in nodes.as_array().expect("nodes") {
        assert!(n["acked_version"].as_u64() <= n["version"].as_u64(), "{n}");
    }
}

/// One peer's counters, with a handshake `ago_ms` before now.
fn stats(
    key: clawn_proto::WgPublicKey,
    ago_ms: i64,
    rx: u64,
    tx: u64,
    endpoint: Option<&str>,
) -> PeerStats {
    PeerStats {
        public_key: key,
        last_handshake: Some(now_millis() - ago_ms),
        rx_bytes: rx,
        tx_bytes: tx,
        endpoint: endpoint.map(str::to_string),
    }
}

/// A telemetry report about one peer.
fn report(host: HostMetrics, peer: PeerStats, exit_ipv4: Option<std::net::Ipv4Addr>) -> Telemetry {
    Telemetry {
        at: now_millis(),
        host,
        peers: vec![peer],
        exit_ipv4,
    }
}

async fn telemetry_is_stored_and_drives_tunnel_status(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut other = srv.node(&admin, "eu", 1000).await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (_, d, kp) = alice.add_device("a", "eu").await;
    let on_first = d["device"]["node"]["id"] == node.node_id.to_string();
    let (serving, foreign) = if on_first {
        (&mut node, &mut other)
    } else {
        (&mut other, &mut node)
    };
    let id = d["device"]["id"].as_str().expect("id").to_string();
    let (_, before) = alice.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(before["tunnel"]["status"], "inactive");
    // A node that does not serve the peer cannot write its usage.
    foreign
        .telemetry(report(
            HostMetrics::default(),
            stats(kp.public(), 0, 666, 666, None),
            None,
        ))
        .await
        .expect("send");
    serving
        .telemetry(report(
            HostMetrics {
                cpu_percent: 12.5,
                memory_used_bytes: 1 << 30,
                memory_total_bytes: 4 << 30,
                load1: 0.3,
                active_peers: 1,
                rx_bytes_per_sec: 100,
                tx_bytes_per_sec: 200,
            },
            stats(kp.public(), 5_000, 1234, 5678, Some("198.51.100.7:40000")),
            Some("203.0.113.9".parse().expect("ip")),
        ))
        .await
        .expect("send");
    let dev = alice
        .get_until(
            &format!("/api/v1/devices/{id}"),
            Duration::from_secs(5),
            |d| d["tunnel"]["rx_bytes"] == 1234,
        )
        .await;
    assert_eq!(dev["tunnel"]["status"], "active");
    assert_eq!(dev["tunnel"]["tx_bytes"], 5678);
    assert_eq!(dev["tunnel"]["endpoint"], "198.51.100.7:40000");
    assert_eq!(dev["node"]["exit_ipv4"], "203.0.113.9");
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    let n = nodes
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == serving.node_id.to_string())
        .expect("node")
        .clone();
    assert_eq!(n["metrics"]["cpu_percent"], 12.5);
    assert!(n["last_heartbeat"].as_i64().is_some());
    // An old handshake means inactive (3 minutes).
    serving
        // Not an ip:port: the server drops the endpoint rather than show it to the user.
        .telemetry(report(
            HostMetrics::default(),
            stats(kp.public(), 200_000, 1300, 5700, Some("$(reboot)<script>")),
            None,
        ))
        .await
        .expect("send");
    let dev = alice
        .get_until(
            &format!("/api/v1/devices/{id}"),
            Duration::from_secs(5),
            |d| d["tunnel"]["rx_bytes"] == 1300,
        )
        .await;
    assert_eq!(dev["tunnel"]["status"], "inactive");
    assert!(dev["tunnel"]["endpoint"].is_null(), "{dev}");
}

async fn stream_refuses_bad_credentials(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    node.credential = "clawn_node_forged".into();
    assert!(node.connect().await.is_err());
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/node/stream", srv.url))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let e: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(e["code"], "unauthenticated");
    // A user session is not a node credential.
    node.credential = admin.token.clone().unwrap_or_default();
    assert!(node.connect().await.is_err());
}

async fn stream_needs_the_enrolled_identity_key(db: Db) {
    use clawn_proto::sign::{IDENTITY_PROOF_HEADER, IDENTITY_TIME_HEADER, identity_proof};
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let attempt = |proof: Option<(ed25519_dalek::SigningKey, i64)>| {
        let mut req = reqwest::Client::new()
            .get(format!("{}/api/v1/node/stream", srv.url))
            .bearer_auth(&node.credential);
        if let Some((key, at)) = proof {
            req = req.header(IDENTITY_TIME_HEADER, at.to_string()).header(
                IDENTITY_PROOF_HEADER,
                identity_proof(&key, node.node_id, at),
            );
        }
        async move {
            let resp = req.send().await.expect("send");
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            (
                status,
                body["code"].as_str().unwrap_or_default().to_string(),
            )
        }
    };
    let now = clawn_proto::time::now_millis();
    // The credential alone: refused.
    assert_eq!(
        attempt(None).await,
        (StatusCode::UNAUTHORIZED, "identity_proof_required".into())
    );
    // Another key: refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    assert_eq!(
        attempt(Some((other, now))).await,
        (StatusCode::UNAUTHORIZED, "invalid_identity_proof".into())
    );
    // The right key, but an old proof (a replay): refused.
    assert_eq!(
        attempt(Some((node.identity.clone(), now - 600_000))).await,
        (StatusCode::UNAUTHORIZED, "identity_proof_expired".into())
    );
    // The right key, now: authenticated (the upgrade itself is missing in this plain
    // GET, so the answer is the WebSocket refusal, not an authentication one).
    assert_eq!(
        attempt(Some((node.identity.clone(), now))).await,
        (StatusCode::BAD_REQUEST, "upgrade_required".into())
    );
}

async fn replayed_and_foreign_state_is_rejected(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut a = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut b = srv.node(&admin, "eu", 1000).await;
    a.auto_ack = false;
    let old = {
        a.send(&NodeMessage::Resync).await.expect("send");
        a.recv_signed(Duration::from_secs(5))
            .await
            .expect("snapshot v1")
    };
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    alice.add_device("x", "eu").await;
    alice.add_device("y", "eu").await;
    // Drain whatever deltas the two nodes got, then take a fresh snapshot for each.
    for n in [&mut a, &mut b] {
        n.send(&NodeMessage::Resync).await.expect("send");
        loop {
            let s = n.recv_signed(Duration::from_secs(5)).await.expect("state");
            if let Ok(Verified::Snapshot(snap)) = n.verify(&s) {
                n.apply(Verified::Snapshot(snap));
                break;
            }
        }
    }
    // Replaying a's older snapshot is refused, as is b's state delivered to a.
    assert!(
        matches!(a.verify(&old), Err(Rejection::Stale { .. })),
        "{:?}",
        a.verify(&old)
    );
    b.send(&NodeMessage::Resync).await.expect("send");
    let foreign = b
        .recv_signed(Duration::from_secs(5))
        .await
        .expect("b snapshot");
    assert!(matches!(
        a.verify(&foreign),
        Err(Rejection::WrongNode { .. })
    ));
    let mut forged = foreign.clone();
    forged.payload = forged
        .payload
        .replace(&b.node_id.to_string(), &a.node_id.to_string());
    assert_eq!(a.verify(&forged), Err(Rejection::BadSignature));
}
