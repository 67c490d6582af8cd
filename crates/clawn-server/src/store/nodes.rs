//! Nodes: join tokens, enrollment, desired state (snapshots and deltas), acks, telemetry.

use std::collections::BTreeSet;

use clawn_proto::WgPublicKey;
use clawn_proto::api::{NodeState, NodeView};
use clawn_proto::node::{HostMetrics, InterfaceSpec, PeerSpec, Telemetry};
use ipnet::Ipv4Net;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Store, StoreError, StoreResult, count, uuid};
use crate::ippool::{NodePool, free_node_pool};

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
}

fn peer_from_row(r: &AnyRow) -> StoreResult<PeerSpec> {
    let key: String = r.try_get("public_key")?;
    let ip: String = r.try_get("tunnel_ip")?;
    Ok(PeerSpec {
        public_key: WgPublicKey::parse(&key)
            .map_err(|_| StoreError::Corrupt("peers.public_key"))?,
        allowed_ips: vec![format!("{ip}/32")],
        device_id: uuid(&r.try_get::<String, _>("device_id")?, "peers.device_id")?,
    })
}

const NODE_VIEW_SQL: &str =
    "SELECT n.*, r.code AS region_code FROM nodes n JOIN regions r ON r.id = n.region_id";

fn node_view_from_row(r: &AnyRow, connected: impl Fn(Uuid) -> bool) -> StoreResult<NodeView> {
    let id = uuid(&r.try_get::<String, _>("id")?, "nodes.id")?;
    let state: String = r.try_get("state")?;
    let key: String = r.try_get("wg_public_key")?;
    let caps: String = r.try_get("capabilities")?;
    let metrics: Option<String> = r.try_get("metrics")?;
    Ok(NodeView {
        id,
        name: r.try_get("name")?,
        region: r.try_get("region_code")?,
        state: NodeState::parse(&state).ok_or(StoreError::Corrupt("nodes.state"))?,
        connected: connected(id),
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
    })
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
            "SELECT public_key, tunnel_ip, device_id FROM peers WHERE node_id = $1 AND created_version <= $2 \
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
            "SELECT public_key, tunnel_ip, device_id FROM peers WHERE node_id = $1 AND created_version > $2 \
             AND created_version <= $3 AND (retired_version IS NULL OR retired_version > $3) ORDER BY tunnel_ip_int",
        )
        .bind(node_id.to_string())
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await?;
        Ok(DesiredDelta {
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

    /// Marks a node connected: `pending`/`offline` become `online`; the heartbeat is set.
    pub async fn node_connected(&self, node_id: Uuid, now: i64) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query(
            "UPDATE nodes SET state = CASE WHEN state IN ('pending', 'offline') THEN 'online' ELSE state END, \
             last_heartbeat = $2 WHERE id = $1",
        )
        .bind(node_id.to_string())
        .bind(now)
        .execute(&mut *tx.tx)
        .await?;
        tx.commit().await
    }

    /// Stores telemetry: host metrics on the node, per-peer usage for the node's own live
    /// peers only (a key the node does not serve is ignored). Peers are written in chunks,
    /// each its own short transaction, so a large report never holds the writer for long.
    pub async fn record_telemetry(
        &self,
        node_id: Uuid,
        t: &Telemetry,
        now: i64,
    ) -> StoreResult<()> {
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
        for chunk in t.peers.chunks(TELEMETRY_CHUNK) {
            let mut tx = self.write().await?;
            for p in chunk {
                let Some(row) = sqlx::query(
                    "SELECT id, user_id FROM peers WHERE node_id = $1 AND public_key = $2 AND retired_at IS NULL",
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
        Ok(())
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

    /// The node's stream ended with no replacement: an `online` node becomes `offline`
    /// and stops receiving new devices until it reconnects.
    pub async fn node_disconnected(&self, node_id: Uuid) -> StoreResult<()> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE nodes SET state = 'offline' WHERE id = $1 AND state = 'online'")
            .bind(node_id.to_string())
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await
    }

    /// All live nodes for admins.
    pub async fn list_nodes(&self, connected: impl Fn(Uuid) -> bool) -> StoreResult<Vec<NodeView>> {
        let sql = format!("{NODE_VIEW_SQL} WHERE n.removed_at IS NULL ORDER BY r.code, n.name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| node_view_from_row(r, &connected))
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
        row.as_ref()
            .map(|r| node_view_from_row(r, &connected))
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

/// Updates state / capacity / name inside `tx`; false if no live node.
pub async fn update_node(
    tx: &mut sqlx::AnyConnection,
    id: Uuid,
    state: Option<NodeState>,
    capacity: Option<u32>,
    name: Option<&str>,
) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE nodes SET state = COALESCE($2, state), capacity = COALESCE($3, capacity), name = COALESCE($4, name) \
         WHERE id = $1 AND removed_at IS NULL",
    )
    .bind(id.to_string())
    .bind(state.map(NodeState::as_str))
    .bind(capacity.map(i64::from))
    .bind(name)
    .execute(tx)
    .await?;
    Ok(r.rows_affected() == 1)
}
