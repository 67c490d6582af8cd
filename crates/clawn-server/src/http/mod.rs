//! The HTTP API: routes, the OpenAPI document, and the layers every request passes.

pub mod account;
pub mod admin;
pub mod devices;
pub mod error;
pub mod extract;
pub mod node;
pub mod routing;
pub mod web;

use clawn_proto::api::ErrorCode;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate as _};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use error::ApiErr;

/// The OpenAPI document's fixed part; paths are collected from the handlers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Clawn API", description = "Self-hosted WireGuard access: accounts, devices, regions, nodes."),
    tags(
        (name = "auth", description = "Sign-in, sessions, API tokens"),
        (name = "devices", description = "The signed-in user's devices"),
        (name = "admin", description = "Operator routes (admin role)"),
        (name = "node", description = "Node enrollment and desired-state stream"),
        (name = "meta", description = "Health, metrics, this document")
    )
)]
struct ApiDoc;

/// Builds the router and the OpenAPI document.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(account::login))
        .routes(routes!(account::logout))
        .routes(routes!(account::register))
        .routes(routes!(account::setup))
        .routes(routes!(account::me))
        .routes(routes!(account::list_sessions))
        .routes(routes!(account::delete_session))
        .routes(routes!(account::end_all_sessions))
        .routes(routes!(account::list_tokens, account::create_token))
        .routes(routes!(account::revoke_token))
        .routes(routes!(devices::list_regions))
        .routes(routes!(devices::create_device, devices::list_devices))
        .routes(routes!(devices::get_device, devices::rename_device))
        .routes(routes!(devices::revoke_device))
        .routes(routes!(devices::rotate_device))
        .routes(routes!(devices::device_config))
        .routes(routes!(devices::reassign_device))
        .routes(routes!(admin::list_regions, admin::create_region))
        .routes(routes!(admin::update_region))
        .routes(routes!(admin::create_node_token))
        .routes(routes!(admin::list_nodes))
        .routes(routes!(
            admin::get_node,
            admin::update_node,
            admin::remove_node
        ))
        .routes(routes!(admin::list_users, admin::create_user))
        .routes(routes!(admin::update_user))
        .routes(routes!(admin::reset_password))
        .routes(routes!(admin::list_devices))
        .routes(routes!(admin::revoke_device))
        .routes(routes!(admin::audit_log))
        .routes(routes!(
            routing::list_priority_tokens,
            routing::grant_priority_token
        ))
        .routes(routes!(routing::revoke_priority_token))
        .routes(routes!(routing::release_device))
        .routes(routes!(routing::diagnostics))
        .routes(routes!(routing::device_diagnostics))
        .routes(routes!(routing::node_diagnostics))
        .routes(routes!(node::enroll))
        .routes(routes!(node::stream))
        .routes(routes!(healthz))
        .routes(routes!(metrics_text))
        .split_for_parts();
    let doc_json = doc.clone();
    let router = api
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || async move { Json(doc_json) }),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(256 * 1024))
        .layer(middleware::from_fn(reject_nul))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn(track_metrics))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        // Only the dashboard's files: API answers carry secrets (CSRF, join and API tokens)
        // next to request-chosen values, the shape compression side channels (BREACH) need.
        .layer(
            tower_http::compression::CompressionLayer::new().compress_when(
                DefaultPredicate::new().and(NotForContentType::const_new("application/json")),
            ),
        )
        .with_state(state);
    (router, doc)
}

/// Unmatched requests: the dashboard's files and client-side routes, else a JSON 404.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if let Some(resp) = web::serve(&method, &uri) {
        return resp;
    }
    ApiErr::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
        .hint("the API lives under /api/v1; see /api/v1/openapi.json")
        .into_response()
}

async fn method_not_allowed() -> ApiErr {
    ApiErr::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// Safety net: any error answer that is not JSON yet (body limit, upgrade failures) becomes `{code, message}`.
/// Refuses an encoded NUL anywhere in the path or query (PostgreSQL TEXT cannot hold it).
async fn reject_nul(req: Request, next: Next) -> Response {
    let uri = req.uri().to_string();
    if uri.contains("%00") || uri.contains("%u0000") {
        return ApiErr::bad_request(
            ErrorCode::InvalidPath,
            "the URL may not contain NUL characters",
        )
        .into_response();
    }
    next.run(req).await
}

async fn json_errors(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.is_client_error() || status.is_server_error() {
        if is_json {
            return resp;
        }
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::BodyTooLarge,
            StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
            StatusCode::UPGRADE_REQUIRED => ErrorCode::UpgradeRequired,
            s if s.is_server_error() => ErrorCode::Internal,
            _ => ErrorCode::Error,
        };
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        return ApiErr::new(status, code, message).into_response();
    }
    resp
}

async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    let labels = [("method", method), ("path", path), ("status", status)];
    metrics::counter!("clawn_http_requests_total", &labels).increment(1);
    metrics::histogram!("clawn_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    resp
}

async fn security_headers(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    if app.config.public_url.starts_with("https://") {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        "permissions-policy",
        HeaderValue::from_static(web::PERMISSIONS_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(web::CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "ok"), (status = 503, body = clawn_proto::api::ApiError, description = "database unreachable")))]
pub async fn healthz(State(app): State<AppState>) -> Response {
    match app.store.ping().await {
        // Which replica answered and whether it runs the monitor: for load balancers and
        // operators (docs/deploy.md).
        Ok(_) => Json(serde_json::json!({
            "status": "ok",
            "replica": app.replica_id,
            "monitor": app.monitor.leading().is_some(),
        }))
        .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            ApiErr::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::DatabaseUnavailable,
                "database unreachable",
            )
            .into_response()
        }
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "meta", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics_text(State(app): State<AppState>) -> Response {
    if let Ok((devices, peers)) = app.store.device_counts().await {
        metrics::gauge!("clawn_devices_active").set(devices as f64);
        metrics::gauge!("clawn_peers_live").set(peers as f64);
    }
    if let Ok(counts) = app.store.node_counts_by_state().await {
        for s in clawn_proto::api::NodeState::ALL {
            let n = counts
                .iter()
                .find(|(st, _)| st == s.as_str())
                .map_or(0, |(_, c)| *c);
            metrics::gauge!("clawn_nodes", "state" => s.as_str()).set(n as f64);
        }
    }
    let mut resp = Response::new(Body::from(app.metrics.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
