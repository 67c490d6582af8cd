//! Routing and operations: priority access tokens, quarantine and its release, and the
//! monitor's moves (failover and drain evacuation, idle hygiene, peer-class sync). Each
//! publishes what it committed through [`super::publish`].

use clawn_proto::api::ErrorCode;
use clawn_proto::api::{DeviceView, GrantPriorityTokenRequest, PriorityTokenView};
use clawn_proto::time::now_millis;
use uuid::Uuid;

use super::{Changes, Error, Result, publish, run};
use crate::app::AppState;
use crate::policy::Scope;
use crate::store::Store;
use crate::store::audit::AuditActor;
use crate::store::routing::{Evacuation, MoveOutcome};

/// Longest priority window an admin may grant.
const MAX_WINDOW_MS: i64 = 366 * 86_400_000;

async fn token(app: &AppState, id: Uuid) -> Result<PriorityTokenView> {
    app.store
        .priority_tokens(None, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::not_found("priority token"))
}

/// Grants a user a priority access token for one region and a time window (audited); the
/// holder's live peers in that region get the class at once.
pub async fn grant_priority(
    app: &AppState,
    req: &GrantPriorityTokenRequest,
    admin: Uuid,
    actor: &AuditActor,
) -> Result<PriorityTokenView> {
    let user = match (req.user_id, req.email.as_deref()) {
        (Some(id), None) => app
            .store
            .user_by_id(id)
            .await?
            .map(|u| u.view.id)
            .ok_or_else(|| Error::not_found("user"))?,
        (None, Some(email)) => app
            .store
            .user_by_email(email.trim())
            .await?
            .map(|u| u.view.id)
            .ok_or_else(|| Error::not_found("user"))?,
        _ => {
            return Err(Error::bad_request(
                ErrorCode::InvalidUser,
                "give exactly one of user_id or email",
            ));
        }
    };
    let region = app
        .store
        .region_by_code(req.region.trim())
        .await?
        .ok_or_else(|| Error::not_found("region"))?;
    let now = now_millis();
    let starts_at = req.starts_at.unwrap_or(now);
    let expires_at = match (req.expires_at, req.duration_secs) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            starts_at.saturating_add(i64::try_from(d.saturating_mul(1000)).unwrap_or(i64::MAX))
        }
        _ => {
            return Err(Error::bad_request(
                ErrorCode::InvalidWindow,
                "give exactly one of expires_at or duration_secs",
            ));
        }
    };
    if expires_at <= starts_at || expires_at <= now {
        return Err(Error::bad_request(
            ErrorCode::InvalidWindow,
            "the window must end after it starts, and in the future",
        ));
    }
    if expires_at - starts_at > MAX_WINDOW_MS || starts_at > now + MAX_WINDOW_MS {
        return Err(Error::bad_request(
            ErrorCode::InvalidWindow,
            "a priority window lasts at most 366 days and starts within a year",
        ));
    }
    let note = req.note.as_deref().unwrap_or("").trim().to_string();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err(Error::bad_request(
            ErrorCode::InvalidNote,
            "notes are at most 200 printable characters",
        ));
    }
    // The grant and the class change it causes run to completion together, even if the
    // client goes away between them.
    let actor = actor.clone();
    let id = run(app, move |app| async move {
        let id = app
            .store
            .grant_priority(
                user,
                region.id,
                starts_at,
                expires_at,
                &note,
                Some(admin),
                &actor,
            )
            .await?;
        let changes = app.store.sync_peer_classes(now_millis()).await?;
        Ok((id, Changes::versions(changes)))
    })
    .await?;
    token(app, id).await
}

/// Revokes a priority token (audited): the holder's peers lose the class at once,
/// without a disconnect.
pub async fn revoke_priority(
    app: &AppState,
    id: Uuid,
    actor: &AuditActor,
) -> Result<PriorityTokenView> {
    let actor = actor.clone();
    let revoked = run(app, move |app| async move {
        if !app.store.revoke_priority(id, &actor).await? {
            return Ok((false, Changes::none()));
        }
        let changes = app.store.sync_peer_classes(now_millis()).await?;
        Ok((true, Changes::versions(changes)))
    })
    .await?;
    if !revoked {
        let exists = !app.store.priority_tokens(None, Some(id)).await?.is_empty();
        return Err(if exists {
            Error::conflict(
                ErrorCode::AlreadyRevoked,
                "the priority token is already revoked",
            )
        } else {
            Error::not_found("priority token")
        });
    }
    token(app, id).await
}

/// Releases a quarantined device (audited): region moves and the owner's priority work
/// again.
pub async fn release(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    actor: &AuditActor,
) -> Result<DeviceView> {
    let device = super::devices::get(app, scope, id).await?;
    if !device.quarantined {
        return Err(Error::conflict(
            ErrorCode::NotQuarantined,
            "the device is not quarantined",
        ));
    }
    let actor = actor.clone();
    run(app, move |app| async move {
        app.store.release_quarantine(id, &actor).await?;
        let changes = app.store.sync_peer_classes(now_millis()).await?;
        Ok(((), Changes::versions(changes)))
    })
    .await?;
    super::devices::get(app, scope, id).await
}

/// Quarantines a device (audited as the system; its owner's priority class is dropped on
/// the monitor's next pass). Failures are logged: the abuse signal that asked for it
/// must not fail the request that carried it.
pub async fn quarantine(app: &AppState, device: Uuid, reason: &str) {
    match app.store.quarantine(device, reason).await {
        Ok(true) => {
            metrics::counter!("clawn_quarantines_total").increment(1);
            tracing::warn!(device = %device, reason, "device quarantined");
        }
        Ok(false) => {}
        Err(e) => tracing::warn!(device = %device, error = %e, "quarantine failed"),
    }
}

/// Moves a batch of devices off an evacuated node (failover or drain) to the best nodes
/// of their region, as the system, in one transaction; publishes the moves. `store` is
/// the monitor's fenced handle.
pub async fn evacuate_batch(
    app: &AppState,
    store: &Store,
    ev: Evacuation,
    devices: &[Uuid],
) -> std::result::Result<Vec<(Uuid, MoveOutcome)>, crate::store::routing::ReassignError> {
    let out = crate::store::routing::evacuate_batch(store, ev.node_id, devices, ev.reason).await?;
    let changes = out.iter().flat_map(|(_, o)| match o {
        MoveOutcome::Moved { changes, .. } => changes.clone(),
        _ => Vec::new(),
    });
    publish(app, &Changes::versions(changes));
    Ok(out)
}

/// Peer classes follow priority tokens (start, expiry, revocation, quarantine): one pass,
/// published. `store` is the monitor's fenced handle.
pub async fn sync_peer_classes(
    app: &AppState,
    store: &Store,
    now: i64,
) -> crate::store::StoreResult<()> {
    let changes = store.sync_peer_classes(now).await?;
    publish(app, &Changes::versions(changes));
    Ok(())
}

/// Flags (or, by policy, removes) idle peers; publishes removals. Returns how many peers
/// were newly flagged and how many removed.
pub async fn idle_sweep(
    app: &AppState,
    store: &Store,
    now: i64,
) -> std::result::Result<(u32, usize), crate::store::devices::DeviceError> {
    let hy = &app.config.hygiene;
    let idle_ms = (hy.idle_peer_days * 86_400_000.0) as i64;
    let (flagged, changes) = store.idle_sweep(now, idle_ms, hy.idle_action).await?;
    let removed = changes.len();
    publish(app, &Changes::versions(changes));
    Ok((flagged, removed))
}
