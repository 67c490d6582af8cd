//! Sign-in, sessions, personal API tokens, registration and first-admin setup.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use clawn_proto::api::AuditAction;
use clawn_proto::api::ErrorCode;
use clawn_proto::api::{
    ApiError, ApiTokenView, CreateApiTokenRequest, LoginRequest, LoginResponse, RegisterRequest,
    Role, SessionKind, SessionView, SetupRequest, UserView,
};
use clawn_proto::time::now_millis;
use serde_json::json;
use uuid::Uuid;

use super::error::{ApiErr, ApiJson, ApiPath, ApiResult};
use super::extract::{CSRF_COOKIE, ClientAddr, SESSION_COOKIE};
use crate::app::AppState;
use crate::auth::{self, MIN_PASSWORD_LEN, TokenKind, new_token, token_hash};
use crate::policy::Actor;
use crate::store::audit::{self, AuditActor};
use crate::store::users::{self, NewSession};

/// Live API tokens one user may hold.
pub const MAX_API_TOKENS: usize = 50;

/// Normalises an email for lookup and storage; rejects obviously invalid ones.
pub fn normalize_email(email: &str) -> Result<String, ApiErr> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= 254
        && e.split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(char::is_whitespace);
    if valid {
        Ok(e)
    } else {
        Err(ApiErr::bad_request(
            ErrorCode::InvalidEmail,
            "that is not a valid email address",
        ))
    }
}

/// Checks password strength rules.
pub fn check_password(p: &str) -> Result<(), ApiErr> {
    if p.chars().count() < MIN_PASSWORD_LEN || p.len() > 1024 {
        return Err(ApiErr::bad_request(
            ErrorCode::WeakPassword,
            format!("passwords must be {MIN_PASSWORD_LEN} to 1024 characters long"),
        ));
    }
    Ok(())
}

/// Hashes off the async runtime.
pub async fn hash_password(p: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || auth::hash_password(&p))
        .await
        .map_err(|e| ApiErr::internal(&e))?
        .map_err(|e| ApiErr::internal(&e))
}

async fn verify_password(p: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || auth::verify_password(&p, &hash))
        .await
        .map_err(|e| ApiErr::internal(&e))
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(200).collect())
}

/// Takes a sign-in attempt (login, registration, setup) from the account's and the
/// address's budgets.
fn rate_limit(app: &AppState, account: &str, addr: Option<&str>) -> ApiResult<()> {
    app.limiter
        .check(account, addr.unwrap_or("unknown"))
        .map_err(|secs| {
            tracing::warn!(client = ?addr, "sign-in rate limit hit");
            let mut e = ApiErr::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                "too many sign-in attempts",
            )
            .hint(format!("wait {secs} s and try again"));
            e.retry_after = Some(secs);
            e
        })
}

/// Creates a session for `user` and builds the answer (cookies or bearer token).
async fn start_session(
    app: &AppState,
    user: UserView,
    kind: SessionKind,
    addr: Option<String>,
    ua: Option<String>,
    status: StatusCode,
) -> ApiResult<Response> {
    let token = new_token(TokenKind::Session);
    let csrf = (kind == SessionKind::Cookie).then(|| new_token(TokenKind::Csrf));
    let now = now_millis();
    let max_ms = i64::try_from(app.config.session_max.as_millis()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(max_ms);
    let hash = token_hash(&token);
    let csrf_hash = csrf.as_deref().map(token_hash);
    let mut w = app.store.write().await?;
    // Sweep this user's expired sessions while we are here, so the table stays bounded.
    let idle_ms = i64::try_from(app.config.session_idle.as_millis()).unwrap_or(i64::MAX);
    sqlx::query(
        "DELETE FROM sessions WHERE user_id = $1 AND (expires_at <= $2 OR last_seen_at <= $3)",
    )
    .bind(user.id.to_string())
    .bind(now)
    .bind(now.saturating_sub(idle_ms))
    .execute(&mut *w.tx)
    .await
    .map_err(crate::store::StoreError::from)?;
    let session_id = users::insert_session(
        &mut w.tx,
        &NewSession {
            user_id: user.id,
            token_hash: &hash,
            csrf_hash: csrf_hash.as_deref(),
            kind,
            now,
            expires_at,
            client_addr: addr,
            user_agent: ua,
        },
    )
    .await?;
    w.commit().await?;
    let body = LoginResponse {
        user,
        session_id,
        token: (kind == SessionKind::Bearer).then(|| token.clone()),
        csrf_token: csrf.clone(),
        expires_at,
    };
    let mut resp = (status, Json(body)).into_response();
    if let Some(csrf) = csrf {
        let max_age = time_secs(app.config.session_max.as_secs());
        let session = Cookie::build((SESSION_COOKIE, token))
            .http_only(true)
            .secure(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age)
            .build();
        let csrf = Cookie::build((CSRF_COOKIE, csrf))
            .secure(true)
            .same_site(SameSite::Strict)
            .path("/")
            .max_age(max_age)
            .build();
        for c in [session, csrf] {
            if let Ok(v) = c.to_string().parse() {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    Ok(resp)
}

fn time_secs(s: u64) -> time::Duration {
    time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))
}

fn clear_cookies(resp: &mut Response) {
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let c = Cookie::build((name, ""))
            .path("/")
            .secure(true)
            .same_site(SameSite::Strict)
            .max_age(time_secs(0))
            .build();
        if let Ok(v) = c.to_string().parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

/// Sign in with email and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError), (status = 429, body = ApiError)))]
pub async fn login(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let email = req.email.trim().to_lowercase();
    rate_limit(&app, &email, addr.as_deref())?;
    let user = app.store.user_by_email(&email).await?;
    // Unknown users are verified against a dummy hash so both cases take the same time.
    let hash = user
        .as_ref()
        .map_or_else(|| app.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = verify_password(req.password, hash).await?;
    let Some(user) = user.filter(|_| ok) else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials,
            "wrong email or password",
        ));
    };
    if user.view.disabled {
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            ErrorCode::AccountDisabled,
            "this account is disabled",
        )
        .hint("ask an admin to enable it"));
    }
    start_session(
        &app,
        user.view,
        req.session,
        addr,
        user_agent(&headers),
        StatusCode::OK,
    )
    .await
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(app): State<AppState>, actor: Actor) -> ApiResult<Response> {
    if let Some(id) = actor.session_id {
        app.store.delete_session(actor.user.id, id).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut resp);
    Ok(resp)
}

