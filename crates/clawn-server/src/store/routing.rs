//! Moving devices between nodes (failover, drain, region reassignment), priority access
//! tokens and the peer classes they give, idle-peer hygiene and quarantine.
//!
//! A move is one transaction: the old peer is retired (its node's version bumps, so the
//! node removes it), a new peer with the same public key is created on the best node by
//! score (that node's version bumps), the device records when and why it moved, and an
//! audit event names both nodes. A failover or drain that finds no room leaves the peer
//! where it is and marks the device "waiting for capacity"; nothing is dropped.

use std::net::Ipv4Addr;

use clawn_proto::WgPublicKey;
use clawn_proto::api::AuditAction;
use clawn_proto::api::{PriorityStatus, PriorityTokenView};
use clawn_proto::node::PeerClass;
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use super::audit::{self, AuditActor};
use super::devices::{
    DeviceError, NodeChange, PeerRequest, class_of, has_priority, place_peer, retire_peer, version,
};
use super::{Store, StoreError, StoreResult, uuid};
use crate::config::IdleAction;
use crate::policy::Scope;

/// Why a device moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveReason {
    /// Its node is offline beyond the failover delay.
    Failover,
    /// Its node is draining.
    Drain,
    /// Its owner (or an admin) asked for another region.
    Reassign,
}

impl MoveReason {
    /// Stored spelling (also the audit action suffix).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Drain => "drain",
            Self::Reassign => "reassign",
        }
    }
}

/// What a move did.
#[derive(Debug, Clone)]
pub enum MoveOutcome {
    /// Moved: the changes to push (old node, new node).
    Moved {
        /// Node changes.
        changes: Vec<NodeChange>,
        /// The new node.
        to_node: Uuid,
    },
    /// No node had room; the device waits (first time: `newly` is true).
    Waiting {
        /// Whether it just started waiting.
        newly: bool,
    },
    /// Nothing to move (revoked meanwhile, or no live peer on that node any more).
    Nothing,
}

/// Why a region move was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReassignError {
    /// The device is quarantined.
    #[error("device is quarantined")]
    Quarantined,
    /// Already in that region.
    #[error("device is already in region {0}")]
    SameRegion(String),
    /// Too many moves in the last hour.
    #[error("at most {limit} region moves per hour")]
    RateLimited {
        /// The limit.
        limit: u32,
        /// Seconds until one more move is allowed.
        retry_after_secs: u64,
    },
    /// Anything else.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

impl From<StoreError> for ReassignError {
    fn from(e: StoreError) -> Self {
        Self::Device(DeviceError::Store(e))
    }
}

impl From<sqlx::Error> for ReassignError {
    fn from(e: sqlx::Error) -> Self {
        Self::Device(e.into())
    }
}

const HOUR_MS: i64 = 3_600_000;

/// Moves a device's live peer. `from_node`: only if the peer is still on that node
/// (failover / drain); `region`: the target region (reassign), else the device's own.
pub async fn move_device(
    store: &Store,
    scope: &Scope,
    device_id: Uuid,
    from_node: Option<Uuid>,
    region: Option<(Uuid, String)>,
    reason: MoveReason,
    actor: &AuditActor,
) -> Result<MoveOutcome, ReassignError> {
    let now = clawn_proto::time::now_millis();
    let mut w = store.write().await?;
    let out = move_in(
        &mut w.tx, store, scope, device_id, from_node, region, reason, actor, now,
    )
    .await?;
    if matches!(
        out,
        MoveOutcome::Moved { .. } | MoveOutcome::Waiting { newly: true }
    ) {
        w.commit().await?;
    }
    Ok(out)
}

/// How many devices one evacuation transaction moves at most (one commit, one fsync,
/// for all of them).
pub const EVACUATION_BATCH: usize = 200;

