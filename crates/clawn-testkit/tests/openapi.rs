//! The OpenAPI document served by the server is the committed `docs/openapi.json`, so
//! every API change shows up in review. Regenerate with `CLAWN_UPDATE_SNAPSHOTS=1`.

use clawn_testkit::{Db, TestServer};
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_matches_the_committed_snapshot() {
    let srv = TestServer::start(Db::Sqlite).await;
    let (s, doc) = srv.anon().get("/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let served = serde_json::to_string_pretty(&doc).expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var("CLAWN_UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &served).expect("write snapshot");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == served,
        "the API changed: review it, then run `CLAWN_UPDATE_SNAPSHOTS=1 cargo nextest run -p clawn-testkit --test openapi` \
         and commit docs/openapi.json"
    );
    // Every error answer is documented with the shared error body.
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 30, "{} paths", paths.len());
    for (path, ops) in paths {
        for (method, op) in ops.as_object().expect("ops") {
            let responses = op["responses"].as_object().expect("responses");
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    let schema = &r["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(
                        schema, "#/components/schemas/ApiError",
                        "{method} {path} {code}"
                    );
                }
            }
        }
    }
}
