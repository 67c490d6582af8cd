//! Devices and their peers: onboarding, revocation, rotation, rename and the
//! owner-scoped views. Every function takes a [`Scope`]; user-facing calls pass
//! `Scope::Owner`, and the owner filter is in the SQL itself, so another user's device is
//! indistinguishable from a missing one.

use std::net::Ipv4Addr;
use std::sync::LazyLock;

use clawn_proto::WgPublicKey;
use clawn_proto::api::AuditAction;
use clawn_proto::api::{
    DeviceClass, DeviceNodeView, DeviceState, DeviceView, Placement, TunnelState, TunnelStatus,
};
use clawn_proto::node::PeerClass;
use clawn_proto::time::now_millis;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::audit::{self, AuditActor};
use super::{Store, StoreError, StoreResult, Tuning, uuid};
use crate::ippool::next_free;
use crate::policy::Scope;

/// A handshake younger than this means the tunnel is up.
pub const ACTIVE_HANDSHAKE_MS: i64 = 180_000;

/// Why a device operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No such device in scope.
    #[error("device not found")]
    NotFound,
    /// No such region.
    #[error("region not found")]
    RegionNotFound,
    /// All slots used.
    #[error("all {slots} device slots are in use")]
    SlotsExhausted {
        /// The user's slots.
        slots: u32,
    },
    /// No eligible node with room.
    #[error("no node in region {0} can take a new device right now")]
    NoCapacity(String),
    /// The node's address pool is exhausted.
    #[error("the node's tunnel address pool is exhausted")]
    PoolExhausted,
    /// The public key is or was used by a device.
    #[error("this public key is already registered")]
    KeyInUse,
    /// Revoked already.
    #[error("device is already revoked")]
    AlreadyRevoked,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for DeviceError {
    fn from(e: sqlx::Error) -> Self {
        let e = StoreError::from(e);
        if e.is_unique_violation() {
            Self::KeyInUse
        } else {
            Self::Store(e)
        }
    }
}

/// A change that a node must apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeChange {
    /// The node.
    pub node_id: Uuid,
    /// The version carrying the change.
    pub version: u64,
}

/// Result of a device mutation.
#[derive(Debug, Clone)]
pub struct DeviceChanged {
    /// The device.
    pub device_id: Uuid,
    /// The node change to push, if a node is involved.
    pub change: Option<NodeChange>,
}

/// The class a device's peer gets.
pub(crate) fn class_of(priority: bool) -> PeerClass {
    if priority {
        PeerClass::Priority
    } else {
        PeerClass::Standard
    }
}

pub(crate) fn version(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A node claimed for a new peer: id, the version carrying it, its address range.
pub(crate) type Claimed = (Uuid, u64, i64, i64);

/// Takes a seat on `node` if it still has one for this device (the conditional update
/// is the capacity check, and row-locks the node on PostgreSQL): bumps its version and
/// live-peer count. `None` if the node filled, left `online` or was removed meanwhile.
async fn claim_seat(
    tx: &mut sqlx::AnyConnection,
    tuning: &Tuning,
    node: Uuid,
    priority: bool,
) -> Result<Option<Claimed>, DeviceError> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE nodes SET version = version + 1, live_peers = live_peers + 1 WHERE id = $1 AND {} \
             RETURNING version, pool_first, pool_last",
            super::nodes::claimable_sql("", "$2")
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(node.to_string())
        .bind(i64::from(crate::placement::reserve_percent(
            &tuning.placement,
            priority,
        )))
        .fetch_optional(&mut *tx)
        .await?;
    row.map(|r| {
        Ok((
            node,
            version(r.try_get("version")?),
            r.try_get("pool_first")?,
            r.try_get("pool_last")?,
        ))
    })
    .transpose()
}

/// Picks the best node of a region by load score (see [`crate::placement`]) and takes a
/// seat on it; under concurrent creates a node that filled meanwhile is skipped for the
/// next best.
async fn claim_node(
    tx: &mut sqlx::AnyConnection,
    tuning: &Tuning,
    region_id: Uuid,
    region_code: &str,
    priority: bool,
    exclude: Option<Uuid>,
) -> Result<Claimed, DeviceError> {
    let reserve = i64::from(crate::placement::reserve_percent(
        &tuning.placement,
        priority,
    ));
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT n.id, n.state, n.live_peers, n.capacity, n.metrics, n.health, n.last_heartbeat, n.link_mbps \
             FROM nodes n WHERE n.region_id = $1 AND {}",
            super::nodes::claimable_sql("n.", "$2")
        )
    });
    for _ in 0..5 {
        let now = now_millis();
        let rows = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
            .bind(region_id.to_string())
            .bind(reserve)
            .fetch_all(&mut *tx)
            .await?;
        let mut cands = Vec::with_capacity(rows.len());
        for r in &rows {
            let c = super::nodes::candidate_from_row(r, tuning, now)?;
            if Some(c.id) != exclude {
                cands.push(c);
            }
        }
        let ranked = crate::placement::ranked(&cands, &tuning.placement, priority);
        if ranked.is_empty() {
            return Err(DeviceError::NoCapacity(region_code.to_string()));
        }
        for c in ranked.into_iter().take(3) {
            if let Some(claimed) = claim_seat(tx, tuning, c.id, priority).await? {
                return Ok(claimed);
            }
        }
    }
    Err(DeviceError::NoCapacity(region_code.to_string()))
}

