//! Nodes: join tokens, enrollment, desired state (snapshots and deltas), acks, telemetry.

use std::collections::BTreeSet;

use clawn_proto::WgPublicKey;
use clawn_proto::api::AuditAction;
use clawn_proto::api::{NodeHealth, NodeState, NodeView};
use clawn_proto::node::{HostMetrics, InterfaceSpec, PeerClass, PeerSpec, Telemetry};
use ipnet::Ipv4Net;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::audit::{self, AuditActor};
use super::{Store, StoreError, StoreResult, Tuning, count, uuid};
use crate::ippool::{NodePool, free_node_pool};
use crate::placement::{self, Candidate, Ineligible};

/// Why a join token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinTokenProblem {
    /// Unknown token.
    Invalid,
    /// Already consumed.
    Used,
    /// Past its expiry.
    Expired,
}

/// What a consumed join token grants.
#[derive(Debug, Clone)]
pub struct JoinGrant {
    /// Token id.
    pub token_id: Uuid,
    /// Region.
    pub region_id: Uuid,
    /// Node capacity.
    pub capacity: u32,
}

/// Atomically consumes a join token inside `tx`: of two concurrent enrollments with one
/// token exactly one gets the grant (a conditional `UPDATE` row-locks on PostgreSQL and
/// runs under the single writer on SQLite).
pub async fn consume_join_token(
    tx: &mut sqlx::AnyConnection,
    hash: &str,
    now: i64,
) -> StoreResult<Result<JoinGrant, JoinTokenProblem>> {
    let row = sqlx::query(
        "UPDATE join_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2 \
         RETURNING id, region_id, capacity",
    )
    .bind(hash)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = row {
        return Ok(Ok(JoinGrant {
            token_id: uuid(&r.try_get::<String, _>("id")?, "join_tokens.id")?,
            region_id: uuid(
                &r.try_get::<String, _>("region_id")?,
                "join_tokens.region_id",
            )?,
            capacity: count(r.try_get("capacity")?),
        }));
    }
    let row = sqlx::query("SELECT used_at, expires_at FROM join_tokens WHERE token_hash = $1")
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(Err(match row {
        None => JoinTokenProblem::Invalid,
        Some(r) if r.try_get::<Option<i64>, _>("used_at")?.is_some() => JoinTokenProblem::Used,
        Some(_) => JoinTokenProblem::Expired,
    }))
}

/// Everything to insert for a new node.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// Id.
    pub id: Uuid,
    /// Region.
    pub region_id: Uuid,
    /// Name.
    pub name: String,
    /// Endpoint.
    pub endpoint: String,
    /// Listen port.
    pub listen_port: u16,
    /// WireGuard key.
    pub wg_public_key: WgPublicKey,
    /// Identity key (base64).
    pub identity_public_key: String,
    /// Credential hash.
    pub credential_hash: String,
    /// Exit IPv4.
    pub exit_ipv4: Option<String>,
    /// Capacity.
    pub capacity: u32,
    /// Capabilities.
    pub capabilities: Vec<String>,
}

/// Allocates a sub-pool and inserts the node inside `tx`. `None` if the region's pool is full.
pub async fn insert_node(
    tx: &mut sqlx::AnyConnection,
    n: &NewNode,
    region_cidr: Ipv4Net,
    node_prefix: u8,
    now: i64,
) -> StoreResult<Option<NodePool>> {
    let used: Vec<String> =
        sqlx::query_scalar("SELECT pool FROM nodes WHERE region_id = $1 AND removed_at IS NULL")
            .bind(n.region_id.to_string())
            .fetch_all(&mut *tx)
            .await?;
    let used: BTreeSet<Ipv4Net> = used.iter().filter_map(|p| p.parse().ok()).collect();
    let Some(pool) = free_node_pool(region_cidr, node_prefix, &used) else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO nodes (id, region_id, name, endpoint, listen_port, wg_public_key, identity_public_key, credential_hash, \
         pool, pool_first, pool_last, address, exit_ipv4, capacity, live_peers, state, capabilities, version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 0, 'pending', $15, 1, $16)",
    )
    .bind(n.id.to_string())
    .bind(n.region_id.to_string())
    .bind(&n.name)
    .bind(&n.endpoint)
    .bind(i64::from(n.listen_port))
    .bind(n.wg_public_key.to_base64())
    .bind(&n.identity_public_key)
    .bind(&n.credential_hash)
    .bind(pool.net.to_string())
    .bind(i64::from(pool.first))
    .bind(i64::from(pool.last))
    .bind(pool.node_addr.to_string())
    .bind(n.exit_ipv4.clone())
    .bind(i64::from(n.capacity))
    .bind(serde_json::to_string(&n.capabilities).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(Some(pool))
}

