//! The service layer: every domain operation is one function here, between the HTTP
//! handlers (which only parse, call one function and render) and the store (which owns
//! every line of SQL).
//!
//! A mutating operation takes the actor's scope and audit identity, runs its transaction
//! through the store, and returns what it made together with the [`Changes`] it
//! committed: which nodes move to which version. [`run`] executes such an operation in a
//! task of its own, so a client that goes away mid-request can never leave a committed
//! change unpublished, and then hands the changes to [`publish`], the one function that
//! tells the node streams (and, later, other replicas) that a node's desired state moved.
//! Background work (the monitor) calls the same operations and the same [`publish`].
//!
//! Errors are the API's error contract ([`Error`]: status, stable code, message, hint):
//! a service refusal and its HTTP answer are the same thing, converted in one place.

pub mod accounts;
pub mod devices;
pub mod nodes;
pub mod regions;
pub mod routing;
pub mod users;

use std::sync::Arc;

use crate::app::{App, AppState};
pub use crate::http::error::ApiErr as Error;
use crate::hub::NodeHub;
use crate::store::devices::NodeChange;

/// Result of a service operation.
pub type Result<T> = std::result::Result<T, Error>;

/// What a committed transaction changed for the nodes: which node moved to which version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes(pub Vec<NodeChange>);

impl Changes {
    /// No change.
    pub fn none() -> Self {
        Self::default()
    }

    /// The given version changes.
    pub fn versions(versions: impl IntoIterator<Item = NodeChange>) -> Self {
        Self(versions.into_iter().collect())
    }

    /// One version change, if any.
    pub fn of(change: Option<NodeChange>) -> Self {
        Self::versions(change)
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where committed changes go. The node hub is the production implementation (it wakes
/// the node's stream, which reads the delta from the store); tests wrap it to record what
/// every route published.
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// Delivers one committed change: `change.node_id` is now at `change.version`.
    fn publish(&self, change: NodeChange);
}

impl Publisher for NodeHub {
    fn publish(&self, change: NodeChange) {
        self.notify(change.node_id, change.version);
    }
}

/// The default publisher: straight to this process's node hub.
pub fn hub_publisher(hub: Arc<NodeHub>) -> Arc<dyn Publisher> {
    hub
}

/// Publishes committed changes: the only place a committed change reaches the nodes,
/// those held here through the publisher and those held by other replicas through the
/// bus (docs/architecture.md §11).
pub fn publish(app: &App, changes: &Changes) {
    for c in &changes.0 {
        app.publisher.publish(*c);
    }
    if let Some(r) = &app.replication {
        for c in &changes.0 {
            r.announce(crate::store::bus::Topic::Desired, c.node_id, c.version);
        }
    }
}

/// Audit metadata: `meta` with the fields of `extra` (an object) added.
pub(crate) fn with_extra(
    mut meta: serde_json::Value,
    extra: serde_json::Value,
) -> serde_json::Value {
    if let (Some(m), serde_json::Value::Object(e)) = (meta.as_object_mut(), extra) {
        m.extend(e);
    }
    meta
}

/// Runs a mutating operation to completion in its own task and publishes what it
/// committed, even if the caller (an HTTP request) is dropped midway.
pub async fn run<T, F, Fut>(app: &AppState, op: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(T, Changes)>> + Send + 'static,
{
    let task_app = app.clone();
    let joined = tokio::spawn(async move {
        let (value, changes) = op(task_app.clone()).await?;
        publish(&task_app, &changes);
        Ok::<_, Error>(value)
    })
    .await;
    match joined {
        Ok(r) => r,
        Err(e) => Err(Error::internal(&e)),
    }
}
