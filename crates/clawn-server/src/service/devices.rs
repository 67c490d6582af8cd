//! Devices: create, rename, revoke, rotate, config (re-placing a device without a peer)
//! and region moves. Every function takes the caller's [`Scope`]: a user's own devices,
//! or all of them for an admin; another user's device is indistinguishable from a
//! missing one.

use clawn_proto::WgPublicKey;
use clawn_proto::api::{AckStatus, ErrorCode};
use clawn_proto::api::{
    DeviceConfigResponse, DeviceView, DeviceWithConfig, NodeAck, RevokeResponse,
};
use clawn_proto::config::ConfigTemplate;
use uuid::Uuid;

use super::{Changes, Error, Result, run};
use crate::app::AppState;
use crate::policy::{Actor, Scope};
use crate::store::audit::AuditActor;
use crate::store::devices::{self, ConfigParts, NodeChange};
use crate::store::routing::{self, MoveOutcome, MoveReason};

/// Validates a device name.
pub fn check_name(name: &str) -> Result<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            "device names are 1 to 64 printable characters",
        ));
    }
    // A name that is (or contains) a WireGuard key is almost certainly a pasted private
    // key: refuse it rather than store and display it.
    let key_shaped = n
        .split(char::is_whitespace)
        .any(clawn_proto::keys::decodes_to_32_bytes);
    if key_shaped || n.to_ascii_lowercase().contains("privatekey") {
        return Err(Error::bad_request(
            ErrorCode::NameLooksLikeKey,
            "the name looks like a WireGuard key",
        )
        .hint("never paste a private key anywhere; pick a plain name such as \"laptop\""));
    }
    Ok(n.to_string())
}

