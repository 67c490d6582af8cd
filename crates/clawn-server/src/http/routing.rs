//! Admin routes for routing and operations: priority access tokens, quarantine review and
//! diagnostics (per device: node, exit IP, handshake age, bytes, recent moves; per node:
//! score, health and recent state changes; per region: load p95 and scale-out).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clawn_proto::api::ErrorCode;
use clawn_proto::api::{
    ApiError, AuditEventView, DeviceDiagnostics, DeviceView, DiagnosticsOverview,
    GrantPriorityTokenRequest, NodeDiagnostics, PriorityTokenView,
};
use clawn_proto::time::now_millis;
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiErr, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::app::AppState;
use crate::policy::AdminActor;
use crate::store::audit::{self, AuditFilter};
use crate::store::devices::DeviceFilter;

/// Longest priority window an admin may grant.
const MAX_WINDOW_MS: i64 = 366 * 86_400_000;

/// Grant a user a priority access token for one region and a time window.
#[utoipa::path(post, path = "/api/v1/admin/priority-tokens", tag = "admin", request_body = GrantPriorityTokenRequest,
    responses((status = 201, body = PriorityTokenView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn grant_priority_token(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<GrantPriorityTokenRequest>,
) -> ApiResult<(StatusCode, Json<PriorityTokenView>)> {
    let user = match (req.user_id, req.email.as_deref()) {
        (Some(id), None) => app
            .store
            .user_by_id(id)
            .await?
            .map(|u| u.view.id)
            .ok_or_else(|| ApiErr::not_found("user"))?,
        (None, Some(email)) => app
            .store
            .user_by_email(email.trim())
            .await?
            .map(|u| u.view.id)
            .ok_or_else(|| ApiErr::not_found("user"))?,
        _ => {
            return Err(ApiErr::bad_request(
                ErrorCode::InvalidUser,
                "give exactly one of user_id or email",
            ));
        }
    };
    let region = app
        .store
        .region_by_code(req.region.trim())
        .await?
        .ok_or_else(|| ApiErr::not_found("region"))?;
    let now = now_millis();
    let starts_at = req.starts_at.unwrap_or(now);
    let expires_at = match (req.expires_at, req.duration_secs) {
        (Some(e), None) => e,
        (None, Some(d)) => {
            starts_at.saturating_add(i64::try_from(d.saturating_mul(1000)).unwrap_or(i64::MAX))
        }
        _ => {
            return Err(ApiErr::bad_request(
                ErrorCode::InvalidWindow,
                "give exactly one of expires_at or duration_secs",
            ));
        }
    };
    if expires_at <= starts_at || expires_at <= now {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidWindow,
            "the window must end after it starts, and in the future",
        ));
    }
    if expires_at - starts_at > MAX_WINDOW_MS || starts_at > now + MAX_WINDOW_MS {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidWindow,
            "a priority window lasts at most 366 days and starts within a year",
        ));
    }
    let note = req.note.as_deref().unwrap_or("").trim().to_string();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidNote,
            "notes are at most 200 printable characters",
        ));
    }
    let id = app
        .store
        .grant_priority(
            user,
            region.id,
            starts_at,
            expires_at,
            &note,
            Some(admin.actor().user.id),
            &admin.audit(),
        )
        .await?;
    // The holder's live peers in that region get the class now, not on the next tick.
    let changes = app.store.sync_peer_classes(now_millis()).await?;
    crate::monitor::push(&app, &changes);
    let view = app
        .store
        .priority_tokens(None, Some(id))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiErr::not_found("priority token"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /api/v1/admin/priority-tokens` filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PriorityTokenQuery {
    /// Only this user's tokens.
    pub user_id: Option<Uuid>,
}

/// Priority access tokens, newest first.
#[utoipa::path(get, path = "/api/v1/admin/priority-tokens", tag = "admin", params(PriorityTokenQuery),
    responses((status = 200, body = Vec<PriorityTokenView>)))]
pub async fn list_priority_tokens(
    State(app): State<AppState>,
    _admin: AdminActor,
    ApiQuery(q): ApiQuery<PriorityTokenQuery>,
) -> ApiResult<Json<Vec<PriorityTokenView>>> {
    Ok(Json(app.store.priority_tokens(q.user_id, None).await?))
}

/// Revoke a priority token: the holder's peers lose the class at once, without a disconnect.
#[utoipa::path(post, path = "/api/v1/admin/priority-tokens/{id}/revoke", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = PriorityTokenView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn revoke_priority_token(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<PriorityTokenView>> {
    if !app.store.revoke_priority(id, &admin.audit()).await? {
        let exists = !app.store.priority_tokens(None, Some(id)).await?.is_empty();
        return Err(if exists {
            ApiErr::conflict(
                ErrorCode::AlreadyRevoked,
                "the priority token is already revoked",
            )
        } else {
            ApiErr::not_found("priority token")
        });
    }
    let changes = app.store.sync_peer_classes(now_millis()).await?;
    crate::monitor::push(&app, &changes);
    app.store
        .priority_tokens(None, Some(id))
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("priority token"))
}

/// Release a quarantined device: region moves and the owner's priority work again.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/release", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn release_device(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeviceView>> {
    let Some(device) = app.store.device(&admin.all(), id).await? else {
        return Err(ApiErr::not_found("device"));
    };
    if !device.quarantined {
        return Err(ApiErr::conflict(
            ErrorCode::NotQuarantined,
            "the device is not quarantined",
        ));
    }
    app.store.release_quarantine(id, &admin.audit()).await?;
    let changes = app.store.sync_peer_classes(now_millis()).await?;
    crate::monitor::push(&app, &changes);
    app.store
        .device(&admin.all(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("device"))
}

async fn events(
    app: &AppState,
    target: Uuid,
    prefix: &str,
    limit: u32,
) -> ApiResult<Vec<AuditEventView>> {
    let page = audit::query(
        app.store.pool(),
        &AuditFilter {
            target: Some(target.to_string()),
            action: Some(prefix.to_string()),
            limit,
            ..AuditFilter::default()
        },
    )
    .await?;
    Ok(page.items)
}

const MOVE_ACTIONS: [&str; 4] = [
    "device.failover",
    "device.drain",
    "device.reassign",
    "device.waiting",
];

async fn device_diag(app: &AppState, device: DeviceView) -> ApiResult<DeviceDiagnostics> {
    let mut moves = Vec::new();
    for action in MOVE_ACTIONS {
        moves.extend(events(app, device.id, action, 20).await?);
    }
    moves.sort_by_key(|m| std::cmp::Reverse(m.id));
    moves.truncate(20);
    let now = now_millis();
    Ok(DeviceDiagnostics {
        handshake_age_ms: device.tunnel.last_handshake.map(|h| (now - h).max(0)),
        signals: app.monitor.abuse.signals(&app.config.abuse, device.id, now),
        moves,
        device,
    })
}

async fn node_diag(app: &AppState, node: clawn_proto::api::NodeView) -> ApiResult<NodeDiagnostics> {
    let state_changes = events(app, node.id, "node.", 20).await?;
    let waiting = app
        .store
        .devices(
            &crate::policy::Scope::system(),
            &DeviceFilter {
                waiting: true,
                ..DeviceFilter::default()
            },
        )
        .await?
        .iter()
        .filter(|d| d.node.as_ref().is_some_and(|n| n.id == node.id))
        .count();
    Ok(NodeDiagnostics {
        node,
        state_changes,
        waiting_devices: u32::try_from(waiting).unwrap_or(u32::MAX),
    })
}

/// The operations overview: region load and scale-out, nodes with their recent state
/// changes, devices waiting for capacity and quarantined devices.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics", tag = "admin",
    responses((status = 200, body = DiagnosticsOverview)))]
pub async fn diagnostics(
    State(app): State<AppState>,
    admin: AdminActor,
) -> ApiResult<Json<DiagnosticsOverview>> {
    let mut nodes = Vec::new();
    for n in app.store.list_nodes(|n| app.hub.is_connected(n)).await? {
        nodes.push(node_diag(&app, n).await?);
    }
    let filter = |waiting, quarantined| DeviceFilter {
        waiting,
        quarantined,
        state: Some(clawn_proto::api::DeviceState::Active),
        ..DeviceFilter::default()
    };
    Ok(Json(DiagnosticsOverview {
        regions: app.monitor.region_loads(&app.config.health),
        nodes,
        waiting: app
            .store
            .devices(&admin.all(), &filter(true, false))
            .await?,
        quarantined: app
            .store
            .devices(&admin.all(), &filter(false, true))
            .await?,
    }))
}

/// One device's diagnostics.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/devices/{id}", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceDiagnostics), (status = 404, body = ApiError)))]
pub async fn device_diagnostics(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeviceDiagnostics>> {
    let device = app
        .store
        .device(&admin.all(), id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device"))?;
    Ok(Json(device_diag(&app, device).await?))
}

/// One node's diagnostics.
#[utoipa::path(get, path = "/api/v1/admin/diagnostics/nodes/{id}", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = NodeDiagnostics), (status = 404, body = ApiError)))]
pub async fn node_diagnostics(
    State(app): State<AppState>,
    _admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<NodeDiagnostics>> {
    let node = app
        .store
        .node_view(id, |n| app.hub.is_connected(n))
        .await?
        .ok_or_else(|| ApiErr::not_found("node"))?;
    Ok(Json(node_diag(&app, node).await?))
}
