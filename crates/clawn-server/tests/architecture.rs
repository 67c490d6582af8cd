//! The layering rules of docs/architecture.md, checked on the source itself so a change
//! that breaks them fails here rather than in review:
//! - SQL text lives only in `store/`;
//! - write transactions are opened only by `store/` and `service/`;
//! - only `service::publish` hands a committed change to the hub (`NodeHub::notify` is
//!   crate-private and called from the hub's `Publisher` impl alone);
//! - handlers in `http/` do not call the store's mutating functions directly.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&root, &mut paths);
    paths.sort();
    assert!(paths.len() > 20, "found {} source files", paths.len());
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).expect("read"))
        })
        .collect()
}

fn offenders(allowed: impl Fn(&str) -> bool, needles: &[&str]) -> Vec<String> {
    offenders_except(allowed, needles, |_| false)
}

fn offenders_except(
    allowed: impl Fn(&str) -> bool,
    needles: &[&str],
    fine: impl Fn(&str) -> bool,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (file, text) in files() {
        if allowed(&file) {
            continue;
        }
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) && !fine(line) {
                bad.push(format!("src/{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    bad
}

#[test]
fn sql_lives_only_in_the_store() {
    let bad = offenders(
        |f| f.starts_with("store/"),
        &[
            "sqlx::query",
            "query_scalar(",
            "query_as::<",
            "\"SELECT ",
            "\"UPDATE ",
            "\"INSERT ",
            "\"DELETE ",
        ],
    );
    assert!(bad.is_empty(), "SQL outside store/:\n{}", bad.join("\n"));
}

#[test]
fn transactions_are_opened_by_store_and_service_only() {
    let bad = offenders(
        |f| f.starts_with("store/") || f.starts_with("service/"),
        &[".write().await"],
    );
    assert!(
        bad.is_empty(),
        "write transactions outside store/ and service/:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_service_publish_reaches_the_hub() {
    let bad = offenders(
        |f| f == "hub.rs" || f == "service/mod.rs",
        &[
            ".notify(",
            ".publisher.",
            "Publisher>::publish",
            ".publish(Node",
        ],
    );
    assert!(
        bad.is_empty(),
        "publication outside service::publish:\n{}",
        bad.join("\n")
    );
    let (_, service) = files()
        .into_iter()
        .find(|(f, _)| f == "service/mod.rs")
        .expect("service/mod.rs");
    assert_eq!(
        service.matches("app.publisher.publish(").count(),
        1,
        "exactly one call site hands changes to the publisher"
    );
}

#[test]
fn handlers_do_not_call_mutating_store_functions() {
    let bad = offenders_except(
        |f| !f.starts_with("http/"),
        &[
            "devices::create(",
            "devices::revoke(",
            "devices::rotate(",
            "devices::rename(",
            "routing::move_device(",
            "routing::ensure_placed(",
            "audit::record(",
            "store.write(",
        ],
        |line| line.contains("service::"),
    );
    assert!(
        bad.is_empty(),
        "handlers must call one service function instead:\n{}",
        bad.join("\n")
    );
}
