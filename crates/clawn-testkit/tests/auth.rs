//! Accounts and sessions: login, equal answers for unknown user and wrong password,
//! rate limits, cookies + CSRF, session list and sign-out everywhere, disabling,
//! API tokens, registration and first-admin setup.

use std::time::Duration;

use clawn_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, Client, Db, TestServer, USER_PASSWORD, both_dbs};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_dbs!(
    login_answers_unknown_user_and_wrong_password_alike,
    failed_logins_are_rate_limited_per_account,
    logins_are_rate_limited_per_client_address,
    sessions_expire_at_their_absolute_limit,
    cookie_sessions_need_csrf_on_changes,
    sessions_list_and_sign_out_everywhere,
    disabling_a_user_ends_sessions_and_tokens,
    api_tokens_are_named_expiring_and_revocable,
    sessions_expire_when_idle,
    tokens_are_stored_only_as_hashes,
    self_registration_is_off_by_default,
    setup_token_creates_first_admin_once,
);

async fn login_answers_unknown_user_and_wrong_password_alike(db: Db) {
    let srv = TestServer::start(db).await;
    let c = srv.anon();
    let (s1, b1) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": "nobody@example.com", "password": "whatever-123"}),
        )
        .await;
    let (s2, b2) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": ADMIN_EMAIL, "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!((s1, b1), (s2, b2));
    // Both paths run argon2: compare typical durations (median of a few, generous bound,
    // since this is a property of the code path, not a benchmark).
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..3 {
        let t = std::time::Instant::now();
        c.post(
            "/api/v1/auth/login",
            json!({"email": format!("nobody{i}@example.com"), "password": "x-123456789"}),
        )
        .await;
        unknown.push(t.elapsed());
        let t = std::time::Instant::now();
        c.post(
            "/api/v1/auth/login",
            json!({"email": ADMIN_EMAIL, "password": format!("wrong-{i}")}),
        )
        .await;
        wrong.push(t.elapsed());
    }
    unknown.sort();
    wrong.sort();
    let (u, w) = (unknown[1].as_secs_f64(), wrong[1].as_secs_f64());
    assert!(
        u > w / 4.0 && w > u / 4.0,
        "unknown {u:.4}s vs wrong {w:.4}s: a user-enumeration timing gap"
    );
}

async fn failed_logins_are_rate_limited_per_account(db: Db) {
    let srv = TestServer::start_with(db, |c| c.login_limit_per_account = 3).await;
    let c = srv.anon();
    for _ in 0..3 {
        let (s, _) = c
            .post(
                "/api/v1/auth/login",
                json!({"email": ADMIN_EMAIL, "password": "wrong-password"}),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let (s, e) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited")),
        "{e}"
    );
    assert!(e["hint"].as_str().is_some_and(|h| h.contains("wait")));
    // Another account from the same address is not blocked by this account's budget.
    let (s, _) = c
        .post(
            "/api/v1/auth/login",
            json!({"email": "other@example.com", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

async fn cookie_login(
    srv: &TestServer,
    email: &str,
    password: &str,
) -> (reqwest::Client, String, Value) {
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/api/v1/auth/login", srv.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    assert_eq!(resp.status(), StatusCode::OK);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-clawn_session="))
        .expect("session cookie")
        .clone();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            session.contains(attr),
            "session cookie lacks {attr}: {session}"
        );
    }
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("__Host-clawn_csrf="))
        .expect("csrf cookie");
    assert!(
        !csrf_cookie.contains("HttpOnly"),
        "the dashboard must be able to read the CSRF cookie"
    );
    let body: Value = resp.json().await.expect("json");
    assert!(
        body.get("token").is_none(),
        "cookie logins never expose the session token to scripts"
    );
    let cookie = session.split(';').next().expect("pair").to_string();
    (http, cookie, body)
}

