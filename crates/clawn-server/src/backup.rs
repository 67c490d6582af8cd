//! `clawn-server backup` and `restore`: one age-encrypted archive with a consistent copy
//! of the SQLite database and the key material.
//!
//! The archive is a tar stream inside an age file (docs/backup.md), so an operator can
//! also open it by hand with `age -d -i KEY FILE | tar x`. It holds `manifest.json`,
//! `signing.key` (its plaintext: the archive itself is encrypted), `node/identity.json`
//! when an all-in-one node exists, and `clawn.db` on SQLite. On PostgreSQL the database
//! is left to `pg_dump`, and the archive holds the key material alone.
//!
//! Restore reads and checks the whole archive before it writes anything: it must open
//! with the key given (age authenticates every chunk, and a cut-short file fails at its
//! end), hold a manifest, a signing key whose public half matches the manifest, and on
//! SQLite a database that passes `PRAGMA quick_check`. Only then are the files moved into
//! place, the key files re-sealed to the configured secret key (0600).

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::sealed::{self, Recipient, SealError, SecretKey};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::keyfiles::{self, KeyFileError};
use crate::store::StoreError;

/// The archive's layout version.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";
const SIGNING_KEY: &str = "signing.key";
const NODE_IDENTITY: &str = "node/identity.json";
const DATABASE: &str = "clawn.db";
/// How far a restore moves every node's desired-state version forward. A node refuses a
/// snapshot older than the one it applied (rollback protection), and it may have applied
/// versions made after the backup; this many changes to one node between a backup and
/// its restore are not expected.
pub const VERSION_JUMP: u64 = 1_000_000_000;
/// Bounds on the small entries (an archive is checked before it is trusted).
const SMALL_ENTRY_MAX: u64 = 1 << 20;

/// What the archive says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// Layout version ([`FORMAT`]).
    pub format: u32,
    /// When it was made, Unix ms.
    pub created_at_ms: i64,
    /// `sqlite` (the database is in the archive) or `postgres` (it is not: `pg_dump`).
    pub database: String,
    /// The signing key's public half (standard base64), to check a restore against.
    pub signing_public_key: String,
    /// The entries besides the manifest.
    pub files: Vec<String>,
}

/// Why a backup or restore stopped. Restore errors are raised before anything is
/// written, except [`BackupError::Write`].
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Nothing to encrypt the archive to.
    #[error(
        "the archive holds the signing key, so it must be encrypted: no secret key is set and no \
         --recipient was given\nhint: set CLAWN_SECRET_KEY or --secret-key-file, or pass \
         --recipient age1…"
    )]
    NoRecipient,
    /// A `--recipient` is not an age public key.
    #[error("--recipient: {0}")]
    Recipient(SealError),
    /// The key material could not be read.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The database could not be copied or checked.
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// A file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// The archive cannot be opened with the keys given.
    #[error(
        "cannot open {}: {source}\nhint: {hint}\nnothing was changed",
        .path.display()
    )]
    Sealed {
        /// The archive.
        path: PathBuf,
        /// Why.
        source: SealError,
        /// What to do.
        hint: &'static str,
    },
    /// The archive opened but is not a usable backup.
    #[error("{} is not a usable backup: {message}\nnothing was changed", .path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Restoring would replace existing data.
    #[error(
        "{} exists: restoring would replace it\nhint: stop the server and pass --force to \
         replace it\nnothing was changed",
        .path.display()
    )]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// Writing the restored files failed part-way (the checks had passed).
    #[error("writing {}: {source}\nhint: fix the cause and run the restore again with --force", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let what = what.into();
    move |source| BackupError::Io { what, source }
}

/// What [`backup`] wrote.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The manifest inside the archive.
    pub manifest: Manifest,
    /// The archive's size, bytes.
    pub bytes: u64,
    /// The public keys it is encrypted to.
    pub recipients: Vec<String>,
}

/// A file removed when dropped (the temporary database copy, a half-written archive).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Creates an empty 0600 file, failing if it exists.
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "clawn".into());
    path.with_file_name(format!(".{name}.{tag}-{}", uuid::Uuid::new_v4().simple()))
}

fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Writes the archive to `out`, encrypted to the configured secret key's public half
/// and to `extra` recipients. `progress` gets one line per step.
pub async fn backup(
    config: &Config,
    out: &Path,
    extra: &[String],
    mut progress: impl FnMut(&str),
) -> Result<BackupReport, BackupError> {
    let mut recipients: Vec<Recipient> = config.secret_key.iter().map(|k| k.recipient()).collect();
    for r in extra {
        recipients.push(r.parse().map_err(BackupError::Recipient)?);
    }
    if recipients.is_empty() {
        return Err(BackupError::NoRecipient);
    }
    let signing = keyfiles::load_signing_key(&config.signing_key_file, config.secret_key.as_ref())?;
    let identity_path = keyfiles::node_identity_path(&config.data_dir);
    let keys: Vec<&SecretKey> = config.secret_key.iter().collect();
    let node_identity = keyfiles::read(&identity_path, &keys)?;

    // The database first: a consistent copy taken while the server keeps serving.
    let copy = match config.sqlite_path() {
        Some(db) => {
            progress(&format!(
                "copying the SQLite database {} (online, VACUUM INTO)",
                db.display()
            ));
            let scratch = Scratch(sibling(&db, "backup"));
            drop(create_private(&scratch.0).map_err(io(format!(
                "creating the temporary copy {}",
                scratch.0.display()
            )))?);
            crate::store::backup::vacuum_into(&config.database_url, &scratch.0).await?;
            Some(scratch)
        }
        None => None,
    };

    let mut files = vec![SIGNING_KEY.to_string()];
    if node_identity.is_some() {
        files.push(NODE_IDENTITY.to_string());
    }
    if copy.is_some() {
        files.push(DATABASE.to_string());
    }
    let manifest = Manifest {
        format: FORMAT,
        created_at_ms: clawn_proto::time::now_millis(),
        database: if copy.is_some() { "sqlite" } else { "postgres" }.into(),
        signing_public_key: STANDARD.encode(signing.verifying_key().to_bytes()),
        files,
    };
    let manifest_json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        what: "encoding the manifest".into(),
        source: std::io::Error::other(e),
    })?;
    let signing_text = keyfiles::signing_key_text(&signing);

    progress(&format!("encrypting to {} recipient(s)", recipients.len()));
    let tmp = Scratch(sibling(out, "tmp"));
    let file = create_private(&tmp.0).map_err(io(format!("creating {}", tmp.0.display())))?;
    let sealing = sealed::seal_stream(&recipients, std::io::BufWriter::new(file)).map_err(|e| {
        BackupError::Io {
            what: "starting the encryption".into(),
            source: std::io::Error::other(e),
        }
    })?;
    let mut tar = tar::Builder::new(sealing);
    let writing = io(format!("writing {}", tmp.0.display()));
    let result = (|| -> std::io::Result<()> {
        append(&mut tar, MANIFEST, &manifest_json)?;
        append(&mut tar, SIGNING_KEY, signing_text.as_bytes())?;
        if let Some(id) = &node_identity {
            append(&mut tar, NODE_IDENTITY, &id.plaintext)?;
        }
        if let Some(copy) = &copy {
            let db = File::open(&copy.0)?;
            let len = db.metadata()?.len();
            let mut header = header(len);
            tar.append_data(&mut header, DATABASE, BufReader::new(db))?;
        }
        let sealing = tar.into_inner()?;
        let buffered = sealing.finish().map_err(std::io::Error::other)?;
        let file = buffered.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    })();
    result.map_err(writing)?;
    drop(copy);
    std::fs::rename(&tmp.0, out).map_err(io(format!("moving the archive to {}", out.display())))?;
    sync_parent(out).map_err(io(format!("syncing {}", out.display())))?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    Ok(BackupReport {
        manifest,
        bytes,
        recipients: recipients.iter().map(ToString::to_string).collect(),
    })
}

fn header(len: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(len);
    h.set_mode(0o600);
    h.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    h.set_cksum();
    h
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8]) -> std::io::Result<()> {
    let mut h = header(data.len() as u64);
    tar.append_data(&mut h, name, data)
}

/// What [`restore`] wrote.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// The archive's manifest.
    pub manifest: Manifest,
    /// The files written, in order.
    pub written: Vec<PathBuf>,
}

/// The archive's contents, read and checked, the database still in its staging file.
struct Staged {
    manifest: Manifest,
    signing: Vec<u8>,
    node_identity: Option<Vec<u8>>,
    database: Option<Scratch>,
}

