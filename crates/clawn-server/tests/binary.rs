//! The real `clawn-server` binary: zero-configuration start, first-admin bootstrap
//! (setup token or environment), file permissions, `--help`, and — across a whole
//! session of sign-ins, tokens and enrollment — that no secret ever reaches its output.

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};

/// Everything the process printed, and a signal for each new chunk.
type Output = Arc<(Mutex<String>, Condvar)>;

struct Server {
    child: Child,
    out: Output,
    /// One message per output pipe when it reaches end of file (the process is gone).
    closed: mpsc::Receiver<()>,
    url: String,
}

impl Server {
    fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawn-server"));
        cmd.current_dir(dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("CLAWN_ADMIN_EMAIL")
            .env_remove("CLAWN_ADMIN_PASSWORD")
            .env("CLAWN_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn clawn-server");
        let out: Output = Arc::default();
        let (closed_tx, closed) = mpsc::channel();
        for mut pipe in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let (out, closed_tx) = (out.clone(), closed_tx.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    out.0
                        .lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                    out.1.notify_all();
                }
                let _ = closed_tx.send(());
            });
        }
        let s = Self {
            child,
            out,
            closed,
            url: format!("http://127.0.0.1:{port}"),
        };
        s.wait_for("clawn-server listening");
        s
    }

    /// Waits (bounded) until the output contains `needle`.
    fn wait_for(&self, needle: &str) {
        let (text, signal) = &*self.out;
        let guard = text.lock().expect("lock");
        let (guard, timeout) = signal
            .wait_timeout_while(guard, Duration::from_secs(30), |t| !t.contains(needle))
            .expect("lock");
        assert!(
            !timeout.timed_out(),
            "server never printed {needle:?}; output:\n{}",
            *guard
        );
    }

    fn output(&self) -> String {
        self.out.0.lock().expect("lock").clone()
    }

    /// SIGTERM, then wait (bounded) until both output pipes close, i.e. the process is
    /// gone and everything it printed has been read; SIGKILL if it does not exit.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..2 {
            if self.closed.recv_timeout(Duration::from_secs(10)).is_err() {
                let _ = self.child.kill();
                break;
            }
        }
        let _ = self.child.wait();
        self.output()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn call(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn temp_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("clawn-bin-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_setup_token_and_no_secrets_in_output() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir();
    let srv = Server::start(&dir, &[]);
    // Zero configuration: ./clawn-data with a SQLite database and the signing key, private.
    let data = dir.join("clawn-data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("signing.key")), 0o600);
    assert_eq!(mode(&data.join("clawn.db")), 0o600);
    let out = srv.output();
    let setup = out
        .split_whitespace()
        .find(|w| w.starts_with("clawn_setup_"))
        .expect("a setup token is printed on first start")
        .to_string();
    let u = &srv.url;
    let (s, e) = call(reqwest::Method::POST, &format!("{u}/api/v1/auth/setup"), None,
        Some(json!({"setup_token": "clawn_setup_wrong", "email": "root@example.com", "password": "root-password-123"}))).await;
    assert_eq!((s, e["code"].as_str()), (401, Some("invalid_setup_token")));
    let (s, b) = call(reqwest::Method::POST, &format!("{u}/api/v1/auth/setup"), None,
        Some(json!({"setup_token": setup, "email": "root@example.com", "password": "root-password-123"}))).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["user"]["role"], "admin");
    let admin = b["token"].as_str().expect("token").to_string();
    let (s, _) = call(reqwest::Method::POST, &format!("{u}/api/v1/auth/setup"), None,
        Some(json!({"setup_token": setup, "email": "x@example.com", "password": "root-password-123"}))).await;
    assert_eq!(s, 401, "the setup token works once");

    // A session full of secrets.
    let a = Some(admin.as_str());
    call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/admin/regions"),
        a,
        Some(json!({"code": "eu", "name": "EU", "cidr": "10.100.0.0/16"})),
    )
    .await;
    let (_, jt) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/admin/node-tokens"),
        a,
        Some(json!({"region": "eu"})),
    )
    .await;
    let join = jt["token"].as_str().expect("join").to_string();
    let wg = clawn_proto::WgKeyPair::generate();
    let (s, enr) = call(reqwest::Method::POST, &format!("{u}/api/v1/node/enroll"), None, Some(json!({
        "token": join, "wg_public_key": wg.public(), "identity_public_key": "O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik=",
        "endpoint": "192.0.2.1:51820", "listen_port": 51820}))).await;
    assert_eq!(s, 201, "{enr}");
    let cred = enr["credential"].as_str().expect("cred").to_string();
    let (_, _) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/admin/users"),
        a,
        Some(json!({"email": "alice@example.com", "password": "alice-password-1"})),
    )
    .await;
    let (_, la) = call(reqwest::Method::POST, &format!("{u}/api/v1/auth/login"), None,
        Some(json!({"email": "alice@example.com", "password": "alice-password-1", "session": "bearer"}))).await;
    let alice = la["token"].as_str().expect("alice").to_string();
    let (_, lc) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/auth/login"),
        None,
        Some(json!({"email": "alice@example.com", "password": "alice-password-1"})),
    )
    .await;
    let csrf = lc["csrf_token"].as_str().expect("csrf").to_string();
    let (_, pat) = call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/tokens"),
        Some(&alice),
        Some(json!({"name": "t"})),
    )
    .await;
    let pat = pat["token"].as_str().expect("pat").to_string();
    // Failed attempts with secrets in them.
    call(
        reqwest::Method::POST,
        &format!("{u}/api/v1/auth/login"),
        None,
        Some(json!({"email": "alice@example.com", "password": "wrong-password-xyz"})),
    )
    .await;
    call(
        reqwest::Method::GET,
        &format!("{u}/api/v1/me"),
        Some("clawn_s_not-a-real-session-token"),
        None,
    )
    .await;
    let device_key = clawn_proto::WgKeyPair::generate();
    call(reqwest::Method::POST, &format!("{u}/api/v1/devices"), Some(&alice), Some(json!({
        "name": "x", "public_key": device_key.public(), "region": "eu", "private_key": device_key.private_base64()}))).await;

    let out = srv.stop();
    for (what, secret) in [
        ("admin password", "root-password-123"),
        ("user password", "alice-password-1"),
        ("wrong password", "wrong-password-xyz"),
        ("admin session", admin.as_str()),
        ("user session", alice.as_str()),
        ("csrf token", csrf.as_str()),
        ("api token", pat.as_str()),
        ("join token", join.as_str()),
        ("node credential", cred.as_str()),
        ("bogus token", "clawn_s_not-a-real-session-token"),
        ("device private key", device_key.private_base64().as_str()),
    ] {
        assert!(
            !out.contains(secret),
            "the {what} appears in the server output:\n{out}"
        );
    }
    // Printed once, in the start-up notice only: the `clawn setup` command and the
    // dashboard's `/setup#token=` link, never in a log line.
    assert_eq!(
        out.matches(setup.as_str()).count(),
        2,
        "the setup token is printed in the notice's command and link only:\n{out}"
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(setup.as_str())).collect();
    assert!(
        lines[0].trim().starts_with("clawn setup --server "),
        "{lines:?}"
    );
    assert!(
        lines[1].trim().starts_with("http://") && lines[1].contains("/setup#token="),
        "{lines:?}"
    );

    // A restart with accounts prints no setup token.
    let srv = Server::start(&dir, &[]);
    let out = srv.stop();
    assert!(!out.contains("clawn_setup_"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_from_environment_without_logging_the_password() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir();
    let srv = Server::start(
        &dir,
        &[
            ("CLAWN_ADMIN_EMAIL", "ops@example.com"),
            ("CLAWN_ADMIN_PASSWORD", "env-password-4567"),
        ],
    );
    let (s, b) = call(reqwest::Method::POST, &format!("{}/api/v1/auth/login", srv.url), None,
        Some(json!({"email": "ops@example.com", "password": "env-password-4567", "session": "bearer"}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["user"]["role"], "admin");
    let (s, h) = call(
        reqwest::Method::GET,
        &format!("{}/healthz", srv.url),
        None,
        None,
    )
    .await;
    assert_eq!((s, h["status"].as_str()), (200, Some("ok")));
    let metrics = reqwest::get(format!("{}/metrics", srv.url))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for m in [
        "clawn_http_requests_total",
        "clawn_http_request_duration_seconds",
        "clawn_devices_active",
        "clawn_peers_live",
        "clawn_nodes{state=\"online\"}",
    ] {
        assert!(metrics.contains(m), "{m} missing from /metrics");
    }
    let (s, doc) = call(
        reqwest::Method::GET,
        &format!("{}/api/v1/openapi.json", srv.url),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    for p in [
        "/api/v1/devices",
        "/api/v1/devices/{id}/revoke",
        "/api/v1/admin/audit",
        "/api/v1/node/enroll",
        "/api/v1/auth/login",
    ] {
        assert!(
            doc["paths"].get(p).is_some(),
            "{p} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"].get("ApiError").is_some());
    let out = srv.stop();
    assert!(out.contains("ops@example.com"));
    assert!(!out.contains("env-password-4567"), "{out}");
    assert!(
        !out.contains("clawn_setup_"),
        "no setup token when the admin comes from the environment"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `clawn-server ARGS` in `dir` to completion: (exit code, stdout + stderr).
fn run_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clawn-server"))
        .current_dir(dir)
        .args(args)
        .env_remove("CLAWN_SECRET_KEY")
        .env_remove("CLAWN_SECRET_KEY_FILE")
        .output()
        .expect("run clawn-server");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn keygen_encrypted_start_online_backup_restore_refusal_and_rekey() {
    let dir = temp_dir();
    let (code, out) = run_in(&dir, &["keygen", "--out", "secret.key"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("public key: age1") && !out.contains("AGE-SECRET-KEY"),
        "{out}"
    );
    assert_eq!(mode(&dir.join("secret.key")), 0o600);
    let (code, out) = run_in(&dir, &["keygen", "--out", "secret.key"]);
    assert_eq!(code, Some(2), "never overwrites a key: {out}");

    let key_file = dir.join("secret.key");
    let key_path = key_file.to_str().expect("utf-8 path");
    let srv = Server::start(&dir, &[("CLAWN_SECRET_KEY_FILE", key_path)]);
    let signing = std::fs::read(dir.join("clawn-data/signing.key")).expect("signing.key");
    assert!(
        signing.starts_with(b"age-encryption.org/v1\n"),
        "encrypted at rest"
    );
    // Online: the server is still running.
    let (code, out) = run_in(
        &dir,
        &["backup", "--out", "b.age", "--secret-key-file", key_path],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("VACUUM INTO") && out.contains("wrote b.age"),
        "{out}"
    );
    let log = srv.stop();
    assert!(
        !log.contains("plaintext"),
        "no plaintext warning with a key: {log}"
    );
    assert!(!log.contains("AGE-SECRET-KEY"), "{log}");

    let (code, out) = run_in(
        &dir,
        &["--secret-key-file", key_path, "restore", "--from", "b.age"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--force") && out.contains("nothing was changed"),
        "{out}"
    );
    let (code, out) = run_in(
        &dir,
        &[
            "--secret-key-file",
            key_path,
            "restore",
            "--from",
            "b.age",
            "--force",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("restored the database"), "{out}");

    assert_eq!(run_in(&dir, &["keygen", "--out", "new.key"]).0, Some(0));
    let (code, out) = run_in(
        &dir,
        &[
            "--secret-key-file",
            key_path,
            "rekey",
            "--new-secret-key-file",
            "new.key",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("re-encrypted"), "{out}");
    // The old key no longer opens the signing key: the start stops, with a hint.
    let (code, out) = run_in(
        &dir,
        &["--secret-key-file", key_path, "--listen", "127.0.0.1:0"],
    );
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("hint:") && out.contains("signing.key"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_documents_every_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_clawn-server"))
        .arg("--help")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Clawn control plane"),
        "the program's own description comes first:\n{text}"
    );
    for flag in [
        "--listen",
        "--data-dir",
        "--database-url",
        "--public-url",
        "--config",
        "--self-registration",
        "--ack-timeout-ms",
        "--signing-key-file",
        "--secret-key-file",
        "CLAWN_SECRET_KEY",
        "backup",
        "restore",
        "CLAWN_DATABASE_URL",
        "default: 127.0.0.1:8080",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_clawn-server"))
        .args(["--database-url", "mysql://x"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("database_url"));
}
