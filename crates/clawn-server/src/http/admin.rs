//! Admin routes. Every handler takes [`AdminActor`] and calls one service function; every
//! change writes an audit event in the same transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clawn_proto::api::ErrorCode;
use clawn_proto::api::{
    AdminDeviceQuery, AdminRegionView, ApiError, AuditEventView, AuditQuery,
    CreateNodeTokenRequest, CreateRegionRequest, CreateUserRequest, DeviceView, NodeTokenResponse,
    NodeView, Page, ResetPasswordRequest, RevokeResponse, UpdateNodeRequest, UpdateRegionRequest,
    UpdateUserRequest, UserView,
};
use serde::Deserialize;
use uuid::Uuid;

use super::error::{ApiErr, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::app::AppState;
use crate::policy::AdminActor;
use crate::service;
use crate::store::audit::{self, AuditFilter};
use crate::store::devices::DeviceFilter;

/// All regions.
#[utoipa::path(get, path = "/api/v1/admin/regions", tag = "admin", responses((status = 200, body = Vec<AdminRegionView>)))]
pub async fn list_regions(
    State(app): State<AppState>,
    _admin: AdminActor,
) -> ApiResult<Json<Vec<AdminRegionView>>> {
    Ok(Json(service::regions::admin_regions(&app).await?))
}

/// Create a region.
#[utoipa::path(post, path = "/api/v1/admin/regions", tag = "admin", request_body = CreateRegionRequest,
    responses((status = 201, body = AdminRegionView), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_region(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<CreateRegionRequest>,
) -> ApiResult<(StatusCode, Json<AdminRegionView>)> {
    let region = service::regions::create(&app, &req, &admin.audit()).await?;
    Ok((StatusCode::CREATED, Json(region)))
}

/// Update a region.
#[utoipa::path(patch, path = "/api/v1/admin/regions/{code}", tag = "admin", params(("code" = String, Path)),
    request_body = UpdateRegionRequest,
    responses((status = 200, body = AdminRegionView), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn update_region(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(code): ApiPath<String>,
    ApiJson(req): ApiJson<UpdateRegionRequest>,
) -> ApiResult<Json<AdminRegionView>> {
    let region = service::regions::update(&app, &code, &req, &admin.audit()).await?;
    Ok(Json(region))
}

/// Create a one-time node join token for a region (the secret is shown once).
#[utoipa::path(post, path = "/api/v1/admin/node-tokens", tag = "admin", request_body = CreateNodeTokenRequest,
    responses((status = 201, body = NodeTokenResponse), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn create_node_token(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<CreateNodeTokenRequest>,
) -> ApiResult<(StatusCode, Json<NodeTokenResponse>)> {
    let token =
        service::nodes::create_token(&app, &req, admin.actor().user.id, &admin.audit()).await?;
    Ok((StatusCode::CREATED, Json(token)))
}

/// All nodes with state, heartbeat and metrics.
#[utoipa::path(get, path = "/api/v1/admin/nodes", tag = "admin", responses((status = 200, body = Vec<NodeView>)))]
pub async fn list_nodes(
    State(app): State<AppState>,
    _admin: AdminActor,
) -> ApiResult<Json<Vec<NodeView>>> {
    Ok(Json(
        app.store.list_nodes(|id| app.hub.is_connected(id)).await?,
    ))
}

/// One node: state, score and its parts, eligibility, health.
#[utoipa::path(get, path = "/api/v1/admin/nodes/{id}", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = NodeView), (status = 404, body = ApiError)))]
pub async fn get_node(
    State(app): State<AppState>,
    _admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<NodeView>> {
    Ok(Json(service::nodes::view(&app, id).await?))
}

/// Set a node's state, capacity, name or link capacity.
#[utoipa::path(patch, path = "/api/v1/admin/nodes/{id}", tag = "admin", params(("id" = Uuid, Path)), request_body = UpdateNodeRequest,
    responses((status = 200, body = NodeView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_node(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateNodeRequest>,
) -> ApiResult<Json<NodeView>> {
    Ok(Json(
        service::nodes::update(&app, id, &req, &admin.audit()).await?,
    ))
}

/// `?force=true` on node removal.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RemoveNodeQuery {
    /// Remove even with live peers (their devices lose their node until reassigned).
    #[serde(default)]
    pub force: bool,
}

/// Remove a node: its credential stops working and its stream closes.
#[utoipa::path(delete, path = "/api/v1/admin/nodes/{id}", tag = "admin", params(("id" = Uuid, Path), RemoveNodeQuery),
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn remove_node(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<RemoveNodeQuery>,
) -> ApiResult<StatusCode> {
    service::nodes::remove(&app, id, q.force, &admin.audit()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All users.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(
    State(app): State<AppState>,
    _admin: AdminActor,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(app.store.list_users().await?))
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", request_body = CreateUserRequest,
    responses((status = 201, body = UserView), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_user(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    let user = service::users::create(&app, req, &admin.audit()).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Disable/enable a user, set slots or role. Disabling ends all the user's sessions.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", params(("id" = Uuid, Path)), request_body = UpdateUserRequest,
    responses((status = 200, body = UserView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_user(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> ApiResult<Json<UserView>> {
    let user = service::users::update(&app, id, req, admin.actor().user.id, &admin.audit()).await?;
    Ok(Json(user))
}

/// Set a new password for a user; ends their sessions.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/password", tag = "admin", params(("id" = Uuid, Path)),
    request_body = ResetPasswordRequest, responses((status = 204), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn reset_password(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ResetPasswordRequest>,
) -> ApiResult<StatusCode> {
    service::users::reset_password(&app, id, req.password, &admin.audit()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Everyone's devices.
#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", params(AdminDeviceQuery),
    responses((status = 200, body = Vec<DeviceView>)))]
pub async fn list_devices(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiQuery(q): ApiQuery<AdminDeviceQuery>,
) -> ApiResult<Json<Vec<DeviceView>>> {
    let f = DeviceFilter {
        id: None,
        user_id: q.user_id,
        state: q.state,
        waiting: q.waiting,
        quarantined: q.quarantined,
    };
    Ok(Json(app.store.devices(&admin.all(), &f).await?))
}

/// Revoke anyone's device.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/revoke", tag = "admin", params(("id" = Uuid, Path)),
    responses((status = 200, body = RevokeResponse), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn revoke_device(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RevokeResponse>> {
    let revoked = service::devices::revoke(&app, &admin.all(), id, &admin.audit()).await?;
    Ok(Json(revoked))
}

/// The audit log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Page<AuditEventView>), (status = 400, body = ApiError)))]
pub async fn audit_log(
    State(app): State<AppState>,
    _admin: AdminActor,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Page<AuditEventView>>> {
    if let Some(c) = &q.cursor
        && Uuid::parse_str(c).is_err()
    {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidCursor,
            "cursor must be a next_cursor value from a previous page",
        ));
    }
    let f = AuditFilter {
        actor: q.actor,
        action: q.action,
        target: q.target,
        since: q.since,
        until: q.until,
        limit: q.limit.unwrap_or(100),
        cursor: q.cursor,
    };
    Ok(Json(audit::query(app.store.pool(), &f).await?))
}
