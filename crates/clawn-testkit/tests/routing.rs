//! Routing and operations through the real API and the real node protocol, on SQLite and
//! PostgreSQL: load-score placement, health (degraded, offline), failover and drain,
//! waiting for capacity, region moves with their rate limit, priority access tokens and
//! their expiry, quarantine, idle-peer hygiene and capacity under concurrent creates.

use std::time::Duration;

use clawn_proto::node::{HostMetrics, PeerClass, PeerStats, Telemetry};
use clawn_testkit::node::{Applied, ProtoNode};
use clawn_testkit::{Client, Db, Retry, TestServer, both_dbs};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_dbs!(
    lower_score_wins_and_admins_see_the_parts,
    a_sick_node_is_degraded_at_once_and_recovers,
    probe_loss_degrades_a_node,
    a_silent_node_goes_offline_after_the_grace,
    failover_moves_a_dead_nodes_devices,
    drain_moves_devices_and_waits_for_capacity,
    region_moves_are_audited_and_rate_limited,
    priority_tokens_mark_peers_and_expire_without_disconnect,
    priority_reserve_gives_holders_the_last_seats,
    endpoint_churn_quarantines_a_device,
    idle_peers_are_removed_and_come_back_on_config_fetch,
    idle_peers_are_only_flagged_by_default_policy,
    concurrent_creates_never_exceed_capacity,
    a_restart_does_not_fail_over_nodes_that_have_not_reconnected_yet,
    byte_bursts_quarantine_a_device,
);

/// Every node's live-peer counter equals its live peers (the counter is what placement's
/// capacity check uses).
async fn assert_counters(srv: &TestServer) {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT n.id, n.live_peers, (SELECT COUNT(*) FROM peers p WHERE p.node_id = n.id AND p.retired_at IS NULL) \
         FROM nodes n",
    )
    .fetch_all(srv.app.store.pool())
    .await
    .expect("counters");
    for (id, counter, actual) in rows {
        assert_eq!(
            counter, actual,
            "node {id}: live_peers {counter}, live peers {actual}"
        );
    }
}

const WAIT: Duration = Duration::from_secs(15);

fn host(cpu: f64, rx: u64) -> HostMetrics {
    HostMetrics {
        cpu_percent: cpu,
        memory_used_bytes: 1 << 30,
        memory_total_bytes: 4 << 30,
        load1: 0.5,
        active_peers: 0,
        rx_bytes_per_sec: rx,
        tx_bytes_per_sec: 0,
    }
}

async fn report(node: &mut ProtoNode, cpu: f64, rx: u64, peers: Vec<PeerStats>) {
    node.telemetry(Telemetry {
        at: clawn_proto::time::now_millis(),
        host: host(cpu, rx),
        peers,
        exit_ipv4: None,
    })
    .await
    .expect("telemetry");
}