/// The identity behind a node credential.
#[derive(Debug, Clone)]
pub struct NodeAuth {
    /// Node id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// The ed25519 identity key the node enrolled with (standard base64).
    pub identity_public_key: String,
}

/// A node's desired state at one version.
#[derive(Debug, Clone)]
pub struct DesiredSnapshot {
    /// Version.
    pub version: u64,
    /// Interface.
    pub interface: InterfaceSpec,
    /// Peers.
    pub peers: Vec<PeerSpec>,
}

/// The change between two versions.
#[derive(Debug, Clone)]
pub struct DesiredDelta {
    /// Peers to remove.
    pub remove: Vec<WgPublicKey>,
    /// Peers to add.
    pub add: Vec<PeerSpec>,
    /// Peers whose class changed.
    pub update: Vec<PeerSpec>,
}

fn peer_from_row(r: &AnyRow) -> StoreResult<PeerSpec> {
    let key: String = r.try_get("public_key")?;
    let ip: String = r.try_get("tunnel_ip")?;
    Ok(PeerSpec {
        public_key: WgPublicKey::parse(&key)
            .map_err(|_| StoreError::Corrupt("peers.public_key"))?,
        allowed_ips: vec![format!("{ip}/32")],
        device_id: uuid(&r.try_get::<String, _>("device_id")?, "peers.device_id")?,
        class: if r.try_get::<String, _>("class")? == "priority" {
            PeerClass::Priority
        } else {
            PeerClass::Standard
        },
    })
}

/// What placement knows of a node row (`SELECT n.*`).
pub fn candidate_from_row(r: &AnyRow, tuning: &Tuning, now: i64) -> StoreResult<Candidate> {
    let state: String = r.try_get("state")?;
    let metrics: Option<String> = r.try_get("metrics")?;
    let metrics = metrics.and_then(|m| serde_json::from_str::<HostMetrics>(&m).ok());
    let health = node_health(r)?;
    let heartbeat: Option<i64> = r.try_get("last_heartbeat")?;
    let grace =
        i64::try_from(tuning.health.offline_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let link: Option<i64> = r.try_get("link_mbps")?;
    Ok(Candidate {
        id: uuid(&r.try_get::<String, _>("id")?, "nodes.id")?,
        state: NodeState::parse(&state).ok_or(StoreError::Corrupt("nodes.state"))?,
        heartbeat_fresh: heartbeat.is_some_and(|h| now.saturating_sub(h) <= grace),
        live_peers: count(r.try_get("live_peers")?),
        capacity: count(r.try_get("capacity")?),
        bytes_per_sec: metrics
            .as_ref()
            .map(|m| m.rx_bytes_per_sec.saturating_add(m.tx_bytes_per_sec)),
        link_mbps: link
            .and_then(|l| u64::try_from(l).ok())
            .filter(|l| *l > 0)
            .unwrap_or(tuning.placement.link_mbps),
        cpu_percent: metrics.as_ref().map(|m| m.cpu_percent),
        rtt_ms: health.rtt_ms,
    })
}

fn node_health(r: &AnyRow) -> StoreResult<NodeHealth> {
    let h: Option<String> = r.try_get("health")?;
    Ok(h.and_then(|h| serde_json::from_str(&h).ok())
        .unwrap_or_default())
}

fn ineligible_reason(i: Ineligible) -> String {
    match i {
        Ineligible::State(s) => format!("state:{}", s.as_str()),
        Ineligible::Stale => "heartbeat_stale".into(),
        Ineligible::Full => "full".into(),
    }
}

/// A stream that wrote no heartbeat for this long is not holding its node any more (its
/// replica died without closing it); matches the stream's silence limit.
pub const STREAM_STALE_MS: i64 = 45_000;

/// Whether a stream on some replica holds the node: recorded, with a fresh heartbeat.
fn stream_live(r: &AnyRow, now: i64) -> StoreResult<bool> {
    let conn: Option<String> = r.try_get("stream_conn")?;
    let heartbeat: Option<i64> = r.try_get("last_heartbeat")?;
    Ok(conn.is_some() && heartbeat.is_some_and(|h| now.saturating_sub(h) <= STREAM_STALE_MS))
}

const NODE_VIEW_SQL: &str =
    "SELECT n.*, r.code AS region_code FROM nodes n JOIN regions r ON r.id = n.region_id";

fn node_view_from_row(
    r: &AnyRow,
    tuning: &Tuning,
    now: i64,
    connected: impl Fn(Uuid) -> bool,
) -> StoreResult<NodeView> {
    let id = uuid(&r.try_get::<String, _>("id")?, "nodes.id")?;
    let cand = candidate_from_row(r, tuning, now)?;
    let verdict = placement::eligible(&cand, &tuning.placement, false);
    let state: String = r.try_get("state")?;
    let key: String = r.try_get("wg_public_key")?;
    let caps: String = r.try_get("capabilities")?;
    let metrics: Option<String> = r.try_get("metrics")?;
    Ok(NodeView {
        id,
        name: r.try_get("name")?,
        region: r.try_get("region_code")?,
        state: NodeState::parse(&state).ok_or(StoreError::Corrupt("nodes.state"))?,
        connected: connected(id) || stream_live(r, now)?,
        endpoint: r.try_get("endpoint")?,
        wg_public_key: WgPublicKey::parse(&key)
            .map_err(|_| StoreError::Corrupt("nodes.wg_public_key"))?,
        pool: r.try_get("pool")?,
        exit_ipv4: r.try_get("exit_ipv4")?,
        capacity: count(r.try_get("capacity")?),
        live_peers: count(r.try_get("live_peers")?),
        version: u64::try_from(r.try_get::<i64, _>("version")?).unwrap_or(0),
        acked_version: r
            .try_get::<Option<i64>, _>("acked_version")?
            .and_then(|v| u64::try_from(v).ok()),
        last_heartbeat: r.try_get("last_heartbeat")?,
        metrics: metrics.and_then(|m| serde_json::from_str::<HostMetrics>(&m).ok()),
        capabilities: serde_json::from_str(&caps).unwrap_or_default(),
        created_at: r.try_get("created_at")?,
        link_mbps: cand.link_mbps,
        score: placement::score(&cand, &tuning.placement),
        eligible: verdict.is_ok(),
        ineligible_reason: verdict.err().map(ineligible_reason),
        health: node_health(r)?,
        offline_since: r.try_get("offline_since")?,
    })
}

/// What one telemetry report says about a device, for the abuse signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSignal {
    /// The device.
    pub device_id: Uuid,
    /// The node saw it at another endpoint than last time.
    pub endpoint_changed: bool,
    /// Its rx + tx rate since the last report, bytes/s.
    pub bytes_per_sec: u64,
}