/// Moves `devices` off evacuated node `from` (failover or drain) in one transaction, as
/// the system. Stops at the first device that finds no room (it is marked waiting; the
/// caller marks the rest). Returns each device's outcome, in order.
pub async fn evacuate_batch(
    store: &Store,
    from: Uuid,
    devices: &[Uuid],
    reason: MoveReason,
) -> Result<Vec<(Uuid, MoveOutcome)>, ReassignError> {
    let now = clawn_proto::time::now_millis();
    let mut w = store.write().await?;
    let mut out = Vec::with_capacity(devices.len());
    for &device in devices.iter().take(EVACUATION_BATCH) {
        let o = move_in(
            &mut w.tx,
            store,
            &Scope::system(),
            device,
            Some(from),
            None,
            reason,
            &AuditActor::system(),
            now,
        )
        .await?;
        let full = matches!(o, MoveOutcome::Waiting { .. });
        out.push((device, o));
        if full {
            break;
        }
    }
    w.commit().await?;
    Ok(out)
}

/// One move inside the caller's transaction (see [`move_device`]).
#[allow(clippy::too_many_arguments)]
async fn move_in(
    tx: &mut sqlx::AnyConnection,
    store: &Store,
    scope: &Scope,
    device_id: Uuid,
    from_node: Option<Uuid>,
    region: Option<(Uuid, String)>,
    reason: MoveReason,
    actor: &AuditActor,
    now: i64,
) -> Result<MoveOutcome, ReassignError> {
    // The device row first (a row lock on PostgreSQL): a concurrent revoke or rotate
    // either committed before or waits.
    let dev = sqlx::query(
        "UPDATE devices SET updated_at = $3 WHERE id = $1 AND COALESCE($2, user_id) = user_id AND state = 'active' \
         RETURNING user_id, region_id, public_key, quarantined_at, waiting_since",
    )
    .bind(device_id.to_string())
    .bind(scope.owner_param())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(dev) = dev else {
        if reason == MoveReason::Reassign {
            return Err(DeviceError::NotFound.into());
        }
        return Ok(MoveOutcome::Nothing);
    };
    let owner = uuid(&dev.try_get::<String, _>("user_id")?, "devices.user_id")?;
    if !lock_enabled_user(tx, owner).await? {
        // Disabled: its peers are suspended, not moved.
        if reason == MoveReason::Reassign {
            return Err(DeviceError::NotFound.into());
        }
        return Ok(MoveOutcome::Nothing);
    }
    let own_region = uuid(&dev.try_get::<String, _>("region_id")?, "devices.region_id")?;
    let key = WgPublicKey::parse(&dev.try_get::<String, _>("public_key")?)
        .map_err(|_| StoreError::Corrupt("devices.public_key"))?;
    let peer = sqlx::query(
        "SELECT p.node_id, r.code AS from_region FROM peers p JOIN nodes n ON n.id = p.node_id \
         JOIN regions r ON r.id = n.region_id WHERE p.device_id = $1 AND p.retired_at IS NULL",
    )
    .bind(device_id.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let current_node = peer
        .as_ref()
        .map(|p| uuid(&p.try_get::<String, _>("node_id")?, "peers.node_id"))
        .transpose()?;
    if from_node.is_some() && current_node != from_node {
        return Ok(MoveOutcome::Nothing);
    }
    let (region_id, region_code) = match &region {
        Some((id, code)) => (*id, code.clone()),
        None => {
            let code: String = sqlx::query_scalar("SELECT code FROM regions WHERE id = $1")
                .bind(own_region.to_string())
                .fetch_one(&mut *tx)
                .await?;
            (own_region, code)
        }
    };
    if reason == MoveReason::Reassign {
        if dev.try_get::<Option<i64>, _>("quarantined_at")?.is_some() {
            return Err(ReassignError::Quarantined);
        }
        if region_id == own_region {
            return Err(ReassignError::SameRegion(region_code));
        }
        let limit = store.tuning().placement.reassign_per_hour;
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT at FROM audit_events WHERE target_id = $1 AND action = 'device.reassign' AND at > $2 ORDER BY at",
        )
        .bind(device_id.to_string())
        .bind(now - HOUR_MS)
        .fetch_all(&mut *tx)
        .await?;
        if recent.len() >= limit as usize {
            let oldest = recent.first().copied().unwrap_or(now);
            return Err(ReassignError::RateLimited {
                limit,
                retry_after_secs: u64::try_from((oldest + HOUR_MS - now).max(1000) / 1000)
                    .unwrap_or(1),
            });
        }
    }
    let priority = has_priority(tx, owner, region_id, now).await?;
    let req = PeerRequest {
        device_id,
        owner,
        key: &key,
        region: (region_id, &region_code),
        priority,
        exclude: current_node,
        prefer: None,
        replaces: Some(reason.as_str()),
    };
    let placed = match place_peer(tx, store.tuning(), &req, now).await {
        Ok(p) => p,
        Err(DeviceError::NoCapacity(_)) if reason != MoveReason::Reassign => {
            let newly = dev.try_get::<Option<i64>, _>("waiting_since")?.is_none();
            if newly {
                sqlx::query("UPDATE devices SET waiting_since = $2 WHERE id = $1")
                    .bind(device_id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                audit::record(
                    tx,
                    actor,
                    AuditAction::DeviceWaiting,
                    "device",
                    Some(device_id.to_string()),
                    json!({"owner_id": owner, "node_id": current_node, "reason": reason.as_str(), "region": region_code}),
                )
                .await?;
            }
            return Ok(MoveOutcome::Waiting { newly });
        }
        Err(e) => return Err(e.into()),
    };
    let (node_id, v, ip) = (placed.change.node_id, placed.change.version, placed.ip);
    let mut changes = Vec::with_capacity(2);
    changes.extend(placed.retired);
    sqlx::query(
        "UPDATE devices SET region_id = $2, moved_at = $3, moved_reason = $4, waiting_since = NULL WHERE id = $1",
    )
    .bind(device_id.to_string())
    .bind(region_id.to_string())
    .bind(now)
    .bind(reason.as_str())
    .execute(&mut *tx)
    .await?;
    audit::record(
        tx,
        actor,
        match reason {
            MoveReason::Failover => AuditAction::DeviceFailover,
            MoveReason::Drain => AuditAction::DeviceDrain,
            MoveReason::Reassign => AuditAction::DeviceReassign,
        },
        "device",
        Some(device_id.to_string()),
        json!({
            "owner_id": owner,
            "from_node": current_node,
            "from_region": peer.as_ref().map(|p| p.try_get::<String, _>("from_region")).transpose()?,
            "to_node": node_id,
            "to_region": region_code,
            "tunnel_ip": Ipv4Addr::from(ip).to_string(),
            "class": class_of(priority).as_str(),
        }),
    )
    .await?;
    changes.push(NodeChange {
        node_id,
        version: v,
    });
    Ok(MoveOutcome::Moved {
        changes,
        to_node: node_id,
    })
}

/// Takes the user's row (after the device's, the order revoke uses too) if the user is
/// not disabled: a concurrent disable either committed before (false) or waits for us.
async fn lock_enabled_user(tx: &mut sqlx::AnyConnection, user: Uuid) -> Result<bool, DeviceError> {
    let r = sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1 AND disabled = 0")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives an active device with no live peer (its idle peer was removed, or it found no
/// room when its owner was re-enabled) a peer on the best node of its region.
pub async fn ensure_placed(
    store: &Store,
    scope: &Scope,
    device_id: Uuid,
    actor: &AuditActor,
) -> Result<Option<NodeChange>, DeviceError> {
    // The common case (the device has its peer) is a read, not a write transaction.
    let has_peer: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM peers WHERE device_id = $1 AND retired_at IS NULL",
    )
    .bind(device_id.to_string())
    .fetch_one(store.pool())
    .await?;
    if has_peer > 0 {
        return Ok(None);
    }
    let now = clawn_proto::time::now_millis();
    let mut w = store.write().await?;
    let tx = &mut *w.tx;
    let dev = sqlx::query(
        "UPDATE devices SET updated_at = $3 WHERE id = $1 AND COALESCE($2, user_id) = user_id AND state = 'active' \
         RETURNING user_id, region_id, public_key",
    )
    .bind(device_id.to_string())
    .bind(scope.owner_param())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(dev) = dev else { return Ok(None) };
    // Re-checked under the device's row lock: a concurrent fetch placed it already.
    let has_peer: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM peers WHERE device_id = $1 AND retired_at IS NULL",
    )
    .bind(device_id.to_string())
    .fetch_one(&mut *tx)
    .await?;
    if has_peer > 0 {
        return Ok(None);
    }
    let owner_id = uuid(&dev.try_get::<String, _>("user_id")?, "devices.user_id")?;
    if !lock_enabled_user(tx, owner_id).await? {
        return Ok(None);
    }
    let owner = uuid(&dev.try_get::<String, _>("user_id")?, "devices.user_id")?;
    let region_id = uuid(&dev.try_get::<String, _>("region_id")?, "devices.region_id")?;
    let key = WgPublicKey::parse(&dev.try_get::<String, _>("public_key")?)
        .map_err(|_| StoreError::Corrupt("devices.public_key"))?;
    let code: String = sqlx::query_scalar("SELECT code FROM regions WHERE id = $1")
        .bind(region_id.to_string())
        .fetch_one(&mut *tx)
        .await?;
    let priority = has_priority(tx, owner, region_id, now).await?;
    let req = PeerRequest {
        device_id,
        owner,
        key: &key,
        region: (region_id, &code),
        priority,
        exclude: None,
        prefer: None,
        replaces: None,
    };
    let placed = place_peer(tx, store.tuning(), &req, now).await?;
    let (node_id, v, ip) = (placed.change.node_id, placed.change.version, placed.ip);
    audit::record(
        tx,
        actor,
        AuditAction::DevicePlace,
        "device",
        Some(device_id.to_string()),
        json!({"owner_id": owner, "node_id": node_id, "tunnel_ip": Ipv4Addr::from(ip).to_string()}),
    )
    .await?;
    w.commit().await?;
    Ok(Some(NodeChange {
        node_id,
        version: v,
    }))
}

