//! The sibling endpoint (docs/architecture.md §12): each node answers, on TCP at its
//! WireGuard port, how long its lease from the control plane still runs; a node whose own
//! lease ran out asks its region's other nodes. One of them still holding a lease proves
//! the control plane is up and this node is the one cut off, so it removes its peers
//! (their devices are about to move). None holding one means the control plane is down
//! (or this node is cut off from everything): existing tunnels keep working until the
//! offline grace.
//!
//! The answer is one JSON line ([`SiblingStatus`]) and carries nothing secret. A forged
//! "live" answer can only make a node fail closed early, which anyone able to forge it
//! (on the path between two nodes) could do by dropping packets anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use clawn_proto::node::SiblingStatus;
use clawn_proto::time::now_millis;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{debug, warn};

/// How long one sibling gets to answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest answer read.
const MAX_ANSWER: u64 = 256;

/// When this node's lease ends (Unix ms; 0 = no lease), shared with the endpoint.
#[derive(Debug, Clone, Default)]
pub struct LeaseClock(Arc<AtomicI64>);

impl LeaseClock {
    /// The lease now ends at `until` (Unix ms).
    pub fn set(&self, until: i64) {
        self.0.store(until, Ordering::Relaxed);
    }

    /// Milliseconds left.
    pub fn remaining_ms(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::Relaxed) - now_millis()).unwrap_or(0)
    }
}

/// Serves the sibling endpoint on TCP `port` (all addresses) until the runtime ends. A
/// port that cannot be bound is logged: the node then simply has no sibling answer.
pub fn serve(port: u16, lease: LeaseClock) {
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
            Ok(l) => l,
            Err(e) => {
                warn!(port, error = %e, "cannot serve the sibling endpoint; partition detection by the region's other nodes is off for this node");
                return;
            }
        };
        loop {
            let Ok((mut conn, from)) = listener.accept().await else {
                continue;
            };
            let status = SiblingStatus {
                lease_remaining_ms: lease.remaining_ms(),
            };
            tokio::spawn(async move {
                let mut line = serde_json::to_string(&status).unwrap_or_default();
                line.push('\n');
                let _ = tokio::time::timeout(ASK_TIMEOUT, conn.write_all(line.as_bytes())).await;
                debug!(%from, "answered a sibling");
            });
        }
    });
}

/// Asks every sibling at once; true when at least one still holds a lease.
pub async fn any_live(siblings: &[String]) -> bool {
    let asks = siblings.iter().map(|addr| async move {
        let answer = tokio::time::timeout(ASK_TIMEOUT, async {
            let conn = tokio::net::TcpStream::connect(addr.as_str()).await.ok()?;
            let mut buf = Vec::new();
            conn.take(MAX_ANSWER).read_to_end(&mut buf).await.ok()?;
            serde_json::from_slice::<SiblingStatus>(buf.trim_ascii()).ok()
        })
        .await
        .ok()
        .flatten();
        debug!(sibling = %addr, ?answer, "asked a sibling");
        answer.is_some_and(|s| s.lease_remaining_ms > 0)
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .any(|live| live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sibling_with_a_lease_is_live_and_one_without_is_not() {
        let with = LeaseClock::default();
        with.set(now_millis() + 60_000);
        let without = LeaseClock::default();
        let (a, b) = (free_port(), free_port());
        serve(a, with);
        serve(b, without);
        let addr = |p: u16| format!("127.0.0.1:{p}");
        // The listeners start in their own tasks: wait (bounded) until both answer.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr(b)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "endpoint up");
            tokio::task::yield_now().await;
        }
        assert!(any_live(&[addr(b), addr(a)]).await);
        assert!(!any_live(&[addr(b)]).await);
        // Nobody listening: not live (and bounded).
        assert!(!any_live(&[addr(free_port())]).await);
        assert!(!any_live(&[]).await);
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0)
    }
}
