//! Shared application state handed to every handler.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::hub::NodeHub;
use crate::store::Store;

/// Everything a handler needs.
#[derive(Debug)]
pub struct App {
    /// Resolved configuration.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Node streams.
    pub hub: Arc<NodeHub>,
    /// Where committed changes are published (the hub, in production): only
    /// [`crate::service::publish`] uses it.
    pub publisher: Arc<dyn crate::service::Publisher>,
    /// Snapshot-signing key.
    pub signer: SigningKey,
    /// Login rate limits.
    pub limiter: LoginLimiter,
    /// A password hash to verify against for unknown users, so they take as long as known ones.
    pub dummy_hash: String,
    /// Prometheus renderer.
    pub metrics: PrometheusHandle,
    /// Health, failover, hygiene and abuse state.
    pub monitor: crate::monitor::MonitorState,
    /// Flips to `true` on shutdown; long-lived tasks (node streams) watch it.
    pub shutdown: watch::Receiver<bool>,
    /// This process's id among the control-plane replicas (random per start).
    pub replica_id: uuid::Uuid,
    /// The bus to the other replicas (PostgreSQL); `None` on SQLite, where one process
    /// serves everything.
    pub replication: Option<crate::replicas::Replication>,
}

/// The state type of the router.
pub type AppState = Arc<App>;
