//! The user's devices and the region list. Everything here is owner-scoped through
//! `Actor::own()`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clawn_proto::api::{AckStatus, ErrorCode};
use clawn_proto::api::{
    ApiError, CreateDeviceRequest, DeviceConfigResponse, DeviceView, DeviceWithConfig, NodeAck,
    ReassignDeviceRequest, RegionView, RenameDeviceRequest, RevokeResponse, RotateDeviceRequest,
};
use clawn_proto::config::ConfigTemplate;
use uuid::Uuid;

use super::error::{ApiErr, ApiJson, ApiPath, ApiResult};
use crate::app::AppState;
use crate::policy::{Actor, Scope};
use crate::store::devices::{self, DeviceChanged, DeviceFilter};

/// Validates a device name.
pub fn check_name(name: &str) -> ApiResult<String> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(char::is_control) {
        return Err(ApiErr::bad_request(
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
        return Err(ApiErr::bad_request(
            ErrorCode::NameLooksLikeKey,
            "the name looks like a WireGuard key",
        )
        .hint("never paste a private key anywhere; pick a plain name such as \"laptop\""));
    }
    Ok(n.to_string())
}

/// Runs a device mutation to completion and wakes the node's stream, even if the client
/// goes away mid-request: the work runs in its own task, so dropping the handler future
/// can never leave a committed change un-pushed.
pub async fn mutate<F, Fut>(app: &AppState, f: F) -> ApiResult<DeviceChanged>
where
    F: FnOnce(AppState) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<DeviceChanged, devices::DeviceError>> + Send + 'static,
{
    let task_app = app.clone();
    let joined = tokio::spawn(async move {
        let changed = f(task_app.clone()).await?;
        if let Some(c) = changed.change {
            task_app.hub.notify(c.node_id, c.version);
        }
        Ok::<_, devices::DeviceError>(changed)
    })
    .await;
    match joined {
        Ok(r) => r.map_err(ApiErr::from),
        Err(e) => Err(ApiErr::internal(&e)),
    }
}

/// Waits (bounded) for the node to acknowledge a change and describes the outcome.
pub async fn node_ack(app: &AppState, changed: &DeviceChanged, wait: bool) -> NodeAck {
    let Some(c) = changed.change else {
        return NodeAck {
            status: AckStatus::None,
            version: None,
            waited_ms: 0,
        };
    };
    if !wait {
        let status = if app.hub.is_connected(c.node_id) {
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
    let (outcome, waited) = app
        .hub
        .wait_ack(c.node_id, c.version, app.config.ack_timeout)
        .await;
    NodeAck {
        status: outcome.wire(),
        version: Some(c.version),
        waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
    }
}

/// Builds a device's config template.
pub async fn config_for(app: &AppState, scope: &Scope, id: Uuid) -> ApiResult<ConfigTemplate> {
    let parts = app
        .store
        .device_config_parts(scope, id)
        .await?
        .ok_or_else(|| {
            ApiErr::not_found("active device with a node")
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

async fn with_config(
    app: &AppState,
    scope: &Scope,
    changed: &DeviceChanged,
    wait: bool,
) -> ApiResult<DeviceWithConfig> {
    let node_ack = node_ack(app, changed, wait).await;
    let device = app
        .store
        .device(scope, changed.device_id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device"))?;
    // The change committed; if the device lost its peer since (a concurrent revoke), say so.
    let config = config_for(app, scope, changed.device_id)
        .await
        .map_err(|e| {
            if e.code == ErrorCode::NotFound {
                ApiErr::conflict(
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

/// Regions with at least one node that can take a device, with a health summary.
#[utoipa::path(get, path = "/api/v1/regions", tag = "devices", responses((status = 200, body = Vec<RegionView>)))]
pub async fn list_regions(
    State(app): State<AppState>,
    _actor: Actor,
) -> ApiResult<Json<Vec<RegionView>>> {
    let regions = app.store.list_regions().await?;
    Ok(Json(
        regions
            .into_iter()
            .filter(|(_, c)| c.eligible > 0)
            .map(|(r, c)| RegionView {
                code: r.code,
                name: r.name,
                health: c.health(),
            })
            .collect(),
    ))
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
    let name = check_name(&req.name)?;
    let (owner, audit) = (actor.user.id, actor.audit());
    let changed = mutate(&app, move |app| async move {
        devices::create(
            &app.store,
            owner,
            &audit,
            &name,
            &req.public_key,
            &req.region,
        )
        .await
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(with_config(&app, &actor.own(), &changed, false).await?),
    ))
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
    app.store
        .device(&actor.own(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("device"))
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
    let name = check_name(&req.name)?;
    devices::rename(&app.store, &actor.own(), id, &name, &actor.audit()).await?;
    app.store
        .device(&actor.own(), id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("device"))
}

/// Revoke one of my devices (irreversible). Answers once the node confirmed, or says why not.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "devices", params(("id" = Uuid, Path)),
    responses((status = 200, body = RevokeResponse), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn revoke_device(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<RevokeResponse>> {
    revoke_in_scope(&app, &actor.own(), id, &actor.audit())
        .await
        .map(Json)
}

/// Shared by the user and admin revoke routes.
pub async fn revoke_in_scope(
    app: &AppState,
    scope: &Scope,
    id: Uuid,
    audit: &crate::store::audit::AuditActor,
) -> ApiResult<RevokeResponse> {
    let (scope_owned, audit_owned) = (scope.clone(), audit.clone());
    let changed = mutate(app, move |app| async move {
        devices::revoke(&app.store, &scope_owned, id, &audit_owned).await
    })
    .await?;
    let node_ack = node_ack(app, &changed, true).await;
    let device = app
        .store
        .device(scope, id)
        .await?
        .ok_or_else(|| ApiErr::not_found("device"))?;
    Ok(RevokeResponse { device, node_ack })
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
    let (scope, audit) = (actor.own(), actor.audit());
    let changed = mutate(&app, move |app| async move {
        devices::rotate(&app.store, &scope, id, &req.public_key, &audit).await
    })
    .await?;
    Ok(Json(with_config(&app, &actor.own(), &changed, true).await?))
}

/// My device's config without the private key.
#[utoipa::path(get, path = "/api/v1/devices/{id}/config", tag = "devices", params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceConfigResponse), (status = 404, body = ApiError)))]
pub async fn device_config(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<Json<DeviceConfigResponse>> {
    // A device whose idle peer was removed (or that found no room earlier) is placed
    // again now: fetching the config is how its user reconnects.
    let (scope, audit) = (actor.own(), actor.audit());
    let placed = tokio::spawn({
        let app = app.clone();
        async move {
            let r = crate::store::routing::ensure_placed(&app.store, &scope, id, &audit).await;
            if let Ok(Some(c)) = &r {
                app.hub.notify(c.node_id, c.version);
            }
            r
        }
    })
    .await
    .map_err(|e| ApiErr::internal(&e))?;
    placed?;
    let config = config_for(&app, &actor.own(), id).await?;
    Ok(Json(DeviceConfigResponse {
        config_text: config.render(None),
        config,
    }))
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
    let scope = actor.own();
    // Only an existing device of the caller counts toward the abuse signal.
    if app.store.device(&scope, id).await?.is_none() {
        return Err(ApiErr::not_found("device"));
    }
    let region = app
        .store
        .region_by_code(req.region.trim())
        .await?
        .ok_or_else(|| ApiErr::from(devices::DeviceError::RegionNotFound))?;
    let now = clawn_proto::time::now_millis();
    if let Some(reason) = app.monitor.abuse.record(
        &app.config.abuse,
        id,
        crate::monitor::Signal::RegionSwitch,
        now,
    ) {
        crate::monitor::quarantine(&app, id, &reason).await;
    }
    let (task_scope, audit) = (scope.clone(), actor.audit());
    let outcome = tokio::spawn({
        let app = app.clone();
        async move {
            let r = crate::store::routing::move_device(
                &app.store,
                &task_scope,
                id,
                None,
                Some((region.id, region.code.clone())),
                crate::store::routing::MoveReason::Reassign,
                &audit,
            )
            .await;
            if let Ok(crate::store::routing::MoveOutcome::Moved { changes, .. }) = &r {
                crate::monitor::push(&app, changes);
            }
            r
        }
    })
    .await
    .map_err(|e| ApiErr::internal(&e))??;
    let change = match outcome {
        crate::store::routing::MoveOutcome::Moved { changes, .. } => changes.last().copied(),
        _ => None,
    };
    let changed = DeviceChanged {
        device_id: id,
        change,
    };
    Ok(Json(with_config(&app, &scope, &changed, true).await?))
}
