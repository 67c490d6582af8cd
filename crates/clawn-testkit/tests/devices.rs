//! Device lifecycle through the real API, on SQLite and PostgreSQL: onboarding with a
//! node, config without a private key, list/rename/revoke/rotate, validation, slots.

use std::time::Duration;

use clawn_proto::WgKeyPair;
use clawn_testkit::{Db, TestServer, both_dbs};
use reqwest::StatusCode;
use serde_json::json;

both_dbs!(
    create_device_allocates_on_node_and_pushes,
    config_has_everything_but_the_private_key,
    revoke_is_verified_by_node_ack,
    revoke_reports_offline_node,
    rotate_keeps_node_and_address,
    rename_and_list,
    bad_input_is_rejected_and_changes_nothing,
    slot_limit_holds_under_20_parallel_creates,
    keys_are_never_reused,
    picks_node_with_fewest_peers,
    regions_list_only_eligible,
);

async fn create_device_allocates_on_node_and_pushes(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (s, body, kp) = alice.add_device("laptop", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["device"]["state"], "active");
    assert_eq!(body["device"]["tunnel_ip"], "10.100.0.2");
    assert_eq!(body["device"]["node"]["id"], node.node_id.to_string());
    assert_eq!(body["device"]["node"]["exit_ipv4"], "192.0.2.10");
    // The node receives the new peer as a signed delta.
    let applied = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("delta");
    match applied {
        clawn_testkit::node::Applied::Delta { added, removed, .. } => {
            assert_eq!(added, vec![kp.public()]);
            assert!(removed.is_empty());
        }
        other => panic!("expected a delta, got {other:?}"),
    }
    assert_eq!(
        node.peers[&kp.public()].allowed_ips,
        vec!["10.100.0.2/32".to_string()]
    );
    // The user's slot is used; the audit log has the event.
    let (_, me) = alice.get("/api/v1/me").await;
    assert_eq!(me["active_devices"], 1);
    let (_, audit) = admin.get("/api/v1/admin/audit?action=device.create").await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(audit["items"][0]["actor_label"], "alice@example.com");
}

async fn config_has_everything_but_the_private_key(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (s, body, kp) = alice.add_device("phone", "eu").await;
    assert_eq!(s, StatusCode::CREATED);
    let id = body["device"]["id"].as_str().expect("id");
    let (s, cfg) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(s, StatusCode::OK, "{cfg}");
    let c = &cfg["config"];
    assert_eq!(c["address"], "10.100.0.2/32");
    assert_eq!(c["peer_public_key"], node.wg.public().to_base64());
    assert_eq!(c["endpoint"], "192.0.2.10:51820");
    assert_eq!(c["dns"], json!(["10.0.0.53"]));
    assert_eq!(c["allowed_ips"], json!(["0.0.0.0/0", "::/0"]));
    assert_eq!(c["persistent_keepalive"], 25);
    let text = cfg["config_text"].as_str().expect("text");
    assert!(
        text.contains("PrivateKey = <insert-your-private-key>"),
        "{text}"
    );
    assert!(!text.contains(&kp.private_base64()));
    // The client-side render with the real key gives a complete wg-quick file.
    let tpl: clawn_proto::config::ConfigTemplate =
        serde_json::from_value(c.clone()).expect("template");
    let full = tpl.render(Some(&kp.private_base64()));
    assert!(full.contains(&format!("PrivateKey = {}", kp.private_base64())));
    assert_eq!(body["config"], cfg["config"]);
}

async fn revoke_is_verified_by_node_ack(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, body, kp) = alice.add_device("laptop", "eu").await;
    node.next_state(Duration::from_secs(5))
        .await
        .expect("add delta");
    let id = body["device"]["id"].as_str().expect("id").to_string();
    // Revoke while the node keeps applying and acking in the background.
    let revoker = {
        let alice = alice.clone();
        let id = id.clone();
        tokio::spawn(async move {
            alice
                .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
                .await
        })
    };
    let applied = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("revoke delta");
    assert!(
        matches!(&applied, clawn_testkit::node::Applied::Delta { removed, .. } if removed == &vec![kp.public()]),
        "{applied:?}"
    );
    assert!(node.peers.is_empty());
    let (s, rev) = revoker.await.expect("join");
    assert_eq!(s, StatusCode::OK, "{rev}");
    assert_eq!(rev["node_ack"]["status"], "acknowledged", "{rev}");
    assert_eq!(rev["node_ack"]["version"].as_u64(), node.applied);
    assert_eq!(rev["device"]["state"], "revoked");
    assert!(rev["device"]["tunnel_ip"].is_null());
    // The slot is free again, revoking twice is a clear conflict, the config is gone.
    let (_, me) = alice.get("/api/v1/me").await;
    assert_eq!(me["active_devices"], 0);
    let (s, again) = alice
        .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
        .await;
    assert_eq!(
        (s, again["code"].as_str()),
        (StatusCode::CONFLICT, Some("device_revoked"))
    );
    let (s, _) = alice.get(&format!("/api/v1/devices/{id}/config")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The admin sees the node's acked version.
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(nodes[0]["acked_version"].as_u64(), node.applied);
}

