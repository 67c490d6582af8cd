//! Admin operations: regions, node tokens (one-time, expiring, atomic), nodes, users,
//! device revocation, and the audit log (filters, pagination, append-only).

use std::time::Duration;

use clawn_proto::time::now_millis;
use clawn_testkit::{Db, ProtoNode, TestServer, USER_PASSWORD, both_dbs};
use reqwest::StatusCode;
use serde_json::json;

both_dbs!(
    regions_validate_and_update,
    join_tokens_are_one_time_and_expire,
    concurrent_enrollments_with_one_token_one_wins,
    node_states_and_removal,
    users_slots_and_password_reset,
    admin_revokes_any_device,
    every_admin_action_is_audited_and_paginated,
    audit_log_is_append_only,
);

async fn regions_validate_and_update(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    for (body, code) in [
        (
            json!({"code": "EU", "name": "x", "cidr": "10.0.0.0/16"}),
            "invalid_region_code",
        ),
        (
            json!({"code": "eu", "name": "x", "cidr": "10.0.0.1/16"}),
            "invalid_cidr",
        ),
        (
            json!({"code": "eu", "name": "x", "cidr": "nonsense"}),
            "invalid_cidr",
        ),
        (
            json!({"code": "eu", "name": "x", "cidr": "10.0.0.0/16", "node_prefix": 12}),
            "invalid_node_prefix",
        ),
        (
            json!({"code": "eu", "name": "x", "cidr": "10.0.0.0/16", "dns": ["not-an-ip"]}),
            "invalid_dns",
        ),
        (
            json!({"code": "eu", "name": "", "cidr": "10.0.0.0/16"}),
            "invalid_name",
        ),
    ] {
        let (s, e) = admin.post("/api/v1/admin/regions", body.clone()).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{body}"
        );
    }
    let (_, all) = admin.get("/api/v1/admin/regions").await;
    assert_eq!(all, json!([]), "bad input changed nothing");
    let _n = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (s, e) = admin
        .post(
            "/api/v1/admin/regions",
            json!({"code": "eu", "name": "x", "cidr": "10.9.0.0/16"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("region_exists"))
    );
    let (s, r) = admin
        .patch(
            "/api/v1/admin/regions/eu",
            json!({"name": "Europe West", "dns": ["9.9.9.9"]}),
        )
        .await;
    assert_eq!(
        (s, r["name"].as_str()),
        (StatusCode::OK, Some("Europe West"))
    );
    assert_eq!(r["dns"], json!(["9.9.9.9"]));
    let (s, e) = admin
        .patch("/api/v1/admin/regions/eu", json!({"cidr": "10.200.0.0/16"}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("region_has_nodes"))
    );
    let (s, _) = admin
        .patch("/api/v1/admin/regions/nope", json!({"name": "x"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn join_tokens_are_one_time_and_expire(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let (s, t) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = t["token"].as_str().expect("token").to_string();
    assert!(
        t["join_command"]
            .as_str()
            .is_some_and(|c| c.contains(&token) && c.contains(&srv.url))
    );
    let expires = t["expires_at"].as_i64().expect("expiry") - now_millis();
    assert!(
        (3_500_000..=3_600_000).contains(&expires),
        "default expiry is 1 h, got {expires} ms"
    );
    ProtoNode::enroll(&srv.url, &token)
        .await
        .expect("first use enrolls");
    let err = ProtoNode::enroll(&srv.url, &token)
        .await
        .err()
        .expect("reuse fails")
        .to_string();
    assert!(err.contains("join_token_used"), "{err}");
    let err = ProtoNode::enroll(&srv.url, "clawn_join_made-up")
        .await
        .err()
        .expect("unknown fails")
        .to_string();
    assert!(err.contains("invalid_join_token"), "{err}");
    // An expired token (inserted directly: the API refuses lifetimes under a minute).
    let expired = clawn_server::auth::new_token(clawn_server::auth::TokenKind::Join);
    let region = srv
        .app
        .store
        .region_by_code("eu")
        .await
        .expect("q")
        .expect("region");
    let mut w = srv.app.store.write().await.expect("tx");
    let (_, me) = admin.get("/api/v1/me").await;
    let admin_id = uuid::Uuid::parse_str(me["id"].as_str().expect("id")).expect("uuid");
    srv.app
        .store
        .insert_join_token(
            &mut w.tx,
            &clawn_server::auth::token_hash(&expired),
            region.id,
            10,
            Some(admin_id),
            0,
            now_millis() - 1,
        )
        .await
        .expect("insert");
    w.commit().await.expect("commit");
    let err = ProtoNode::enroll(&srv.url, &expired)
        .await
        .err()
        .expect("expired fails")
        .to_string();
    assert!(err.contains("join_token_expired"), "{err}");
    let (s, e) = admin
        .post(
            "/api/v1/admin/node-tokens",
            json!({"region": "eu", "expires_in_secs": 5}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_expiry"))
    );
    let (s, _) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "nowhere"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Bad enrollment input is refused before the token is spent.
    let (s, t) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let bad = json!({"token": t["token"], "wg_public_key": clawn_proto::WgKeyPair::generate().public(),
        "identity_public_key": "bm90IGEga2V5", "endpoint": "1.2.3.4:51820", "listen_port": 51820});
    let (s, e) = srv.anon().post("/api/v1/node/enroll", bad).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_identity_key"))
    );
    let bad = json!({"token": t["token"], "wg_public_key": clawn_proto::WgKeyPair::generate().public(),
        "identity_public_key": "bm90IGEga2V5", "endpoint": "$(reboot):1", "listen_port": 51820});
    let (s, e) = srv.anon().post("/api/v1/node/enroll", bad).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_endpoint"))
    );
    ProtoNode::enroll(&srv.url, t["token"].as_str().expect("t"))
        .await
        .expect("token still valid after bad input");
}

async fn concurrent_enrollments_with_one_token_one_wins(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let (_, t) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    let token = t["token"].as_str().expect("token").to_string();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (url, token) = (srv.url.clone(), token.clone());
            tokio::spawn(async move { ProtoNode::enroll(&url, &token).await.map(|n| n.node_id) })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("join") {
            Ok(_) => won += 1,
            Err(e) => assert!(e.to_string().contains("join_token_used"), "{e}"),
        }
    }
    assert_eq!(won, 1);
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(nodes.as_array().map(Vec::len), Some(1));
}

async fn node_states_and_removal(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let path = format!("/api/v1/admin/nodes/{}", node.node_id);
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    let n = &nodes[0];
    assert_eq!(
        (n["state"].as_str(), n["connected"].as_bool()),
        (Some("online"), Some(true))
    );
    assert_eq!(n["pool"], "10.100.0.0/20");
    assert_eq!(n["capabilities"], json!(["exit"]));
    for s in ["maintenance", "draining", "experimental", "online"] {
        let (st, v) = admin.patch(&path, json!({"state": s})).await;
        assert_eq!((st, v["state"].as_str()), (StatusCode::OK, Some(s)));
    }
    let (st, e) = admin.patch(&path, json!({"state": "offline"})).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_state"))
    );
    let (st, e) = admin.patch(&path, json!({"state": "bogus"})).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, dev, _) = alice.add_device("d", "eu").await;
    node.next_state(Duration::from_secs(5))
        .await
        .expect("delta");
    let (st, e) = admin.delete(&path).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("node_has_peers"))
    );
    let (st, _) = admin.delete(&format!("{path}?force=true")).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    // The node gets a last delta removing its peers, then its stream closes and its
    // credential no longer works.
    let last = node
        .next_state(Duration::from_secs(5))
        .await
        .expect("final delta");
    assert!(
        matches!(last, clawn_testkit::node::Applied::Delta { ref removed, .. } if removed.len() == 1),
        "{last:?}"
    );
    assert!(node.peers.is_empty());
    let closed = node.recv_signed(Duration::from_secs(5)).await;
    assert!(closed.is_err(), "stream must close after removal");
    assert!(
        node.connect().await.is_err(),
        "removed node cannot reconnect"
    );
    let (_, d) = alice
        .get(&format!(
            "/api/v1/devices/{}",
            dev["device"]["id"].as_str().unwrap_or_default()
        ))
        .await;
    assert!(d["node"].is_null() && d["tunnel_ip"].is_null(), "{d}");
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    assert_eq!(nodes, json!([]));
}

