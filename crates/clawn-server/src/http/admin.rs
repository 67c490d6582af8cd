//! Admin routes. Every handler takes [`AdminActor`]; every change writes an audit event
//! in the same transaction.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use clawn_proto::api::AuditAction;
use clawn_proto::api::{AdminDeviceQuery, AuditQuery, ErrorCode};
use clawn_proto::api::{
    AdminRegionView, ApiError, AuditEventView, CreateNodeTokenRequest, CreateRegionRequest,
    CreateUserRequest, DeviceView, NodeState, NodeTokenResponse, NodeView, Page,
    ResetPasswordRequest, RevokeResponse, Role, UpdateNodeRequest, UpdateRegionRequest,
    UpdateUserRequest, UserView,
};
use clawn_proto::time::now_millis;
use ipnet::Ipv4Net;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::account::{check_password, hash_password, normalize_email};
use super::devices::revoke_in_scope;
use super::error::{ApiErr, ApiJson, ApiPath, ApiQuery, ApiResult};
use crate::app::AppState;
use crate::auth::{TokenKind, new_token, token_hash};
use crate::policy::AdminActor;
use crate::store::audit::{self, AuditFilter};
use crate::store::devices::{self, DeviceFilter};
use crate::store::regions::{self, RegionRecord};
use crate::store::{nodes, users};

fn check_region_code(code: &str) -> ApiResult<()> {
    let ok = (2..=32).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiErr::bad_request(
            ErrorCode::InvalidRegionCode,
            "region codes are 2-32 of a-z, 0-9 and -",
        ))
    }
}

fn check_pool(cidr: &str, node_prefix: u8) -> ApiResult<Ipv4Net> {
    let net: Ipv4Net = cidr.parse().map_err(|_| {
        ApiErr::bad_request(
            ErrorCode::InvalidCidr,
            format!("`{cidr}` is not an IPv4 CIDR like 10.100.0.0/16"),
        )
    })?;
    if net.trunc() != net {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidCidr,
            format!("`{cidr}` has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    if node_prefix < net.prefix_len() || !(8..=30).contains(&node_prefix) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidNodePrefix,
            format!(
                "node_prefix must be between the pool's prefix /{} and /30",
                net.prefix_len()
            ),
        ));
    }
    Ok(net)
}

fn check_dns(dns: &[String]) -> ApiResult<()> {
    if dns.len() > 4 || dns.iter().any(|d| d.parse::<std::net::IpAddr>().is_err()) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidDns,
            "dns must be up to 4 IP addresses",
        ));
    }
    Ok(())
}

async fn region_view(app: &AppState, code: &str) -> ApiResult<AdminRegionView> {
    let all = app.store.list_regions().await?;
    all.iter()
        .find(|(r, _)| r.code == code)
        .map(|(r, c)| regions::admin_view(r, c))
        .ok_or_else(|| ApiErr::not_found("region"))
}

/// All regions.
#[utoipa::path(get, path = "/api/v1/admin/regions", tag = "admin", responses((status = 200, body = Vec<AdminRegionView>)))]
pub async fn list_regions(
    State(app): State<AppState>,
    _admin: AdminActor,
) -> ApiResult<Json<Vec<AdminRegionView>>> {
    Ok(Json(
        app.store
            .list_regions()
            .await?
            .iter()
            .map(|(r, c)| regions::admin_view(r, c))
            .collect(),
    ))
}