/// Restores the archive at `from` into the configured data directory, database and
/// signing-key file. It opens with the configured secret key or `identity`. Refuses to
/// replace an existing database or signing key without `force`.
pub async fn restore(
    config: &Config,
    from: &Path,
    force: bool,
    identity: Option<&SecretKey>,
    mut progress: impl FnMut(&str),
) -> Result<RestoreReport, BackupError> {
    let db_path = config.sqlite_path();
    if !force {
        for path in db_path.iter().chain([&config.signing_key_file]) {
            if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
                return Err(BackupError::Exists { path: path.clone() });
            }
        }
    }
    let keys: Vec<&SecretKey> = config.secret_key.iter().chain(identity).collect();
    if keys.is_empty() {
        return Err(BackupError::Sealed {
            path: from.to_path_buf(),
            source: SealError::NoKey,
            hint: "give the secret key the archive was encrypted to: CLAWN_SECRET_KEY, \
                   --secret-key-file or --identity FILE",
        });
    }
    std::fs::create_dir_all(&config.data_dir)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
        })
        .map_err(io(format!("data directory {}", config.data_dir.display())))?;

    progress(&format!("decrypting and checking {}", from.display()));
    let staging_dir = db_path
        .as_deref()
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let staged = read_archive(from, &keys, &staging_dir.join(DATABASE))?;
    check(from, config, &staged).await?;
    let m = &staged.manifest;
    progress(&format!(
        "archive ok: {} database, made at {} (Unix ms), signing public key {}",
        m.database, m.created_at_ms, m.signing_public_key
    ));
    if let Some(copy) = &staged.database {
        let moved = crate::store::backup::advance_node_versions(&copy.0, VERSION_JUMP)
            .await
            .map_err(|e| BackupError::Archive {
                path: from.to_path_buf(),
                message: format!("the database copy cannot be updated: {e}"),
            })?;
        progress(&format!(
            "moved the desired-state version of {moved} node(s) forward by {VERSION_JUMP}, past \
             anything they applied after the backup"
        ));
    }

    // Everything checked: write.
    let mut written = Vec::new();
    let secret = config.secret_key.as_ref();
    let sealed_note = if secret.is_some() {
        "encrypted with the secret key"
    } else {
        "plaintext 0600: no secret key set"
    };
    let write_key = |path: &Path, bytes: &[u8]| {
        keyfiles::write(path, bytes, secret).map_err(|e| match e {
            KeyFileError::Io { path, source } => BackupError::Write { path, source },
            other => BackupError::KeyFile(other),
        })
    };
    if let (Some(db), Some(copy)) = (&db_path, &staged.database) {
        let failed = |source| BackupError::Write {
            path: db.clone(),
            source,
        };
        // A replaced database's write-ahead log must not be replayed onto the copy.
        for suffix in ["-wal", "-shm"] {
            let mut side = db.clone().into_os_string();
            side.push(suffix);
            match std::fs::remove_file(&side) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(failed(e)),
                _ => {}
            }
        }
        std::fs::rename(&copy.0, db).map_err(failed)?;
        sync_parent(db).map_err(failed)?;
        progress(&format!("restored the database to {}", db.display()));
        written.push(db.clone());
    }
    write_key(&config.signing_key_file, &staged.signing)?;
    progress(&format!(
        "restored the signing key to {} ({sealed_note})",
        config.signing_key_file.display()
    ));
    written.push(config.signing_key_file.clone());
    if let Some(id) = &staged.node_identity {
        let path = keyfiles::node_identity_path(&config.data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| BackupError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_key(&path, id)?;
        progress(&format!(
            "restored the all-in-one node identity to {} ({sealed_note})",
            path.display()
        ));
        written.push(path);
    }
    Ok(RestoreReport {
        manifest: staged.manifest,
        written,
    })
}