/// What placing a device's peer needs.
#[derive(Debug, Clone)]
pub(crate) struct PeerRequest<'a> {
    /// The device.
    pub device_id: Uuid,
    /// Its owner.
    pub owner: Uuid,
    /// Its public key.
    pub key: &'a WgPublicKey,
    /// The region to place it in, and its code (for messages).
    pub region: (Uuid, &'a str),
    /// Whether the owner holds a valid priority token there (all seats, priority class).
    pub priority: bool,
    /// A node not to use (the one a device moves away from).
    pub exclude: Option<Uuid>,
    /// A node to try first, and the address to keep there if it is still free (a
    /// re-enabled user's devices go back where they were).
    pub prefer: Option<(Uuid, Option<u32>)>,
    /// A move: once a seat is claimed, the device's live peer is retired with this
    /// reason (its node's seat freed) before the new peer is inserted.
    pub replaces: Option<&'a str>,
}

/// Where a peer was placed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placed {
    /// The node, at the version carrying the new peer.
    pub change: NodeChange,
    /// The tunnel address.
    pub ip: u32,
    /// The node that lost the device's old peer, for a move.
    pub retired: Option<NodeChange>,
}

/// Places a device's peer: the one definition of "claim a seat on the best eligible node
/// (or the preferred one), allocate an address, insert the peer", used by create, rotate
/// (when the old node is gone), region moves, failover and drain, re-placement after idle
/// removal, and restoring a re-enabled user.
pub(crate) async fn place_peer(
    tx: &mut sqlx::AnyConnection,
    tuning: &Tuning,
    req: &PeerRequest<'_>,
    now: i64,
) -> Result<Placed, DeviceError> {
    let preferred = match req.prefer {
        Some((node, _)) => claim_seat(tx, tuning, node, req.priority).await?,
        None => None,
    };
    let (node_id, version, first, last) = match preferred {
        Some(c) => c,
        None => {
            claim_node(
                tx,
                tuning,
                req.region.0,
                req.region.1,
                req.priority,
                req.exclude,
            )
            .await?
        }
    };
    let retired = match req.replaces {
        Some(reason) => retire_live_peer(tx, req.device_id, reason, now, true).await?,
        None => None,
    };
    let keep = match req.prefer {
        Some((node, Some(ip))) if node == node_id && address_free(tx, node_id, ip).await? => {
            Some(ip)
        }
        _ => None,
    };
    let ip = match keep {
        Some(ip) => ip,
        None => allocate_ip(tx, node_id, first, last).await?,
    };
    insert_peer(
        tx,
        req.device_id,
        req.owner,
        node_id,
        req.key,
        ip,
        version,
        now,
        class_of(req.priority),
    )
    .await?;
    Ok(Placed {
        change: NodeChange { node_id, version },
        ip,
        retired,
    })
}

async fn address_free(
    tx: &mut sqlx::AnyConnection,
    node: Uuid,
    ip: u32,
) -> Result<bool, DeviceError> {
    let taken: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM peers WHERE node_id = $1 AND tunnel_ip_int = $2 AND retired_at IS NULL",
    )
    .bind(node.to_string())
    .bind(i64::from(ip))
    .fetch_one(tx)
    .await?;
    Ok(taken == 0)
}

/// SQL for "the user holds a priority token for the region, valid now, and none of the
/// user's devices is quarantined" (which suspends it): 1 or 0. `user`, `region` and `now`
/// are the SQL expressions (parameters or columns) to use.
fn priority_sql(user: &str, region: &str, now: &str) -> String {
    format!(
        "(SELECT COUNT(*) FROM priority_tokens t WHERE t.user_id = {user} AND t.region_id = {region} \
         AND t.revoked_at IS NULL AND t.starts_at <= {now} AND t.expires_at > {now} \
         AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.user_id = t.user_id AND d.quarantined_at IS NOT NULL AND d.state = 'active'))"
    )
}