async fn node_view(admin: &Client, id: uuid::Uuid) -> Value {
    let (s, v) = admin.get(&format!("/api/v1/admin/nodes/{id}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v
}

async fn wait_node(admin: &Client, id: uuid::Uuid, done: impl Fn(&Value) -> bool) -> Value {
    admin
        .get_until(&format!("/api/v1/admin/nodes/{id}"), WAIT, done)
        .await
}

/// Reports telemetry (so the server evaluates health) until the node view satisfies `done`.
async fn report_until(
    node: &mut ProtoNode,
    admin: &Client,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let retry = Retry::new(what, WAIT, Duration::from_millis(100));
    loop {
        report(node, 1.0, 0, vec![]).await;
        let v = node_view(admin, node.node_id).await;
        if done(&v) {
            return v;
        }
        retry.again(&v).await;
    }
}

fn device_node(d: &Value) -> String {
    d["node"]["id"].as_str().unwrap_or_default().to_string()
}

async fn lower_score_wins_and_admins_see_the_parts(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut busy = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut idle = srv.node(&admin, "eu", 1000).await;
    // The busy node uses 90 % CPU (not yet sustained long enough to be degraded) and
    // half of a 100 Mbit/s link; the idle node reports nothing in use.
    let (s, _) = admin
        .patch(
            &format!("/api/v1/admin/nodes/{}", busy.node_id),
            json!({"link_mbps": 100}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    report(&mut busy, 90.0, 6_250_000, vec![]).await;
    report(&mut idle, 5.0, 0, vec![]).await;
    let v = wait_node(&admin, busy.node_id, |v| {
        v["score"]["cpu"].as_f64() == Some(0.9)
    })
    .await;
    assert_eq!(v["state"], "online", "{v}");
    assert_eq!(v["eligible"], true);
    assert_eq!(v["link_mbps"], 100);
    assert_eq!(v["score"]["bandwidth"].as_f64(), Some(0.5), "{v}");
    let busy_total = v["score"]["total"].as_f64().expect("total");
    let i = wait_node(&admin, idle.node_id, |v| {
        v["score"]["cpu"].as_f64() == Some(0.05)
    })
    .await;
    assert!(
        i["score"]["total"].as_f64().expect("total") < busy_total,
        "{i} vs {v}"
    );
    // Every new device lands on the better node, even though the busy one has fewer peers
    // after the first few.
    let (alice, _) = srv.user(&admin, "alice@example.com", 3).await;
    for n in 0..3 {
        let (s, body, _) = alice.add_device(&format!("d{n}"), "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(device_node(&body["device"]), idle.node_id.to_string());
    }
    let (s, e) = admin
        .patch(
            &format!("/api/v1/admin/nodes/{}", busy.node_id),
            json!({"link_mbps": 0}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "invalid_link_mbps");
}

async fn a_sick_node_is_degraded_at_once_and_recovers(db: Db) {
    let srv = TestServer::start_with(db, |c| c.health.cpu_sustain_secs = 0).await;
    let admin = srv.admin().await;
    let mut sick = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let other = srv.node(&admin, "eu", 1000).await;
    report(&mut sick, 95.0, 0, vec![]).await;
    let v = wait_node(&admin, sick.node_id, |v| v["state"] == "degraded").await;
    assert_eq!(v["health"]["alerts"], json!(["cpu_high"]), "{v}");
    assert!(
        v["health"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("CPU 95%")),
        "{v}"
    );
    assert_eq!(v["eligible"], false);
    assert_eq!(v["ineligible_reason"], "state:degraded");
    // Excluded from new assignments.
    let (alice, _) = srv.user(&admin, "alice@example.com", 3).await;
    for n in 0..3 {
        let (s, body, _) = alice.add_device(&format!("d{n}"), "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        assert_eq!(device_node(&body["device"]), other.node_id.to_string());
    }
    report(&mut sick, 10.0, 0, vec![]).await;
    wait_node(&admin, sick.node_id, |v| v["state"] == "online").await;
    let (_, audit) = admin
        .get(&format!("/api/v1/admin/audit?target={}", sick.node_id))
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"node.degraded"), "{actions:?}");
    assert!(actions.contains(&"node.recovered"), "{actions:?}");
    // An admin state is never overridden by health.
    let (s, _) = admin
        .patch(
            &format!("/api/v1/admin/nodes/{}", sick.node_id),
            json!({"state": "maintenance"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    report(&mut sick, 99.0, 0, vec![]).await;
    let v = wait_node(&admin, sick.node_id, |v| {
        v["health"]["alerts"] == json!(["cpu_high"])
    })
    .await;
    assert_eq!(v["state"], "maintenance");
}

async fn probe_loss_degrades_a_node(db: Db) {
    let srv = TestServer::start_with(db, |c| {
        c.health.probe_interval_ms = 50;
        c.health.probe_timeout_ms = 150;
        c.health.probe_window = 10;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    // Answering probes: a measured round trip, no loss.
    let v = report_until(&mut node, &admin, "rtt measured, no loss", |v| {
        v["health"]["loss_ratio"].as_f64() == Some(0.0) && v["health"]["rtt_ms"].is_number()
    })
    .await;
    assert_eq!(v["state"], "online");
    assert!(v["health"]["baseline_rtt_ms"].is_number(), "{v}");
    // The node stops answering (a stalled path): probes are lost, the node is degraded.
    node.pause_reading(true);
    let v = report_until(&mut node, &admin, "degraded by loss", |v| {
        v["state"] == "degraded"
    })
    .await;
    assert!(
        v["health"]["alerts"]
            .as_array()
            .is_some_and(|a| a.contains(&json!("packet_loss"))),
        "{v}"
    );
    assert!(v["health"]["loss_ratio"].as_f64().unwrap_or(0.0) > 0.02);
    node.pause_reading(false);
    report_until(&mut node, &admin, "recovered", |v| v["state"] == "online").await;
}

async fn a_silent_node_goes_offline_after_the_grace(db: Db) {
    let srv = TestServer::start_with(db, |c| c.health.offline_grace_secs = 1).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    wait_node(&admin, node.node_id, |v| v["state"] == "online").await;
    // Stream open, but nothing comes back: no pongs, no telemetry.
    node.pause_reading(true);
    let v = wait_node(&admin, node.node_id, |v| v["state"] == "offline").await;
    assert_eq!(v["connected"], true, "the stream itself is still open: {v}");
    assert!(v["offline_since"].is_number());
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={}&action=node.offline",
            node.node_id
        ))
        .await;
    assert!(
        audit["items"][0]["metadata"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no heartbeat")),
        "{audit}"
    );
    // It reports again: back online.
    node.pause_reading(false);
    report(&mut node, 1.0, 0, vec![]).await;
    wait_node(&admin, node.node_id, |v| v["state"] == "online").await;
}

/// A device is on `node`; returns (device id, key).
async fn device_on(
    user: &Client,
    name: &str,
    region: &str,
    node: &mut ProtoNode,
) -> (String, clawn_proto::WgKeyPair) {
    let (s, body, kp) = user.add_device(name, region).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(device_node(&body["device"]), node.node_id.to_string());
    let applied = node.next_state(WAIT).await.expect("delta");
    assert!(matches!(applied, Applied::Delta { ref added, .. } if added == &vec![kp.public()]));
    (body["device"]["id"].as_str().expect("id").to_string(), kp)
}

async fn failover_moves_a_dead_nodes_devices(db: Db) {
    let srv = TestServer::start_with(db, |c| c.health.failover_delay_secs = 1).await;
    let admin = srv.admin().await;
    let mut n1 = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut n2 = srv.node(&admin, "eu", 1000).await;
    // Make n1 the better node so the device lands there.
    report(&mut n2, 50.0, 0, vec![]).await;
    wait_node(&admin, n2.node_id, |v| {
        v["score"]["cpu"].as_f64() == Some(0.5)
    })
    .await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut n1).await;
    let (_, before) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(
        before["config"]["peer_public_key"],
        n1.wg.public().to_base64()
    );
    n1.disconnect().await;
    let d = alice
        .get_until(&format!("/api/v1/devices/{id}"), WAIT, |d| {
            device_node(d) == n2.node_id.to_string()
        })
        .await;
    assert_eq!(d["moved_reason"], "failover");
    assert!(d["moved_at"].is_number());
    assert_eq!(d["placement"], "assigned");
    // The new node got the same key; the user's config now names it.
    let applied = n2.next_state(WAIT).await.expect("delta");
    assert!(matches!(applied, Applied::Delta { ref added, .. } if added == &vec![kp.public()]));
    let (_, after) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(
        after["config"]["peer_public_key"],
        n2.wg.public().to_base64()
    );
    assert_ne!(before["config"]["address"], Value::Null);
    // The old node, when it comes back, no longer has the peer.
    n1.applied = None;
    n1.connect().await.expect("reconnect");
    match n1.next_state(WAIT).await.expect("snapshot") {
        Applied::Snapshot { peers, .. } => assert_eq!(peers, 0),
        other => panic!("expected a snapshot, got {other:?}"),
    }
    let v = node_view(&admin, n1.node_id).await;
    assert_eq!(v["live_peers"], 0);
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={id}&action=device.failover"
        ))
        .await;
    let e = &audit["items"][0];
    assert_eq!(e["actor_kind"], "system");
    assert_eq!(e["metadata"]["from_node"], n1.node_id.to_string());
    assert_eq!(e["metadata"]["to_node"], n2.node_id.to_string());
    // Diagnostics list the move and the node's state changes.
    let (s, diag) = admin
        .get(&format!("/api/v1/admin/diagnostics/devices/{id}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{diag}");
    assert_eq!(diag["moves"][0]["action"], "device.failover");
    let (_, nd) = admin
        .get(&format!("/api/v1/admin/diagnostics/nodes/{}", n1.node_id))
        .await;
    let changes: Vec<&str> = nd["state_changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(changes.contains(&"node.offline"), "{changes:?}");
    assert!(changes.contains(&"node.online"), "{changes:?}");
    assert_counters(&srv).await;
}

async fn drain_moves_devices_and_waits_for_capacity(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut n1 = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (a, _) = device_on(&alice, "a", "eu", &mut n1).await;
    let (b, _) = device_on(&alice, "b", "eu", &mut n1).await;
    // A second node with room for one.
    let mut n2 = srv.node(&admin, "eu", 1).await;
    let (s, _) = admin
        .patch(
            &format!("/api/v1/admin/nodes/{}", n1.node_id),
            json!({"state": "draining"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    // One moves; the other waits on n1, still connected, marked.
    let devices = alice
        .get_until("/api/v1/devices", WAIT, |l| {
            l.as_array().is_some_and(|l| {
                l.iter().any(|d| d["placement"] == "waiting_for_capacity")
                    && l.iter().any(|d| device_node(d) == n2.node_id.to_string())
            })
        })
        .await;
    let waiting = devices
        .as_array()
        .expect("list")
        .iter()
        .find(|d| d["placement"] == "waiting_for_capacity")
        .expect("waiting")
        .clone();
    assert_eq!(device_node(&waiting), n1.node_id.to_string());
    let waiting_id = waiting["id"].as_str().expect("id").to_string();
    assert!(waiting_id == a || waiting_id == b);
    let (_, overview) = admin.get("/api/v1/admin/diagnostics").await;
    assert_eq!(
        overview["waiting"][0]["id"],
        waiting_id.as_str(),
        "{overview}"
    );
    // Room appears: the waiting one moves too, and n1 ends empty.
    let (s, _) = admin
        .patch(
            &format!("/api/v1/admin/nodes/{}", n2.node_id),
            json!({"capacity": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    alice
        .get_until(&format!("/api/v1/devices/{waiting_id}"), WAIT, |d| {
            device_node(d) == n2.node_id.to_string() && d["placement"] == "assigned"
        })
        .await;
    wait_node(&admin, n1.node_id, |v| v["live_peers"] == 0).await;
    // The node itself was told to remove both peers.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !n1.peers.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "n1 keeps {:?}",
            n1.peers.keys()
        );
        n1.next_state(WAIT).await.expect("delta");
    }
    let _ = n2.next_state(WAIT).await;
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={waiting_id}&action=device.waiting"
        ))
        .await;
    assert_eq!(
        audit["items"].as_array().map(Vec::len),
        Some(1),
        "audited once: {audit}"
    );
    assert_counters(&srv).await;
}

async fn region_moves_are_audited_and_rate_limited(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut eu = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut sg = srv.region_with_node(&admin, "sg", "10.101.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (bob, _) = srv.user(&admin, "bob@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut eu).await;
    let path = format!("/api/v1/devices/{id}/region");
    // Bad input changes nothing.
    let (s, e) = alice.post(&path, json!({"region": "eu"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("same_region"))
    );
    let (s, e) = alice.post(&path, json!({"region": "mars"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, _) = bob.post(&path, json!({"region": "sg"})).await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "another user's device does not exist for bob"
    );
    // Three moves are fine.
    for (to, node, from) in [("sg", &mut sg, &mut eu)] {
        let (s, body) = alice.post(&path, json!({"region": to})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["device"]["region"], to);
        assert_eq!(device_node(&body["device"]), node.node_id.to_string());
        assert_eq!(
            body["config"]["peer_public_key"],
            node.wg.public().to_base64()
        );
        let _ = node.next_state(WAIT).await.expect("add on new node");
        match from.next_state(WAIT).await.expect("remove on old node") {
            Applied::Delta { removed, .. } => assert_eq!(removed, vec![kp.public()]),
            other => panic!("{other:?}"),
        }
    }
    for to in ["eu", "sg"] {
        let (s, body) = alice.post(&path, json!({"region": to})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
    }
    let (s, e) = alice.post(&path, json!({"region": "eu"})).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["code"], "reassign_rate_limited");
    assert!(
        e["hint"]
            .as_str()
            .is_some_and(|h| h.contains("try again in")),
        "{e}"
    );
    let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
    assert_eq!(d["region"], "sg", "the refused move changed nothing");
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={id}&action=device.reassign"
        ))
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(audit["items"][0]["actor_label"], "alice@example.com");
    assert_counters(&srv).await;
}

async fn priority_tokens_mark_peers_and_expire_without_disconnect(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    srv.region(&admin, "sg", "10.101.0.0/16").await;
    let (alice, alice_id) = srv.user(&admin, "alice@example.com", 1).await;
    let (_id, kp) = device_on(&alice, "laptop", "eu", &mut node).await;
    assert_eq!(node.peers[&kp.public()].class, PeerClass::Standard);
    // Bad grants are refused.
    for (body, code) in [
        (json!({"region": "eu", "duration_secs": 60}), "invalid_user"),
        (
            json!({"email": "alice@example.com", "region": "eu"}),
            "invalid_window",
        ),
        (
            json!({"email": "alice@example.com", "region": "eu", "duration_secs": 0}),
            "invalid_window",
        ),
    ] {
        let (s, e) = admin.post("/api/v1/admin/priority-tokens", body).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{e}"
        );
    }
    let (s, _) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "nobody@example.com", "region": "eu", "duration_secs": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = alice
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "alice@example.com", "region": "eu", "duration_secs": 60}),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "users cannot grant themselves priority"
    );
    // A token for another region changes nothing here.
    let (s, _) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"user_id": alice_id, "region": "sg", "duration_secs": 60}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // A short token for eu: the peer becomes priority as an update, never a re-add.
    let (s, t) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "alice@example.com", "region": "eu", "duration_secs": 3, "note": "beta"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(t["status"], "active");
    match node.next_state(WAIT).await.expect("class update") {
        Applied::Delta { added, removed, .. } => {
            assert!(
                added.is_empty() && removed.is_empty(),
                "{added:?} {removed:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.peers[&kp.public()].class, PeerClass::Priority);
    let d = &alice.get("/api/v1/devices").await.1[0];
    assert_eq!(d["class"], "priority");
    // At expiry the class goes, the peer stays.
    match node.next_state(WAIT).await.expect("expiry update") {
        Applied::Delta { added, removed, .. } => {
            assert!(
                added.is_empty() && removed.is_empty(),
                "no disconnect: {removed:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(node.peers[&kp.public()].class, PeerClass::Standard);
    assert!(node.peers.contains_key(&kp.public()));
    let (_, list) = admin.get("/api/v1/admin/priority-tokens").await;
    let statuses: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"expired") && statuses.contains(&"active"),
        "{statuses:?}"
    );
    // Revocation: class goes at once; revoking twice is a conflict.
    let (_, t2) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "alice@example.com", "region": "eu", "duration_secs": 3600}),
        )
        .await;
    node.next_state(WAIT).await.expect("grant");
    assert_eq!(node.peers[&kp.public()].class, PeerClass::Priority);
    let rid = t2["id"].as_str().expect("id");
    let (s, r) = admin
        .post(
            &format!("/api/v1/admin/priority-tokens/{rid}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!((s, r["status"].as_str()), (StatusCode::OK, Some("revoked")));
    node.next_state(WAIT).await.expect("revoke");
    assert_eq!(node.peers[&kp.public()].class, PeerClass::Standard);
    let (s, _) = admin
        .post(
            &format!("/api/v1/admin/priority-tokens/{rid}/revoke"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, audit) = admin
        .get("/api/v1/admin/audit?action=priority_token.")
        .await;
    assert_eq!(
        audit["items"].as_array().map(Vec::len),
        Some(4),
        "3 grants + 1 revoke"
    );
}

async fn priority_reserve_gives_holders_the_last_seats(db: Db) {
    // Capacity 10, reserve 10 %: standard devices get 9 seats, a holder the 10th.
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let _node = srv.node(&admin, "eu", 10).await;
    let (std_user, _) = srv.user(&admin, "std@example.com", 10).await;
    let (vip, _) = srv.user(&admin, "vip@example.com", 3).await;
    for n in 0..9 {
        let (s, b, _) = std_user.add_device(&format!("d{n}"), "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (s, e, _) = std_user.add_device("d9", "eu").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{e}");
    let (s, _) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "vip@example.com", "region": "eu", "duration_secs": 600}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b, _) = vip.add_device("fast", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["device"]["class"], "priority");
    // Tokens never bypass capacity...
    let (s, _, _) = vip.add_device("more", "eu").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    // ...nor device slots (room again after a standard device goes; vip has 3 slots).
    let (_, mine) = std_user.get("/api/v1/devices").await;
    let victim = mine[0]["id"].as_str().expect("id");
    let (s, _) = std_user
        .post(&format!("/api/v1/devices/{victim}/revoke"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = vip.add_device("second", "eu").await;
    assert_eq!(s, StatusCode::CREATED);
    sqlx::query("UPDATE users SET device_slots = 2 WHERE email = 'vip@example.com'")
        .execute(srv.app.store.pool())
        .await
        .expect("lower slots");
    let (s, e, _) = vip.add_device("third", "eu").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("slots_exhausted")),
        "{e}"
    );
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(nodes[0]["live_peers"], 10);
    assert_counters(&srv).await;
}

async fn endpoint_churn_quarantines_a_device(db: Db) {
    let srv = TestServer::start_with(db, |c| c.abuse.endpoint_changes = 3).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let _sg = srv.region_with_node(&admin, "sg", "10.101.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut node).await;
    for port in 40_000..40_004u16 {
        report(
            &mut node,
            1.0,
            0,
            vec![PeerStats {
                public_key: kp.public(),
                last_handshake: Some(clawn_proto::time::now_millis()),
                rx_bytes: 100,
                tx_bytes: 100,
                endpoint: Some(format!("198.51.100.7:{port}")),
            }],
        )
        .await;
    }
    let q = admin
        .get_until("/api/v1/admin/devices?quarantined=true", WAIT, |l| {
            l.as_array().is_some_and(|l| l.len() == 1)
        })
        .await;
    assert_eq!(q[0]["id"], id.as_str());
    assert!(
        q[0]["quarantine_reason"]
            .as_str()
            .is_some_and(|r| r.contains("endpoint changes")),
        "{q}"
    );
    let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
    assert_eq!(d["quarantined"], true);
    assert!(
        d.get("quarantine_reason").is_none(),
        "the reason is for admins"
    );
    let (s, e) = alice
        .post(
            &format!("/api/v1/devices/{id}/region"),
            json!({"region": "sg"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("device_quarantined"))
    );
    // Priority is suspended while quarantined.
    let (_, t) = admin
        .post(
            "/api/v1/admin/priority-tokens",
            json!({"email": "alice@example.com", "region": "eu", "duration_secs": 600}),
        )
        .await;
    assert_eq!(t["suspended"], true, "{t}");
    assert_eq!(
        alice.get(&format!("/api/v1/devices/{id}")).await.1["class"],
        "standard"
    );
    // Release: moves work again and the class is granted.
    let (s, r) = admin
        .post(&format!("/api/v1/admin/devices/{id}/release"), json!({}))
        .await;
    assert_eq!(
        (s, r["quarantined"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    alice
        .get_until(&format!("/api/v1/devices/{id}"), WAIT, |d| {
            d["class"] == "priority"
        })
        .await;
    let (s, _) = admin
        .post(&format!("/api/v1/admin/devices/{id}/release"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, b) = alice
        .post(
            &format!("/api/v1/devices/{id}/region"),
            json!({"region": "sg"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, audit) = admin.get(&format!("/api/v1/admin/audit?target={id}")).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"device.quarantine") && actions.contains(&"device.release"));
}

async fn idle_peers_are_removed_and_come_back_on_config_fetch(db: Db) {
    let srv = TestServer::start_with(db, |c| {
        c.hygiene.idle_peer_days = 1.0 / 86_400.0; // one second
        c.hygiene.sweep_interval_secs = 1;
        c.hygiene.idle_action = clawn_server::config::IdleAction::Remove;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut node).await;
    // Never a handshake: removed from the node, the device stays.
    match node.next_state(WAIT).await.expect("removal") {
        Applied::Delta { removed, .. } => assert_eq!(removed, vec![kp.public()]),
        other => panic!("{other:?}"),
    }
    let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
    assert_eq!(
        (d["state"].as_str(), d["placement"].as_str()),
        (Some("active"), Some("unassigned"))
    );
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={id}&action=peer.idle_removed"
        ))
        .await;
    assert_eq!(audit["items"][0]["actor_kind"], "system");
    // Fetching the config puts it back.
    let (s, cfg) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(s, StatusCode::OK, "{cfg}");
    match node.next_state(WAIT).await.expect("re-add") {
        Applied::Delta { added, .. } => assert_eq!(added, vec![kp.public()]),
        other => panic!("{other:?}"),
    }
    assert_counters(&srv).await;
}

async fn idle_peers_are_only_flagged_by_default_policy(db: Db) {
    let srv = TestServer::start_with(db, |c| {
        c.hygiene.idle_peer_days = 1.0 / 86_400.0;
        c.hygiene.sweep_interval_secs = 1;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut node).await;
    let l = admin
        .get_until("/api/v1/admin/devices", WAIT, |l| {
            l[0]["idle_flagged_at"].is_number()
        })
        .await;
    assert_eq!(l[0]["placement"], "assigned");
    assert!(node.peers.contains_key(&kp.public()));
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={id}&action=peer.idle_flagged"
        ))
        .await;
    assert_eq!(
        audit["items"].as_array().map(Vec::len),
        Some(1),
        "flagged once: {audit}"
    );
}

async fn concurrent_creates_never_exceed_capacity(db: Db) {
    let srv = TestServer::start_with(db, |c| c.placement.priority_reserve_percent = 0).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let mut nodes = Vec::new();
    for cpu in [10.0, 40.0, 70.0] {
        let mut n = srv.node(&admin, "eu", 4).await;
        report(&mut n, cpu, 0, vec![]).await;
        nodes.push(n);
    }
    let mut users = Vec::new();
    for i in 0..16 {
        users.push(srv.user(&admin, &format!("u{i}@example.com"), 1).await.0);
    }
    let results = futures_util::future::join_all(
        users
            .iter()
            .map(|u| async move { u.add_device("d", "eu").await.0 }),
    )
    .await;
    let created = results
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = results
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((created, refused), (12, 4), "{results:?}");
    let (_, list) = admin.get("/api/v1/admin/nodes").await;
    for n in list.as_array().expect("nodes") {
        assert_eq!(n["live_peers"], 4, "{n}");
    }
    assert_counters(&srv).await;
}

async fn a_restart_does_not_fail_over_nodes_that_have_not_reconnected_yet(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut n1 = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let mut n2 = srv.node(&admin, "eu", 1000).await;
    report(&mut n2, 50.0, 0, vec![]).await;
    wait_node(&admin, n2.node_id, |v| {
        v["score"]["cpu"].as_f64() == Some(0.5)
    })
    .await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, _) = device_on(&alice, "laptop", "eu", &mut n1).await;
    // n1 went offline an hour ago, before the control plane (re)started.
    n1.disconnect().await;
    wait_node(&admin, n1.node_id, |v| v["state"] == "offline").await;
    let now = clawn_proto::time::now_millis();
    sqlx::query("UPDATE nodes SET offline_since = $2 WHERE id = $1")
        .bind(n1.node_id.to_string())
        .bind(now - 3_600_000)
        .execute(srv.app.store.pool())
        .await
        .expect("backdate");
    // Just started: n1 may simply not have reconnected yet; nothing moves.
    clawn_server::monitor::step(&srv.app, &srv.app.store, now, now)
        .await
        .expect("step");
    let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
    assert_eq!(device_node(&d), n1.node_id.to_string(), "{d}");
    // A minute after the start (reconnect allowance plus failover delay passed): it moves.
    clawn_server::monitor::step(&srv.app, &srv.app.store, now, now - 60_000)
        .await
        .expect("step");
    let d = alice.get(&format!("/api/v1/devices/{id}")).await.1;
    assert_eq!(device_node(&d), n2.node_id.to_string(), "{d}");
    assert_counters(&srv).await;
}

async fn byte_bursts_quarantine_a_device(db: Db) {
    let srv = TestServer::start_with(db, |c| {
        c.abuse.burst_bytes_per_sec = 1_000_000;
        c.abuse.bursts = 2;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (id, kp) = device_on(&alice, "laptop", "eu", &mut node).await;
    let stats = |bytes: u64| PeerStats {
        public_key: kp.public(),
        last_handshake: Some(clawn_proto::time::now_millis()),
        rx_bytes: bytes,
        tx_bytes: 0,
        endpoint: Some("198.51.100.7:40000".into()),
    };
    // A steady trickle is no burst.
    report(&mut node, 1.0, 0, vec![stats(1_000)]).await;
    let d = alice
        .get_until(&format!("/api/v1/devices/{id}"), WAIT, |d| {
            d["tunnel"]["rx_bytes"] == 1_000
        })
        .await;
    assert_eq!(d["quarantined"], false);
    // Two intervals of gigabytes within milliseconds: far above 1 MB/s.
    let mut total = 1_000;
    for _ in 0..2 {
        total += 4_000_000_000;
        let before =
            alice.get(&format!("/api/v1/devices/{id}")).await.1["tunnel"]["rx_bytes"].clone();
        report(&mut node, 1.0, 0, vec![stats(total)]).await;
        alice
            .get_until(&format!("/api/v1/devices/{id}"), WAIT, |d| {
                d["tunnel"]["rx_bytes"] != before
            })
            .await;
    }
    let q = admin
        .get_until("/api/v1/admin/devices?quarantined=true", WAIT, |l| {
            l.as_array().is_some_and(|l| l.len() == 1)
        })
        .await;
    assert!(
        q[0]["quarantine_reason"]
            .as_str()
            .is_some_and(|r| r.contains("byte bursts")),
        "{q}"
    );
    let (_, diag) = admin
        .get(&format!("/api/v1/admin/diagnostics/devices/{id}"))
        .await;
    assert_eq!(diag["signals"]["bursts"], 2, "{diag}");
}
