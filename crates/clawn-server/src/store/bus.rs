//! The change bus between replicas sharing one PostgreSQL database: `pg_notify` out,
//! one `LISTEN` connection in.
//!
//! Payloads are small and carry no peer data (PostgreSQL allows 8000 bytes): the sending
//! replica's id, then `node:version` pairs. A replica skips its own messages (it already
//! woke its streams). Notifications sent while a listener is disconnected are lost, so a
//! listener that reconnects reports [`BusEvent::Reconnected`] and the caller re-reads the
//! stored versions of every node it holds; the stream's periodic safety check is the
//! backstop behind both.

use std::fmt::Write as _;

use uuid::Uuid;

use super::{Store, StoreResult};

/// What a bus message is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// A node's desired version moved (a committed change).
    Desired,
    /// A node acknowledged a version.
    Acked,
}

impl Topic {
    fn channel(self) -> &'static str {
        match self {
            Self::Desired => "clawn_desired",
            Self::Acked => "clawn_acked",
        }
    }

    fn from_channel(c: &str) -> Option<Self> {
        match c {
            "clawn_desired" => Some(Self::Desired),
            "clawn_acked" => Some(Self::Acked),
            _ => None,
        }
    }
}

/// The most pairs in one payload: 36 + 1 + 20 + 1 bytes each stays well under 8000.
const PAIRS_PER_PAYLOAD: usize = 100;

/// Encodes `pairs` as payloads from `replica`.
pub fn encode(replica: Uuid, pairs: &[(Uuid, u64)]) -> Vec<String> {
    pairs
        .chunks(PAIRS_PER_PAYLOAD)
        .map(|chunk| {
            let mut s = replica.to_string();
            s.push('|');
            for (i, (node, version)) in chunk.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(s, "{node}:{version}");
            }
            s
        })
        .collect()
}

/// Decodes a payload: the sender and its pairs (`None` for a malformed one).
pub fn decode(payload: &str) -> Option<(Uuid, Vec<(Uuid, u64)>)> {
    let (sender, rest) = payload.split_once('|')?;
    let sender = Uuid::parse_str(sender).ok()?;
    let pairs = rest
        .split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once(':')?;
            Some((Uuid::parse_str(n).ok()?, v.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((sender, pairs))
}

/// Something the listener heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// Another replica says these nodes moved to these versions (or acked them).
    Message(Topic, Vec<(Uuid, u64)>),
    /// The listener (re)connected: anything sent before may have been missed.
    Reconnected,
}

/// A replica's one `LISTEN` connection (straight to the primary: a transaction-mode
/// pooler in between would drop it).
pub struct BusListener {
    url: String,
    me: Uuid,
    inner: Option<sqlx::postgres::PgListener>,
}

impl std::fmt::Debug for BusListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusListener")
            .field("me", &self.me)
            .field("connected", &self.inner.is_some())
            .finish()
    }
}

impl BusListener {
    /// The next event. A lost connection is reconnected here (an error is returned when
    /// that fails; call again after a pause) and reported as [`BusEvent::Reconnected`].
    pub async fn next(&mut self) -> StoreResult<BusEvent> {
        loop {
            let Some(listener) = self.inner.as_mut() else {
                let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
                l.listen_all([Topic::Desired.channel(), Topic::Acked.channel()])
                    .await?;
                self.inner = Some(l);
                return Ok(BusEvent::Reconnected);
            };
            match listener.try_recv().await {
                Ok(Some(n)) => {
                    let Some(topic) = Topic::from_channel(n.channel()) else {
                        continue;
                    };
                    match decode(n.payload()) {
                        Some((sender, _)) if sender == self.me => continue,
                        Some((_, pairs)) => return Ok(BusEvent::Message(topic, pairs)),
                        None => {
                            tracing::warn!(channel = n.channel(), "malformed bus payload ignored");
                            continue;
                        }
                    }
                }
                // The connection was lost: reconnect on the next turn, with a fresh
                // listener so the caller hears `Reconnected` once it is back.
                Ok(None) | Err(_) => {
                    self.inner = None;
                }
            }
        }
    }
}

impl Store {
    /// Opens this replica's listener (PostgreSQL only; `me` is the replica id whose own
    /// messages are skipped). It connects on the first [`BusListener::next`].
    pub fn bus_listener(&self, me: Uuid) -> BusListener {
        BusListener {
            url: self.url.0.clone(),
            me,
            inner: None,
        }
    }

    /// Sends `pairs` on `topic` from replica `me`.
    pub async fn bus_send(&self, me: Uuid, topic: Topic, pairs: &[(Uuid, u64)]) -> StoreResult<()> {
        for payload in encode(me, pairs) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(topic.channel())
                .bind(payload)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_small() {
        let me = Uuid::new_v4();
        let pairs: Vec<(Uuid, u64)> = (0..250).map(|i| (Uuid::new_v4(), u64::MAX - i)).collect();
        let payloads = encode(me, &pairs);
        assert_eq!(payloads.len(), 3);
        let mut back = Vec::new();
        for p in &payloads {
            assert!(p.len() < 8000, "payload of {} bytes", p.len());
            let (sender, mut got) = decode(p).expect("decodes");
            assert_eq!(sender, me);
            back.append(&mut got);
        }
        assert_eq!(back, pairs);
        assert_eq!(decode("nonsense"), None);
        assert_eq!(decode(&format!("{me}|x:1")), None);
    }
}