/// Whether `user` holds a valid priority token for `region` now (and none of the user's
/// devices is quarantined, which suspends it).
pub(crate) async fn has_priority(
    tx: &mut sqlx::AnyConnection,
    user: Uuid,
    region: Uuid,
    now: i64,
) -> Result<bool, DeviceError> {
    static SQL: LazyLock<String> =
        LazyLock::new(|| format!("SELECT {}", priority_sql("$1", "$2", "$3")));
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(user.to_string())
        .bind(region.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
    Ok(n > 0)
}

/// Chooses a free tunnel address on a node.
async fn allocate_ip(
    tx: &mut sqlx::AnyConnection,
    node_id: Uuid,
    first: i64,
    last: i64,
) -> Result<u32, DeviceError> {
    // ORDER BY … LIMIT 1 rather than MAX(): it is a one-entry backward index scan whatever
    // the planner's statistics say (MAX read every live peer of the node on PostgreSQL
    // before its first ANALYZE).
    let max: Option<i64> = sqlx::query_scalar(
        "SELECT tunnel_ip_int FROM peers WHERE node_id = $1 AND retired_at IS NULL \
         ORDER BY tunnel_ip_int DESC LIMIT 1",
    )
    .bind(node_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let (first, last) = (
        u32::try_from(first).unwrap_or(0),
        u32::try_from(last).unwrap_or(0),
    );
    let max = max.and_then(|m| u32::try_from(m).ok());
    let in_use = if matches!(max, Some(m) if m >= last) {
        let v: Vec<i64> = sqlx::query_scalar(
            "SELECT tunnel_ip_int FROM peers WHERE node_id = $1 AND retired_at IS NULL ORDER BY tunnel_ip_int",
        )
        .bind(node_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        v.into_iter()
            .filter_map(|i| u32::try_from(i).ok())
            .collect()
    } else {
        Vec::new()
    };
    next_free(first, last, max, || in_use).ok_or(DeviceError::PoolExhausted)
}

#[expect(
    clippy::too_many_arguments,
    reason = "one column each; a struct would only rename them"
)]
pub(crate) async fn insert_peer(
    tx: &mut sqlx::AnyConnection,
    device_id: Uuid,
    user_id: Uuid,
    node_id: Uuid,
    key: &WgPublicKey,
    ip: u32,
    version: u64,
    now: i64,
    class: PeerClass,
) -> Result<(), DeviceError> {
    sqlx::query(
        "INSERT INTO peers (id, device_id, user_id, node_id, public_key, tunnel_ip, tunnel_ip_int, created_at, created_version, class) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(Uuid::now_v7().to_string())
    .bind(device_id.to_string())
    .bind(user_id.to_string())
    .bind(node_id.to_string())
    .bind(key.to_base64())
    .bind(Ipv4Addr::from(ip).to_string())
    .bind(i64::from(ip))
    .bind(now)
    .bind(i64::try_from(version).unwrap_or(i64::MAX))
    .bind(class.as_str())
    .execute(tx)
    .await?;
    Ok(())
}

async fn key_ever_used(
    tx: &mut sqlx::AnyConnection,
    key: &WgPublicKey,
) -> Result<bool, DeviceError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM devices WHERE public_key = $1) + (SELECT COUNT(*) FROM peers WHERE public_key = $1)",
    )
    .bind(key.to_base64())
    .fetch_one(tx)
    .await?;
    Ok(n > 0)
}

/// Why a conditional update of an active device in `scope` matched nothing: the device is
/// revoked, or (also when it belongs to someone else) it does not exist.
async fn not_active(tx: &mut sqlx::AnyConnection, scope: &Scope, id: Uuid) -> DeviceError {
    let state: Result<Option<String>, _> = sqlx::query_scalar(
        "SELECT state FROM devices WHERE id = $1 AND COALESCE($2, user_id) = user_id",
    )
    .bind(id.to_string())
    .bind(scope.owner_param())
    .fetch_optional(tx)
    .await;
    match state {
        Ok(Some(_)) => DeviceError::AlreadyRevoked,
        Ok(None) => DeviceError::NotFound,
        Err(e) => e.into(),
    }
}