/// Waits (bounded) for the node to acknowledge a change and describes the outcome.
pub async fn node_ack(app: &AppState, change: Option<NodeChange>, wait: bool) -> NodeAck {
    let Some(c) = change else {
        return NodeAck {
            status: AckStatus::None,
            version: None,
            waited_ms: 0,
        };
    };
    if !wait {
        let status = if crate::replicas::connected_anywhere(app, c.node_id).await {
            AckStatus::Pending
        } else {
            AckStatus::Offline
        };
        return NodeAck {
            status,
            version: Some(c.version),
            waited_ms: 0,
        };
    }
    let (outcome, waited) =
        crate::replicas::wait_ack(app, c.node_id, c.version, app.config.ack_timeout).await;
    NodeAck {
        status: outcome.wire(),
        version: Some(c.version),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A device's config template (without the private key).
pub async fn config_template(app: &AppState, scope: &Scope, id: Uuid) -> Result<ConfigTemplate> {
    let parts = app.store.device_config_parts(scope, id).await?;
    template(app, parts)
}

fn template(app: &AppState, parts: Option<ConfigParts>) -> Result<ConfigTemplate> {
    let parts = parts.ok_or_else(|| {
        Error::not_found("active device with a node")
            .hint("revoked devices and devices without a node have no config")
    })?;
    Ok(ConfigTemplate {
        address: format!("{}/32", parts.tunnel_ip),
        dns: parts.dns,
        peer_public_key: parts.node_public_key,
        endpoint: parts.endpoint,
        allowed_ips: app.config.client_allowed_ips.clone(),
        persistent_keepalive: app.config.keepalive_secs,
        mtu: None,
    })
}

/// One device in scope.
pub async fn get(app: &AppState, scope: &Scope, id: Uuid) -> Result<DeviceView> {
    app.store
        .device(scope, id)
        .await?
        .ok_or_else(|| Error::not_found("device"))
}

/// The device, its config and the node's acknowledgement after a change.
async fn with_config(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    change: Option<NodeChange>,
    wait: bool,
) -> Result<DeviceWithConfig> {
    let node_ack = node_ack(app, change, wait).await;
    let (device, parts) = app
        .store
        .device_with_config(scope, id)
        .await?
        .ok_or_else(|| Error::not_found("device"))?;
    // The change committed; if the device lost its peer since (a concurrent revoke), say so.
    let config = template(app, parts).map_err(|e| {
        if e.code == ErrorCode::NotFound {
            Error::conflict(
                ErrorCode::DeviceRevoked,
                "the device was revoked while this request ran",
            )
        } else {
            e
        }
    })?;
    Ok(DeviceWithConfig {
        device,
        config_text: config.render(None),
        config,
        node_ack,
    })
}

/// Registers a device of the actor by its public key on the best node of `region`.
pub async fn create(
    app: &AppState,
    actor: &Actor,
    name: &str,
    key: WgPublicKey,
    region: String,
) -> Result<DeviceWithConfig> {
    let name = check_name(name)?;
    let (owner, audit) = (actor.user.id, actor.audit());
    let changed = run(app, move |app| async move {
        let c = devices::create(&app.store, owner, &audit, &name, &key, &region).await?;
        Ok((c.clone(), Changes::of(c.change)))
    })
    .await?;
    with_config(app, &actor.own(), changed.device_id, changed.change, false).await
}

/// Renames a device.
pub async fn rename(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    name: &str,
    actor: &AuditActor,
) -> Result<DeviceView> {
    let name = check_name(name)?;
    devices::rename(&app.store, scope, id, &name, actor).await?;
    get(app, scope, id).await
}

/// Revokes a device (irreversible) and waits (bounded) for its node to confirm.
pub async fn revoke(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    actor: &AuditActor,
) -> Result<RevokeResponse> {
    let (task_scope, audit) = (scope.clone(), actor.clone());
    let change = run(app, move |app| async move {
        let c = devices::revoke(&app.store, &task_scope, id, &audit).await?;
        Ok((c.change, Changes::of(c.change)))
    })
    .await?;
    let node_ack = node_ack(app, change, true).await;
    let device = get(app, scope, id).await?;
    Ok(RevokeResponse { device, node_ack })
}

/// Rotates a device's key: the old key stops working, the new one keeps the address.
pub async fn rotate(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    key: WgPublicKey,
    actor: &AuditActor,
) -> Result<DeviceWithConfig> {
    let (task_scope, audit) = (scope.clone(), actor.clone());
    let change = run(app, move |app| async move {
        let c = devices::rotate(&app.store, &task_scope, id, &key, &audit).await?;
        Ok((c.change, Changes::of(c.change)))
    })
    .await?;
    with_config(app, scope, id, change, true).await
}

/// A device's config; a device whose idle peer was removed (or that found no room
/// earlier) is placed again first: fetching the config is how its user reconnects.
pub async fn config(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    actor: &AuditActor,
) -> Result<DeviceConfigResponse> {
    let (task_scope, audit) = (scope.clone(), actor.clone());
    run(app, move |app| async move {
        let placed = routing::ensure_placed(&app.store, &task_scope, id, &audit).await?;
        Ok(((), Changes::of(placed)))
    })
    .await?;
    let config = config_template(app, scope, id).await?;
    Ok(DeviceConfigResponse {
        config_text: config.render(None),
        config,
    })
}

/// Moves a device to another region: a new node there by load score, the old peer
/// retired, audited; rate-limited per device, and a signal for the abuse monitor.
pub async fn reassign(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    region: &str,
    actor: &AuditActor,
) -> Result<DeviceWithConfig> {
    // Only an existing device of the caller counts toward the abuse signal.
    get(app, scope, id).await?;
    let region = app
        .store
        .region_by_code(region.trim())
        .await?
        .ok_or_else(|| Error::from(devices::DeviceError::RegionNotFound))?;
    let now = clawn_proto::time::now_millis();
    if let Some(reason) = app.monitor.abuse.record(
        &app.config.abuse,
        id,
        crate::monitor::Signal::RegionSwitch,
        now,
    ) {
        super::routing::quarantine(app, id, &reason).await;
    }
    let (task_scope, audit) = (scope.clone(), actor.clone());
    let change = run(app, move |app| async move {
        let outcome = routing::move_device(
            &app.store,
            &task_scope,
            id,
            None,
            Some((region.id, region.code.clone())),
            MoveReason::Reassign,
            &audit,
        )
        .await?;
        Ok(match outcome {
            MoveOutcome::Moved { changes, .. } => {
                (changes.last().copied(), Changes::versions(changes))
            }
            _ => (None, Changes::none()),
        })
    })
    .await?;
    with_config(app, scope, id, change, true).await
}
