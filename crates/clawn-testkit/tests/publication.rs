//! One publication path: every mutating route publishes exactly the node versions its
//! transaction committed, through `service::publish`, and nothing else does. A recording
//! publisher (wrapping the real hub) sees each publication; after every route the test
//! compares what was published with what the store says each node's version is now.

use std::collections::BTreeMap;
use std::time::Duration;

use clawn_testkit::node::ProtoNode;
use clawn_testkit::{Client, Db, RecordingPublisher, TestServer, both_dbs};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

both_dbs!(
    every_mutating_route_publishes_exactly_what_it_committed,
    background_removal_and_re_placement_publish_through_the_same_path,
);

/// Stored versions of the given nodes.
async fn versions(srv: &TestServer, nodes: &[Uuid]) -> BTreeMap<Uuid, u64> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let (v, _) = srv
            .app
            .store
            .node_version_state(*n)
            .await
            .expect("store")
            .expect("node");
        out.insert(*n, v);
    }
    out
}

/// Runs `route`, then checks that the publications it made are exactly the nodes whose
/// stored version moved, each at its new version, once.
async fn check<F, Fut>(
    srv: &TestServer,
    rec: &RecordingPublisher,
    nodes: &[Uuid],
    what: &str,
    expect_changes: bool,
    route: F,
) where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rec.take();
    let before = versions(srv, nodes).await;
    route().await;
    let after = versions(srv, nodes).await;
    // Every version a node moved through was published exactly once, in order: the
    // published list per node is the stored range (before, after], nothing more or less.
    let mut published: BTreeMap<Uuid, Vec<u64>> = BTreeMap::new();
    for p in rec.take() {
        published.entry(p.node_id).or_default().push(p.version);
    }
    let moved: BTreeMap<Uuid, Vec<u64>> = after
        .iter()
        .filter(|(n, v)| before.get(n) != Some(v))
        .map(|(n, v)| (*n, (before.get(n).copied().unwrap_or(0) + 1..=*v).collect()))
        .collect();
    for list in published.values_mut() {
        list.sort_unstable();
    }
    assert_eq!(
        published, moved,
        "{what}: every committed version published once, and nothing else"
    );
    assert_eq!(
        !moved.is_empty(),
        expect_changes,
        "{what}: expected a node change: {expect_changes}"
    );
}

/// Keeps a node applying and acknowledging in the background.
fn follow(mut node: ProtoNode) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while node.next_state(Duration::from_secs(3600)).await.is_ok() {} })
}

async fn ok(c: &Client, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
    let (s, b) = match method {
        "POST" => c.post(path, body).await,
        "PATCH" => c.patch(path, body).await,
        "DELETE" => c.delete(path).await,
        _ => c.get(path).await,
    };
    assert!(s.is_success(), "{method} {path}: {s} {b}");
    b
}