/// Creates a device with a peer on the best node of the region, all or nothing.
pub async fn create(
    store: &Store,
    owner: Uuid,
    actor: &AuditActor,
    name: &str,
    key: &WgPublicKey,
    region_code: &str,
) -> Result<DeviceChanged, DeviceError> {
    let region = store
        .region_by_code(region_code)
        .await?
        .ok_or(DeviceError::RegionNotFound)?;
    let now = now_millis();
    let mut w = store.write().await?;
    let tx = &mut *w.tx;
    if key_ever_used(tx, key).await? {
        return Err(DeviceError::KeyInUse);
    }
    // Taking the slot also answers whether the owner holds a priority token here: one
    // statement fewer on the hottest write path.
    static SLOT_SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE users SET active_devices = active_devices + 1, updated_at = $2 \
             WHERE id = $1 AND active_devices < device_slots AND disabled = 0 RETURNING {}",
            priority_sql("$1", "$3", "$2")
        )
    });
    let slot: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(SLOT_SQL.as_str()))
        .bind(owner.to_string())
        .bind(now)
        .bind(region.id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
    let Some(priority) = slot else {
        let slots: Option<i64> = sqlx::query_scalar("SELECT device_slots FROM users WHERE id = $1")
            .bind(owner.to_string())
            .fetch_optional(&mut *tx)
            .await?;
        return Err(DeviceError::SlotsExhausted {
            slots: super::count(slots.unwrap_or(0)),
        });
    };
    let priority = priority > 0;
    let device_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, public_key, state, region_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $6)",
    )
    .bind(device_id.to_string())
    .bind(owner.to_string())
    .bind(name)
    .bind(key.to_base64())
    .bind(region.id.to_string())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let placed = place_peer(
        tx,
        store.tuning(),
        &PeerRequest {
            device_id,
            owner,
            key,
            region: (region.id, &region.code),
            priority,
            exclude: None,
            prefer: None,
            replaces: None,
        },
        now,
    )
    .await?;
    let (NodeChange { node_id, version }, ip) = (placed.change, placed.ip);
    audit::record(
        tx,
        actor,
        AuditAction::DeviceCreate,
        "device",
        Some(device_id.to_string()),
        json!({"name": name, "region": region.code, "node_id": node_id, "tunnel_ip": Ipv4Addr::from(ip).to_string(),
               "public_key": key.to_base64(), "owner_id": owner, "class": class_of(priority).as_str()}),
    )
    .await?;
    w.commit().await?;
    Ok(DeviceChanged {
        device_id,
        change: Some(NodeChange { node_id, version }),
    })
}

/// Revokes a device: state, slot, peer retirement, version bump and audit in one
/// transaction.
pub async fn revoke(
    store: &Store,
    scope: &Scope,
    id: Uuid,
    actor: &AuditActor,
) -> Result<DeviceChanged, DeviceError> {
    let now = now_millis();
    let mut w = store.write().await?;
    let tx = &mut *w.tx;
    let row = sqlx::query(
        "UPDATE devices SET state = 'revoked', revoked_at = $3, updated_at = $3 \
         WHERE id = $1 AND COALESCE($2, user_id) = user_id AND state = 'active' RETURNING user_id",
    )
    .bind(id.to_string())
    .bind(scope.owner_param())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(not_active(tx, scope, id).await);
    };
    let owner: String = row.try_get("user_id")?;
    sqlx::query(
        "UPDATE users SET active_devices = active_devices - 1 WHERE id = $1 AND active_devices > 0",
    )
    .bind(&owner)
    .execute(&mut *tx)
    .await?;
    let change = retire_live_peer(tx, id, "revoked", now, true).await?;
    audit::record(
        tx,
        actor,
        AuditAction::DeviceRevoke,
        "device",
        Some(id.to_string()),
        json!({"owner_id": owner, "node_id": change.map(|c| c.node_id), "version": change.map(|c| c.version)}),
    )
    .await?;
    w.commit().await?;
    Ok(DeviceChanged {
        device_id: id,
        change,
    })
}