/// Peers written per telemetry transaction.
const TELEMETRY_CHUNK: usize = 500;

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Store {
    /// Stores a join token.
    #[expect(
        clippy::too_many_arguments,
        reason = "one column each; a struct would only rename them"
    )]
    pub async fn insert_join_token(
        &self,
        tx: &mut sqlx::AnyConnection,
        hash: &str,
        region_id: Uuid,
        capacity: u32,
        created_by: Option<Uuid>,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO join_tokens (id, token_hash, region_id, capacity, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.to_string())
        .bind(hash)
        .bind(region_id.to_string())
        .bind(i64::from(capacity))
        .bind(created_by.map(|u| u.to_string()))
        .bind(now)
        .bind(expires_at)
        .execute(tx)
        .await?;
        Ok(id)
    }

    /// Resolves a node credential hash (removed nodes resolve to nothing).
    pub async fn node_by_credential(&self, hash: &str) -> StoreResult<Option<NodeAuth>> {
        let row = sqlx::query(
            "SELECT id, name, identity_public_key FROM nodes WHERE credential_hash = $1 AND removed_at IS NULL",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(NodeAuth {
                id: uuid(&r.try_get::<String, _>("id")?, "nodes.id")?,
                name: r.try_get("name")?,
                identity_public_key: r.try_get("identity_public_key")?,
            })
        })
        .transpose()
    }

    /// The node's current full desired state. Consistent without a snapshot-isolated
    /// transaction: version bumps and peer changes commit together under the node's row
    /// lock, and peers are filtered by the version read.
    pub async fn desired_snapshot(&self, node_id: Uuid) -> StoreResult<Option<DesiredSnapshot>> {
        let Some(n) = sqlx::query("SELECT version, listen_port, address, pool FROM nodes WHERE id = $1 AND removed_at IS NULL")
            .bind(node_id.to_string())
            .fetch_optional(self.pool())
            .await?
        else {
            return Ok(None);
        };
        let version: i64 = n.try_get("version")?;
        let pool: String = n.try_get("pool")?;
        let prefix = pool.rsplit('/').next().unwrap_or("32").to_string();
        let address: String = n.try_get("address")?;
        let rows = sqlx::query(
            "SELECT public_key, tunnel_ip, device_id, class FROM peers WHERE node_id = $1 AND created_version <= $2 \
             AND (retired_version IS NULL OR retired_version > $2) ORDER BY tunnel_ip_int",
        )
        .bind(node_id.to_string())
        .bind(version)
        .fetch_all(self.pool())
        .await?;
        Ok(Some(DesiredSnapshot {
            version: u64::try_from(version).unwrap_or(0),
            interface: InterfaceSpec {
                listen_port: u16::try_from(n.try_get::<i64, _>("listen_port")?).unwrap_or(51820),
                address: format!("{address}/{prefix}"),
                pool,
            },
            peers: rows.iter().map(peer_from_row).collect::<StoreResult<_>>()?,
        }))
    }

    /// The peers removed and added between `from` (exclusive) and `to` (inclusive).
    pub async fn desired_delta(
        &self,
        node_id: Uuid,
        from: u64,
        to: u64,
    ) -> StoreResult<DesiredDelta> {
        let (from, to) = (to_i64(from), to_i64(to));
        let removed: Vec<String> = sqlx::query_scalar(
            "SELECT public_key FROM peers WHERE node_id = $1 AND retired_version > $2 AND retired_version <= $3 \
             AND created_version <= $2",
        )
        .bind(node_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let added = sqlx::query(
            "SELECT public_key, tunnel_ip, device_id, class FROM peers WHERE node_id = $1 AND created_version > $2 \
             AND created_version <= $3 AND (retired_version IS NULL OR retired_version > $3) ORDER BY tunnel_ip_int",
        )
        .bind(node_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        let updated = sqlx::query(
            "SELECT public_key, tunnel_ip, device_id, class FROM peers WHERE node_id = $1 AND class_version > $2 \
             AND class_version <= $3 AND created_version <= $2 AND (retired_version IS NULL OR retired_version > $3) \
             ORDER BY tunnel_ip_int",
        )
        .bind(node_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(DesiredDelta {
            update: updated
                .iter()
                .map(peer_from_row)
                .collect::<StoreResult<_>>()?,
            remove: removed
                .iter()
                .map(|k| WgPublicKey::parse(k).map_err(|_| StoreError::Corrupt("peers.public_key")))
                .collect::<StoreResult<_>>()?,
            add: added
                .iter()
                .map(peer_from_row)
                .collect::<StoreResult<_>>()?,
        })
    }

    /// Records an acknowledged version (only forward, never past the current version).
    pub async fn record_ack(&self, node_id: Uuid, version: u64, now: i64) -> StoreResult<bool> {
        let mut tx = self.write().await?;
        let r = sqlx::query(
            "UPDATE nodes SET acked_version = $2, last_heartbeat = $3 WHERE id = $1 AND version >= $2 \
             AND (acked_version IS NULL OR acked_version < $2)",
        )
        .bind(node_id.to_string())
        .bind(to_i64(version))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// Marks a node connected through stream `conn` on replica `replica`: the stream
    /// now holds the node (see [`Store::node_disconnected`]); `pending`/`offline` become
    /// `online`; the heartbeat is set.
    pub async fn node_connected(
        &self,
        node_id: Uuid,
        conn: Uuid,
        replica: Uuid,
        now: i64,
    ) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE nodes SET stream_conn = $2, stream_replica = $3, last_heartbeat = $4 WHERE id = $1",
        )
        .bind(node_id.to_string())
        .bind(conn.to_string())
        .bind(replica.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        let row = sqlx::query(
            "UPDATE nodes SET state = 'online', offline_since = NULL, state_changed_at = $2 \
             WHERE id = $1 AND state IN ('pending', 'offline') RETURNING name",
        )
        .bind(node_id.to_string())
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(r) = row {
            audit::record(
                &mut tx.tx,
                &AuditActor::system(),
                AuditAction::NodeOnline,
                "node",
                Some(node_id.to_string()),
                json!({"name": r.try_get::<String, _>("name")?, "reason": "stream connected"}),
            )
            .await?;
        }
        tx.commit().await
    }

    /// What another replica needs to answer for a node it does not hold: the acked
    /// version and whether a stream (on any replica) holds it with a fresh heartbeat.
    pub async fn node_ack_state(&self, node_id: Uuid, now: i64) -> StoreResult<(u64, bool)> {
        let row = sqlx::query(
            "SELECT acked_version, stream_conn, last_heartbeat FROM nodes WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(node_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok((0, false)) };
        let acked = r
            .try_get::<Option<i64>, _>("acked_version")?
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        Ok((acked, stream_live(&r, now)?))
    }

    /// Records the lease length granted to a node (before its first grant on a stream).
    pub async fn record_lease(&self, node_id: Uuid, lease_ms: u64) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE nodes SET lease_ms = $2 WHERE id = $1")
            .bind(node_id.to_string())
            .bind(i64::try_from(lease_ms).unwrap_or(i64::MAX))
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// The other live nodes of `node_id`'s region, as `host:port` of their WireGuard
    /// endpoints (their sibling endpoint listens on TCP at the same port).
    pub async fn sibling_endpoints(&self, node_id: Uuid) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT endpoint FROM nodes WHERE removed_at IS NULL AND id <> $1 \
             AND region_id = (SELECT region_id FROM nodes WHERE id = $1) ORDER BY id",
        )
        .bind(node_id.to_string())
        .fetch_all(self.pool())
        .await?)
    }

    /// Forgets which stream held each node (a single-replica control plane at start: no
    /// stream of the previous process survived it).
    pub async fn forget_streams(&self) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE nodes SET stream_conn = NULL, stream_replica = NULL WHERE stream_conn IS NOT NULL")
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// Stores a health verdict and moves the node between `online` and `degraded` (or out
    /// of `offline`: it reports, so it is back). Admin states are left alone. Each change
    /// is audited as a system action.
    pub async fn record_health(
        &self,
        node_id: Uuid,
        health: &NodeHealth,
        now: i64,
    ) -> StoreResult<Option<NodeState>> {
        let mut tx = self.write().await?;
        let Some(row) =
            sqlx::query("SELECT state, name FROM nodes WHERE id = $1 AND removed_at IS NULL")
                .bind(node_id.to_string())
                .fetch_optional(&mut *tx.tx)
                .await?
        else {
            return Ok(None);
        };
        let state: String = row.try_get("state")?;
        let name: String = row.try_get("name")?;
        let sick = !health.alerts.is_empty();
        let next = match state.as_str() {
            "online" | "offline" if sick => Some("degraded"),
            "degraded" | "offline" if !sick => Some("online"),
            _ => None,
        };
        // Conditional on the state read: an admin's maintenance / draining set meanwhile
        // (or an offline mark) is never overwritten by a verdict computed before it.
        let r = sqlx::query(
            "UPDATE nodes SET health = $2, health_reason = $3, state = COALESCE($4, state), \
             state_changed_at = CASE WHEN $4 IS NULL THEN state_changed_at ELSE $5 END, \
             offline_since = CASE WHEN $4 IS NULL THEN offline_since ELSE NULL END WHERE id = $1 AND state = $6",
        )
        .bind(node_id.to_string())
        .bind(serde_json::to_string(health).unwrap_or_default())
        .bind(health.reason.clone())
        .bind(next)
        .bind(now)
        .bind(&state)
        .execute(&mut *tx.tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        if let Some(next) = next {
            let action = match (state.as_str(), next) {
                (_, "degraded") => AuditAction::NodeDegraded,
                ("degraded", _) => AuditAction::NodeRecovered,
                _ => AuditAction::NodeOnline,
            };
            audit::record(
                &mut tx.tx,
                &AuditActor::system(),
                action,
                "node",
                Some(node_id.to_string()),
                json!({"name": name, "from": state, "to": next, "reason": health.reason, "alerts": health.alerts}),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(next.and_then(NodeState::parse))
    }

    /// Nodes that are `online` or `degraded` with no heartbeat within `grace_ms` become
    /// `offline` (audited). Returns their ids.
    /// A node last heard before `started` (this control plane's start) only counts as
    /// silent once `now >= settled`: it needs time to notice the restart and reconnect.
    pub async fn mark_silent_offline(
        &self,
        now: i64,
        grace_ms: i64,
        started: i64,
        settled: i64,
    ) -> StoreResult<Vec<Uuid>> {
        // Usually no node is silent: find out with a read before taking the writer.
        let silent: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM nodes WHERE removed_at IS NULL AND state IN ('online', 'degraded') \
             AND (last_heartbeat IS NULL OR last_heartbeat < $1)",
        )
        .bind(now.saturating_sub(grace_ms))
        .fetch_one(self.pool())
        .await?;
        if silent == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.write().await?;
        let rows = sqlx::query(
            "UPDATE nodes SET state = 'offline', offline_since = $1, state_changed_at = $1 \
             WHERE removed_at IS NULL AND state IN ('online', 'degraded') \
             AND (last_heartbeat IS NULL OR last_heartbeat < $2) \
             AND (last_heartbeat >= $3 OR $1 >= $4) RETURNING id, name",
        )
        .bind(now)
        .bind(now.saturating_sub(grace_ms))
        .bind(started)
        .bind(settled)
        .fetch_all(&mut *tx.tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.try_get("id")?;
            audit::record(
                &mut tx.tx,
                &AuditActor::system(),
                AuditAction::NodeOffline,
                "node",
                Some(id.clone()),
                json!({"name": r.try_get::<String, _>("name")?, "reason": format!("no heartbeat for {} s", grace_ms / 1000)}),
            )
            .await?;
            ids.push(uuid(&id, "nodes.id")?);
        }
        tx.commit().await?;
        Ok(ids)
    }

    /// Stores telemetry: host metrics on the node, per-peer usage for the node's own live
    /// peers only (a key the node does not serve is ignored). Peers are written in chunks,
    /// each its own short transaction, so a large report never holds the writer for long.
    pub async fn record_telemetry(
        &self,
        node_id: Uuid,
        t: &Telemetry,
        now: i64,
    ) -> StoreResult<Vec<PeerSignal>> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE nodes SET metrics = $2, last_heartbeat = $3, exit_ipv4 = COALESCE($4, exit_ipv4) WHERE id = $1",
        )
        .bind(node_id.to_string())
        .bind(serde_json::to_string(&t.host).unwrap_or_default())
        .bind(now)
        .bind(t.exit_ipv4.map(|ip| ip.to_string()))
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await?;
        let mut signals = Vec::new();
        for chunk in t.peers.chunks(TELEMETRY_CHUNK) {
            let mut tx = self.write().await?;
            for p in chunk {
                let Some(row) = sqlx::query(
                    "SELECT p.id, p.user_id, p.device_id, u.endpoint, u.rx_bytes, u.tx_bytes, u.updated_at FROM peers p \
                     LEFT JOIN peer_usage u ON u.peer_id = p.id \
                     WHERE p.node_id = $1 AND p.public_key = $2 AND p.retired_at IS NULL",
                )
                .bind(node_id.to_string())
                .bind(p.public_key.to_base64())
                .fetch_optional(&mut *tx.tx)
                .await?
                else {
                    continue;
                };
                let peer_id: String = row.try_get("id")?;
                let user_id: String = row.try_get("user_id")?;
                // Only a well-formed ip:port is kept; anything else from the node is dropped.
                let endpoint = p
                    .endpoint
                    .as_deref()
                    .and_then(|e| e.parse::<std::net::SocketAddr>().ok())
                    .map(|e| e.to_string());
                let old_endpoint: Option<String> = row.try_get("endpoint")?;
                let old_bytes = row
                    .try_get::<Option<i64>, _>("rx_bytes")?
                    .zip(row.try_get::<Option<i64>, _>("tx_bytes")?)
                    .map(|(r, t)| r.saturating_add(t));
                let old_at: Option<i64> = row.try_get("updated_at")?;
                let new_bytes = to_i64(p.rx_bytes).saturating_add(to_i64(p.tx_bytes));
                let bytes_per_sec = match (old_bytes, old_at) {
                    (Some(b), Some(at)) if now > at && new_bytes >= b => {
                        u64::try_from((new_bytes - b).saturating_mul(1000) / (now - at))
                            .unwrap_or(0)
                    }
                    _ => 0,
                };
                let endpoint_changed =
                    matches!((&old_endpoint, &endpoint), (Some(a), Some(b)) if a != b);
                if endpoint_changed || bytes_per_sec > 0 {
                    signals.push(PeerSignal {
                        device_id: uuid(
                            &row.try_get::<String, _>("device_id")?,
                            "peers.device_id",
                        )?,
                        endpoint_changed,
                        bytes_per_sec,
                    });
                }
                sqlx::query(
                    "INSERT INTO peer_usage (peer_id, user_id, last_handshake, rx_bytes, tx_bytes, endpoint, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (peer_id) DO UPDATE SET \
                     last_handshake = excluded.last_handshake, rx_bytes = excluded.rx_bytes, tx_bytes = excluded.tx_bytes, \
                     endpoint = excluded.endpoint, updated_at = excluded.updated_at",
                )
                .bind(peer_id)
                .bind(user_id)
                .bind(p.last_handshake)
                .bind(to_i64(p.rx_bytes))
                .bind(to_i64(p.tx_bytes))
                .bind(endpoint)
                .bind(now)
                .execute(&mut *tx.tx)
                .await?;
            }
            tx.commit().await?;
        }
        Ok(signals)
    }

    /// The node's version and whether it was removed (streams send the final delta, then close).
    pub async fn node_version_state(&self, node_id: Uuid) -> StoreResult<Option<(u64, bool)>> {
        let row = sqlx::query("SELECT version, removed_at FROM nodes WHERE id = $1")
            .bind(node_id.to_string())
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            let v: i64 = r.try_get("version")?;
            let removed: Option<i64> = r.try_get("removed_at")?;
            Ok((u64::try_from(v).unwrap_or(0), removed.is_some()))
        })
        .transpose()
    }

    /// A live node's (live peers, capacity), for the health verdict on each report.
    pub async fn node_load(&self, node_id: Uuid) -> StoreResult<Option<(u32, u32)>> {
        let row = sqlx::query(
            "SELECT live_peers, capacity FROM nodes WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(node_id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok((
                count(r.try_get("live_peers")?),
                count(r.try_get("capacity")?),
            ))
        })
        .transpose()
    }

    /// Records that the node is alive.
    pub async fn node_heartbeat(&self, node_id: Uuid, now: i64) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE nodes SET last_heartbeat = $2 WHERE id = $1")
            .bind(node_id.to_string())
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// This replica is shutting down and its stream `conn` ends: the node is no longer
    /// held (it shows disconnected until it reconnects to another replica) but stays in
    /// its state — it did nothing wrong, and marking it offline would start its failover
    /// clock.
    pub async fn node_stream_released(&self, node_id: Uuid, conn: Uuid) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE nodes SET stream_conn = NULL, stream_replica = NULL WHERE id = $1 AND stream_conn = $2",
        )
        .bind(node_id.to_string())
        .bind(conn.to_string())
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// The node's stream `conn` ended. If it still held the node (no newer stream, on
    /// this replica or another, took over), an `online` or `degraded` node becomes
    /// `offline` and stops receiving new devices until it reconnects.
    pub async fn node_disconnected(&self, node_id: Uuid, conn: Uuid) -> StoreResult<()> {
        let now = clawn_proto::time::now_millis();
        let mut tx = self.write().await?;
        let held = sqlx::query(
            "UPDATE nodes SET stream_conn = NULL, stream_replica = NULL WHERE id = $1 AND stream_conn = $2",
        )
        .bind(node_id.to_string())
        .bind(conn.to_string())
        .execute(&mut *tx.tx)
        .await?
        .rows_affected()
            == 1;
        if !held {
            return tx.commit().await;
        }
        let row = sqlx::query(
            "UPDATE nodes SET state = 'offline', offline_since = $2, state_changed_at = $2 \
             WHERE id = $1 AND state IN ('online', 'degraded') RETURNING name",
        )
        .bind(node_id.to_string())
        .bind(now)
        .fetch_optional(&mut *tx.tx)
        .await?;
        if let Some(r) = row {
            audit::record(
                &mut tx.tx,
                &AuditActor::system(),
                AuditAction::NodeOffline,
                "node",
                Some(node_id.to_string()),
                json!({"name": r.try_get::<String, _>("name")?, "reason": "stream closed"}),
            )
            .await?;
        }
        tx.commit().await
    }

    /// All live nodes for admins.
    pub async fn list_nodes(&self, connected: impl Fn(Uuid) -> bool) -> StoreResult<Vec<NodeView>> {
        let sql = format!("{NODE_VIEW_SQL} WHERE n.removed_at IS NULL ORDER BY r.code, n.name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        let now = clawn_proto::time::now_millis();
        rows.iter()
            .map(|r| node_view_from_row(r, &self.tuning, now, &connected))
            .collect()
    }

    /// One live node for admins.
    pub async fn node_view(
        &self,
        id: Uuid,
        connected: impl Fn(Uuid) -> bool,
    ) -> StoreResult<Option<NodeView>> {
        let sql = format!("{NODE_VIEW_SQL} WHERE n.id = $1 AND n.removed_at IS NULL");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await?;
        let now = clawn_proto::time::now_millis();
        row.as_ref()
            .map(|r| node_view_from_row(r, &self.tuning, now, &connected))
            .transpose()
    }

    /// Node counts by state (for metrics).
    pub async fn node_counts_by_state(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS c FROM nodes WHERE removed_at IS NULL GROUP BY state",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("c")?)))
            .collect()
    }
}

