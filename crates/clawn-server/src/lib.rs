//! Clawn control plane.
//!
//! [`serve`] runs the whole server on a listener until a shutdown future resolves;
//! `main.rs` only parses configuration and calls it. Layout: [`config`] (flags, env,
//! TOML), [`store`] (SQLite/PostgreSQL), [`policy`] (who may touch what), [`http`]
//! (routes), [`hub`] (node streams), [`auth`] (secrets), [`keyfiles`] (key material at
//! rest), [`backup`] (backup and restore), [`ippool`] (address math).

pub mod app;
pub mod auth;
pub mod backup;
pub mod config;
pub mod health;
pub mod http;
pub mod hub;
pub mod ippool;
pub mod keyfiles;
pub mod monitor;
pub mod placement;
pub mod policy;
pub mod replicas;
pub mod service;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, AppState};
use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::store::Store;

/// Server start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data directory could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    /// Serving failed.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// The signing key could not be read, decrypted or created.
    #[error("key material: {0}")]
    KeyFile(#[from] keyfiles::KeyFileError),
    /// Bootstrap failed.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Gauges are re-set every <= 10 s by the monitor (and at each scrape for the
            // totals); one not set for 2 minutes belongs to a removed node and is dropped.
            let recorder = PrometheusBuilder::new()
                .idle_timeout(
                    metrics_util::MetricKindMask::GAUGE,
                    Some(std::time::Duration::from_secs(120)),
                )
                .build_recorder();
            let handle = recorder.handle();
            // Only the first server in a process installs the global recorder; later ones
            // (tests) share it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens the store and signing key and builds the shared state.
pub async fn build_app(
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<AppState, ServeError> {
    build_app_with(config, shutdown, service::hub_publisher).await
}

/// [`build_app`] with the publisher made from the node hub by `publisher` (tests wrap
/// the hub to record every publication).
pub async fn build_app_with(
    config: Config,
    shutdown: watch::Receiver<bool>,
    publisher: impl FnOnce(Arc<hub::NodeHub>) -> Arc<dyn service::Publisher>,
) -> Result<AppState, ServeError> {
    let dir = &config.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| ServeError::DataDir {
        path: dir.display().to_string(),
        source,
    })?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    if config.secret_key.is_none() {
        tracing::warn!(
            "no secret key set (CLAWN_SECRET_KEY or --secret-key-file): the signing key is              stored in plaintext, protected by file permissions only (docs/backup.md)"
        );
    }
    let signer =
        keyfiles::load_or_create_signing_key(&config.signing_key_file, config.secret_key.as_ref())?;
    let store = Store::open(&config.database_url)
        .await?
        .with_tuning(store::Tuning {
            placement: config.placement.clone(),
            health: config.health.clone(),
        });
    if config.is_sqlite() {
        restrict_sqlite_files(&config.database_url);
    }
    let dummy_hash = tokio::task::spawn_blocking(|| auth::hash_password("clawn-timing-equaliser"))
        .await
        .map_err(|e| ServeError::Bootstrap(e.to_string()))?
        .map_err(ServeError::Bootstrap)?;
    let hub = Arc::new(hub::NodeHub::default());
    let replica_id = uuid::Uuid::new_v4();
    let replication = match store.kind() {
        // One process owns the file: no stream of a previous run survived it.
        store::DbKind::Sqlite => {
            store.forget_streams().await?;
            None
        }
        store::DbKind::Postgres => Some(replicas::start(
            store.clone(),
            hub.clone(),
            replica_id,
            shutdown.clone(),
        )),
    };
    let app = Arc::new(App {
        limiter: LoginLimiter::new(config.login_limit_per_account, config.login_limit_per_addr),
        config,
        store,
        publisher: publisher(hub.clone()),
        hub,
        signer,
        dummy_hash,
        metrics: metrics_handle(),
        monitor: monitor::MonitorState::default(),
        shutdown,
        replica_id,
        replication,
    });
    bootstrap(&app).await?;
    Ok(app)
}

fn restrict_sqlite_files(url: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or(path);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::set_permissions(
            format!("{path}{suffix}"),
            std::fs::Permissions::from_mode(0o600),
        );
    }
}