/// Retires the device's live peer (if any) and bumps its node's version.
pub(crate) async fn retire_live_peer(
    tx: &mut sqlx::AnyConnection,
    device_id: Uuid,
    reason: &str,
    now: i64,
    frees_slot_on_node: bool,
) -> Result<Option<NodeChange>, DeviceError> {
    // A concurrent move may retire the peer read here and create another before our
    // retire gets its row (PostgreSQL re-checks `retired_at IS NULL` after the wait and
    // matches nothing): read again, so the device's live peer is the one retired.
    for _ in 0..3 {
        let peer: Option<String> =
            sqlx::query_scalar("SELECT id FROM peers WHERE device_id = $1 AND retired_at IS NULL")
                .bind(device_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(peer) = peer else { return Ok(None) };
        if let Some(c) = retire_peer(tx, &peer, reason, now, frees_slot_on_node).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Retires one peer if it is still live, then bumps its node's version (and frees its
/// seat); `None` if it was retired meanwhile (the node's counters are not touched then).
pub(crate) async fn retire_peer(
    tx: &mut sqlx::AnyConnection,
    peer_id: &str,
    reason: &str,
    now: i64,
    frees_slot_on_node: bool,
) -> Result<Option<NodeChange>, DeviceError> {
    let node_id: Option<String> = sqlx::query_scalar(
        "UPDATE peers SET retired_at = $2, retire_reason = $3 WHERE id = $1 AND retired_at IS NULL RETURNING node_id",
    )
    .bind(peer_id)
    .bind(now)
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(node_id) = node_id else {
        return Ok(None);
    };
    let dec = if frees_slot_on_node { 1 } else { 0 };
    let v: i64 = sqlx::query_scalar(
        "UPDATE nodes SET version = version + 1, live_peers = live_peers - $2 WHERE id = $1 RETURNING version",
    )
    .bind(&node_id)
    .bind(dec)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("UPDATE peers SET retired_version = $2 WHERE id = $1")
        .bind(peer_id)
        .bind(v)
        .execute(&mut *tx)
        .await?;
    Ok(Some(NodeChange {
        node_id: uuid(&node_id, "peers.node_id")?,
        version: version(v),
    }))
}

/// Rotates a device's key: the old peer is retired and a new one created on the same
/// node with the same tunnel address (or on a new node if the old one is gone).
pub async fn rotate(
    store: &Store,
    scope: &Scope,
    id: Uuid,
    key: &WgPublicKey,
    actor: &AuditActor,
) -> Result<DeviceChanged, DeviceError> {
    let now = now_millis();
    let mut w = store.write().await?;
    let tx = &mut *w.tx;
    if key_ever_used(tx, key).await? {
        return Err(DeviceError::KeyInUse);
    }
    // Take the device row first (a row lock on PostgreSQL), re-checking that it is still
    // active: a concurrent revoke either committed before (no row) or waits for us.
    let dev = sqlx::query(
        "UPDATE devices SET public_key = $3, updated_at = $4 \
         WHERE id = $1 AND COALESCE($2, user_id) = user_id AND state = 'active' \
         RETURNING user_id, region_id",
    )
    .bind(id.to_string())
    .bind(scope.owner_param())
    .bind(key.to_base64())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(dev) = dev else {
        return Err(not_active(tx, scope, id).await);
    };
    let owner = uuid(&dev.try_get::<String, _>("user_id")?, "devices.user_id")?;
    let region_id = uuid(&dev.try_get::<String, _>("region_id")?, "devices.region_id")?;
    let class = class_of(has_priority(tx, owner, region_id, now).await?);
    let old = sqlx::query(
        "SELECT p.id, p.node_id, p.tunnel_ip_int FROM peers p JOIN nodes n ON n.id = p.node_id \
         WHERE p.device_id = $1 AND p.retired_at IS NULL AND n.removed_at IS NULL",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let change = match old {
        Some(old) => {
            // Same node, same address: retire and re-add under one version.
            let change = retire_live_peer(tx, id, "rotated", now, false)
                .await?
                .ok_or(DeviceError::NotFound)?;
            let ip = u32::try_from(old.try_get::<i64, _>("tunnel_ip_int")?).unwrap_or(0);
            insert_peer(
                tx,
                id,
                owner,
                change.node_id,
                key,
                ip,
                change.version,
                now,
                class,
            )
            .await?;
            change
        }
        None => {
            let code: String = sqlx::query_scalar("SELECT code FROM regions WHERE id = $1")
                .bind(region_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            let req = PeerRequest {
                device_id: id,
                owner,
                key,
                region: (region_id, &code),
                priority: class == PeerClass::Priority,
                exclude: None,
                prefer: None,
                replaces: None,
            };
            place_peer(tx, store.tuning(), &req, now).await?.change
        }
    };
    audit::record(
        tx,
        actor,
        AuditAction::DeviceRotate,
        "device",
        Some(id.to_string()),
        json!({"owner_id": owner, "node_id": change.node_id, "version": change.version, "public_key": key.to_base64()}),
    )
    .await?;
    w.commit().await?;
    Ok(DeviceChanged {
        device_id: id,
        change: Some(change),
    })
}

/// Renames a device.
pub async fn rename(
    store: &Store,
    scope: &Scope,
    id: Uuid,
    name: &str,
    actor: &AuditActor,
) -> Result<(), DeviceError> {
    let mut w = store.write().await?;
    let r = sqlx::query("UPDATE devices SET name = $3, updated_at = $4 WHERE id = $1 AND COALESCE($2, user_id) = user_id")
        .bind(id.to_string())
        .bind(scope.owner_param())
        .bind(name)
        .bind(now_millis())
        .execute(&mut *w.tx)
        .await?;
    if r.rows_affected() != 1 {
        return Err(DeviceError::NotFound);
    }
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::DeviceRename,
        "device",
        Some(id.to_string()),
        json!({"name": name}),
    )
    .await?;
    w.commit().await?;
    Ok(())
}

/// Cuts a disabled user off: retires the live peer of each of their active devices (the
/// devices stay, so enabling the user restores them). Returns the node changes to push.
pub async fn suspend_user(
    tx: &mut sqlx::AnyConnection,
    user_id: Uuid,
    now: i64,
) -> Result<Vec<NodeChange>, DeviceError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT d.id FROM devices d JOIN peers p ON p.device_id = d.id AND p.retired_at IS NULL \
         WHERE d.user_id = $1 AND d.state = 'active' ORDER BY d.id",
    )
    .bind(user_id.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut changes = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(c) =
            retire_live_peer(tx, uuid(&id, "devices.id")?, "user_disabled", now, true).await?
        {
            changes.push(c);
        }
    }
    Ok(changes)
}

/// Gives an enabled user's suspended devices their peers back: on the same node and
/// address when that node can still take them, otherwise on the best node of the region.
/// Devices that find no room stay without a peer (their config answers 404 until an
/// admin adds capacity and the user rotates). Returns the changes and how many found no room.
pub async fn restore_user(
    tx: &mut sqlx::AnyConnection,
    tuning: &Tuning,
    user_id: Uuid,
    now: i64,
) -> Result<(Vec<NodeChange>, u32), DeviceError> {
    let rows = sqlx::query(
        "SELECT d.id, d.public_key, d.region_id, r.code, \
         (SELECT p.node_id FROM peers p WHERE p.device_id = d.id AND p.retire_reason = 'user_disabled' \
            ORDER BY p.retired_at DESC LIMIT 1) AS last_node, \
         (SELECT p.tunnel_ip_int FROM peers p WHERE p.device_id = d.id AND p.retire_reason = 'user_disabled' \
            ORDER BY p.retired_at DESC LIMIT 1) AS last_ip \
         FROM devices d JOIN regions r ON r.id = d.region_id WHERE d.user_id = $1 AND d.state = 'active' \
         AND NOT EXISTS (SELECT 1 FROM peers p WHERE p.device_id = d.id AND p.retired_at IS NULL) ORDER BY d.id",
    )
    .bind(user_id.to_string())
    .fetch_all(&mut *tx)
    .await?;
    let mut changes = Vec::new();
    let mut homeless = 0;
    for r in rows {
        let device_id = uuid(&r.try_get::<String, _>("id")?, "devices.id")?;
        let key = WgPublicKey::parse(&r.try_get::<String, _>("public_key")?)
            .map_err(|_| StoreError::Corrupt("devices.public_key"))?;
        let last_node: Option<String> = r.try_get("last_node")?;
        let last_ip: Option<i64> = r.try_get("last_ip")?;
        let region_id = uuid(&r.try_get::<String, _>("region_id")?, "devices.region_id")?;
        let priority = has_priority(tx, user_id, region_id, now).await?;
        let last_node = last_node.map(|n| uuid(&n, "peers.node_id")).transpose()?;
        let code: String = r.try_get("code")?;
        let req = PeerRequest {
            device_id,
            owner: user_id,
            key: &key,
            region: (region_id, &code),
            priority,
            exclude: None,
            prefer: last_node.map(|n| (n, last_ip.and_then(|ip| u32::try_from(ip).ok()))),
            replaces: None,
        };
        match place_peer(tx, tuning, &req, now).await {
            Ok(p) => changes.push(p.change),
            Err(DeviceError::NoCapacity(_)) => homeless += 1,
            Err(e) => return Err(e),
        }
    }
    Ok((changes, homeless))
}

/// Filters for device lists.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// One device.
    pub id: Option<Uuid>,
    /// Only this owner (admin lists).
    pub user_id: Option<Uuid>,
    /// Only this state.
    pub state: Option<DeviceState>,
    /// Only devices waiting for capacity.
    pub waiting: bool,
    /// Only quarantined devices.
    pub quarantined: bool,
}

const DEVICE_VIEW_SQL: &str = "SELECT d.id, d.name, d.state, d.public_key, d.created_at, d.revoked_at, d.user_id, \
     us.email AS owner_email, r.code AS region_code, p.tunnel_ip, n.id AS node_id, n.name AS node_name, \
     n.endpoint AS node_endpoint, n.exit_ipv4, u.last_handshake, u.rx_bytes, u.tx_bytes, u.endpoint AS peer_endpoint, \
     p.class, p.idle_flagged_at, d.waiting_since, d.moved_at, d.moved_reason, d.quarantined_at, d.quarantine_reason, \
     n.wg_public_key AS node_wg_key, n.removed_at AS node_removed_at, r.dns AS region_dns \
     FROM devices d JOIN regions r ON r.id = d.region_id JOIN users us ON us.id = d.user_id \
     LEFT JOIN peers p ON p.device_id = d.id AND p.retired_at IS NULL \
     LEFT JOIN nodes n ON n.id = p.node_id \
     LEFT JOIN peer_usage u ON u.peer_id = p.id WHERE 1 = 1";

fn device_from_row(r: &AnyRow, admin: bool, now: i64) -> StoreResult<DeviceView> {
    let state: String = r.try_get("state")?;
    let key: String = r.try_get("public_key")?;
    let node_id: Option<String> = r.try_get("node_id")?;
    let last_handshake: Option<i64> = r.try_get("last_handshake")?;
    let user_id = uuid(&r.try_get::<String, _>("user_id")?, "devices.user_id")?;
    let node = match node_id {
        Some(nid) => Some(DeviceNodeView {
            id: uuid(&nid, "nodes.id")?,
            name: r
                .try_get::<Option<String>, _>("node_name")?
                .unwrap_or_default(),
            endpoint: r
                .try_get::<Option<String>, _>("node_endpoint")?
                .unwrap_or_default(),
            exit_ipv4: r.try_get("exit_ipv4")?,
        }),
        None => None,
    };
    let active =
        matches!(last_handshake, Some(h) if now - h < ACTIVE_HANDSHAKE_MS) && state == "active";
    let node_present = node.is_some();
    Ok(DeviceView {
        id: uuid(&r.try_get::<String, _>("id")?, "devices.id")?,
        name: r.try_get("name")?,
        state: if state == "active" {
            DeviceState::Active
        } else {
            DeviceState::Revoked
        },
        region: r.try_get("region_code")?,
        public_key: WgPublicKey::parse(&key)
            .map_err(|_| StoreError::Corrupt("devices.public_key"))?,
        tunnel_ip: r.try_get("tunnel_ip")?,
        node,
        tunnel: TunnelStatus {
            status: if active {
                TunnelState::Active
            } else {
                TunnelState::Inactive
            },
            last_handshake,
            rx_bytes: u64::try_from(r.try_get::<Option<i64>, _>("rx_bytes")?.unwrap_or(0))
                .unwrap_or(0),
            tx_bytes: u64::try_from(r.try_get::<Option<i64>, _>("tx_bytes")?.unwrap_or(0))
                .unwrap_or(0),
            endpoint: r.try_get("peer_endpoint")?,
        },
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        owner_id: admin.then_some(user_id),
        owner_email: if admin {
            r.try_get("owner_email")?
        } else {
            None
        },
        placement: if state != "active" {
            Placement::Unassigned
        } else if r.try_get::<Option<i64>, _>("waiting_since")?.is_some() {
            Placement::WaitingForCapacity
        } else if node_present {
            Placement::Assigned
        } else {
            Placement::Unassigned
        },
        class: r
            .try_get::<Option<String>, _>("class")?
            .map_or(DeviceClass::Standard, |c| DeviceClass::parse(&c)),
        moved_at: r.try_get("moved_at")?,
        moved_reason: r.try_get("moved_reason")?,
        quarantined: r.try_get::<Option<i64>, _>("quarantined_at")?.is_some(),
        quarantine_reason: if admin {
            r.try_get("quarantine_reason")?
        } else {
            None
        },
        idle_flagged_at: if admin {
            r.try_get("idle_flagged_at")?
        } else {
            None
        },
    })
}

impl Store {
    /// Devices visible in `scope`, filtered.
    pub async fn devices(&self, scope: &Scope, f: &DeviceFilter) -> StoreResult<Vec<DeviceView>> {
        let rows = self.device_rows(scope, f).await?;
        let now = now_millis();
        rows.iter()
            .map(|r| device_from_row(r, scope.is_admin(), now))
            .collect()
    }

    /// One device in `scope` and, if it has a config (active, with a live peer on a node
    /// that is not removed), what the config needs: one query for the answer to a create,
    /// rotate or move.
    pub async fn device_with_config(
        &self,
        scope: &Scope,
        id: Uuid,
    ) -> StoreResult<Option<(DeviceView, Option<ConfigParts>)>> {
        let f = DeviceFilter {
            id: Some(id),
            ..DeviceFilter::default()
        };
        let rows = self.device_rows(scope, &f).await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let device = device_from_row(r, scope.is_admin(), now_millis())?;
        let tunnel_ip: Option<String> = r.try_get("tunnel_ip")?;
        let key: Option<String> = r.try_get("node_wg_key")?;
        let removed: Option<i64> = r.try_get("node_removed_at")?;
        let parts = match (tunnel_ip, key, removed, device.state) {
            (Some(tunnel_ip), Some(key), None, DeviceState::Active) => {
                let dns: String = r.try_get("region_dns")?;
                Some(ConfigParts {
                    tunnel_ip,
                    node_public_key: WgPublicKey::parse(&key)
                        .map_err(|_| StoreError::Corrupt("nodes.wg_public_key"))?,
                    endpoint: device
                        .node
                        .as_ref()
                        .map(|n| n.endpoint.clone())
                        .unwrap_or_default(),
                    dns: serde_json::from_str(&dns).unwrap_or_default(),
                })
            }
            _ => None,
        };
        Ok(Some((device, parts)))
    }

    async fn device_rows(&self, scope: &Scope, f: &DeviceFilter) -> StoreResult<Vec<AnyRow>> {
        // The owner filter comes from the scope; an admin may narrow by user. Each filter
        // is a plain equality (index-friendly), added only when present.
        let owner = scope.owner_param().or(f.user_id.map(|u| u.to_string()));
        let state = f.state.map(|s| match s {
            DeviceState::Active => "active",
            DeviceState::Revoked => "revoked",
        });
        let mut sql = String::from(DEVICE_VIEW_SQL);
        let mut binds: Vec<String> = Vec::new();
        for (column, value) in [
            ("d.user_id", owner),
            ("d.id", f.id.map(|i| i.to_string())),
            ("d.state", state.map(str::to_string)),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        if f.waiting {
            sql.push_str(" AND d.waiting_since IS NOT NULL");
        }
        if f.quarantined {
            sql.push_str(" AND d.quarantined_at IS NOT NULL");
        }
        sql.push_str(" ORDER BY d.created_at, d.id");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        Ok(q.fetch_all(self.pool()).await?)
    }

    /// One device in `scope`.
    pub async fn device(&self, scope: &Scope, id: Uuid) -> StoreResult<Option<DeviceView>> {
        Ok(self
            .devices(
                scope,
                &DeviceFilter {
                    id: Some(id),
                    ..DeviceFilter::default()
                },
            )
            .await?
            .into_iter()
            .next())
    }

    /// What a device's config needs: node key, endpoint, tunnel address, region DNS.
    pub async fn device_config_parts(
        &self,
        scope: &Scope,
        id: Uuid,
    ) -> StoreResult<Option<ConfigParts>> {
        let row = sqlx::query(
            "SELECT p.tunnel_ip, n.wg_public_key, n.endpoint, r.dns FROM devices d \
             JOIN peers p ON p.device_id = d.id AND p.retired_at IS NULL \
             JOIN nodes n ON n.id = p.node_id AND n.removed_at IS NULL \
             JOIN regions r ON r.id = d.region_id \
             WHERE d.id = $1 AND COALESCE($2, d.user_id) = d.user_id AND d.state = 'active'",
        )
        .bind(id.to_string())
        .bind(scope.owner_param())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            let key: String = r.try_get("wg_public_key")?;
            let dns: String = r.try_get("dns")?;
            Ok(ConfigParts {
                tunnel_ip: r.try_get("tunnel_ip")?,
                node_public_key: WgPublicKey::parse(&key)
                    .map_err(|_| StoreError::Corrupt("nodes.wg_public_key"))?,
                endpoint: r.try_get("endpoint")?,
                dns: serde_json::from_str(&dns).unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Counts for metrics: active devices, live peers.
    pub async fn device_counts(&self) -> StoreResult<(i64, i64)> {
        let d: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE state = 'active'")
            .fetch_one(self.pool())
            .await?;
        let p: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM peers WHERE retired_at IS NULL")
            .fetch_one(self.pool())
            .await?;
        Ok((d, p))
    }
}

/// The server-side facts of a device's config.
#[derive(Debug, Clone)]
pub struct ConfigParts {
    /// Tunnel address.
    pub tunnel_ip: String,
    /// Node key.
    pub node_public_key: WgPublicKey,
    /// Node endpoint.
    pub endpoint: String,
    /// DNS.
    pub dns: Vec<String>,
}
