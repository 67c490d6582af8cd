//! Secrets at rest and backups (docs/backup.md, D41): the signing key sealed with the
//! secret key (a wrong or missing key stops the start and touches nothing; a plaintext
//! key is sealed in place), and backup → wipe → restore bringing a server back that its
//! node reconnects to with its existing credential, verifying snapshots with the key it
//! enrolled with. A cut-short or wrong-key archive changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clawn_proto::sealed::{self, SecretKey};
use clawn_server::backup::{self, BackupError};
use clawn_server::config::Config;
use clawn_server::{ServeError, keyfiles};
use clawn_testkit::node::Applied;
use clawn_testkit::{Db, TempDir, TestServer, fresh_database};
use reqwest::StatusCode;

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("clawn.db").display())
}

fn keyed(key: &SecretKey) -> impl FnOnce(&mut Config) + use<> {
    let key = key.clone();
    move |c: &mut Config| c.secret_key = Some(key)
}

/// The configuration the `backup`/`restore` subcommands would resolve for `dir`.
fn cli_config(dir: &Path, key: Option<&SecretKey>) -> Config {
    let mut c = Config::for_data_dir(dir);
    c.database_url = sqlite_url(dir);
    c.secret_key = key.cloned();
    c
}

/// Every file under `dir` with its bytes: what "nothing changed" is checked against.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