/// Decrypts and unpacks the archive, the database into a staging file beside `db`.
fn read_archive(from: &Path, keys: &[&SecretKey], db: &Path) -> Result<Staged, BackupError> {
    let bad = |message: String| BackupError::Archive {
        path: from.to_path_buf(),
        message,
    };
    let file = File::open(from).map_err(io(format!("opening {}", from.display())))?;
    let plain = sealed::open_stream(keys, BufReader::new(file)).map_err(|source| {
        let hint = match source {
            SealError::WrongKey => {
                "the archive was encrypted to another key: pass the key it was made with \
                 (--identity FILE, or the secret key before a rekey)"
            }
            SealError::NoKey => "give the secret key the archive was encrypted to",
            _ => "the file is not a Clawn backup, or it was cut short or damaged in transit",
        };
        BackupError::Sealed {
            path: from.to_path_buf(),
            source,
            hint,
        }
    })?;
    let mut archive = tar::Archive::new(plain);
    let damaged = |e: std::io::Error| bad(format!("truncated or damaged ({e})"));
    let mut manifest = None;
    let mut signing = None;
    let mut node_identity = None;
    let mut database = None;
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let name = entry
            .path()
            .map_err(damaged)?
            .to_string_lossy()
            .into_owned();
        let small = |entry: &mut tar::Entry<'_, _>| -> Result<Vec<u8>, BackupError> {
            if entry.size() > SMALL_ENTRY_MAX {
                return Err(bad(format!("{name} is too large")));
            }
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(damaged)?;
            Ok(buf)
        };
        match name.as_str() {
            MANIFEST => manifest = Some(small(&mut entry)?),
            SIGNING_KEY => signing = Some(small(&mut entry)?),
            NODE_IDENTITY => node_identity = Some(small(&mut entry)?),
            DATABASE => {
                let scratch = Scratch(sibling(db, "restore"));
                let mut out = create_private(&scratch.0)
                    .map_err(io(format!("creating {}", scratch.0.display())))?;
                std::io::copy(&mut entry, &mut out).map_err(damaged)?;
                out.sync_all()
                    .map_err(io(format!("writing {}", scratch.0.display())))?;
                database = Some(scratch);
            }
            other => return Err(bad(format!("unexpected entry `{other}`"))),
        }
    }
    // The tar end marker can come before the age stream's last chunk: read to the end,
    // so a cut-short file is caught by the final chunk's authentication.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(damaged)?;
    let manifest: Manifest =
        serde_json::from_slice(&manifest.ok_or_else(|| bad(format!("no {MANIFEST}")))?)
            .map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    Ok(Staged {
        manifest,
        signing: signing.ok_or_else(|| bad(format!("no {SIGNING_KEY}")))?,
        node_identity,
        database,
    })
}

/// Checks the staged archive against itself and the configuration.
async fn check(from: &Path, config: &Config, staged: &Staged) -> Result<(), BackupError> {
    let bad = |message: String| BackupError::Archive {
        path: from.to_path_buf(),
        message,
    };
    let m = &staged.manifest;
    if m.format != FORMAT {
        return Err(bad(format!(
            "layout version {} (this build reads {FORMAT})",
            m.format
        )));
    }
    let signing = keyfiles::parse_signing_key(Path::new(SIGNING_KEY), &staged.signing)
        .map_err(|e| bad(e.to_string()))?;
    if STANDARD.encode(signing.verifying_key().to_bytes()) != m.signing_public_key {
        return Err(bad(
            "the signing key does not match the manifest's public key".into(),
        ));
    }
    if let Some(id) = &staged.node_identity
        && serde_json::from_slice::<serde_json::Value>(id).is_err()
    {
        return Err(bad(format!("{NODE_IDENTITY} is not JSON")));
    }
    match (m.database.as_str(), config.is_sqlite(), &staged.database) {
        ("sqlite", true, Some(copy)) => {
            let verdict = crate::store::backup::quick_check(&copy.0)
                .await
                .map_err(|e| bad(format!("the database copy does not open: {e}")))?;
            if verdict != "ok" {
                return Err(bad(format!("the database copy is damaged: {verdict}")));
            }
            Ok(())
        }
        ("sqlite", true, None) => Err(bad(format!("no {DATABASE}"))),
        ("sqlite", false, _) => Err(bad(
            "it holds a SQLite database, but this server is configured for PostgreSQL \
             (set --database-url to a sqlite: URL to restore it)"
                .into(),
        )),
        ("postgres", false, None) => Ok(()),
        ("postgres", true, _) => Err(bad(
            "it was made on PostgreSQL and holds no database: set --database-url to the \
             PostgreSQL server and restore its dump with pg_restore (docs/backup.md)"
                .into(),
        )),
        (other, _, _) => Err(bad(format!("unknown database kind `{other}`"))),
    }
}

/// The command that dumps the PostgreSQL database to go with a key-only archive. It names
/// the variable, never the URL (which may hold a password).
pub const PG_DUMP_HINT: &str =
    "pg_dump --format=custom --file clawn.pgdump \"$CLAWN_DATABASE_URL\"";
/// The command that restores such a dump.
pub const PG_RESTORE_HINT: &str =
    "pg_restore --clean --if-exists --no-owner --dbname \"$CLAWN_DATABASE_URL\" clawn.pgdump";