/// Updates state / capacity / name / link inside `tx`; false if no live node.
pub async fn update_node(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    state: Option<NodeState>,
    capacity: Option<u32>,
    name: Option<&str>,
    link_mbps: Option<u64>,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE nodes SET state = COALESCE($2, state), capacity = COALESCE($3, capacity), name = COALESCE($4, name), \
         link_mbps = COALESCE($5, link_mbps), \
         offline_since = CASE WHEN $2 IS NULL THEN offline_since WHEN $2 = 'offline' THEN COALESCE(offline_since, $6) ELSE NULL END, \
         state_changed_at = CASE WHEN $2 IS NULL THEN state_changed_at ELSE $6 END \
         WHERE id = $1 AND removed_at IS NULL",
    )
    .bind(id.to_string())
    .bind(state.map(NodeState::as_str))
    .bind(capacity.map(i64::from))
    .bind(name)
    .bind(link_mbps.map(|l| i64::try_from(l).unwrap_or(i64::MAX)))
    .bind(clawn_proto::time::now_millis())
    .execute(tx)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records which node a consumed join token enrolled, inside `tx`.
pub async fn mark_join_token_used_by(
    tx: &mut sqlx::AnyConnection,
    token_id: Uuid,
    node_id: Uuid,
) -> StoreResult<()> {
    sqlx::query("UPDATE join_tokens SET used_by_node = $2 WHERE id = $1")
        .bind(token_id.to_string())
        .bind(node_id.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// Locks a live node's row (PostgreSQL) and returns its live peers; `None` if there is
/// no such node. Taken first by node removal so no create can add a peer between the
/// check and the removal.
pub async fn lock_live_node(tx: &mut sqlx::AnyConnection, id: Uuid) -> StoreResult<Option<i64>> {
    Ok(sqlx::query_scalar(
        "UPDATE nodes SET live_peers = live_peers WHERE id = $1 AND removed_at IS NULL RETURNING live_peers",
    )
    .bind(id.to_string())
    .fetch_optional(tx)
    .await?)
}

/// Removes a node inside `tx`: every live peer retired (reason `node_removed`, at the
/// removal's version), the node marked removed and offline, its version bumped so the
/// last delta removes everything. Returns the new version.
pub async fn remove_node(tx: &mut sqlx::AnyConnection, id: Uuid, now: i64) -> StoreResult<u64> {
    sqlx::query(
        "UPDATE peers SET retired_at = $2, retire_reason = 'node_removed', \
         retired_version = (SELECT version + 1 FROM nodes WHERE id = $1) WHERE node_id = $1 AND retired_at IS NULL",
    )
    .bind(id.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let v: i64 = sqlx::query_scalar(
        "UPDATE nodes SET removed_at = $2, live_peers = 0, version = version + 1, state = 'offline' \
         WHERE id = $1 RETURNING version",
    )
    .bind(id.to_string())
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    Ok(super::devices::version(v))
}

/// The part of the hard constraints the database checks while it claims a seat, as SQL
/// over the `nodes` columns (`prefix` is the table alias with its dot, or empty), with the
/// reserve percent bound as `reserve` (a parameter such as `$2`, or a literal): online,
/// not removed, and a seat left by the same integer arithmetic as
/// [`crate::placement::seats`]. Heartbeat freshness, the rest of
/// [`crate::placement::eligible`], is judged on the candidates in Rust. This is the only SQL
/// spelling of the seat rule; `seat_sql_matches_seats` pins it to `seats`.
pub fn claimable_sql(prefix: &str, reserve: &str) -> String {
    format!(
        "{prefix}removed_at IS NULL AND {prefix}state = 'online' \
         AND {prefix}live_peers < {prefix}capacity - ({prefix}capacity * {reserve}) / 100"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The database's seat check is the same arithmetic as `placement::seats` and
    /// `placement::eligible`'s
    /// state rule: evaluated by SQLite on boundary cases around every seat count.
    #[tokio::test]
    async fn seat_sql_matches_seats() {
        sqlx::any::install_default_drivers();
        // One connection: every connection to `:memory:` is its own database.
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .expect("sqlite memory");
        sqlx::query(
            "CREATE TABLE nodes (removed_at BIGINT, state TEXT, live_peers BIGINT, capacity BIGINT)",
        )
        .execute(&pool)
        .await
        .expect("table");
        let sql = format!(
            "SELECT COUNT(*) FROM nodes WHERE {}",
            claimable_sql("", "$1")
        );
        for capacity in [0u32, 1, 2, 3, 7, 10, 99, 100, 101, 1000, 12_345] {
            for reserve in [0u32, 1, 5, 10, 33, 50, 99, 100] {
                let s = crate::placement::seats(capacity, reserve, false);
                for live in [s.saturating_sub(1), s, s + 1, 0, capacity] {
                    for (state, removed) in
                        [("online", None), ("degraded", None), ("online", Some(1i64))]
                    {
                        sqlx::query("DELETE FROM nodes")
                            .execute(&pool)
                            .await
                            .expect("clear");
                        sqlx::query("INSERT INTO nodes VALUES ($1, $2, $3, $4)")
                            .bind(removed)
                            .bind(state)
                            .bind(i64::from(live))
                            .bind(i64::from(capacity))
                            .execute(&pool)
                            .await
                            .expect("insert");
                        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                            .bind(i64::from(reserve))
                            .fetch_one(&pool)
                            .await
                            .expect("query");
                        let rust = state == "online" && removed.is_none() && live < s;
                        assert_eq!(
                            n == 1,
                            rust,
                            "capacity {capacity} reserve {reserve} live {live} {state} {removed:?}"
                        );
                    }
                }
            }
        }
    }
}
