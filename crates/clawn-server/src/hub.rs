//! The node hub: which nodes have a stream open on this control plane, the desired
//! version each should be at, and the version each acknowledged.
//!
//! [`crate::service::publish`] calls [`NodeHub::notify`] after a change committed; the node's stream task
//! wakes on its watch channel, reads the delta from the store and pushes it. Revoke and
//! rotate wait on [`NodeHub::wait_ack`] with a bound. Push, never poll.
//!
//! With replicas (PostgreSQL), a change committed on another replica arrives through the
//! bus listener ([`crate::replicas`]) as [`NodeHub::remote_desired`], and acks of nodes
//! held elsewhere as [`NodeHub::acked`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use uuid::Uuid;

#[derive(Debug)]
struct Slot {
    desired: watch::Sender<u64>,
    acked: watch::Sender<u64>,
    /// Bumped by every new connection; an older connection sees the change and leaves.
    generation: watch::Sender<u64>,
    connections: Mutex<u32>,
}

impl Slot {
    fn new() -> Self {
        Self {
            desired: watch::channel(0).0,
            acked: watch::channel(0).0,
            generation: watch::channel(0).0,
            connections: Mutex::new(0),
        }
    }
}

/// Outcome of waiting for a node to acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The node applied the version.
    Acknowledged,
    /// Connected, but no ack within the bound.
    Timeout,
    /// Not connected.
    Offline,
}

impl AckOutcome {
    /// Wire value.
    pub fn wire(self) -> clawn_proto::api::AckStatus {
        match self {
            Self::Acknowledged => clawn_proto::api::AckStatus::Acknowledged,
            Self::Timeout => clawn_proto::api::AckStatus::Timeout,
            Self::Offline => clawn_proto::api::AckStatus::Offline,
        }
    }
}

/// Registry of node streams.
#[derive(Debug, Default)]
pub struct NodeHub {
    slots: Mutex<HashMap<Uuid, Arc<Slot>>>,
}

/// Held by a stream task while its connection lives.
#[derive(Debug)]
pub struct Connection {
    slot: Arc<Slot>,
    /// Wakes when the desired version moves.
    pub desired: watch::Receiver<u64>,
    /// Wakes when another connection of the same node replaces this one.
    pub replaced: watch::Receiver<u64>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(mut n) = self.slot.connections.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

impl NodeHub {
    fn slot(&self, node: Uuid) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry(node)
            .or_insert_with(|| Arc::new(Slot::new()))
            .clone()
    }

    /// Registers a new stream of `node`, replacing any older one.
    pub fn connect(&self, node: Uuid, acked: u64) -> Connection {
        let slot = self.slot(node);
        if let Ok(mut n) = slot.connections.lock() {
            *n += 1;
        }
        slot.generation.send_modify(|g| *g += 1);
        slot.acked.send_if_modified(|a| {
            let changed = acked > *a;
            *a = (*a).max(acked);
            changed
        });
        let mut replaced = slot.generation.subscribe();
        replaced.mark_unchanged();
        let desired = slot.desired.subscribe();
        Connection {
            slot,
            desired,
            replaced,
        }
    }

