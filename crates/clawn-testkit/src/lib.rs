//! Test harness: a real `clawn-server` on a random loopback port with a fresh database
//! (a SQLite file in a temp dir, or a new database on the PostgreSQL server named by
//! `CLAWN_TEST_PG_URL`), an HTTP client that returns status + JSON, and [`ProtoNode`], a
//! small node-protocol client that enrolls, verifies signed state and acknowledges.

pub mod bench;
mod both;
pub mod node;

use std::path::PathBuf;
use std::time::Duration;

use clawn_proto::WgKeyPair;
use clawn_server::app::AppState;
use clawn_server::config::Config;
use clawn_server::hub::NodeHub;
use clawn_server::service::Publisher;
use clawn_server::store::devices::NodeChange;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::{oneshot, watch};

pub use node::ProtoNode;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the server in `CLAWN_TEST_PG_URL`.
    Postgres,
}

/// Installs ring as the process's rustls provider (reqwest is built without one).
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A fresh temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates one.
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("clawn-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates an empty database for one test and returns its URL.
pub async fn fresh_database(db: Db, dir: &std::path::Path) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}", dir.join("clawn.db").display()),
        Db::Postgres => {
            use sqlx::Connection as _;
            let base = std::env::var("CLAWN_TEST_PG_URL").expect(
                "CLAWN_TEST_PG_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL, \
                 or point it at a server you started (postgres://user@127.0.0.1:port/postgres)",
            );
            let name = format!("clawn_t_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::postgres::PgConnection::connect(&base)
                .await
                .expect("connect to CLAWN_TEST_PG_URL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create database");
            conn.close().await.ok();
            let (prefix, _) = base.rsplit_once('/').expect("URL has a database path");
            format!("{prefix}/{name}")
        }
    }
}

/// Admin credentials every test server starts with.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Admin password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// Password of users created by [`TestServer::user`].
pub const USER_PASSWORD: &str = "user-password-12";

/// Blocks until `cond` holds, re-checking every `every`, for at most `within`; panics
/// naming `what` otherwise. The synchronous twin of [`Client::get_until`], for conditions
/// outside the API that nothing can notify (a ping answering, a process's log, an
/// interface's peers): the wait is on the condition, bounded, and the re-check interval
/// is the only pause.
pub fn poll_until(what: &str, within: Duration, every: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {within:?}: {what}"
        );
        std::thread::sleep(every);
    }
}

/// A bounded wait for a condition the test re-checks by acting (sending telemetry, then
/// reading the API; scraping metrics): the async twin of [`poll_until`] for loops whose
/// body needs `&mut` state. Each [`Retry::again`] panics with `last` once `within` has
/// passed, otherwise pauses `every` (the only pause) before the next attempt.
pub struct Retry {
    what: String,
    deadline: tokio::time::Instant,
    every: Duration,
}

impl Retry {
    /// Starts the clock.
    pub fn new(what: impl Into<String>, within: Duration, every: Duration) -> Self {
        Self {
            what: what.into(),
            deadline: tokio::time::Instant::now() + within,
            every,
        }
    }

    /// The attempt failed with `last`: give up if time is out, else wait for the next.
    pub async fn again(&self, last: impl std::fmt::Display) {
        assert!(
            tokio::time::Instant::now() < self.deadline,
            "timed out: {}; last: {last}",
            self.what
        );
        tokio::time::sleep(self.every).await;
    }
}

/// A [`Publisher`] that records every publication of a committed change, then hands it
/// to the node hub like the production publisher does.
#[derive(Debug)]
pub struct RecordingPublisher {
    hub: Arc<NodeHub>,
    /// Every publication so far, in order.
    pub seen: std::sync::Mutex<Vec<NodeChange>>,
}

impl RecordingPublisher {
    /// Takes the publications recorded since the last call.
    pub fn take(&self) -> Vec<NodeChange> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Publisher for RecordingPublisher {
    fn publish(&self, change: NodeChange) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(change);
        self.hub.publish(change);
    }
}

/// A loopback listener on a free port, with the server's listen and public URL set to it.
async fn bind_loopback(config: &mut Config) -> tokio::net::TcpListener {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    config.listen = addr;
    config.public_url = format!("http://{addr}");
    listener
}

/// A running server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Shared state (direct store access for set-up that the API refuses, like expired tokens).
    pub app: AppState,
    /// Which database.
    pub db: Db,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<TempDir>,
}

impl TestServer {
    /// Starts a server with default configuration.
    pub async fn start(db: Db) -> Self {
        Self::start_with(db, |_| {}).await
    }

