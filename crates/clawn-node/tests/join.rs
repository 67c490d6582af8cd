//! `clawn-node join` against a real control plane on loopback: the identity stays on the
//! node (private files, no private key reaches the server), and a used, expired or
//! unknown token is refused with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use clawn_server::auth::{TokenKind, new_token, token_hash};
use clawn_testkit::{Db, TempDir, TestServer};
use serde_json::{Value, json};

async fn join(url: &str, dir: &Path, token: &str) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_clawn-node"))
        .arg("--state-dir")
        .arg(dir)
        .args(["join", "--server", url, "--token", token])
        .args(["--backend", "uapi", "--endpoint", "192.0.2.10:51820"])
        .args(["--exit-ipv4", "192.0.2.10"])
        .output()
        .await
        .expect("run clawn-node")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn join_keeps_secrets_on_the_node_and_refuses_bad_tokens() {
    let server = TestServer::start(Db::Sqlite).await;
    let admin = server.admin().await;
    server.region(&admin, "eu", "10.100.0.0/16").await;
    let (_, body) = admin
        .post("/api/v1/admin/node-tokens", json!({"region": "eu"}))
        .await;
    let token = body["token"].as_str().expect("token").to_string();
    let tmp = TempDir::new("join");

    let ok = join(&server.url, &tmp.0.join("a"), &token).await;
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("joined region eu"), "{}", text(&ok));
    let id_path = tmp.0.join("a/identity.json");
    let mode = std::fs::metadata(&id_path)
        .expect("identity")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(tmp.0.join("a"))
        .expect("dir")
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    let id: Value =
        serde_json::from_str(&std::fs::read_to_string(&id_path).expect("read")).expect("json");
    // The server knows the node's public keys, never its private ones.
    let (_, nodes) = admin.get("/api/v1/admin/nodes").await;
    let nodes_text = nodes.to_string();
    for secret in ["wg_private_key", "identity_secret"] {
        let s = id[secret].as_str().expect("secret");
        assert!(!nodes_text.contains(s), "{secret} reached the API");
        let db = std::fs::read(server.app.config.data_dir.join("clawn.db")).unwrap_or_default();
        assert!(
            !db.windows(s.len()).any(|w| w == s.as_bytes()),
            "{secret} reached the database"
        );
    }
    assert_eq!(nodes[0]["id"], id["node_id"]);

    // The same token again: used.
    let used = join(&server.url, &tmp.0.join("b"), &token).await;
    assert_eq!(used.status.code(), Some(2), "{}", text(&used));
    assert!(text(&used).contains("join_token_used"), "{}", text(&used));
    assert!(!tmp.0.join("b/identity.json").exists());

    // An expired token (the API cannot mint one in the past; the store can).
    let expired = new_token(TokenKind::Join);
    let region = server
        .app
        .store
        .region_by_code("eu")
        .await
        .expect("store")
        .expect("region");
    let mut w = server.app.store.write().await.expect("tx");
    server
        .app
        .store
        .insert_join_token(&mut w.tx, &token_hash(&expired), region.id, 10, None, 0, 1)
        .await
        .expect("insert");
    w.commit().await.expect("commit");
    let out = join(&server.url, &tmp.0.join("c"), &expired).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("join_token_expired"), "{}", text(&out));
    assert!(text(&out).contains("hint:"), "{}", text(&out));

    // Unknown token.
    let out = join(&server.url, &tmp.0.join("d"), "clawn_join_nonsense").await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("invalid_join_token"), "{}", text(&out));

    // A node joins once per state directory.
    let again = join(&server.url, &tmp.0.join("a"), &token).await;
    assert!(!again.status.success());
    assert!(text(&again).contains("already holds"), "{}", text(&again));

    // An unreachable server is a clear error, not a hang.
    let out = join("http://127.0.0.1:9", &tmp.0.join("e"), &token).await;
    assert!(!out.status.success());
    assert!(
        text(&out).contains("cannot reach the control plane"),
        "{}",
        text(&out)
    );
}
