//! Ownership isolation (docs/architecture.md §3): a user never sees, changes or infers another
//! user's devices; every per-device route answers 404 for them exactly like for a
//! missing id; non-admins get 403 on every admin route.

use clawn_proto::WgKeyPair;
use clawn_testkit::{Db, TestServer, both_dbs};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

both_dbs!(
    other_users_devices_are_invisible_on_every_route,
    admin_routes_refuse_users
);

async fn other_users_devices_are_invisible_on_every_route(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let _node = srv.region_with_node(&admin, "eu", "10.100.0.0/16").await;
    let (alice, _) = srv.user(&admin, "alice@example.com", 2).await;
    let (bob, _) = srv.user(&admin, "bob@example.com", 2).await;
    let (_, a, _) = alice.add_device("alice-laptop", "eu").await;
    let alice_dev = a["device"]["id"].as_str().expect("id").to_string();
    let missing = uuid::Uuid::now_v7().to_string();
    let new_key = WgKeyPair::generate().public().to_base64();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/devices/{id}".into(), None),
        (
            Method::PATCH,
            "/api/v1/devices/{id}".into(),
            Some(json!({"name": "pwned"})),
        ),
        (Method::GET, "/api/v1/devices/{id}/config".into(), None),
        (
            Method::POST,
            "/api/v1/devices/{id}/revoke".into(),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v1/devices/{id}/rotate".into(),
            Some(json!({"public_key": new_key})),
        ),
    ];
    for (method, path, body) in &routes {
        let theirs = bob
            .send(
                method.clone(),
                &path.replace("{id}", &alice_dev),
                body.clone(),
            )
            .await;
        let nothing = bob
            .send(
                method.clone(),
                &path.replace("{id}", &missing),
                body.clone(),
            )
            .await;
        assert_eq!(
            theirs.0,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            theirs.1
        );
        assert_eq!(
            theirs, nothing,
            "{method} {path}: another user's device must look exactly like a missing one"
        );
    }
    // Bob's list is empty; Alice's device is untouched (not renamed, not revoked, same key).
    let (_, list) = bob.get("/api/v1/devices").await;
    assert_eq!(list, json!([]));
    let (_, mine) = alice.get(&format!("/api/v1/devices/{alice_dev}")).await;
    assert_eq!(mine["name"], "alice-laptop");
    assert_eq!(mine["state"], "active");
    assert_eq!(mine["public_key"], a["device"]["public_key"]);
    // User views never carry owner fields.
    assert!(mine.get("owner_id").is_none() && mine.get("owner_email").is_none());
    // An admin sees both users' devices with owners, and only through admin routes.
    let (_, all) = admin.get("/api/v1/admin/devices").await;
    assert_eq!(all[0]["owner_email"], "alice@example.com");
    let (_, admin_own) = admin.get("/api/v1/devices").await;
    assert_eq!(
        admin_own,
        json!([]),
        "/api/v1/devices is the caller's own list, even for admins"
    );
}

async fn admin_routes_refuse_users(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let (alice, alice_id) = srv.user(&admin, "alice@example.com", 1).await;
    let id = uuid::Uuid::now_v7();
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, "/api/v1/admin/regions".into(), None),
        (
            Method::POST,
            "/api/v1/admin/regions".into(),
            Some(json!({"code": "xx", "name": "X", "cidr": "10.1.0.0/16"})),
        ),
        (
            Method::PATCH,
            "/api/v1/admin/regions/eu".into(),
            Some(json!({"name": "X"})),
        ),
        (
            Method::POST,
            "/api/v1/admin/node-tokens".into(),
            Some(json!({"region": "eu"})),
        ),
        (Method::GET, "/api/v1/admin/nodes".into(), None),
        (
            Method::PATCH,
            format!("/api/v1/admin/nodes/{id}"),
            Some(json!({"state": "online"})),
        ),
        (Method::DELETE, format!("/api/v1/admin/nodes/{id}"), None),
        (Method::GET, "/api/v1/admin/users".into(), None),
        (
            Method::POST,
            "/api/v1/admin/users".into(),
            Some(json!({"email": "x@example.com", "password": "long-enough-pw"})),
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{alice_id}"),
            Some(json!({"device_slots": 100, "role": "admin"})),
        ),
        (
            Method::POST,
            format!("/api/v1/admin/users/{alice_id}/password"),
            Some(json!({"password": "long-enough-pw"})),
        ),
        (Method::GET, "/api/v1/admin/devices".into(), None),
        (
            Method::POST,
            format!("/api/v1/admin/devices/{id}/revoke"),
            Some(json!({})),
        ),
        (Method::GET, "/api/v1/admin/audit".into(), None),
    ];
    for (method, path, body) in &routes {
        let (s, e) = alice.send(method.clone(), path, body.clone()).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{method} {path}"
        );
        let (s, e) = srv.anon().send(method.clone(), path, body.clone()).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{method} {path}"
        );
    }
    // Nothing changed: still a plain user with one slot.
    let (_, me) = alice.get("/api/v1/me").await;
    assert_eq!(
        (me["role"].as_str(), me["device_slots"].as_u64()),
        (Some("user"), Some(1))
    );
}