/// Create a region.
#[utoipa::path(post, path = "/api/v1/admin/regions", tag = "admin", request_body = CreateRegionRequest,
    responses((status = 201, body = AdminRegionView), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_region(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<CreateRegionRequest>,
) -> ApiResult<(StatusCode, Json<AdminRegionView>)> {
    check_region_code(&req.code)?;
    let node_prefix = req.node_prefix.unwrap_or(20);
    let net = check_pool(&req.cidr, node_prefix)?;
    check_dns(&req.dns)?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidName,
            "region names are 1 to 64 characters",
        ));
    }
    let now = now_millis();
    let rec = RegionRecord {
        id: Uuid::now_v7(),
        code: req.code.clone(),
        name: name.to_string(),
        cidr: net.to_string(),
        node_prefix,
        dns: req.dns.clone(),
        created_at: now,
    };
    let mut w = app.store.write().await?;
    match regions::insert(&mut w.tx, &rec, now).await {
        Err(e) if e.is_unique_violation() => {
            return Err(ApiErr::conflict(
                ErrorCode::RegionExists,
                "a region with this code exists",
            ));
        }
        r => r?,
    }
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::RegionCreate,
        "region",
        Some(rec.code.clone()),
        json!({"name": rec.name, "cidr": rec.cidr, "node_prefix": node_prefix, "dns": rec.dns}),
    )
    .await?;
    w.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(region_view(&app, &rec.code).await?),
    ))
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
    let mut rec = app
        .store
        .region_by_code(&code)
        .await?
        .ok_or_else(|| ApiErr::not_found("region"))?;
    if let Some(name) = &req.name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 64 {
            return Err(ApiErr::bad_request(
                ErrorCode::InvalidName,
                "region names are 1 to 64 characters",
            ));
        }
        rec.name = name.to_string();
    }
    if let Some(dns) = &req.dns {
        check_dns(dns)?;
        rec.dns = dns.clone();
    }
    let pool_change = req.cidr.is_some() || req.node_prefix.is_some();
    if pool_change {
        let cidr = req.cidr.clone().unwrap_or_else(|| rec.cidr.clone());
        let prefix = req.node_prefix.unwrap_or(rec.node_prefix);
        rec.cidr = check_pool(&cidr, prefix)?.to_string();
        rec.node_prefix = prefix;
    }
    let mut w = app.store.write().await?;
    if pool_change && regions::node_count(&mut w.tx, rec.id).await? > 0 {
        return Err(ApiErr::conflict(
            ErrorCode::RegionHasNodes,
            "the pool of a region with nodes cannot change",
        )
        .hint("remove the region's nodes first"));
    }
    regions::update(&mut w.tx, &rec, now_millis()).await?;
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::RegionUpdate,
        "region",
        Some(rec.code.clone()),
        json!({"name": rec.name, "cidr": rec.cidr, "node_prefix": rec.node_prefix, "dns": rec.dns}),
    )
    .await?;
    w.commit().await?;
    Ok(Json(region_view(&app, &rec.code).await?))
}