/// Create an account (only when self-registration is on).
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = LoginResponse), (status = 403, body = ApiError), (status = 409, body = ApiError)))]
pub async fn register(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<Response> {
    if !app.config.self_registration {
        return Err(ApiErr::new(
            StatusCode::FORBIDDEN,
            ErrorCode::RegistrationClosed,
            "self-registration is off",
        )
        .hint("ask an admin to create your account"));
    }
    let email = normalize_email(&req.email)?;
    check_password(&req.password)?;
    rate_limit(&app, &email, addr.as_deref())?;
    let hash = hash_password(req.password).await?;
    let now = now_millis();
    let mut w = app.store.write().await?;
    let user = match users::insert(
        &mut w.tx,
        &email,
        &hash,
        Role::User,
        app.config.default_device_slots,
        now,
    )
    .await
    {
        Ok(u) => u,
        Err(e) if e.is_unique_violation() => {
            return Err(ApiErr::conflict(
                ErrorCode::EmailTaken,
                "an account with this email exists",
            )
            .hint("sign in instead"));
        }
        Err(e) => return Err(e.into()),
    };
    let actor = AuditActor {
        kind: "user",
        id: Some(user.id),
        label: Some(email.clone()),
        client_addr: addr.clone(),
    };
    audit::record(
        &mut w.tx,
        &actor,
        AuditAction::UserRegister,
        "user",
        Some(user.id.to_string()),
        json!({"email": email}),
    )
    .await?;
    w.commit().await?;
    start_session(
        &app,
        user,
        req.session,
        addr,
        user_agent(&headers),
        StatusCode::CREATED,
    )
    .await
}

/// Settings key of the setup token hash.
pub const SETUP_TOKEN_KEY: &str = "setup_token_hash";

/// Create the first admin with the one-time setup token printed at first start.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = LoginResponse), (status = 401, body = ApiError), (status = 409, body = ApiError)))]
pub async fn setup(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<Response> {
    let email = normalize_email(&req.email)?;
    check_password(&req.password)?;
    rate_limit(&app, "setup", addr.as_deref())?;
    let invalid = || {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidSetupToken,
            "the setup token is wrong or was used",
        )
        .hint("the token is printed by the server at a start with an empty database")
    };
    let stored = app.store.setting(SETUP_TOKEN_KEY).await?;
    let presented = token_hash(&req.setup_token);
    if !stored
        .as_deref()
        .is_some_and(|h| auth::hashes_equal(h, &presented))
    {
        return Err(invalid());
    }
    let hash = hash_password(req.password).await?;
    let now = now_millis();
    let mut w = app.store.write().await?;
    // Consuming the token is the lock: of two concurrent setups exactly one deletes the row.
    let consumed = sqlx::query("DELETE FROM settings WHERE key = $1 AND value = $2")
        .bind(SETUP_TOKEN_KEY)
        .bind(&presented)
        .execute(&mut *w.tx)
        .await
        .map_err(crate::store::StoreError::from)?
        .rows_affected();
    if consumed != 1 {
        return Err(invalid());
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(&mut *w.tx)
        .await
        .map_err(crate::store::StoreError::from)?;
    if n > 0 {
        return Err(ApiErr::conflict(
            ErrorCode::AlreadySetUp,
            "an account exists already; setup is done",
        ));
    }
    let user = users::insert(
        &mut w.tx,
        &email,
        &hash,
        Role::Admin,
        app.config.default_device_slots.max(1),
        now,
    )
    .await?;
    let actor = AuditActor {
        kind: "system",
        id: None,
        label: Some("setup".into()),
        client_addr: addr.clone(),
    };
    audit::record(
        &mut w.tx,
        &actor,
        AuditAction::UserBootstrap,
        "user",
        Some(user.id.to_string()),
        json!({"email": email, "via": "setup_token"}),
    )
    .await?;
    w.commit().await?;
    start_session(
        &app,
        user,
        req.session.unwrap_or(SessionKind::Bearer),
        addr,
        user_agent(&headers),
        StatusCode::CREATED,
    )
    .await
}

/// The signed-in user.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = UserView), (status = 401, body = ApiError)))]
pub async fn me(actor: Actor) -> Json<UserView> {
    Json(actor.user)
}

/// My sessions.
#[utoipa::path(get, path = "/api/v1/sessions", tag = "auth", responses((status = 200, body = Vec<SessionView>)))]
pub async fn list_sessions(
    State(app): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<SessionView>>> {
    Ok(Json(
        app.store
            .list_sessions(actor.user.id, actor.session_id)
            .await?,
    ))
}

/// End one of my sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "auth", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn delete_session(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    if app.store.delete_session(actor.user.id, id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found("session"))
    }
}

/// Sign out everywhere: end all my sessions, this one included.
#[utoipa::path(post, path = "/api/v1/sessions/end-all", tag = "auth", responses((status = 204)))]
pub async fn end_all_sessions(State(app): State<AppState>, actor: Actor) -> ApiResult<Response> {
    let mut w = app.store.write().await?;
    let n = users::end_all_sessions(&mut w.tx, actor.user.id).await?;
    audit::record(
        &mut w.tx,
        &actor.audit(),
        AuditAction::SessionEndAll,
        "user",
        Some(actor.user.id.to_string()),
        json!({"ended": n}),
    )
    .await?;
    w.commit().await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    clear_cookies(&mut resp);
    Ok(resp)
}

/// My personal API tokens.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", responses((status = 200, body = Vec<ApiTokenView>)))]
pub async fn list_tokens(
    State(app): State<AppState>,
    actor: Actor,
) -> ApiResult<Json<Vec<ApiTokenView>>> {
    Ok(Json(app.store.list_api_tokens(actor.user.id).await?))
}

/// Create a personal API token (the secret is shown once).
#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = CreateApiTokenRequest,
    responses((status = 201, body = ApiTokenView), (status = 400, body = ApiError)))]