async fn revoke_reports_offline_node(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, body, kp) = alice.add_device("laptop", "eu").await;
    node.next_state(Duration::from_secs(5)).await.expect("add");
    node.disconnect().await;
    let id = body["device"]["id"].as_str().expect("id");
    // Wait for the server to notice the disconnect (bounded).
    admin
        .get_until("/api/v1/admin/nodes", Duration::from_secs(10), |n| {
            n[0]["connected"] == false
        })
        .await;
    let (s, rev) = alice
        .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rev["node_ack"]["status"], "offline", "{rev}");
    // When the node comes back it gets a snapshot without the revoked peer.
    node.connect().await.expect("reconnect");
    node.next_state(Duration::from_secs(5))
        .await
        .expect("snapshot");
    assert!(!node.peers.contains_key(&kp.public()));
}

async fn rotate_keeps_node_and_address(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, body, old) = alice.add_device("laptop", "eu").await;
    node.next_state(Duration::from_secs(5)).await.expect("add");
    let id = body["device"]["id"].as_str().expect("id").to_string();
    let new = WgKeyPair::generate();
    let rotating = {
        let alice = alice.clone();
        let id = id.clone();
        let key = new.public().to_base64();
        tokio::spawn(async move {
            alice
                .post(
                    &format!("/api/v1/devices/{id}/rotate"),
                    json!({"public_key": key}),
                )
                .await
        })
    };
    let applied = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("rotate delta");
    match applied {
        clawn_testkit::node::Applied::Delta { added, removed, .. } => {
            assert_eq!(removed, vec![old.public()]);
            assert_eq!(added, vec![new.public()]);
        }
        other => panic!("{other:?}"),
    }
    let (s, rot) = rotating.await.expect("join");
    assert_eq!(s, StatusCode::OK, "{rot}");
    assert_eq!(rot["node_ack"]["status"], "acknowledged");
    assert_eq!(rot["device"]["tunnel_ip"], body["device"]["tunnel_ip"]);
    assert_eq!(rot["device"]["node"]["id"], body["device"]["node"]["id"]);
    assert_eq!(rot["device"]["public_key"], new.public().to_base64());
    assert_eq!(
        node.peers[&new.public()].allowed_ips,
        vec!["10.100.0.2/32".to_string()]
    );
    let (_, me) = alice.get("/api/v1/me").await;
    assert_eq!(me["active_devices"], 1, "rotation does not take a slot");
}

