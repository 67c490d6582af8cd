//! Control-plane replicas on one PostgreSQL database (docs/architecture.md §11).
//!
//! Any replica serves any request. A node's stream may be held by replica B while the API
//! call that revokes its device lands on replica A, so:
//! - [`crate::service::publish`] wakes this replica's streams and also announces each
//!   change on the bus (`pg_notify`, `node:version` only); every other replica's listener
//!   wakes the stream it holds for that node, which reads the delta from the database;
//! - a node's acknowledgement is stored and announced the same way, so the replica that
//!   served the revoke can answer `acknowledged`;
//! - after its listener reconnects a replica re-reads the stored version of every node it
//!   holds, and each stream still compares with the database every 15 s as a backstop.
//!
//! On SQLite there is no bus: one process serves everything.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::app::App;
use crate::hub::{AckOutcome, NodeHub};
use crate::store::Store;
use crate::store::bus::{BusEvent, Topic};

/// The sending half of this replica's bus: announcements are queued and sent in batches
/// by a task, so a publication never waits on the database.
#[derive(Debug, Clone)]
pub struct Replication {
    tx: mpsc::UnboundedSender<(Topic, Uuid, u64)>,
}

impl Replication {
    /// Queues an announcement.
    pub fn announce(&self, topic: Topic, node: Uuid, version: u64) {
        let _ = self.tx.send((topic, node, version));
    }
}

/// Announcements sent in one batch at most.
const BATCH: usize = 5_000;

/// Starts the sender and the listener of replica `me`; both stop on shutdown.
pub fn start(
    store: Store,
    hub: Arc<NodeHub>,
    me: Uuid,
    shutdown: watch::Receiver<bool>,
) -> Replication {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(send_loop(store.clone(), me, rx, shutdown.clone()));
    tokio::spawn(listen_loop(store, hub, me, shutdown));
    for topic in ["desired", "acked"] {
        for direction in ["sent", "received"] {
            metrics::counter!("clawn_bus_messages_total", "topic" => topic, "direction" => direction)
                .increment(0);
        }
    }
    metrics::counter!("clawn_bus_reconnects_total").increment(0);
    Replication { tx }
}

fn topic_label(t: Topic) -> &'static str {
    match t {
        Topic::Desired => "desired",
        Topic::Acked => "acked",
    }
}

async fn send_loop(
    store: Store,
    me: Uuid,
    mut rx: mpsc::UnboundedReceiver<(Topic, Uuid, u64)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
            _ = shutdown.changed() => {
                // Send what is queued, then stop.
                while let Ok(item) = rx.try_recv() {
                    batch.push(item);
                }
                send_batch(&store, me, &mut batch).await;
                return;
            }
        }
        send_batch(&store, me, &mut batch).await;
    }
}

async fn send_batch(store: &Store, me: Uuid, batch: &mut Vec<(Topic, Uuid, u64)>) {
    // One entry per node and topic, at its highest version.
    let mut latest: HashMap<(Topic, Uuid), u64> = HashMap::new();
    for (topic, node, version) in batch.drain(..) {
        let v = latest.entry((topic, node)).or_insert(version);
        *v = (*v).max(version);
    }
    for topic in [Topic::Desired, Topic::Acked] {
        let pairs: Vec<(Uuid, u64)> = latest
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .map(|((_, n), v)| (*n, *v))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        match store.bus_send(me, topic, &pairs).await {
            Ok(()) => metrics::counter!("clawn_bus_messages_total", "topic" => topic_label(topic), "direction" => "sent")
                .increment(pairs.len() as u64),
            // The streams' periodic check against the database catches up.
            Err(e) => tracing::warn!(error = %e, nodes = pairs.len(), "bus send failed"),
        }
    }
}

async fn listen_loop(
    store: Store,
    hub: Arc<NodeHub>,
    me: Uuid,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = store.bus_listener(me);
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            e = listener.next() => e,
        };
        match event {
            Ok(BusEvent::Reconnected) => {
                metrics::counter!("clawn_bus_reconnects_total").increment(1);
                tracing::info!("bus listener connected; re-reading the nodes held here");
                hub.reread_all();
            }
            Ok(BusEvent::Message(topic, pairs)) => {
                metrics::counter!("clawn_bus_messages_total", "topic" => topic_label(topic), "direction" => "received")
                    .increment(pairs.len() as u64);
                for (node, version) in pairs {
                    match topic {
                        Topic::Desired => hub.remote_desired(node, version),
                        Topic::Acked => hub.acked(node, version),
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bus listener cannot connect; retrying in 1 s");
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// A node acknowledged `version` (already stored): tell waiters here and on the other
/// replicas.
pub fn acked(app: &App, node: Uuid, version: u64) {
    app.hub.acked(node, version);
    if let Some(r) = &app.replication {
        r.announce(Topic::Acked, node, version);
    }
}

/// For a node this replica does not hold: its stored acked version and whether a stream
/// on another replica holds it. Single replica: nothing elsewhere.
pub async fn elsewhere(app: &App, node: Uuid) -> (u64, bool) {
    if app.replication.is_none() {
        return (0, false);
    }
    app.store
        .node_ack_state(node, clawn_proto::time::now_millis())
        .await
        .unwrap_or((0, false))
}

/// Waits until `node` acknowledges `version` or `bound` passes, wherever its stream is:
/// held here, the hub sees the ack; held by another replica, the ack arrives through the
/// bus, and the database has the last word (a lost bus message must not turn an applied
/// change into a timeout).
pub async fn wait_ack(
    app: &App,
    node: Uuid,
    version: u64,
    bound: Duration,
) -> (AckOutcome, Duration) {
    if app.replication.is_none() {
        return app.hub.wait_ack(node, version, bound).await;
    }
    let start = std::time::Instant::now();
    let mut rx = app.hub.ack_watch(node);
    let acked_here = *rx.borrow() >= version;
    if acked_here {
        return (AckOutcome::Acknowledged, start.elapsed());
    }
    if !app.hub.is_connected(node) {
        let (stored, live) = elsewhere(app, node).await;
        if stored >= version {
            return (AckOutcome::Acknowledged, start.elapsed());
        }
        if !live {
            return (AckOutcome::Offline, start.elapsed());
        }
    }
    let acked = tokio::time::timeout(bound, rx.wait_for(|v| *v >= version))
        .await
        .is_ok_and(|r| r.is_ok());
    let outcome = if acked {
        AckOutcome::Acknowledged
    } else if app.hub.is_connected(node) {
        AckOutcome::Timeout
    } else {
        match elsewhere(app, node).await {
            (stored, _) if stored >= version => AckOutcome::Acknowledged,
            (_, true) => AckOutcome::Timeout,
            (_, false) => AckOutcome::Offline,
        }
    };
    (outcome, start.elapsed())
}

/// Whether a stream on any replica holds `node`.
pub async fn connected_anywhere(app: &App, node: Uuid) -> bool {
    app.hub.is_connected(node) || elsewhere(app, node).await.1
}
