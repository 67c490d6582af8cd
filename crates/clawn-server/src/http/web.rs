//! The web dashboard: the files Vite built into `web/dist`, embedded in the binary at
//! compile time, served under `/` with a strict Content-Security-Policy.
//!
//! The dashboard is a single-page app that talks only to the public `/api/v1`; any GET
//! for a path without a file extension (a client-side route such as `/admin/nodes`)
//! answers `index.html`. Hashed files under `/assets/` are cached for a year; everything
//! else, `index.html` included, is `no-store` (set by the security-header layer), so a
//! new server version is picked up at the next load.

use axum::body::Body;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use clawn_proto::api::ErrorCode;
use rust_embed::RustEmbed;

use super::error::ApiErr;

/// The built dashboard. Missing (not built yet) is allowed: the server then answers
/// `dashboard_not_built` with the command that builds it.
#[derive(RustEmbed)]
#[folder = "../../web/dist"]
#[allow_missing = true]
struct Assets;

/// The policy every answer carries. No inline script or style, nothing from another
/// origin; `img-src data:` is for Bootstrap's inline SVG icons in its stylesheet.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Browser features the dashboard never uses are off; the clipboard stays (copy config).
pub const PERMISSIONS_POLICY: &str =
    "camera=(), microphone=(), geolocation=(), usb=(), payment=(), serial=(), hid=()";

/// Whether the binary carries a built dashboard.
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

/// Serves an embedded file, or `index.html` for a client-side route. `None` when the
/// request is not the dashboard's (not GET/HEAD, under `/api/`, or a missing file).
pub fn serve(method: &Method, uri: &Uri) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let path = uri.path().trim_start_matches('/');
    if path == "api" || path.starts_with("api/") {
        return None;
    }
    let (name, file) = match Assets::get(path).filter(|_| !path.is_empty()) {
        Some(f) => (path, f),
        None if is_route(path) => match Assets::get("index.html") {
            Some(f) => ("index.html", f),
            None => return Some(not_built()),
        },
        None => return None,
    };
    // The full body for HEAD too: hyper drops it and keeps Content-Length as for GET.
    // Embedded files are borrowed from the binary, not copied per request.
    let mut resp = Response::new(Body::from(file.data));
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(file.metadata.mimetype()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if name.starts_with("assets/") {
        // Vite puts a content hash in every file name under assets/.
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        );
    }
    Some(resp)
}

/// A client-side route: no file extension in the last segment.
fn is_route(path: &str) -> bool {
    !path.rsplit('/').next().unwrap_or("").contains('.')
}

fn not_built() -> Response {
    ApiErr::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::DashboardNotBuilt,
        "this clawn-server was built without the web dashboard",
    )
    .hint("run `npm ci && npm run build` in web/, then rebuild clawn-server (scripts/run.sh does both)")
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_paths_without_an_extension() {
        assert!(is_route(""));
        assert!(is_route("devices"));
        assert!(is_route("admin/nodes"));
        assert!(!is_route("favicon.svg"));
        assert!(!is_route("assets/index-abc.js"));
    }

    #[test]
    fn api_paths_and_writes_are_never_the_dashboard() {
        let uri: Uri = "/api/v1/nope".parse().expect("uri");
        assert!(serve(&Method::GET, &uri).is_none());
        let uri: Uri = "/devices".parse().expect("uri");
        assert!(serve(&Method::POST, &uri).is_none());
    }

    #[test]
    fn the_policy_allows_no_inline_script_and_no_other_origin() {
        let csp = CONTENT_SECURITY_POLICY;
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(!csp.contains("unsafe-eval"));
        assert!(!csp.contains("http"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