/// Create a one-time node join token for a region (the secret is shown once).
#[utoipa::path(post, path = "/api/v1/admin/node-tokens", tag = "admin", request_body = CreateNodeTokenRequest,
    responses((status = 201, body = NodeTokenResponse), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn create_node_token(
    State(app): State<AppState>,
    admin: AdminActor,
    ApiJson(req): ApiJson<CreateNodeTokenRequest>,
) -> ApiResult<(StatusCode, Json<NodeTokenResponse>)> {
    let region = app
        .store
        .region_by_code(&req.region)
        .await?
        .ok_or_else(|| ApiErr::not_found("region"))?;
    let secs = req.expires_in_secs.unwrap_or(3600);
    if !(60..=604_800).contains(&secs) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidExpiry,
            "expires_in_secs must be 60 to 604800",
        ));
    }
    let capacity = req.capacity.unwrap_or(1000);
    if !(1..=1_000_000).contains(&capacity) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidCapacity,
            "capacity must be 1 to 1000000",
        ));
    }
    let expires_at = now_millis() + i64::try_from(secs).unwrap_or(3600) * 1000;
    let (id, token) = mint_join_token(
        &app,
        &region,
        capacity,
        Some(admin.actor().user.id),
        &admin.audit(),
        expires_at,
        json!({}),
    )
    .await?;
    let join_command = format!(
        "clawn-node join --server {} --token {token}",
        app.config.public_url
    );
    Ok((
        StatusCode::CREATED,
        Json(NodeTokenResponse {
            id,
            token,
            region: region.code,
            expires_at,
            join_command,
        }),
    ))
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
    app.store
        .node_view(id, |n| app.hub.is_connected(n))
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("node"))
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
    if let Some(s) = req.state
        && !matches!(
            s,
            NodeState::Online
                | NodeState::Maintenance
                | NodeState::Draining
                | NodeState::Experimental
        )
    {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidState,
            "admins can set online, maintenance, draining or experimental",
        ));
    }
    if req.capacity.is_some_and(|c| c > 1_000_000) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidCapacity,
            "capacity must be 0 to 1000000",
        ));
    }
    let name = req.name.as_deref().map(str::trim);
    if name.is_some_and(|n| n.is_empty() || n.chars().count() > 64) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidName,
            "node names are 1 to 64 characters",
        ));
    }
    if req.link_mbps.is_some_and(|l| l == 0 || l > 10_000_000) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidLinkMbps,
            "link_mbps must be 1 to 10000000 (Mbit/s)",
        ));
    }
    let mut w = app.store.write().await?;
    if !nodes::update_node(&mut w.tx, id, req.state, req.capacity, name, req.link_mbps).await? {
        return Err(ApiErr::not_found("node"));
    }
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::NodeUpdate,
        "node",
        Some(id.to_string()),
        json!({"state": req.state, "capacity": req.capacity, "name": name, "link_mbps": req.link_mbps}),
    )
    .await?;
    w.commit().await?;
    app.store
        .node_view(id, |n| app.hub.is_connected(n))
        .await?
        .map(Json)
        .ok_or_else(|| ApiErr::not_found("node"))
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
    let now = now_millis();
    let mut w = app.store.write().await?;
    // Lock the node row first (PostgreSQL) so no create can add a peer between the check
    // and the removal.
    let live: Option<i64> = sqlx::query_scalar(
        "UPDATE nodes SET live_peers = live_peers WHERE id = $1 AND removed_at IS NULL RETURNING live_peers",
    )
            .bind(id.to_string())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(crate::store::StoreError::from)?;
    let Some(live) = live else {
        return Err(ApiErr::not_found("node"));
    };
    if live > 0 && !q.force {
        return Err(ApiErr::conflict(
            ErrorCode::NodeHasPeers,
            format!("the node still serves {live} devices"),
        )
        .hint("set it to draining and wait, or remove with ?force=true"));
    }
    let sql = "UPDATE peers SET retired_at = $2, retire_reason = 'node_removed', \
               retired_version = (SELECT version + 1 FROM nodes WHERE id = $1) WHERE node_id = $1 AND retired_at IS NULL";
    sqlx::query(sql)
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(crate::store::StoreError::from)?;
    sqlx::query("UPDATE nodes SET removed_at = $2, live_peers = 0, version = version + 1, state = 'offline' WHERE id = $1")
        .bind(id.to_string())
        .bind(now)
        .execute(&mut *w.tx)
        .await
        .map_err(crate::store::StoreError::from)?;
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::NodeRemove,
        "node",
        Some(id.to_string()),
        json!({"retired_peers": live, "force": q.force}),
    )
    .await?;
    w.commit().await?;
    // Wake the stream so it notices the credential is gone.
    app.hub.wake(id);
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
    let email = normalize_email(&req.email)?;
    check_password(&req.password)?;
    let slots = req.device_slots.unwrap_or(app.config.default_device_slots);
    if slots > 1000 {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidSlots,
            "device_slots must be 0 to 1000",
        ));
    }
    let role = req.role.unwrap_or(Role::User);
    let hash = hash_password(req.password).await?;
    let mut w = app.store.write().await?;
    let user = match users::insert(&mut w.tx, &email, &hash, role, slots, now_millis()).await {
        Err(e) if e.is_unique_violation() => {
            return Err(ApiErr::conflict(
                ErrorCode::EmailTaken,
                "a user with this email exists",
            ));
        }
        r => r?,
    };
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::UserCreate,
        "user",
        Some(user.id.to_string()),
        json!({"email": email, "role": role.as_str(), "device_slots": slots}),
    )
    .await?;
    w.commit().await?;
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
    if req.device_slots.is_some_and(|s| s > 1000) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidSlots,
            "device_slots must be 0 to 1000",
        ));
    }
    if id == admin.actor().user.id && (req.disabled == Some(true) || req.role == Some(Role::User)) {
        return Err(ApiErr::conflict(
            ErrorCode::SelfLockout,
            "you cannot disable or demote yourself",
        )
        .hint("ask another admin"));
    }
    let now = now_millis();
    let mut w = app.store.write().await?;
    // Did this request flip the disabled flag? (The conditional update also row-locks.)
    let flipped = match req.disabled {
        Some(d) => {
            sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1 AND disabled <> $2")
                .bind(id.to_string())
                .bind(i64::from(d))
                .execute(&mut *w.tx)
                .await
                .map_err(crate::store::StoreError::from)?
                .rows_affected()
                == 1
        }
        None => false,
    };
    if !users::update(&mut w.tx, id, req.disabled, req.device_slots, req.role, now).await? {
        return Err(ApiErr::not_found("user"));
    }
    let mut ended = 0;
    let mut changes = Vec::new();
    let mut without_room = 0;
    if flipped && req.disabled == Some(true) {
        // Disabling cuts everything: sessions, API tokens, and the tunnels at the nodes.
        ended = users::end_all_sessions(&mut w.tx, id).await?;
        users::revoke_all_api_tokens(&mut w.tx, id, now).await?;
        changes = devices::suspend_user(&mut w.tx, id, now).await?;
    } else if flipped && req.disabled == Some(false) {
        (changes, without_room) =
            devices::restore_user(&mut w.tx, app.store.tuning(), id, now).await?;
    }
    audit::record(&mut w.tx, &admin.audit(), AuditAction::UserUpdate, "user", Some(id.to_string()),
        json!({"disabled": req.disabled, "device_slots": req.device_slots, "role": req.role,
               "sessions_ended": ended, "peers_changed": changes.len(), "devices_without_room": without_room})).await?;
    w.commit().await?;
    for c in changes {
        app.hub.notify(c.node_id, c.version);
    }
    app.store
        .user_by_id(id)
        .await?
        .map(|u| Json(u.view))
        .ok_or_else(|| ApiErr::not_found("user"))
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
    check_password(&req.password)?;
    let hash = hash_password(req.password).await?;
    let mut w = app.store.write().await?;
    if !users::set_password(&mut w.tx, id, &hash, now_millis()).await? {
        return Err(ApiErr::not_found("user"));
    }
    let ended = users::end_all_sessions(&mut w.tx, id).await?;
    // A reset is what an admin does after a takeover: the attacker's API tokens go too.
    users::revoke_all_api_tokens(&mut w.tx, id, now_millis()).await?;
    audit::record(
        &mut w.tx,
        &admin.audit(),
        AuditAction::UserResetPassword,
        "user",
        Some(id.to_string()),
        json!({"sessions_ended": ended}),
    )
    .await?;
    w.commit().await?;
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
    revoke_in_scope(&app, &admin.all(), id, &admin.audit())
        .await
        .map(Json)
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

/// Mints a one-time join token for `region` and audits it, in one transaction. Returns the
/// token's id and the token (shown once; only its hash is stored).
pub async fn mint_join_token(
    app: &AppState,
    region: &RegionRecord,
    capacity: u32,
    created_by: Option<Uuid>,
    actor: &audit::AuditActor,
    expires_at: i64,
    extra: serde_json::Value,
) -> crate::store::StoreResult<(Uuid, String)> {
    let token = new_token(TokenKind::Join);
    let mut w = app.store.write().await?;
    let id = app
        .store
        .insert_join_token(
            &mut w.tx,
            &token_hash(&token),
            region.id,
            capacity,
            created_by,
            now_millis(),
            expires_at,
        )
        .await?;
    let mut meta = json!({"region": region.code, "expires_at": expires_at, "capacity": capacity});
    if let (Some(m), Some(e)) = (meta.as_object_mut(), extra.as_object()) {
        m.extend(e.clone());
    }
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::NodeTokenCreate,
        "join_token",
        Some(id.to_string()),
        meta,
    )
    .await?;
    w.commit().await?;
    Ok((id, token))
}