    /// Whether `node` has a stream open here.
    pub fn is_connected(&self, node: Uuid) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .get(&node)
            .is_some_and(|s| s.connections.lock().map(|n| *n > 0).unwrap_or(false))
    }

    /// A committed change moved `node` to `version`: wake its stream. Called only by the
    /// hub's [`crate::service::Publisher`] implementation.
    pub(crate) fn notify(&self, node: Uuid, version: u64) {
        self.slot(node)
            .desired
            .send_modify(|v| *v = (*v).max(version));
    }

    /// Another replica committed a change that moved `node` to `version`: wake the
    /// node's stream if this replica holds it (re-delivery, not a new publication).
    pub(crate) fn remote_desired(&self, node: Uuid, version: u64) {
        if self.is_connected(node) {
            self.notify(node, version);
        }
    }

    /// Every node with a stream open here.
    pub fn held_nodes(&self) -> Vec<Uuid> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter(|(_, s)| s.connections.lock().map(|n| *n > 0).unwrap_or(false))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Wakes the stream of every node held here so it re-reads its stored version (after
    /// the bus listener reconnected: notifications sent meanwhile were lost).
    pub(crate) fn reread_all(&self) {
        for node in self.held_nodes() {
            self.notify(node, 0);
        }
    }

    /// The node acknowledged `version`.
    pub fn acked(&self, node: Uuid, version: u64) {
        self.slot(node).acked.send_if_modified(|v| {
            let changed = version > *v;
            *v = (*v).max(version);
            changed
        });
    }

    /// A receiver of `node`'s acked version (subscribe before reading anything else, so
    /// an ack that lands in between still wakes the waiter).
    pub fn ack_watch(&self, node: Uuid) -> watch::Receiver<u64> {
        self.slot(node).acked.subscribe()
    }

    /// Waits until `node` acknowledges `version` or `bound` passes (this replica's streams
    /// only; [`crate::replicas::wait_ack`] also answers for nodes held elsewhere).
    pub async fn wait_ack(
        &self,
        node: Uuid,
        version: u64,
        bound: Duration,
    ) -> (AckOutcome, Duration) {
        let start = Instant::now();
        let mut rx = self.ack_watch(node);
        if *rx.borrow() >= version {
            return (AckOutcome::Acknowledged, start.elapsed());
        }
        if !self.is_connected(node) {
            return (AckOutcome::Offline, start.elapsed());
        }
        let outcome = match tokio::time::timeout(bound, rx.wait_for(|v| *v >= version)).await {
            Ok(Ok(_)) => AckOutcome::Acknowledged,
            _ if self.is_connected(node) => AckOutcome::Timeout,
            _ => AckOutcome::Offline,
        };
        (outcome, start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ack_wait_reports_offline_timeout_and_ack() {
        let hub = Arc::new(NodeHub::default());
        let node = Uuid::new_v4();
        assert_eq!(
            hub.wait_ack(node, 2, Duration::from_millis(50)).await.0,
            AckOutcome::Offline
        );
        let conn = hub.connect(node, 1);
        assert!(hub.is_connected(node));
        assert_eq!(
            hub.wait_ack(node, 2, Duration::from_millis(20)).await.0,
            AckOutcome::Timeout
        );
        let h2 = hub.clone();
        let waiter =
            tokio::spawn(async move { h2.wait_ack(node, 3, Duration::from_secs(5)).await.0 });
        hub.acked(node, 3);
        assert_eq!(waiter.await.ok(), Some(AckOutcome::Acknowledged));
        drop(conn);
        assert!(!hub.is_connected(node));
    }

    #[tokio::test]
    async fn every_notify_and_wake_reaches_the_stream() {
        let hub = NodeHub::default();
        let node = Uuid::new_v4();
        let mut conn = hub.connect(node, 0);
        for step in 0..3 {
            match step {
                0 => hub.notify(node, 5),
                1 => hub.notify(node, 5), // the same version again still wakes
                _ => hub.notify(node, 3), // an older version still wakes; the stream re-reads the store
            }
            tokio::time::timeout(Duration::from_secs(1), conn.desired.changed())
                .await
                .expect("woken")
                .expect("open");
            assert_eq!(*conn.desired.borrow_and_update(), 5);
        }
    }

    #[tokio::test]
    async fn a_new_connection_replaces_the_old() {
        let hub = NodeHub::default();
        let node = Uuid::new_v4();
        let mut first = hub.connect(node, 0);
        let _second = hub.connect(node, 0);
        tokio::time::timeout(Duration::from_secs(1), first.replaced.changed())
            .await
            .expect("old connection is told")
            .expect("channel open");
    }
}