async fn users_slots_and_password_reset(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _n = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, id) = srv.user(&admin, "alice@example.com", 1).await;
    assert_eq!(alice.add_device("a", "eu").await.0, StatusCode::CREATED);
    assert_eq!(alice.add_device("b", "eu").await.0, StatusCode::CONFLICT);
    let (s, u) = admin
        .patch(
            &format!("/api/v1/admin/users/{id}"),
            json!({"device_slots": 2}),
        )
        .await;
    assert_eq!((s, u["device_slots"].as_u64()), (StatusCode::OK, Some(2)));
    assert_eq!(alice.add_device("b", "eu").await.0, StatusCode::CREATED);
    let (s, e) = admin
        .post(
            "/api/v1/admin/users",
            json!({"email": "alice@example.com", "password": "long-enough-pw"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    let (s, e) = admin
        .post(
            "/api/v1/admin/users",
            json!({"email": "bad", "password": "long-enough-pw"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_email"))
    );
    let (_, pat) = alice
        .post("/api/v1/tokens", json!({"name": "stolen"}))
        .await;
    let pat = clawn_testkit::Client::new(&srv.url, pat["token"].as_str().map(str::to_string));
    assert_eq!(pat.get("/api/v1/me").await.0, StatusCode::OK);
    let (s, _) = admin
        .post(
            &format!("/api/v1/admin/users/{id}/password"),
            json!({"password": "a-brand-new-pass"}),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        alice.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED,
        "reset ends sessions"
    );
    let (s, _) = srv
        .anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": "alice@example.com", "password": USER_PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    srv.login("alice@example.com", "a-brand-new-pass").await;
    assert_eq!(
        pat.get("/api/v1/me").await.0,
        StatusCode::UNAUTHORIZED,
        "a reset also revokes API tokens"
    );
    let (_, users) = admin.get("/api/v1/admin/users").await;
    assert_eq!(users.as_array().map(Vec::len), Some(2));
}

async fn admin_revokes_any_device(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, alice_id) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, dev, kp) = alice.add_device("a", "eu").await;
    node.next_state(Duration::from_secs(5)).await.expect("add");
    let id = dev["device"]["id"].as_str().expect("id").to_string();
    let (_, list) = admin
        .get(&format!(
            "/api/v1/admin/devices?user_id={alice_id}&state=active"
        ))
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let task = {
        let admin = admin.clone();
        let id = id.clone();
        tokio::spawn(async move {
            admin
                .post(&format!("/api/v1/admin/devices/{id}/revoke"), json!({}))
                .await
        })
    };
    node.next_state(Duration::from_secs(5))
        .await
        .expect("remove");
    assert!(!node.peers.contains_key(&kp.public()));
    let (s, r) = task.await.expect("join");
    assert_eq!(
        (s, r["node_ack"]["status"].as_str()),
        (StatusCode::OK, Some("acknowledged"))
    );
    let (_, audit) = admin
        .get(&format!(
            "/api/v1/admin/audit?target={id}&action=device.revoke"
        ))
        .await;
    assert_eq!(audit["items"][0]["actor_kind"], "admin");
    let (_, mine) = alice.get(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(mine["state"], "revoked");
    let (s, _) = admin.get("/api/v1/admin/devices?state=bogus").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn every_admin_action_is_audited_and_paginated(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let before = now_millis();
    let _n = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (_, uid) = srv.user(&admin, "alice@example.com", 1).await;
    admin
        .patch(
            &format!("/api/v1/admin/users/{uid}"),
            json!({"device_slots": 3}),
        )
        .await;
    admin
        .patch("/api/v1/admin/regions/eu", json!({"name": "Europe"}))
        .await;
    let (_, page) = admin.get("/api/v1/admin/audit?limit=100").await;
    let actions: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_string())
        .collect();
    for a in [
        "region.create",
        "node_token.create",
        "node.enroll",
        "user.create",
        "user.update",
        "region.update",
    ] {
        assert!(
            actions.contains(&a.to_string()),
            "{a} missing from {actions:?}"
        );
    }
    // Newest first, filters, time range, and cursor pagination that covers everything once.
    assert_eq!(actions[0], "region.update");
    let (_, f) = admin
        .get("/api/v1/admin/audit?actor=admin@example.com&action=user.")
        .await;
    let fa: Vec<_> = f["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(fa, vec![json!("user.update"), json!("user.create")]);
    let (_, none) = admin
        .get(&format!("/api/v1/admin/audit?until={before}"))
        .await;
    assert_eq!(none["items"], json!([]));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let q = cursor
            .as_ref()
            .map(|c| format!("&cursor={c}"))
            .unwrap_or_default();
        let (s, p) = admin.get(&format!("/api/v1/admin/audit?limit=2{q}")).await;
        assert_eq!(s, StatusCode::OK);
        for e in p["items"].as_array().expect("items") {
            seen.push(e["id"].as_str().unwrap_or_default().to_string());
        }
        cursor = p["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), actions.len());
    let (s, e) = admin.get("/api/v1/admin/audit?cursor=garbage").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cursor"))
    );
    let (s, _) = admin.get("/api/v1/admin/audit?since=notanumber").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn audit_log_is_append_only(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let pool = srv.app.store.pool();
    let upd = sqlx::query("UPDATE audit_events SET action = 'forged'")
        .execute(pool)
        .await;
    assert!(
        upd.is_err(),
        "the database itself refuses to rewrite history"
    );
    let del = sqlx::query("DELETE FROM audit_events").execute(pool).await;
    assert!(del.is_err());
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_events WHERE action = 'region.create'")
            .fetch_one(pool)
            .await
            .expect("count");
    assert_eq!(n, 1);
}

mod lifecycle {
    use super::*;

    both_dbs!(
        disabling_a_user_cuts_tunnels_and_enabling_restores_them,
        disconnected_nodes_go_offline_and_take_no_devices,
        revoke_and_rotate_racing_keep_the_invariants,
        trusted_proxy_addresses_are_used_for_rate_limits,
        nul_in_urls_is_a_clear_error,
    );

    async fn disabling_a_user_cuts_tunnels_and_enabling_restores_them(db: Db) {
        let srv = TestServer::start(db).await;
        let admin = srv.admin().await;
        let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
        let (alice, id) = srv.user(&admin, "alice@example.com", 2).await;
        let (_, d1, k1) = alice.add_device("a", "eu").await;
        node.next_state(Duration::from_secs(5))
            .await
            .expect("add a");
        let (_, _, k2) = alice.add_device("b", "eu").await;
        node.next_state(Duration::from_secs(5))
            .await
            .expect("add b");
        let (s, _) = admin
            .patch(
                &format!("/api/v1/admin/users/{id}"),
                json!({"disabled": true}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        // Both peers leave the node (one or two deltas, depending on coalescing).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !node.peers.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "peers of a disabled user stayed: {:?}",
                node.peers.keys()
            );
            node.next_state(Duration::from_secs(5))
                .await
                .expect("removal");
        }
        let (_, devs) = admin
            .get(&format!("/api/v1/admin/devices?user_id={id}"))
            .await;
        for d in devs.as_array().expect("devices") {
            assert_eq!(d["state"], "active", "devices are suspended, not revoked");
            assert!(d["tunnel_ip"].is_null());
        }
        let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
        assert_eq!(nodes[0]["live_peers"], 0);
        // Enabling restores both on the same node with the same addresses and keys.
        let (s, _) = admin
            .patch(
                &format!("/api/v1/admin/users/{id}"),
                json!({"disabled": false}),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while node.peers.len() < 2 {
            assert!(tokio::time::Instant::now() < deadline, "peers not restored");
            node.next_state(Duration::from_secs(5))
                .await
                .expect("restore");
        }
        assert_eq!(
            node.peers[&k1.public()].allowed_ips,
            vec![format!(
                "{}/32",
                d1["device"]["tunnel_ip"].as_str().unwrap_or_default()
            )]
        );
        assert!(node.peers.contains_key(&k2.public()));
        let alice = srv.login("alice@example.com", USER_PASSWORD).await;
        let (s, _) = alice
            .get(&format!(
                "/api/v1/devices/{}/config",
                d1["device"]["id"].as_str().unwrap_or_default()
            ))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (_, audit) = admin
            .get(&format!(
                "/api/v1/admin/audit?target={id}&action=user.update"
            ))
            .await;
        assert_eq!(audit["items"][1]["metadata"]["peers_changed"], 2, "{audit}");
    }

    async fn disconnected_nodes_go_offline_and_take_no_devices(db: Db) {
        let srv = TestServer::start(db).await;
        let admin = srv.admin().await;
        let mut node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
        let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
        node.disconnect().await;
        admin
            .get_until("/api/v1/admin/nodes", Duration::from_secs(5), |n| {
                n[0]["state"] == "offline"
            })
            .await;
        let (s, e, _) = alice.add_device("a", "eu").await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("no_capacity"))
        );
        let (_, regions) = alice.get("/api/v1/regions").await;
        assert_eq!(regions, json!([]));
        node.connect().await.expect("reconnect");
        node.next_state(Duration::from_secs(5))
            .await
            .expect("snapshot");
        let (s, _, _) = alice.add_device("a", "eu").await;
        assert_eq!(
            s,
            StatusCode::CREATED,
            "back online, back in the candidate set"
        );
    }

    async fn revoke_and_rotate_racing_keep_the_invariants(db: Db) {
        let srv = TestServer::start(db).await;
        let admin = srv.admin().await;
        let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
        let (alice, _) = srv.user(&admin, "alice@example.com", 1).await;
        for round in 0..6 {
            let (s, d, _) = alice.add_device(&format!("r{round}"), "eu").await;
            assert_eq!(s, StatusCode::CREATED, "{d}");
            let id = d["device"]["id"].as_str().expect("id").to_string();
            let mut tasks = Vec::new();
            for i in 0..4 {
                let (alice, id) = (alice.clone(), id.clone());
                tasks.push(tokio::spawn(async move {
                    if i % 2 == 0 {
                        alice
                            .post(&format!("/api/v1/devices/{id}/revoke"), json!({}))
                            .await
                    } else {
                        let key = clawn_proto::WgKeyPair::generate().public().to_base64();
                        alice
                            .post(
                                &format!("/api/v1/devices/{id}/rotate"),
                                json!({"public_key": key}),
                            )
                            .await
                    }
                }));
            }
            for t in tasks {
                let (s, b) = t.await.expect("join");
                assert!(
                    matches!(s, StatusCode::OK | StatusCode::CONFLICT),
                    "{s} {b}"
                );
            }
            let pool = srv.app.store.pool();
            let live_on_revoked: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM peers p JOIN devices d ON d.id = p.device_id WHERE d.state = 'revoked' AND p.retired_at IS NULL",
            )
            .fetch_one(pool)
            .await
            .expect("count");
            assert_eq!(live_on_revoked, 0, "a revoked device kept a live peer");
            let counted: i64 = sqlx::query_scalar("SELECT live_peers FROM nodes")
                .fetch_one(pool)
                .await
                .expect("q");
            let actual: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE retired_at IS NULL")
                    .fetch_one(pool)
                    .await
                    .expect("q");
            assert_eq!(counted, actual, "node live-peer counter drifted");
            let (_, me) = alice.get("/api/v1/me").await;
            assert_eq!(me["active_devices"], 0, "the slot is free after the revoke");
        }
    }

    async fn trusted_proxy_addresses_are_used_for_rate_limits(db: Db) {
        let srv = TestServer::start_with(db, |c| {
            c.login_limit_per_addr = 2;
            c.trusted_proxies = vec!["127.0.0.0/8".parse().expect("net")];
        })
        .await;
        let login = |xff: &'static str| {
            let url = format!("{}/api/v1/auth/login", srv.url);
            async move {
                reqwest::Client::new()
                    .post(url)
                    .header("x-forwarded-for", xff)
                    .json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
                    .send()
                    .await
                    .expect("send")
                    .status()
            }
        };
        assert_eq!(login("198.51.100.1").await, StatusCode::UNAUTHORIZED);
        assert_eq!(login("198.51.100.1").await, StatusCode::UNAUTHORIZED);
        assert_eq!(login("198.51.100.1").await, StatusCode::TOO_MANY_REQUESTS);
        // Another client behind the same proxy has its own budget.
        assert_eq!(
            login("203.0.113.5, 198.51.100.1").await,
            StatusCode::TOO_MANY_REQUESTS,
            "right-most untrusted hop counts"
        );
        assert_eq!(login("198.51.100.2").await, StatusCode::UNAUTHORIZED);
        // Without trust, X-Forwarded-For is ignored: the socket address is the key.
        let plain = TestServer::start_with(db, |c| c.login_limit_per_addr = 2).await;
        for (i, want) in [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
        ]
        .into_iter()
        .enumerate()
        {
            let s = reqwest::Client::new()
                .post(format!("{}/api/v1/auth/login", plain.url))
                .header("x-forwarded-for", format!("192.0.2.{i}"))
                .json(&json!({"email": "nobody@example.com", "password": "wrong-password"}))
                .send()
                .await
                .expect("send")
                .status();
            assert_eq!(s, want);
        }
    }

    async fn nul_in_urls_is_a_clear_error(db: Db) {
        let srv = TestServer::start(db).await;
        let admin = srv.admin().await;
        for path in [
            "/api/v1/admin/audit?actor=a%00b",
            "/api/v1/admin/regions/e%00u",
        ] {
            let (s, e) = admin.get(path).await;
            assert_eq!(
                (s, e["code"].as_str()),
                (StatusCode::BAD_REQUEST, Some("invalid_path")),
                "{path}"
            );
        }
        let (s, e) = admin
            .post("/api/v1/tokens", json!({"name": "a\u{0}b"}))
            .await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_body"))
        );
        let (s, _) = srv
            .anon()
            .post(
                "/api/v1/auth/login",
                json!({"email": "a\u{0}@example.com", "password": "x-123456789"}),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
