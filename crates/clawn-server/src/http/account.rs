//! Sign-in, sessions, personal API tokens, registration and first-admin setup. The work
//! is in [`crate::service::accounts`]; this file renders answers and cookies.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, SameSite};
use clawn_proto::api::{
    ApiError, ApiTokenView, CreateApiTokenRequest, LoginRequest, LoginResponse, RegisterRequest,
    SessionKind, SessionView, SetupRequest, UserView,
};
use uuid::Uuid;

use super::error::{ApiJson, ApiPath, ApiResult};
use super::extract::{CSRF_COOKIE, ClientAddr, SESSION_COOKIE};
use crate::app::AppState;
use crate::policy::Actor;
use crate::service::accounts::{self, Client, NewSessionOut};

fn client(addr: Option<String>, headers: &HeaderMap) -> Client {
    Client {
        addr,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect()),
    }
}

/// Renders a new session: the body, plus the session and CSRF cookies of a cookie session.
fn session_response(app: &AppState, s: NewSessionOut, status: StatusCode) -> Response {
    let mut resp = (status, Json(s.body)).into_response();
    if let Some(csrf) = s.csrf {
        let max_age = time_secs(app.config.session_max.as_secs());
        let session = Cookie::build((SESSION_COOKIE, s.token))
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
    resp
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
    let s = accounts::login(
        &app,
        &req.email,
        req.password,
        req.session,
        client(addr, &headers),
    )
    .await?;
    Ok(session_response(&app, s, StatusCode::OK))
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
pub async fn logout(State(app): State<AppState>, actor: Actor) -> ApiResult<Response> {
    accounts::logout(&app, &actor).await?;
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
    let s = accounts::register(
        &app,
        &req.email,
        req.password,
        req.session,
        client(addr, &headers),
    )
    .await?;
    Ok(session_response(&app, s, StatusCode::CREATED))
}

/// Create the first admin with the one-time setup token printed at first start.
#[utoipa::path(post, path = "/api/v1/auth/setup", tag = "auth", request_body = SetupRequest,
    responses((status = 201, body = LoginResponse), (status = 401, body = ApiError), (status = 409, body = ApiError)))]
pub async fn setup(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SetupRequest>,
) -> ApiResult<Response> {
    let s = accounts::setup(
        &app,
        &req.setup_token,
        &req.email,
        req.password,
        req.session.unwrap_or(SessionKind::Bearer),
        client(addr, &headers),
    )
    .await?;
    Ok(session_response(&app, s, StatusCode::CREATED))
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
    accounts::end_session(&app, &actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sign out everywhere: end all my sessions, this one included.
#[utoipa::path(post, path = "/api/v1/sessions/end-all", tag = "auth", responses((status = 204)))]
pub async fn end_all_sessions(State(app): State<AppState>, actor: Actor) -> ApiResult<Response> {
    accounts::end_all_sessions(&app, &actor).await?;
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
    let view = accounts::create_api_token(&app, &actor, &req.name, req.expires_in_days).await?;
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
    accounts::revoke_api_token(&app, &actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Settings key of the setup token hash (re-exported for tests that plant one).
pub use crate::service::accounts::SETUP_TOKEN_KEY;
