//! Authentication extractors. A handler that takes [`Actor`] (or [`AdminActor`]) only
//! runs for an authenticated user; cookie-authenticated state-changing requests must
//! also carry a matching `X-CSRF-Token` header.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::Method;
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use clawn_proto::api::SessionKind;
use clawn_proto::time::now_millis;

use super::error::ApiErr;
use crate::app::AppState;
use crate::auth::{TokenKind, hashes_equal, token_hash};
use crate::policy::{Actor, AdminActor};
use crate::store::users::Credential;

/// Name of the session cookie. The `__Host-` prefix makes browsers refuse it unless it is
/// `Secure`, has `Path=/` and no `Domain`, so a sibling subdomain cannot plant or shadow it.
pub const SESSION_COOKIE: &str = "__Host-clawn_session";
/// Name of the CSRF cookie (readable by the dashboard's script, unlike the session).
pub const CSRF_COOKIE: &str = "__Host-clawn_csrf";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client's address as seen by this server.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub Option<String>);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(client_addr(parts, &app.config.trusted_proxies)))
    }
}

/// The client's address: the socket peer, or — when the peer is a trusted proxy — the
/// right-most X-Forwarded-For entry that is not itself a trusted proxy.
pub fn client_addr(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<String> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer.to_string());
    }
    let hops: Vec<std::net::IpAddr> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .copied()
            .unwrap_or(peer)
            .to_string(),
    )
}

/// The bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl FromRequestParts<AppState> for Actor {
    type Rejection = ApiErr;
    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now = now_millis();
        let idle_ms = i64::try_from(app.config.session_idle.as_millis()).unwrap_or(i64::MAX);
        let client_addr = ClientAddr::from_request_parts(parts, app)
            .await
            .ok()
            .and_then(|c| c.0);
        let (auth, via_cookie) = if let Some(token) = bearer(parts) {
            let hash = token_hash(token);
            let found = if TokenKind::ApiToken.matches(token) {
                app.store.api_token_by_hash(&hash, now).await?
            } else {
                app.store.session_by_hash(&hash, now, idle_ms).await?
            };
            (found, false)
        } else {
            let jar = CookieJar::from_headers(&parts.headers);
            let Some(cookie) = jar.get(SESSION_COOKIE) else {
                return Err(ApiErr::unauthenticated());
            };
            (
                app.store
                    .session_by_hash(&token_hash(cookie.value()), now, idle_ms)
                    .await?,
                true,
            )
        };
        let Some(auth) = auth else {
            return Err(ApiErr::unauthenticated()
                .hint("the session or token is invalid or expired: sign in again"));
        };
        let mut session_id = None;
        match &auth.credential {
            Credential::Session {
                id,
                kind,
                csrf_hash,
                last_seen_at,
            } => {
                // A cookie session is only valid as a cookie, a bearer session only as a header.
                if (*kind == SessionKind::Cookie) != via_cookie {
                    return Err(ApiErr::unauthenticated());
                }
                if via_cookie
                    && !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS)
                {
                    let sent = parts
                        .headers
                        .get(CSRF_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .map(token_hash);
                    let ok = matches!((&sent, csrf_hash), (Some(s), Some(h)) if hashes_equal(s, h));
                    if !ok {
                        return Err(ApiErr::new(
                            axum::http::StatusCode::FORBIDDEN,
                            clawn_proto::api::ErrorCode::CsrfFailed,
                            "missing or wrong CSRF token",
                        )
                        .hint("send the csrf_token from sign-in as the X-CSRF-Token header"));
                    }
                }
                if now - last_seen_at > 60_000 {
                    app.store.touch_session(*id, now).await?;
                }
                session_id = Some(*id);
            }
            Credential::ApiToken { id, last_used_at } => {
                if last_used_at.is_none_or(|t| now - t > 60_000) {
                    app.store.touch_api_token(*id, now).await?;
                }
            }
        }
        Ok(Actor {
            user: auth.user,
            session_id,
            client_addr,
        })
    }
}

impl FromRequestParts<AppState> for AdminActor {
    type Rejection = ApiErr;
    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let actor = Actor::from_request_parts(parts, app).await?;
        AdminActor::from_actor(actor).ok_or_else(ApiErr::forbidden)
    }
}