async fn cookie_sessions_need_csrf_on_changes(db: Db) {
    let srv = TestServer::start(db).await;
    let (http, cookie, body) = cookie_login(&srv, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let csrf = body["csrf_token"].as_str().expect("csrf").to_string();
    let me = http
        .get(format!("{}/api/v1/me", srv.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::OK, "GET needs no CSRF token");
    let create = |token: Option<&str>| {
        let mut r = http
            .post(format!("{}/api/v1/admin/regions", srv.url))
            .header("cookie", &cookie)
            .json(&json!({"code": "eu", "name": "EU", "cidr": "10.100.0.0/16"}));
        if let Some(t) = token {
            r = r.header("x-csrf-token", t);
        }
        r.send()
    };
    let no = create(None).await.expect("send");
    assert_eq!(no.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        no.json::<Value>().await.expect("json")["code"],
        "csrf_failed"
    );
    let wrong = create(Some("clawn_csrf_wrong")).await.expect("send");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let ok = create(Some(&csrf)).await.expect("send");
    assert_eq!(ok.status(), StatusCode::CREATED);
    // A cookie session's token cannot be replayed as a bearer token.
    let token = cookie
        .trim_start_matches("__Host-clawn_session=")
        .to_string();
    let (s, _) = Client::new(&srv.url, Some(token)).get("/api/v1/me").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Logout ends the session.
    let out = http
        .post(format!("{}/api/v1/auth/logout", srv.url))
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let me = http
        .get(format!("{}/api/v1/me", srv.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
}

async fn sessions_list_and_sign_out_everywhere(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let (a1, _) = srv.user(&admin, "alice@example.com", 1).await;
    let a2 = srv.login("alice@example.com", USER_PASSWORD).await;
    let (_, list) = a1.get("/api/v1/sessions").await;
    let list = list.as_array().expect("array").clone();
    assert_eq!(list.len(), 2);
    assert_eq!(list.iter().filter(|s| s["current"] == true).count(), 1);
    // End the other session by id.
    let other = list.iter().find(|s| s["current"] == false).expect("other")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (s, _) = a1.delete(&format!("/api/v1/sessions/{other}")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(a2.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    // Someone else's session id answers 404.
    let (s, _) = admin.delete(&format!("/api/v1/sessions/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let a3 = srv.login("alice@example.com", USER_PASSWORD).await;
    let (s, _) = a1.post("/api/v1/sessions/end-all", json!({})).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(a1.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(a3.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        admin.get("/api/v1/me").await.0,
        StatusCode::OK,
        "other users are untouched"
    );
}

async fn disabling_a_user_ends_sessions_and_tokens(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let (alice, id) = srv.user(&admin, "alice@example.com", 1).await;
    let (_, tok) = alice.post("/api/v1/tokens", json!({"name": "ci"})).await;
    let pat = Client::new(&srv.url, tok["token"].as_str().map(str::to_string));
    assert_eq!(pat.get("/api/v1/me").await.0, StatusCode::OK);
    let (s, u) = admin
        .patch(
            &format!("/api/v1/admin/users/{id}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!((s, &u["disabled"]), (StatusCode::OK, &json!(true)));
    assert_eq!(alice.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(pat.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
    let (s, e) = srv
        .anon()
        .post(
            "/api/v1/auth/login",
            json!({"email": "alice@example.com", "password": USER_PASSWORD}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("account_disabled"))
    );
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE user_id = $1")
        .bind(&id)
        .fetch_one(srv.app.store.pool())
        .await
        .expect("count");
    assert_eq!(n, 0);
    admin
        .patch(
            &format!("/api/v1/admin/users/{id}"),
            json!({"disabled": false}),
        )
        .await;
    srv.login("alice@example.com", USER_PASSWORD).await;
    // The admin cannot lock themselves out.
    let (_, me) = admin.get("/api/v1/me").await;
    let (s, e) = admin
        .patch(
            &format!(
                "/api/v1/admin/users/{}",
                me["id"].as_str().unwrap_or_default()
            ),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("self_lockout"))
    );
}

async fn api_tokens_are_named_expiring_and_revocable(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let (s, tok) = admin
        .post(
            "/api/v1/tokens",
            json!({"name": "automation", "expires_in_days": 7}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tok}");
    let secret = tok["token"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("clawn_pat_"));
    let pat = Client::new(&srv.url, Some(secret));
    let (s, me) = pat.get("/api/v1/me").await;
    assert_eq!(
        (s, me["email"].as_str()),
        (StatusCode::OK, Some(ADMIN_EMAIL))
    );
    let (_, list) = admin.get("/api/v1/tokens").await;
    assert_eq!(list[0]["name"], "automation");
    assert!(
        list[0].get("token").is_none(),
        "the secret is shown only at creation"
    );
    let (s, e) = admin
        .post("/api/v1/tokens", json!({"name": "x", "expires_in_days": 0}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_expiry"))
    );
    let (s, _) = admin
        .delete(&format!(
            "/api/v1/tokens/{}",
            tok["id"].as_str().unwrap_or_default()
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(pat.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
}

async fn sessions_expire_when_idle(db: Db) {
    let srv = TestServer::start_with(db, |c| c.session_idle = Duration::from_millis(300)).await;
    let admin = srv.admin().await;
    assert_eq!(admin.get("/api/v1/me").await.0, StatusCode::OK);
    // Idle past the bound: the scenario is the passage of time itself.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(admin.get("/api/v1/me").await.0, StatusCode::UNAUTHORIZED);
}

async fn tokens_are_stored_only_as_hashes(db: Db) {
    let srv = TestServer::start(db).await;
    let admin = srv.admin().await;
    let (_, tok) = admin.post("/api/v1/tokens", json!({"name": "t"})).await;
    srv.region(&admin, "eu", "10.100.0.0/16").await;
    let (_, jt) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    let node = clawn_testkit::ProtoNode::enroll(&srv.url, jt["token"].as_str().expect("t"))
        .await
        .expect("enroll");
    let secrets = [
        admin.token.clone().expect("session"),
        tok["token"].as_str().expect("pat").to_string(),
        jt["token"].as_str().expect("join").to_string(),
        node.credential.clone(),
    ];
    let pool = srv.app.store.pool();
    let mut stored = String::new();
    for sql in [
        "SELECT token_hash FROM sessions",
        "SELECT token_hash FROM api_tokens",
        "SELECT token_hash FROM join_tokens",
        "SELECT credential_hash FROM nodes",
        "SELECT password_hash FROM users",
        "SELECT metadata FROM audit_events",
    ] {
        let v: Vec<String> = sqlx::query_scalar(sql)
            .fetch_all(pool)
            .await
            .expect("query");
        stored.push_str(&v.join("\n"));
    }
    for s in &secrets {
        assert!(!stored.contains(s.as_str()), "a secret is stored in clear");
        assert!(
            stored.contains(&clawn_server::auth::token_hash(s)),
            "the hash of each secret is what is stored"
        );
    }
    assert!(!stored.contains(ADMIN_PASSWORD));
    assert!(stored.contains("$argon2id$v=19$m=19456,t=2,p=1$"));
}

async fn self_registration_is_off_by_default(db: Db) {
    let srv = TestServer::start(db).await;
    let (s, e) = srv
        .anon()
        .post(
            "/api/v1/auth/register",
            json!({"email": "new@example.com", "password": "long-enough-pw"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("registration_closed"))
    );
    let srv = TestServer::start_with(db, |c| c.self_registration = true).await;
    let c = srv.anon();
    let (s, b) = c
        .post(
            "/api/v1/auth/register",
            json!({"email": "New@Example.com", "password": "long-enough-pw", "session": "bearer"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["user"]["email"], "new@example.com");
    assert_eq!(b["user"]["role"], "user");
    assert_eq!(b["user"]["device_slots"], 1);
    let (s, e) = c
        .post(
            "/api/v1/auth/register",
            json!({"email": "new@example.com", "password": "long-enough-pw"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
    let (s, e) = c
        .post(
            "/api/v1/auth/register",
            json!({"email": "x@example.com", "password": "short"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("weak_password"))
    );
    let (s, e) = c
        .post(
            "/api/v1/auth/register",
            json!({"email": "y@example.com", "password": "long-enough-pw", "role": "admin"}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body")),
        "role cannot be smuggled in"
    );
}

async fn setup_token_creates_first_admin_once(db: Db) {
    // A server whose store has no users prints a setup token; the harness always adds an
    // admin, so exercise the setup route against the stored hash directly.
    let srv = TestServer::start(db).await;
    let token = "clawn_setup_test-token";
    srv.app
        .store
        .set_setting("setup_token_hash", &clawn_server::auth::token_hash(token))
        .await
        .expect("set");
    let c = srv.anon();
    let (s, e) = c.post("/api/v1/auth/setup", json!({"setup_token": "wrong", "email": "root@example.com", "password": "long-enough-pw"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_setup_token"))
    );
    let (s, e) = c.post("/api/v1/auth/setup", json!({"setup_token": token, "email": "root@example.com", "password": "long-enough-pw"})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_set_up")),
        "setup is only for an empty database"
    );
}

async fn logins_are_rate_limited_per_client_address(db: Db) {
    let srv = TestServer::start_with(db, |c| c.login_limit_per_addr = 4).await;
    let c = srv.anon();
    // Different accounts from one address share the address budget.
    for i in 0..4 {
        let body = json!({"email": format!("u{i}@example.com"), "password": "wrong-password"});
        let (s, _) = c.post("/api/v1/auth/login", body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    let body = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let (s, e) = c.post("/api/v1/auth/login", body).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
}

async fn sessions_expire_at_their_absolute_limit(db: Db) {
    let srv = TestServer::start_with(db, |c| {
        c.session_max = Duration::from_millis(600);
        c.session_idle = Duration::from_millis(600);
    })
    .await;
    let admin = srv.admin().await;
    let (_, sessions) = admin.get("/api/v1/sessions").await;
    let s0 = &sessions[0];
    let lifetime = s0["expires_at"]
        .as_i64()
        .zip(s0["created_at"].as_i64())
        .map(|(e, c)| e - c);
    assert_eq!(lifetime, Some(600));
    // Keep using it: activity does not extend the absolute limit.
    admin
        .get_until("/api/v1/me", Duration::from_secs(5), |b| {
            b["code"] == "unauthenticated"
        })
        .await;
}