/// First start with no users: create the admin from `CLAWN_ADMIN_EMAIL` /
/// `CLAWN_ADMIN_PASSWORD`, or print a one-time setup token. Never logs a password.
async fn bootstrap(app: &AppState) -> Result<(), ServeError> {
    if app.store.user_count().await? > 0 {
        return Ok(());
    }
    let email = std::env::var("CLAWN_ADMIN_EMAIL")
        .ok()
        .filter(|e| !e.trim().is_empty());
    let password = std::env::var("CLAWN_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty());
    if let (Some(email), Some(password)) = (email, password) {
        let email = service::accounts::normalize_email(&email)
            .map_err(|e| ServeError::Bootstrap(format!("CLAWN_ADMIN_EMAIL: {}", e.message)))?;
        service::accounts::check_password(&password)
            .map_err(|e| ServeError::Bootstrap(format!("CLAWN_ADMIN_PASSWORD: {}", e.message)))?;
        let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
            .await
            .map_err(|e| ServeError::Bootstrap(e.to_string()))?
            .map_err(ServeError::Bootstrap)?;
        service::accounts::bootstrap_admin(app, &email, &hash).await?;
        tracing::info!(email = %email, "created the bootstrap admin from CLAWN_ADMIN_EMAIL");
        return Ok(());
    }
    let token = service::accounts::new_setup_token(app).await?;
    // Printed to the terminal only, never through the log pipeline.
    eprintln!(
        "\n  Clawn has no accounts yet. Create the first admin within this run with:\n\n    \
         clawn setup --server {url} --token {token} --email you@example.com\n\n  \
         or in a browser (HTTPS or localhost):\n\n    {url}/setup#token={token}\n\n  \
         (or POST /api/v1/auth/setup). The token is shown once; a restart prints a new one.\n",
        url = app.config.public_url
    );
    Ok(())
}

/// A task started next to the server once it listens (the all-in-one node agent, which
/// the `clawn-server` binary composes in; the control-plane library knows no WireGuard).
/// Given the state and the bound address; awaited (bounded) after the server stops.
pub type Companion = Box<dyn FnOnce(AppState, SocketAddr) -> tokio::task::JoinHandle<()> + Send>;

/// Serves until `shutdown` resolves, then closes node streams and the database.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    companion: Option<Companion>,
) -> Result<(), ServeError> {
    let (tx, rx) = watch::channel(false);
    let app = build_app(config, rx).await?;
    serve_app_with(app, listener, shutdown, tx, companion).await
}

/// Serves a built app (lets callers keep a handle on the state).
pub async fn serve_app(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop: watch::Sender<bool>,
) -> Result<(), ServeError> {
    serve_app_with(app, listener, shutdown, stop, None).await
}

/// [`serve_app`] with a companion task started once the listener is bound.
pub async fn serve_app_with(
    app: AppState,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop: watch::Sender<bool>,
    companion: Option<Companion>,
) -> Result<(), ServeError> {
    if app.config.with_node && companion.is_none() {
        return Err(ServeError::Bootstrap(
            "--with-node needs the node agent, which this caller did not compose in \
             (the clawn-server binary does with its default `with-node` feature)"
                .into(),
        ));
    }
    let (router, _doc) = http::router(app.clone());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, db = ?app.store.kind(), "clawn-server listening");
    let monitor = tokio::spawn(monitor::run(app.clone()));
    let companion = companion.map(|start| start(app.clone(), addr));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await?;
    // The in-process node removes its firewall table on the way out.
    if let Some(task) = companion {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), monitor).await;
    app.store.close().await;
    Ok(())
}