    /// Starts a server after letting the caller adjust the configuration.
    pub async fn start_with(db: Db, adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_full(db, adjust, clawn_server::service::hub_publisher).await
    }

    /// Starts a server whose publications of committed changes are recorded (and then
    /// delivered to the node hub as usual).
    pub async fn start_recording(db: Db) -> (Self, Arc<RecordingPublisher>) {
        Self::start_recording_with(db, |_| {}).await
    }

    /// [`Self::start_recording`] after letting the caller adjust the configuration.
    pub async fn start_recording_with(
        db: Db,
        adjust: impl FnOnce(&mut Config),
    ) -> (Self, Arc<RecordingPublisher>) {
        let recorder = Arc::new(std::sync::OnceLock::new());
        let slot = recorder.clone();
        let srv = Self::start_full(db, adjust, move |hub| {
            let r = Arc::new(RecordingPublisher {
                hub,
                seen: std::sync::Mutex::new(Vec::new()),
            });
            let _ = slot.set(r.clone());
            r as Arc<dyn Publisher>
        })
        .await;
        let r = recorder.get().expect("publisher built").clone();
        (srv, r)
    }

    /// Starts a server with a configuration adjustment and a publisher made from the hub.
    pub async fn start_full(
        db: Db,
        adjust: impl FnOnce(&mut Config),
        publisher: impl FnOnce(Arc<NodeHub>) -> Arc<dyn Publisher>,
    ) -> Self {
        let dir = TempDir::new("srv");
        let database_url = fresh_database(db, &dir.0).await;
        Self::launch(
            db,
            &dir.0.clone(),
            database_url,
            adjust,
            publisher,
            Some(dir),
        )
        .await
    }

    /// Starts a server on a data directory and database the caller keeps, so a test can
    /// stop it and start another on the same files (restores, restarts). The admin is
    /// created only when the database has no users.
    pub async fn start_at(
        db: Db,
        data_dir: &std::path::Path,
        database_url: String,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::launch(
            db,
            data_dir,
            database_url,
            adjust,
            clawn_server::service::hub_publisher,
            None,
        )
        .await
    }

    async fn launch(
        db: Db,
        data_dir: &std::path::Path,
        database_url: String,
        adjust: impl FnOnce(&mut Config),
        publisher: impl FnOnce(Arc<NodeHub>) -> Arc<dyn Publisher>,
        dir: Option<TempDir>,
    ) -> Self {
        init_crypto();
        let mut config = Config::for_data_dir(data_dir);
        config.database_url = database_url;
        config.ack_timeout = Duration::from_secs(2);
        // Probe round trips of a loopback stream on a loaded 2-core test machine are
        // scheduling noise, not a path getting slower: tests that exercise the latency
        // alert set their own floor. (Loss and CPU keep their defaults.)
        config.health.latency_floor_ms = 1000.0;
        let listener = bind_loopback(&mut config).await;
        adjust(&mut config);
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = clawn_server::build_app_with(config, stop_rx, publisher)
            .await
            .expect("server builds");
        // The admin every test uses, created straight in the store like the env bootstrap does.
        if app.store.user_count().await.expect("count users") > 0 {
            return Self::serve(app, db, listener, stop_tx, dir);
        }
        let hash = clawn_server::auth::hash_password(ADMIN_PASSWORD).expect("hash");
        let mut w = app.store.write().await.expect("tx");
        clawn_server::store::users::insert(
            &mut w.tx,
            ADMIN_EMAIL,
            &hash,
            clawn_proto::api::Role::Admin,
            5,
            0,
        )
        .await
        .expect("admin");
        w.commit().await.expect("commit");
        Self::serve(app, db, listener, stop_tx, dir)
    }

    /// Starts another replica of this server: the same database and the same signing key
    /// (copied into its own data directory, as an operator shares it), its own listener,
    /// hub and monitor. Only meaningful on PostgreSQL.
    pub async fn replica(&self) -> Self {
        let dir = TempDir::new("replica");
        let key = "signing.key";
        std::fs::copy(self.app.config.data_dir.join(key), dir.0.join(key))
            .expect("copy the signing key");
        let mut config = Config::for_data_dir(&dir.0);
        config.database_url = self.app.config.database_url.clone();
        config.ack_timeout = self.app.config.ack_timeout;
        config.health = self.app.config.health.clone();
        let listener = bind_loopback(&mut config).await;
        let (stop_tx, stop_rx) = watch::channel(false);
        let app = clawn_server::build_app(config, stop_rx)
            .await
            .expect("replica builds");
        Self::serve(app, self.db, listener, stop_tx, Some(dir))
    }