/// A node whose peers must move, and why.
#[derive(Debug, Clone, Copy)]
pub struct Evacuation {
    /// The node.
    pub node_id: Uuid,
    /// Failover or drain.
    pub reason: MoveReason,
}

/// A device with the node-change versions it needs pushed.
pub type Devices = Vec<Uuid>;

impl Store {
    /// Nodes with live peers that are offline for longer than `delay_ms`, or draining.
    /// A node that went offline before `started` (this control plane's start: it may
    /// simply not have reconnected yet) counts as offline from `settled` on.
    pub async fn evacuations(
        &self,
        now: i64,
        delay_ms: i64,
        started: i64,
        settled: i64,
        lease_slack_ms: i64,
    ) -> StoreResult<Vec<Evacuation>> {
        // An offline node's devices move only once its lease has surely ended: a lease is
        // granted at most `lease_slack_ms` after a heartbeat write, and lasts `lease_ms`,
        // so a node that is only cut off has removed them first (docs/architecture.md §12).
        let rows = sqlx::query(
            "SELECT id, state FROM nodes WHERE removed_at IS NULL AND live_peers > 0 \
             AND (state = 'draining' OR (state = 'offline' AND offline_since IS NOT NULL \
                  AND (CASE WHEN offline_since < $2 THEN $3 ELSE offline_since END) <= $1 \
                  AND (lease_ms IS NULL OR last_heartbeat IS NULL OR last_heartbeat + lease_ms < $4))) \
             ORDER BY id",
        )
        .bind(now.saturating_sub(delay_ms))
        .bind(started)
        .bind(settled)
        .bind(now.saturating_sub(lease_slack_ms))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Evacuation {
                    node_id: uuid(&r.try_get::<String, _>("id")?, "nodes.id")?,
                    reason: if r.try_get::<String, _>("state")? == "draining" {
                        MoveReason::Drain
                    } else {
                        MoveReason::Failover
                    },
                })
            })
            .collect()
    }

    /// Active devices with a live peer on `node`: priority class first, then oldest.
    pub async fn devices_on_node(&self, node: Uuid) -> StoreResult<Devices> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT p.device_id FROM peers p JOIN devices d ON d.id = p.device_id \
             WHERE p.node_id = $1 AND p.retired_at IS NULL AND d.state = 'active' \
             ORDER BY CASE p.class WHEN 'priority' THEN 0 ELSE 1 END, p.created_at, p.device_id",
        )
        .bind(node.to_string())
        .fetch_all(self.pool())
        .await?;
        ids.iter().map(|i| uuid(i, "peers.device_id")).collect()
    }

    /// Marks devices as waiting for capacity (those not marked yet); one audit event per
    /// device newly marked. Returns how many.
    pub async fn mark_waiting(&self, devices: &[Uuid], now: i64) -> StoreResult<u64> {
        let mut n = 0;
        for chunk in devices.chunks(200) {
            let mut w = self.write().await?;
            for d in chunk {
                let row = sqlx::query(
                    "UPDATE devices SET waiting_since = $2 WHERE id = $1 AND waiting_since IS NULL AND state = 'active' \
                     RETURNING user_id",
                )
                .bind(d.to_string())
                .bind(now)
                .fetch_optional(&mut *w.tx)
                .await?;
                if let Some(r) = row {
                    audit::record(
                        &mut w.tx,
                        &AuditActor::system(),
                        AuditAction::DeviceWaiting,
                        "device",
                        Some(d.to_string()),
                        json!({"owner_id": r.try_get::<String, _>("user_id")?, "reason": "no capacity in the region"}),
                    )
                    .await?;
                    n += 1;
                }
            }
            w.commit().await?;
        }
        Ok(n)
    }

    /// Devices marked waiting whose node recovered (it is serving them again): the mark
    /// is cleared.
    pub async fn clear_recovered_waiting(&self) -> StoreResult<u64> {
        // Nearly always nobody waits: a read on the partial index, not the writer.
        let waiting: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE waiting_since IS NOT NULL")
                .fetch_one(self.pool())
                .await?;
        if waiting == 0 {
            return Ok(0);
        }
        let mut w = self.write().await?;
        let r = sqlx::query(
            "UPDATE devices SET waiting_since = NULL WHERE waiting_since IS NOT NULL AND EXISTS \
             (SELECT 1 FROM peers p JOIN nodes n ON n.id = p.node_id WHERE p.device_id = devices.id \
              AND p.retired_at IS NULL AND n.state IN ('online', 'degraded', 'maintenance', 'experimental'))",
        )
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        Ok(r.rows_affected())
    }

    /// Brings every live peer's class in line with its owner's priority tokens (granted,
    /// started, expired, revoked, suspended by quarantine). Each node with changes gets
    /// one version bump; the changes travel as delta `update`s, never as re-adds.
    pub async fn sync_peer_classes(&self, now: i64) -> StoreResult<Vec<NodeChange>> {
        // Two small sets, each from its own index: peers that have the class, and live
        // peers of users holding a token valid now.
        const VALID: &str = "(SELECT COUNT(*) FROM priority_tokens t WHERE t.user_id = p.user_id AND t.region_id = d.region_id \
             AND t.revoked_at IS NULL AND t.starts_at <= $1 AND t.expires_at > $1 \
             AND NOT EXISTS (SELECT 1 FROM devices q WHERE q.user_id = t.user_id AND q.quarantined_at IS NOT NULL AND q.state = 'active')) AS valid";
        let mut rows = Vec::new();
        for from in [
            "FROM peers p JOIN devices d ON d.id = p.device_id WHERE p.class = 'priority' AND p.retired_at IS NULL",
            "FROM peers p JOIN devices d ON d.id = p.device_id WHERE p.retired_at IS NULL AND p.class = 'standard' \
             AND p.user_id IN (SELECT user_id FROM priority_tokens WHERE revoked_at IS NULL AND starts_at <= $1 AND expires_at > $1)",
        ] {
            let sql = format!("SELECT p.id, p.node_id, p.class, {VALID} {from}");
            rows.extend(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now)
                    .fetch_all(self.pool())
                    .await?,
            );
        }
        let mut by_node: std::collections::BTreeMap<String, Vec<(String, &'static str)>> =
            std::collections::BTreeMap::new();
        for r in &rows {
            let class: String = r.try_get("class")?;
            let valid: i64 = r.try_get("valid")?;
            let want = if valid > 0 { "priority" } else { "standard" };
            if class != want {
                by_node
                    .entry(r.try_get("node_id")?)
                    .or_default()
                    .push((r.try_get("id")?, want));
            }
        }
        let mut changes = Vec::new();
        for (node, peers) in by_node {
            let mut w = self.write().await?;
            let v: i64 = sqlx::query_scalar(
                "UPDATE nodes SET version = version + 1 WHERE id = $1 RETURNING version",
            )
            .bind(&node)
            .fetch_one(&mut *w.tx)
            .await?;
            for (peer, want) in peers {
                sqlx::query(
                    "UPDATE peers SET class = $2, class_version = $3 WHERE id = $1 AND retired_at IS NULL",
                )
                .bind(peer)
                .bind(want)
                .bind(v)
                .execute(&mut *w.tx)
                .await?;
            }
            w.commit().await?;
            changes.push(NodeChange {
                node_id: uuid(&node, "nodes.id")?,
                version: version(v),
            });
        }
        Ok(changes)
    }

    /// Flags (or, by policy, removes) live peers with no handshake for `idle_ms`; clears
    /// the flag of peers that handshook again. Returns (newly flagged, node changes).
    pub async fn idle_sweep(
        &self,
        now: i64,
        idle_ms: i64,
        action: IdleAction,
    ) -> Result<(u32, Vec<NodeChange>), DeviceError> {
        let cutoff = now.saturating_sub(idle_ms);
        let mut w = self.write().await?;
        sqlx::query(
            "UPDATE peers SET idle_flagged_at = NULL WHERE idle_flagged_at IS NOT NULL AND retired_at IS NULL \
             AND EXISTS (SELECT 1 FROM peer_usage u WHERE u.peer_id = peers.id AND u.last_handshake >= $1)",
        )
        .bind(cutoff)
        .execute(&mut *w.tx)
        .await?;
        w.commit().await?;
        // Found with a read (no write lock held while scanning); each peer is then handled
        // in its own short transaction, re-checked there.
        let remove = action == IdleAction::Remove;
        let rows = sqlx::query(
            "SELECT p.id, p.device_id, p.user_id, p.node_id, u.last_handshake FROM peers p \
             LEFT JOIN peer_usage u ON u.peer_id = p.id \
             WHERE p.retired_at IS NULL AND (p.idle_flagged_at IS NULL OR $2 = 1) \
             AND COALESCE(u.last_handshake, p.created_at) < $1 ORDER BY p.id LIMIT 1000",
        )
        .bind(cutoff)
        .bind(i64::from(remove))
        .fetch_all(self.pool())
        .await?;
        let mut changes = Vec::new();
        let mut flagged = 0u32;
        for r in &rows {
            let peer: String = r.try_get("id")?;
            let device: String = r.try_get("device_id")?;
            let meta = json!({
                "owner_id": r.try_get::<String, _>("user_id")?,
                "node_id": r.try_get::<String, _>("node_id")?,
                "last_handshake": r.try_get::<Option<i64>, _>("last_handshake")?,
                "idle_days": idle_ms as f64 / 86_400_000.0,
            });
            let mut w = self.write().await?;
            // Still live and still idle (no handshake since the scan).
            let still = sqlx::query(
                "UPDATE peers SET idle_flagged_at = COALESCE(idle_flagged_at, $2) WHERE id = $1 AND retired_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM peer_usage u WHERE u.peer_id = peers.id AND u.last_handshake >= $3)",
            )
            .bind(&peer)
            .bind(now)
            .bind(cutoff)
            .execute(&mut *w.tx)
            .await?;
            if still.rows_affected() != 1 {
                continue;
            }
            let act = if remove {
                match retire_peer(&mut w.tx, &peer, "idle", now, true).await? {
                    Some(c) => changes.push(c),
                    None => continue,
                }
                AuditAction::PeerIdleRemoved
            } else {
                AuditAction::PeerIdleFlagged
            };
            audit::record(
                &mut w.tx,
                &AuditActor::system(),
                act,
                "device",
                Some(device),
                meta,
            )
            .await?;
            w.commit().await?;
            flagged += 1;
        }
        Ok((flagged, changes))
    }

    /// Quarantines an active device (audited as a system action). False if it already is.
    pub async fn quarantine(&self, device: Uuid, reason: &str) -> StoreResult<bool> {
        let now = clawn_proto::time::now_millis();
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE devices SET quarantined_at = $2, quarantine_reason = $3 \
             WHERE id = $1 AND state = 'active' AND quarantined_at IS NULL RETURNING user_id",
        )
        .bind(device.to_string())
        .bind(now)
        .bind(reason)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        audit::record(
            &mut w.tx,
            &AuditActor::system(),
            AuditAction::DeviceQuarantine,
            "device",
            Some(device.to_string()),
            json!({"owner_id": row.try_get::<String, _>("user_id")?, "reason": reason}),
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Releases a quarantined device (admin). False if it is not quarantined.
    pub async fn release_quarantine(&self, device: Uuid, actor: &AuditActor) -> StoreResult<bool> {
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE devices SET quarantined_at = NULL, quarantine_reason = NULL \
             WHERE id = $1 AND quarantined_at IS NOT NULL RETURNING user_id",
        )
        .bind(device.to_string())
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        audit::record(
            &mut w.tx,
            actor,
            AuditAction::DeviceRelease,
            "device",
            Some(device.to_string()),
            json!({"owner_id": row.try_get::<String, _>("user_id")?}),
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Grants a priority token (audited).
    #[expect(
        clippy::too_many_arguments,
        reason = "one column each; a struct would only rename them"
    )]
    pub async fn grant_priority(
        &self,
        user: Uuid,
        region: Uuid,
        starts_at: i64,
        expires_at: i64,
        note: &str,
        admin: Option<Uuid>,
        actor: &AuditActor,
    ) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        let now = clawn_proto::time::now_millis();
        let mut w = self.write().await?;
        sqlx::query(
            "INSERT INTO priority_tokens (id, user_id, region_id, starts_at, expires_at, note, granted_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id.to_string())
        .bind(user.to_string())
        .bind(region.to_string())
        .bind(starts_at)
        .bind(expires_at)
        .bind(note)
        .bind(admin.map(|a| a.to_string()))
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
        audit::record(
            &mut w.tx,
            actor,
            AuditAction::PriorityTokenGrant,
            "priority_token",
            Some(id.to_string()),
            json!({"user_id": user, "region_id": region, "starts_at": starts_at, "expires_at": expires_at, "note": note}),
        )
        .await?;
        w.commit().await?;
        Ok(id)
    }

    /// Revokes a priority token (audited). False if unknown or already revoked.
    pub async fn revoke_priority(&self, id: Uuid, actor: &AuditActor) -> StoreResult<bool> {
        let now = clawn_proto::time::now_millis();
        let mut w = self.write().await?;
        let row = sqlx::query(
            "UPDATE priority_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING user_id",
        )
        .bind(id.to_string())
        .bind(now)
        .fetch_optional(&mut *w.tx)
        .await?;
        let Some(row) = row else { return Ok(false) };
        audit::record(
            &mut w.tx,
            actor,
            AuditAction::PriorityTokenRevoke,
            "priority_token",
            Some(id.to_string()),
            json!({"user_id": row.try_get::<String, _>("user_id")?}),
        )
        .await?;
        w.commit().await?;
        Ok(true)
    }

    /// Priority tokens, newest first; optionally one user's or one token.
    pub async fn priority_tokens(
        &self,
        user: Option<Uuid>,
        id: Option<Uuid>,
    ) -> StoreResult<Vec<PriorityTokenView>> {
        let rows = sqlx::query(
            "SELECT t.*, u.email, r.code, \
             (SELECT COUNT(*) FROM devices q WHERE q.user_id = t.user_id AND q.quarantined_at IS NOT NULL AND q.state = 'active') AS quarantined \
             FROM priority_tokens t JOIN users u ON u.id = t.user_id JOIN regions r ON r.id = t.region_id \
             WHERE COALESCE($1, t.user_id) = t.user_id AND COALESCE($2, t.id) = t.id ORDER BY t.id DESC LIMIT 500",
        )
        .bind(user.map(|u| u.to_string()))
        .bind(id.map(|i| i.to_string()))
        .fetch_all(self.pool())
        .await?;
        let now = clawn_proto::time::now_millis();
        rows.iter()
            .map(|r| {
                let starts_at: i64 = r.try_get("starts_at")?;
                let expires_at: i64 = r.try_get("expires_at")?;
                let revoked_at: Option<i64> = r.try_get("revoked_at")?;
                let granted_by: Option<String> = r.try_get("granted_by")?;
                let status = if revoked_at.is_some() {
                    PriorityStatus::Revoked
                } else if now >= expires_at {
                    PriorityStatus::Expired
                } else if now < starts_at {
                    PriorityStatus::Scheduled
                } else {
                    PriorityStatus::Active
                };
                Ok(PriorityTokenView {
                    id: uuid(&r.try_get::<String, _>("id")?, "priority_tokens.id")?,
                    user_id: uuid(
                        &r.try_get::<String, _>("user_id")?,
                        "priority_tokens.user_id",
                    )?,
                    email: r.try_get("email")?,
                    region: r.try_get("code")?,
                    starts_at,
                    expires_at,
                    note: r.try_get("note")?,
                    granted_by: granted_by
                        .map(|g| uuid(&g, "priority_tokens.granted_by"))
                        .transpose()?,
                    created_at: r.try_get("created_at")?,
                    revoked_at,
                    status,
                    suspended: r.try_get::<i64, _>("quarantined")? > 0,
                })
            })
            .collect()
    }

    /// Per region: (code, live peers, capacity, rx+tx bytes/s, link bytes/s) of its serving
    /// nodes (online or degraded), for the load signal.
    pub async fn region_loads(&self) -> StoreResult<Vec<(String, f64)>> {
        let rows = sqlx::query(
            "SELECT r.code, n.live_peers, n.capacity, n.metrics, n.link_mbps FROM regions r \
             LEFT JOIN nodes n ON n.region_id = r.id AND n.removed_at IS NULL AND n.state IN ('online', 'degraded') \
             ORDER BY r.code",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<(String, f64, f64, f64, f64)> = Vec::new();
        for r in &rows {
            let code: String = r.try_get("code")?;
            if out.last().is_none_or(|l| l.0 != code) {
                out.push((code, 0.0, 0.0, 0.0, 0.0));
            }
            let Some(last) = out.last_mut() else { continue };
            let Some(live) = r.try_get::<Option<i64>, _>("live_peers")? else {
                continue;
            };
            let cap: i64 = r.try_get::<Option<i64>, _>("capacity")?.unwrap_or(0);
            let metrics: Option<String> = r.try_get("metrics")?;
            let bps = metrics
                .and_then(|m| serde_json::from_str::<clawn_proto::node::HostMetrics>(&m).ok())
                .map(|m| m.rx_bytes_per_sec.saturating_add(m.tx_bytes_per_sec))
                .unwrap_or(0);
            let link = r
                .try_get::<Option<i64>, _>("link_mbps")?
                .filter(|l| *l > 0)
                .and_then(|l| u64::try_from(l).ok())
                .unwrap_or(self.tuning().placement.link_mbps);
            last.1 += live as f64;
            last.2 += cap as f64;
            last.3 += bps as f64;
            last.4 += link as f64 * 125_000.0;
        }
        Ok(out
            .into_iter()
            .map(|(code, live, cap, bps, link)| {
                let peers = if cap > 0.0 { live / cap } else { 0.0 };
                let bw = if link > 0.0 { bps / link } else { 0.0 };
                (code, peers.max(bw))
            })
            .collect())
    }

    /// Counts for metrics: devices waiting for capacity, quarantined, idle-flagged peers.
    pub async fn hygiene_counts(&self) -> StoreResult<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM devices WHERE waiting_since IS NOT NULL AND state = 'active') AS waiting, \
             (SELECT COUNT(*) FROM devices WHERE quarantined_at IS NOT NULL AND state = 'active') AS quarantined, \
             (SELECT COUNT(*) FROM peers WHERE idle_flagged_at IS NOT NULL AND retired_at IS NULL) AS idle",
        )
        .fetch_one(self.pool())
        .await?;
        Ok((
            row.try_get("waiting")?,
            row.try_get("quarantined")?,
            row.try_get("idle")?,
        ))
    }
}

/// The class a peer has now (tests and diagnostics).
pub fn parse_class(s: &str) -> PeerClass {
    if s == "priority" {
        PeerClass::Priority
    } else {
        PeerClass::Standard
    }
}