pub async fn create_token(
    State(app): State<AppState>,
    actor: Actor,
    ApiJson(req): ApiJson<CreateApiTokenRequest>,
) -> ApiResult<(StatusCode, Json<ApiTokenView>)> {
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidName,
            "token names are 1 to 64 characters",
        ));
    }
    let days = req.expires_in_days.unwrap_or(90);
    if !(1..=365).contains(&days) {
        return Err(ApiErr::bad_request(
            ErrorCode::InvalidExpiry,
            "expires_in_days must be 1 to 365",
        ));
    }
    if app.store.list_api_tokens(actor.user.id).await?.len() >= MAX_API_TOKENS {
        return Err(ApiErr::conflict(
            ErrorCode::TooManyTokens,
            format!("at most {MAX_API_TOKENS} live API tokens per user"),
        )
        .hint("revoke tokens you no longer use"));
    }
    let token = new_token(TokenKind::ApiToken);
    let now = now_millis();
    let mut view = app
        .store
        .insert_api_token(
            &actor.audit(),
            actor.user.id,
            name,
            &token_hash(&token),
            now,
            now + i64::from(days) * 86_400_000,
        )
        .await?;
    view.token = Some(token);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Revoke one of my API tokens.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = ApiError)))]
pub async fn revoke_token(
    State(app): State<AppState>,
    actor: Actor,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<StatusCode> {
    if app
        .store
        .revoke_api_token(&actor.audit(), actor.user.id, id, now_millis())
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiErr::not_found("token"))
    }
}