async fn every_mutating_route_publishes_exactly_what_it_committed(db: Db) {
    let (srv, rec) = TestServer::start_recording(db).await;
    let admin = srv.admin().await;
    let eu1 = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let eu2 = srv.node(&admin, "eu", 1000).await;
    let sg = srv.region_with_node(&admin, "sg", "10.101.0.0/16").await;
    let nodes = [eu1.node_id, eu2.node_id, sg.node_id];
    let (eu2_id, eu1_id) = (eu2.node_id, eu1.node_id);
    let _followers = [follow(eu1), follow(eu2), follow(sg)];
    let (alice, alice_id) = srv.user(&admin, "alice@example.com", 5).await;

    // Device routes.
    let mut device = String::new();
    check(&srv, &rec, &nodes, "create", true, || async {
        let (s, b, _) = alice.add_device("laptop", "eu").await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        device = b["device"]["id"].as_str().expect("id").to_string();
    })
    .await;
    let d = format!("/api/v1/devices/{device}");
    check(&srv, &rec, &nodes, "rename", false, || async {
        ok(&alice, "PATCH", &d, json!({"name": "work laptop"})).await;
    })
    .await;
    check(&srv, &rec, &nodes, "config fetch", false, || async {
        ok(&alice, "GET", &format!("{d}/config"), json!(null)).await;
    })
    .await;
    check(&srv, &rec, &nodes, "rotate", true, || async {
        let key = clawn_proto::WgKeyPair::generate().public().to_base64();
        ok(
            &alice,
            "POST",
            &format!("{d}/rotate"),
            json!({"public_key": key}),
        )
        .await;
    })
    .await;
    check(&srv, &rec, &nodes, "region move", true, || async {
        ok(
            &alice,
            "POST",
            &format!("{d}/region"),
            json!({"region": "sg"}),
        )
        .await;
    })
    .await;

    // Priority tokens and quarantine review (class changes travel as versions).
    check(&srv, &rec, &nodes, "priority grant", true, || async {
        ok(
            &admin,
            "POST",
            "/api/v1/admin/priority-tokens",
            json!({"user_id": alice_id, "region": "sg", "duration_secs": 3600}),
        )
        .await;
    })
    .await;
    let tokens = ok(&admin, "GET", "/api/v1/admin/priority-tokens", json!(null)).await;
    let token = tokens[0]["id"].as_str().expect("token id").to_string();
    check(&srv, &rec, &nodes, "priority revoke", true, || async {
        ok(
            &admin,
            "POST",
            &format!("/api/v1/admin/priority-tokens/{token}/revoke"),
            json!({}),
        )
        .await;
    })
    .await;

    // Quarantine review: releasing a device (quarantined by the abuse monitor) changes no peer
    // here (the owner holds no token any more).
    let dev_id = Uuid::parse_str(&device).expect("uuid");
    assert!(
        srv.app
            .store
            .quarantine(dev_id, "test")
            .await
            .expect("quarantine")
    );
    check(&srv, &rec, &nodes, "quarantine release", false, || async {
        ok(
            &admin,
            "POST",
            &format!("/api/v1/admin/devices/{device}/release"),
            json!({}),
        )
        .await;
    })
    .await;

    // Users: disabling retires the user's peers, enabling restores them.
    let u = format!("/api/v1/admin/users/{alice_id}");
    check(&srv, &rec, &nodes, "user disable", true, || async {
        ok(&admin, "PATCH", &u, json!({"disabled": true})).await;
    })
    .await;
    check(&srv, &rec, &nodes, "user enable", true, || async {
        ok(&admin, "PATCH", &u, json!({"disabled": false})).await;
    })
    .await;
    check(&srv, &rec, &nodes, "slots and role", false, || async {
        ok(&admin, "PATCH", &u, json!({"device_slots": 4})).await;
    })
    .await;
    check(&srv, &rec, &nodes, "password reset", false, || async {
        ok(
            &admin,
            "POST",
            &format!("{u}/password"),
            json!({"password": "another-password-9"}),
        )
        .await;
    })
    .await;
    let alice = srv.login("alice@example.com", "another-password-9").await;

    // Regions, node tokens and node state: no peer changes.
    check(
        &srv,
        &rec,
        &nodes,
        "region create/update",
        false,
        || async {
            ok(
                &admin,
                "POST",
                "/api/v1/admin/regions",
                json!({"code": "us", "name": "US", "cidr": "10.102.0.0/16"}),
            )
            .await;
            ok(
                &admin,
                "PATCH",
                "/api/v1/admin/regions/us",
                json!({"name": "USA"}),
            )
            .await;
            ok(
                &admin,
                "POST",
                "/api/v1/admin/node-tokens",
                json!({"region": "us"}),
            )
            .await;
            ok(
                &admin,
                "PATCH",
                &format!("/api/v1/admin/nodes/{eu2_id}"),
                json!({"state": "maintenance"}),
            )
            .await;
        },
    )
    .await;

    // Revoke (user and admin routes) and node removal.
    let (s, b, _) = alice.add_device("phone", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let phone = b["device"]["id"].as_str().expect("id").to_string();
    check(&srv, &rec, &nodes, "revoke", true, || async {
        ok(&alice, "POST", &format!("{d}/revoke"), json!({})).await;
    })
    .await;
    check(&srv, &rec, &nodes, "admin revoke", true, || async {
        ok(
            &admin,
            "POST",
            &format!("/api/v1/admin/devices/{phone}/revoke"),
            json!({}),
        )
        .await;
    })
    .await;
    check(&srv, &rec, &nodes, "node removal", true, || async {
        ok(
            &admin,
            "DELETE",
            &format!("/api/v1/admin/nodes/{eu1_id}?force=true"),
            json!(null),
        )
        .await;
    })
    .await;
    srv.stop().await;
}

/// The monitor's work (here: the idle sweep removing a peer) and the re-placement a config
/// fetch does afterwards publish through the same path, each committed version once.
async fn background_removal_and_re_placement_publish_through_the_same_path(db: Db) {
    let (srv, rec) = TestServer::start_recording_with(db, |c| {
        c.hygiene.idle_peer_days = 1.0 / 86_400.0; // one second without a handshake
        c.hygiene.sweep_interval_secs = 1;
        c.hygiene.idle_action = clawn_server::config::IdleAction::Remove;
    })
    .await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let nodes = [node.node_id];
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (s, b, kp) = alice.add_device("laptop", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let device = b["device"]["id"].as_str().expect("id").to_string();
    match node.next_state(Duration::from_secs(10)).await.expect("add") {
        clawn_testkit::node::Applied::Delta { added, .. } => assert_eq!(added, vec![kp.public()]),
        other => panic!("{other:?}"),
    }
    // The version that carried the new peer: what the sweep publishes comes after it (the
    // sweep may run any time from one second after the create on).
    let added_at = node.applied.expect("applied version");
    // The peer never handshakes: the monitor's sweep removes it and publishes the removal.
    match node
        .next_state(Duration::from_secs(15))
        .await
        .expect("removal")
    {
        clawn_testkit::node::Applied::Delta { removed, .. } => {
            assert_eq!(removed, vec![kp.public()])
        }
        other => panic!("{other:?}"),
    }
    let after = versions(&srv, &nodes).await;
    let published: Vec<u64> = rec
        .take()
        .iter()
        .map(|p| p.version)
        .filter(|v| *v > added_at)
        .collect();
    let committed: Vec<u64> = (added_at + 1..=after[&node.node_id]).collect();
    assert!(!committed.is_empty(), "the sweep bumped the node's version");
    assert_eq!(
        published, committed,
        "the sweep published what it committed"
    );
    // Fetching the config places the device again: one more version, published once.
    check(
        &srv,
        &rec,
        &nodes,
        "config fetch re-places",
        true,
        || async {
            ok(
                &alice,
                "GET",
                &format!("/api/v1/devices/{device}/config"),
                json!(null),
            )
            .await;
        },
    )
    .await;
    srv.stop().await;
}
