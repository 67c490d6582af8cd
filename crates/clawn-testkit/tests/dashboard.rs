//! How `clawn-server` serves the embedded dashboard: client-side routes get `index.html`,
//! hashed assets are cached for good, every answer carries the CSP, and nothing of the
//! dashboard shadows the API. (The dashboard itself is tested in a real browser:
//! `web/tests/`.) When the binary was built without `web/dist`, the same routes must say
//! how to build it instead.

use clawn_server::http::web;
use clawn_testkit::{Db, TestServer};
use reqwest::StatusCode;

fn client() -> reqwest::Client {
    clawn_testkit::init_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_assets_and_the_api_stay_apart() {
    let srv = TestServer::start(Db::Sqlite).await;
    let http = client();
    let get = |path: &str| http.get(format!("{}{path}", srv.url)).send();

    for route in ["/", "/devices/0190", "/admin/nodes", "/sessions"] {
        let r = get(route).await.expect("get");
        let csp = r.headers()["content-security-policy"]
            .to_str()
            .expect("csp")
            .to_string();
        assert_eq!(csp, web::CONTENT_SECURITY_POLICY, "{route}");
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        if web::is_built() {
            assert_eq!(r.status(), StatusCode::OK, "{route}");
            assert!(
                r.headers()["content-type"]
                    .to_str()
                    .expect("ct")
                    .starts_with("text/html")
            );
            assert_eq!(
                r.headers()["cache-control"],
                "no-store",
                "index.html is never cached"
            );
            let html = r.text().await.expect("body");
            assert!(html.contains(r#"<div id="root">"#), "{route}: {html}");
            // The asset the page names is served, with a long cache lifetime.
            let src = html
                .split(r#"src=""#)
                .nth(1)
                .and_then(|s| s.split('"').next())
                .expect("a script src");
            assert!(src.starts_with("/assets/"), "{src}");
            let a = get(src).await.expect("asset");
            assert_eq!(a.status(), StatusCode::OK);
            assert_eq!(
                a.headers()["cache-control"],
                "public, max-age=31536000, immutable"
            );
            assert!(
                a.headers()["content-type"]
                    .to_str()
                    .expect("ct")
                    .contains("javascript")
            );
            let size = a.bytes().await.expect("asset body").len();
            // HEAD answers the same headers as GET, without the body.
            let h = http
                .head(format!("{}{src}", srv.url))
                .send()
                .await
                .expect("head");
            assert_eq!(h.status(), StatusCode::OK);
            assert_eq!(h.headers()["content-length"], size.to_string().as_str());
            // The dashboard's files are compressed for clients that ask.
            let br = http
                .get(format!("{}{src}", srv.url))
                .header("accept-encoding", "br")
                .send()
                .await
                .expect("br");
            assert_eq!(br.headers()["content-encoding"], "br");
        } else {
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{route}");
            let body: serde_json::Value = r.json().await.expect("json");
            assert_eq!(body["code"], "dashboard_not_built");
            assert!(body["hint"].as_str().is_some_and(|h| h.contains("npm ci")));
        }
    }

    // API answers are never compressed: they carry secrets next to request-chosen values.
    let api = http
        .get(format!("{}/api/v1/openapi.json", srv.url))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .expect("api");
    assert_eq!(api.status(), StatusCode::OK);
    assert!(api.headers().get("content-encoding").is_none());
    let pp = api.headers()["permissions-policy"].to_str().expect("pp");
    assert!(
        pp.contains("camera=()") && !pp.contains("clipboard"),
        "{pp}"
    );
    assert!(
        api.headers().get("strict-transport-security").is_none(),
        "no HSTS over http"
    );

    // A missing file is a 404, not the app; API routes are never the dashboard.
    for path in [
        "/assets/nope-123.js",
        "/favicon.ico.map",
        "/api/v1/nope",
        "/api",
        "/api/v1/devices/../../etc",
    ] {
        let r = get(path).await.expect("get");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["code"], "not_found", "{path}");
    }
    // An API route without a session is still the API's 401, not a page.
    let r = get("/api/v1/devices").await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Writes to a client-side route are refused as JSON.
    let r = http
        .post(format!("{}/devices", srv.url))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("application/json")
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_public_url_turns_on_hsts() {
    let srv = TestServer::start_with(Db::Sqlite, |c| {
        c.public_url = "https://vpn.example.com".into();
    })
    .await;
    let r = client()
        .get(format!("{}/healthz", srv.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    srv.stop().await;
}