async fn build(config: Config) -> Result<clawn_server::app::AppState, ServeError> {
    let (_tx, rx) = tokio::sync::watch::channel(false);
    clawn_server::build_app(config, rx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_is_sealed_and_a_wrong_or_missing_key_stops_the_start() {
    let dir = TempDir::new("sealed");
    let url = fresh_database(Db::Sqlite, &dir.0).await;
    let key = SecretKey::generate();
    let srv = TestServer::start_at(Db::Sqlite, &dir.0, url.clone(), keyed(&key)).await;
    let public = srv.app.signer.verifying_key();
    srv.stop().await;
    let path = dir.0.join("signing.key");
    let on_disk = std::fs::read(&path).expect("signing.key");
    assert!(sealed::is_sealed(&on_disk), "created encrypted");

    // The same key again: the same signing key.
    let srv = TestServer::start_at(Db::Sqlite, &dir.0, url.clone(), keyed(&key)).await;
    assert_eq!(srv.app.signer.verifying_key(), public);
    srv.stop().await;

    // Another key, or none: a start-up error with a hint, and the file is not replaced.
    let before = snapshot(&dir.0);
    for (key, expect) in [
        (Some(SecretKey::generate()), "another key"),
        (None, "CLAWN_SECRET_KEY"),
    ] {
        let mut config = cli_config(&dir.0, key.as_ref());
        config.database_url = url.clone();
        let err = match build(config).await {
            Ok(_) => panic!("started with the wrong key"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expect) && err.contains("hint:"), "{err}");
        assert!(err.contains("signing.key"), "{err}");
    }
    assert_eq!(snapshot(&dir.0).get(&path), before.get(&path), "untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_signing_key_is_sealed_in_place_at_start() {
    let dir = TempDir::new("migrate");
    let url = fresh_database(Db::Sqlite, &dir.0).await;
    let srv = TestServer::start_at(Db::Sqlite, &dir.0, url.clone(), |_| {}).await;
    let public = srv.app.signer.verifying_key();
    srv.stop().await;
    let path = dir.0.join("signing.key");
    let plain = std::fs::read(&path).expect("signing.key");
    assert!(!sealed::is_sealed(&plain), "no key: plaintext, as before");

    let key = SecretKey::generate();
    let srv = TestServer::start_at(Db::Sqlite, &dir.0, url, keyed(&key)).await;
    assert_eq!(srv.app.signer.verifying_key(), public, "the same key");
    srv.stop().await;
    let sealed_bytes = std::fs::read(&path).expect("signing.key");
    assert!(sealed::is_sealed(&sealed_bytes), "encrypted in place");
    assert!(
        keyfiles::load_signing_key(&path, Some(&key)).is_ok(),
        "the key opens it"
    );
    assert!(keyfiles::load_signing_key(&path, None).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_wipe_restore_and_the_node_reconnects_without_enrolling() {
    let dir = TempDir::new("restore");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let archive = dir.0.join("clawn.backup");
    let key = SecretKey::generate();
    let srv = TestServer::start_at(Db::Sqlite, &data, sqlite_url(&data), keyed(&key)).await;
    let admin = srv.admin().await;
    let mut node = srv.region_with_node(&admin, "eu", "10.60.0.0/16").await;
    let (s, laptop, _) = admin.add_device("laptop", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{laptop}");
    let Applied::Delta { added, .. } = node
        .next_state(Duration::from_secs(10))
        .await
        .expect("laptop delta")
    else {
        panic!("expected a delta")
    };
    assert_eq!(added.len(), 1);
    let public = srv.app.signer.verifying_key();

    // Online: the server keeps serving while the copy is taken.
    let config = cli_config(&data, Some(&key));
    let report = backup::backup(&config, &archive, &[], |_| {})
        .await
        .expect("backup");
    assert_eq!(report.manifest.database, "sqlite");
    assert!(report.manifest.files.contains(&"clawn.db".to_string()));
    let bytes = std::fs::read(&archive).expect("archive");
    assert!(sealed::is_sealed(&bytes), "the archive is encrypted");

    // A change after the backup, which the node applies: the restore loses it, and the
    // node must still take the restored (older) state.
    let (s, phone, _) = admin.add_device("phone", "eu").await;
    assert_eq!(s, StatusCode::CREATED, "{phone}");
    node.next_state(Duration::from_secs(10))
        .await
        .expect("phone delta");
    let applied_before = node.applied.expect("applied");
    assert_eq!(node.peers.len(), 2);
    srv.stop().await;
    node.disconnect().await;

    // Disaster: the data directory is gone.
    std::fs::remove_dir_all(&data).expect("wipe");
    let mut lines = Vec::new();
    let restored = backup::restore(&config, &archive, false, None, |l| {
        lines.push(l.to_string())
    })
    .await
    .expect("restore");
    assert!(restored.written.contains(&data.join("clawn.db")));
    assert!(lines.iter().any(|l| l.contains("archive ok")), "{lines:?}");
    for file in ["clawn.db", "signing.key"] {
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(data.join(file))
                .expect("restored")
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    assert!(sealed::is_sealed(
        &std::fs::read(data.join("signing.key")).expect("key")
    ));

    // The server comes back with the same signing key and the node's enrollment.
    let srv = TestServer::start_at(Db::Sqlite, &data, sqlite_url(&data), keyed(&key)).await;
    assert_eq!(srv.app.signer.verifying_key(), public, "same signing key");
    node.use_server(&srv.url);
    node.connect()
        .await
        .expect("reconnect with the existing credential");
    let first = node
        .next_state(Duration::from_secs(10))
        .await
        .expect("a snapshot that verifies with the enrolled key");
    let Applied::Snapshot { version, peers } = first else {
        panic!("expected a snapshot, got {first:?}")
    };
    assert!(version > applied_before, "newer than what the node applied");
    assert_eq!(peers, 1, "the restored state: laptop, not phone");
    let admin = srv.admin().await;
    let nodes = admin
        .get_until("/api/v1/admin/nodes", Duration::from_secs(10), |n| {
            n[0]["acked_version"].as_u64() == Some(version)
        })
        .await;
    assert_eq!(
        nodes.as_array().map(Vec::len),
        Some(1),
        "no second enrollment"
    );
    assert_eq!(
        nodes[0]["id"].as_str(),
        Some(node.node_id.to_string().as_str())
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_short_or_wrong_key_archive_is_refused_and_changes_nothing() {
    let dir = TempDir::new("bad-archive");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let key = SecretKey::generate();
    let srv = TestServer::start_at(Db::Sqlite, &data, sqlite_url(&data), keyed(&key)).await;
    let admin = srv.admin().await;
    srv.region(&admin, "eu", "10.61.0.0/16").await;
    let config = cli_config(&data, Some(&key));
    let archive = dir.0.join("good.backup");
    backup::backup(&config, &archive, &[], |_| {})
        .await
        .expect("backup");
    srv.stop().await;
    let good = std::fs::read(&archive).expect("archive");

    // Restoring over live data needs --force.
    let before = snapshot(&data);
    let err = backup::restore(&config, &archive, false, None, |_| {})
        .await
        .expect_err("exists");
    assert!(matches!(err, BackupError::Exists { .. }), "{err}");

    // Cut short anywhere (in the header, mid-database, just before the end): refused,
    // even with --force, and the data directory is byte-for-byte what it was.
    let cut = dir.0.join("cut.backup");
    for at in [50, good.len() / 2, good.len() - 1] {
        std::fs::write(&cut, &good[..at]).expect("write");
        let err = backup::restore(&config, &cut, true, None, |_| {})
            .await
            .expect_err("truncated");
        let text = err.to_string();
        assert!(
            matches!(
                err,
                BackupError::Archive { .. } | BackupError::Sealed { .. }
            ),
            "cut at {at}: {text}"
        );
        assert!(text.contains("nothing was changed"), "{text}");
        assert_eq!(snapshot(&data), before, "cut at {at}: something changed");
    }

    // The wrong key: refused with a hint, nothing changed.
    let other = cli_config(&data, Some(&SecretKey::generate()));
    let err = backup::restore(&other, &archive, true, None, |_| {})
        .await
        .expect_err("wrong key");
    assert!(
        err.to_string().contains("another key") && err.to_string().contains("--identity"),
        "{err}"
    );
    assert_eq!(snapshot(&data), before);

    // Into an empty directory, a cut-short archive leaves nothing behind either.
    let empty = dir.0.join("empty");
    std::fs::write(&cut, &good[..good.len() - 1]).expect("write");
    let err = backup::restore(&cli_config(&empty, Some(&key)), &cut, false, None, |_| {})
        .await
        .expect_err("truncated");
    assert!(err.to_string().contains("nothing was changed"), "{err}");
    assert!(snapshot(&empty).is_empty(), "{:?}", snapshot(&empty).keys());

    // The good archive still restores, and an archive needs a recipient to be made.
    backup::restore(&config, &archive, true, None, |_| {})
        .await
        .expect("restore");
    let err = backup::backup(&cli_config(&data, None), &cut, &[], |_| {})
        .await
        .expect_err("no recipient");
    assert!(matches!(err, BackupError::NoRecipient), "{err}");
}

/// On PostgreSQL the archive holds the key material only (the database is `pg_dump`'s),
/// and restoring it puts the signing key back without touching the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_holds_the_key_material_only() {
    let dir = TempDir::new("pg-backup");
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let url = fresh_database(Db::Postgres, &dir.0).await;
    let key = SecretKey::generate();
    let srv = TestServer::start_at(Db::Postgres, &data, url.clone(), keyed(&key)).await;
    let public = srv.app.signer.verifying_key();
    srv.stop().await;
    let mut config = cli_config(&data, Some(&key));
    config.database_url = url.clone();
    let archive = dir.0.join("keys.backup");
    let report = backup::backup(&config, &archive, &[], |_| {})
        .await
        .expect("backup");
    assert_eq!(report.manifest.database, "postgres");
    assert_eq!(report.manifest.files, ["signing.key"]);

    // A SQLite server cannot take it; a PostgreSQL one gets its signing key back.
    let err = backup::restore(
        &cli_config(&dir.0.join("lite"), Some(&key)),
        &archive,
        false,
        None,
        |_| {},
    )
    .await
    .expect_err("no database in it");
    assert!(err.to_string().contains("pg_restore"), "{err}");
    std::fs::remove_file(data.join("signing.key")).expect("lose the key");
    let restored = backup::restore(&config, &archive, false, None, |_| {})
        .await
        .expect("restore");
    assert_eq!(restored.written, [data.join("signing.key")]);
    let srv = TestServer::start_at(Db::Postgres, &data, url, keyed(&key)).await;
    assert_eq!(srv.app.signer.verifying_key(), public);
    srv.stop().await;
}