async fn rename_and_list(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 3).await;
    for n in ["a", "b", "c"] {
        assert_eq!(alice.add_device(n, "eu").await.0, StatusCode::CREATED);
    }
    let (_, list) = alice.get("/api/v1/devices").await;
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 3);
    let ips: Vec<_> = list
        .iter()
        .map(|d| d["tunnel_ip"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ips, vec!["10.100.0.2", "10.100.0.3", "10.100.0.4"]);
    let id = list[1]["id"].as_str().expect("id");
    let (s, d) = alice
        .patch(&format!("/api/v1/devices/{id}"), json!({"name": "renamed"}))
        .await;
    assert_eq!((s, d["name"].as_str()), (StatusCode::OK, Some("renamed")));
    let (s, e) = alice
        .patch(&format!("/api/v1/devices/{id}"), json!({"name": ""}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_name"))
    );
}

async fn bad_input_is_rejected_and_changes_nothing(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 5).await;
    let good = WgKeyPair::generate().public().to_base64();
    let cases = [
        (
            json!({"name": "x", "public_key": "AAAA", "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "public_key": good, "region": "nowhere"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"name": "", "public_key": good, "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "x", "public_key": good, "region": "eu", "user_id": "00000000-0000-0000-0000-000000000000"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "public_key": good, "region": "eu", "role": "admin"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "public_key": good, "region": "eu", "private_key": WgKeyPair::generate().private_base64()}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!("not an object"),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": WgKeyPair::generate().private_base64(), "public_key": good, "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "name_looks_like_key",
        ),
        (
            json!({"name": format!("PrivateKey = {}", WgKeyPair::generate().private_base64()), "public_key": good, "region": "eu"}),
            StatusCode::BAD_REQUEST,
            "name_looks_like_key",
        ),
        (
            json!({"name": "x", "public_key": good, "region": "e\u{0}u"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
    ];
    for (body, status, code) in cases {
        let (s, e) = alice.post("/api/v1/devices", body.clone()).await;
        assert_eq!(s, status, "{body} -> {e}");
        assert_eq!(e["code"], code, "{body} -> {e}");
        assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A non-JSON body, a bad id in the path, an unknown route: still JSON errors.
    let raw = reqwest::Client::new()
        .post(format!("{}/api/v1/devices", srv.url))
        .bearer_auth(alice.token.clone().unwrap_or_default())
        .body("name=x")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let e: serde_json::Value = raw.json().await.expect("json");
    assert_eq!(e["code"], "unsupported_media_type");
    let (s, e) = alice.get("/api/v1/devices/not-a-uuid").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_path"))
    );
    let big = "x".repeat(300 * 1024);
    let (s, e) = alice
        .post(
            "/api/v1/devices",
            json!({"name": big, "public_key": good, "region": "eu"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body_too_large"))
    );
    // Nothing changed.
    let (_, list) = alice.get("/api/v1/devices").await;
    assert_eq!(list, json!([]));
    let (_, me) = alice.get("/api/v1/me").await;
    assert_eq!(me["active_devices"], 0);
}

async fn slot_limit_holds_under_20_parallel_creates(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let alice = alice.clone();
            tokio::spawn(async move { alice.add_device(&format!("d{i}"), "eu").await })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for t in tasks {
        let (s, body, _) = t.await.expect("join");
        match s {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(body["code"], "slots_exhausted", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((created, refused), (1, 19));
    let (_, list) = alice.get("/api/v1/devices").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(nodes[0]["live_peers"], 1);
}

async fn keys_are_never_reused(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (bob, _) = srv.user(&admin, "bob@example.com", 2).await;
    let (_, body, kp) = alice.add_device("a", "eu").await;
    let key = kp.public().to_base64();
    // Another user cannot register the same key (and learns nothing about whose it is).
    let (s, e) = bob
        .post(
            "/api/v1/devices",
            json!({"name": "b", "public_key": key, "region": "eu"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("key_in_use"))
    );
    // A revoked key can never come back, not even for its owner.
    let id = body["device"]["id"].as_str().expect("id");
    alice
        .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
        .await;
    let (s, e) = alice
        .post(
            "/api/v1/devices",
            json!({"name": "again", "public_key": key, "region": "eu"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("key_in_use"))
    );
}

async fn picks_node_with_fewest_peers(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let n1 = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let n2 = srv.node(&admin, "eu", 1000).await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 4).await;
    let mut on = std::collections::HashMap::new();
    for i in 0..4 {
        let (s, b, _) = alice.add_device(&format!("d{i}"), "eu").await;
        assert_eq!(s, StatusCode::CREATED);
        *on.entry(
            b["device"]["node"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
        .or_insert(0) += 1;
    }
    assert_eq!(on.get(&n1.node_id.to_string()), Some(&2), "{on:?}");
    assert_eq!(on.get(&n2.node_id.to_string()), Some(&2), "{on:?}");
    // Nodes in maintenance take no new devices; a full region says so.
    for n in [&n1, &n2] {
        let (s, _) = admin
            .patch(
                &format!("/api/v1/admin/nodes/{}", n.node_id),
                json!({"state": "maintenance"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let (alice2, _) = srv.user(&admin, "alice2@example.com", 1).await;
    let (s, e, _) = alice2.add_device("x", "eu").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("no_capacity"))
    );
}

async fn regions_list_only_eligible(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _n = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (s, _) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": "sg", "name": "Singapore", "cidr": "10.101.0.0/16"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, regions) = alice.get("/api/v1/regions").await;
    let codes: Vec<_> = regions
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["code"].clone())
        .collect();
    assert_eq!(codes, vec![json!("eu")]);
    assert_eq!(regions[0]["health"]["status"], "healthy");
    let (_, all) = admin.get("/api/v1/admin/regions").await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(all[1]["health"]["status"], "unavailable");
}