    fn serve(
        app: AppState,
        db: Db,
        listener: tokio::net::TcpListener,
        stop_tx: watch::Sender<bool>,
        dir: Option<TempDir>,
    ) -> Self {
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let served = app.clone();
        let task = tokio::spawn(async move {
            let _ = clawn_server::serve_app(
                served,
                listener,
                async move {
                    let _ = rx.await;
                },
                stop_tx,
            )
            .await;
        });
        Self {
            url: format!("http://{addr}"),
            app,
            db,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    /// An unauthenticated client.
    pub fn anon(&self) -> Client {
        Client::new(&self.url, None)
    }

    /// A bearer client for `email`/`password`.
    pub async fn login(&self, email: &str, password: &str) -> Client {
        let c = self.anon();
        let (s, body) = c
            .post(
                "/api/v1/auth/login",
                json!({"email": email, "password": password, "session": "bearer"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "login {email}: {body}");
        Client::new(&self.url, body["token"].as_str().map(str::to_string))
    }

    /// The admin, signed in.
    pub async fn admin(&self) -> Client {
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    /// Creates a user through the admin API and signs them in.
    pub async fn user(&self, admin: &Client, email: &str, slots: u32) -> (Client, String) {
        let (s, body) = admin
            .post(
                "/api/v1/admin/users",
                json!({"email": email, "password": USER_PASSWORD, "device_slots": slots}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create user: {body}");
        let id = body["id"].as_str().expect("id").to_string();
        (self.login(email, USER_PASSWORD).await, id)
    }

    /// Creates region `code` with pool `cidr` (DNS 10.0.0.53).
    pub async fn region(&self, admin: &Client, code: &str, cidr: &str) {
        let (s, body) = admin
            .post(
                "/api/v1/admin/regions",
                json!({"code": code, "name": code.to_uppercase(), "cidr": cidr, "dns": ["10.0.0.53"]}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "create region: {body}");
    }

    /// Creates region `code` (pool `cidr`) and enrolls + connects a protocol node in it.
    pub async fn region_with_node(&self, admin: &Client, code: &str, cidr: &str) -> ProtoNode {
        self.region(admin, code, cidr).await;
        self.node(admin, code, 1000).await
    }

    /// Enrolls and connects a protocol node in an existing region.
    pub async fn node(&self, admin: &Client, region: &str, capacity: u32) -> ProtoNode {
        let (s, body) = admin
            .post(
                "/api/v1/admin/node-tokens",
                json!({"region": region, "capacity": capacity}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "node token: {body}");
        let mut node = ProtoNode::enroll(&self.url, body["token"].as_str().expect("token"))
            .await
            .expect("enroll");
        node.connect().await.expect("connect");
        node.next_state(Duration::from_secs(10))
            .await
            .expect("first snapshot");
        node
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A JSON HTTP client.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Bearer token.
    pub token: Option<String>,
}

impl Client {
    /// A client for `base` with an optional bearer token.
    pub fn new(base: &str, token: Option<String>) -> Self {
        init_crypto();
        Self {
            http: reqwest::Client::new(),
            base: base.to_string(),
            token,
        }
    }

    /// Sends a request; returns status and JSON body (`Null` when empty).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    /// GET.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }
    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
    /// PATCH with a JSON body.
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PATCH, path, Some(body)).await
    }
    /// DELETE.
    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    /// GETs `path` until `done` holds for the body, for at most `within`; panics with the
    /// last body otherwise. For state the server reaches asynchronously (a node's ack,
    /// stored telemetry, a disconnect noticed): the wait is on the condition, bounded,
    /// and the re-poll interval is the only pause.
    pub async fn get_until(
        &self,
        path: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let retry = Retry::new(
            format!("GET {path}: condition not met within {within:?}"),
            within,
            Duration::from_millis(20),
        );
        loop {
            let (_, body) = self.get(path).await;
            if done(&body) {
                return body;
            }
            retry.again(&body).await;
        }
    }

    /// Creates a device with a fresh key; returns (status, body, key pair).
    pub async fn add_device(&self, name: &str, region: &str) -> (StatusCode, Value, WgKeyPair) {
        let kp = WgKeyPair::generate();
        let (s, b) = self
            .post(
                "/api/v1/devices",
                json!({"name": name, "public_key": kp.public().to_base64(), "region": region}),
            )
            .await;
        (s, b, kp)
    }
}
