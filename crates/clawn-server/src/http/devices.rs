//! The user's devices and the region list. Everything here is owner-scoped through
//! `Actor::own()`; the work is in [`crate::service::devices`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clawn_proto::api::{
    ApiError, CreateDeviceRequest, DeviceConfigResponse, DeviceView, DeviceWithConfig,
    ReassignDeviceRequest, RegionView, RenameDeviceRequest, RevokeResponse, RotateDeviceRequest,
};
use uuid::Uuid;

use super::error::{ApiJson, ApiPath, ApiResult};
use crate::app::AppState;
use crate::policy::Actor;
use crate::service;
use crate::store::devices::DeviceFilter;

/// Regions with at least one node that can take a device, with a health summary.
#[utoipa::path(get, path = "/api/v1/regions", tag = "devices", responses((status = 200, body = Vec<RegionView>)))]
pub async fn list_regions(
    State(app): State<AppState>,
    _actor: Actor,
) -> ApiResult<Json<Vec<RegionView>>> {
    Ok(Json(service::regions::user_regions(&app).await?))
}

/// Register a device by its public key; the answer has its config without the private key.
#[utoipa::path(post, path = "/api/v1/devices", tag = "devices", request_body = CreateDeviceRequest,
    responses((status = 201, body = DeviceWithConfig), (status = 400, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError), (status = 503, body = ApiError)))]
pub async fn create_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<CreateDeviceRequest>,
) -> ApiResult<(StatusCode, Json<DeviceWithConfig>)> {
    let created =
        service::devices::create(&app, &actor, &req.name, req.public_key, req.region).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// My devices.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", responses((status = 200, body = Vec<DeviceView>)))]
pub async fn list_devices(
    State(app): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<DeviceView>>> {
    Ok(Json(
        app.store
            .devices(&actor.own(), &DeviceFilter::default())
            .await?,
    ))
}

/// One of my devices.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceView), (status = 404, body = ApiError)))]
pub async fn get_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeviceView>> {
    Ok(Json(service::devices::get(&app, &actor.own(), id).await?))
}

/// Rename one of my devices.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "devices", params(("id" = Uuid, Path)), request_body = RenameDeviceRequest,
    responses((status = 200, body = DeviceView), (status = 404, body = ApiError)))]
pub async fn rename_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RenameDeviceRequest>,
) -> ApiResult<Json<DeviceView>> {
    let device =
        service::devices::rename(&app, &actor.own(), id, &req.name, &actor.audit()).await?;
    Ok(Json(device))
}

/// Revoke one of my devices (irreversible). Answers once the node confirmed, or says why not.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", params(("id" = Uuid, Path)),
    responses((status = 200, body = RevokeResponse), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn revoke_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RevokeResponse>> {
    let revoked = service::devices::revoke(&app, &actor.own(), id, &actor.audit()).await?;
    Ok(Json(revoked))
}

/// Rotate one of my device's keys: the old key stops working, the new one gets the same address.
#[utoipa::path(post, path = "/api/v1/devices/{id}/rotate", tag = "devices", params(("id" = Uuid, Path)), request_body = RotateDeviceRequest,
    responses((status = 200, body = DeviceWithConfig), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn rotate_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<RotateDeviceRequest>,
) -> ApiResult<Json<DeviceWithConfig>> {
    let rotated =
        service::devices::rotate(&app, &actor.own(), id, req.public_key, &actor.audit()).await?;
    Ok(Json(rotated))
}

/// My device's config without the private key.
#[utoipa::path(get, path = "/api/v1/devices/{id}/config", tag = "devices", params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceConfigResponse), (status = 404, body = ApiError)))]
pub async fn device_config(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeviceConfigResponse>> {
    let config = service::devices::config(&app, &actor.own(), id, &actor.audit()).await?;
    Ok(Json(config))
}

/// Move one of my devices to another region: a new node there by load score, the old peer
/// retired, audited. At most `placement.reassign_per_hour` moves per device per hour.
#[utoipa::path(post, path = "/api/v1/devices/{id}/region", tag = "devices", params(("id" = Uuid, Path)), request_body = ReassignDeviceRequest,
    responses((status = 200, body = DeviceWithConfig), (status = 404, body = ApiError), (status = 409, body = ApiError),
              (status = 429, body = ApiError), (status = 503, body = ApiError)))]
pub async fn reassign_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<ReassignDeviceRequest>,
) -> ApiResult<Json<DeviceWithConfig>> {
    let moved =
        service::devices::reassign(&app, &actor.own(), id, &req.region, &actor.audit()).await?;
    Ok(Json(moved))
}
