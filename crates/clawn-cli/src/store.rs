//! Local state of the CLI: the config directory, the saved session and the device private keys.
//!
//! Everything secret lives under one directory (mode `0700`), each file mode `0600`:
//!
//! ```text
//! <config dir>/clawn/            CLAWN_CONFIG_DIR overrides it
//!   credentials.json             {server, token, email}: the session `clawn login` saved
//!   keys/<device-id>.key         the device's WireGuard private key (base64, like `wg genkey`)
//!   keys/<device-id>.key.new     a rotation key, until the server accepted its public half
//!   keys/pending-<hex>.key       a new device's key, until the server told us the device id
//! ```
//!
//! Keys are written to a pending file *before* the request that registers their public half, and
//! renamed into place only after the server accepted it. So a key the server knows is never lost
//! by a crash or a dropped connection, and a key the server refused never replaces a working one.
//! [`Store::find_key`] matches candidates by public key, which also recovers pending files left
//! behind by an interrupted command.
//!
//! Files are written atomically (temporary file in the same directory, then rename), created with
//! their final permissions, so a secret is never readable by others, not even for a moment.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use clawn_proto::{WgKeyPair, WgPublicKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// File name of the saved session.
const CREDENTIALS_FILE: &str = "credentials.json";
/// Sub-directory of the device keys.
const KEYS_DIR: &str = "keys";

/// Errors of the local store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Neither `--config-dir`/`CLAWN_CONFIG_DIR` nor a platform config directory is available.
    #[error("cannot find a configuration directory; set CLAWN_CONFIG_DIR")]
    NoConfigDir,
    /// A file or directory operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. `cannot write`.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A stored file is not what we wrote.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl StoreError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NoConfigDir => Some("pass --config-dir DIR or set CLAWN_CONFIG_DIR".into()),
            Self::Corrupt { path, .. } if path.ends_with(CREDENTIALS_FILE) => Some(format!(
                "remove {} and run `clawn login` again",
                path.display()
            )),
            _ => None,
        }
    }
}

/// A string that must never be printed: session tokens, private keys, passwords.
///
/// `Debug` shows `<redacted>`; the value is reachable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the one place that needs it (a header, a file).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The session `clawn login` saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// The control-plane URL the token belongs to (normalised, no trailing slash).
    pub server: String,
    /// The bearer token.
    pub token: Secret,
    /// Who signed in.
    pub email: String,
}

/// A key written to a pending file, waiting for the server to accept its public half.
#[derive(Debug)]
pub struct PendingKey {
    path: PathBuf,
}

impl PendingKey {
    /// Where the pending key is, to tell the user when the outcome is unknown.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`Store::find_key`] found for a device.
#[derive(Debug)]
pub enum KeyLookup {
    /// A stored private key whose public half is the device's current key.
    Found(WgKeyPair),
    /// A key is stored, but it belongs to an older public key (the device was rotated elsewhere).
    Stale(PathBuf),
    /// No key for this device on this machine.
    Missing(PathBuf),
}

/// The CLI's configuration directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// Opens the store at `dir`, or at the platform config directory + `clawn` when `None`.
    /// Nothing is created until something is written.
    pub fn open(dir: Option<PathBuf>) -> Result<Self, StoreError> {
        let dir = match dir {
            Some(d) => d,
            None => dirs::config_dir()
                .ok_or(StoreError::NoConfigDir)?
                .join("clawn"),
        };
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn credentials_path(&self) -> PathBuf {
        self.dir.join(CREDENTIALS_FILE)
    }

    fn keys_dir(&self) -> PathBuf {
        self.dir.join(KEYS_DIR)
    }

    /// Path of a device's private key file.
    pub fn key_path(&self, device: Uuid) -> PathBuf {
        self.keys_dir().join(format!("{device}.key"))
    }

    fn rotation_path(&self, device: Uuid) -> PathBuf {
        self.keys_dir().join(format!("{device}.key.new"))
    }

    // ------------------------------------------------------------ session

    /// The saved session, if there is one.
    pub fn load_credentials(&self) -> Result<Option<Credentials>, StoreError> {
        let path = self.credentials_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("cannot read", &path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: e.to_string(),
            })
    }

    /// Saves the session (mode 0600).
    pub fn save_credentials(&self, creds: &Credentials) -> Result<(), StoreError> {
        ensure_private_dir(&self.dir)?;
        let path = self.credentials_path();
        let mut text = serde_json::to_string_pretty(creds).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        text.push('\n');
        write_private_file(&path, text.as_bytes())
    }

    /// Forgets the session. Returns whether there was one.
    pub fn remove_credentials(&self) -> Result<bool, StoreError> {
        remove_if_exists(&self.credentials_path())
    }

    // ------------------------------------------------------------ device keys

    /// Whether a private key is stored for `device` (without reading it).
    pub fn has_key(&self, device: Uuid) -> bool {
        self.key_path(device).is_file()
    }

    /// Writes the key of a device about to be created to a pending file.
    pub fn stash_new_device_key(&self, key: &WgKeyPair) -> Result<PendingKey, StoreError> {
        let dir = self.keys_dir();
        ensure_private_dir(&self.dir)?;
        ensure_private_dir(&dir)?;
        let hex = key.public().to_hex();
        let path = dir.join(format!("pending-{}.key", &hex[..16]));
        write_private_file(&path, key_file_contents(key).as_bytes())?;
        Ok(PendingKey { path })
    }

    /// Writes a rotation key of `device` next to the current one.
    pub fn stash_rotation_key(
        &self,
        device: Uuid,
        key: &WgKeyPair,
    ) -> Result<PendingKey, StoreError> {
        ensure_private_dir(&self.dir)?;
        ensure_private_dir(&self.keys_dir())?;
        let path = self.rotation_path(device);
        write_private_file(&path, key_file_contents(key).as_bytes())?;
        Ok(PendingKey { path })
    }

    /// The server accepted the pending key: make it the device's key (replacing any older one
    /// atomically). Returns the final path.
    pub fn commit_key(&self, pending: &PendingKey, device: Uuid) -> Result<PathBuf, StoreError> {
        let dest = self.key_path(device);
        fs::rename(&pending.path, &dest)
            .map_err(|e| StoreError::io("cannot store key at", &dest, e))?;
        Ok(dest)
    }

    /// The server refused the pending key: delete it.
    pub fn discard_key(&self, pending: &PendingKey) -> Result<(), StoreError> {
        remove_if_exists(&pending.path).map(|_| ())
    }

    /// Finds the private key of `device` whose public half is `public`: the stored key, or a
    /// pending one left by an interrupted `add`/`rotate` (which is then moved into place).
    pub fn find_key(&self, device: Uuid, public: &WgPublicKey) -> Result<KeyLookup, StoreError> {
        let main = self.key_path(device);
        let main_key = read_key_file(&main)?;
        let has_main = main_key.is_some();
        if let Some(k) = main_key
            && k.public() == *public
        {
            return Ok(KeyLookup::Found(k));
        }
        for candidate in self.pending_candidates(device)? {
            if let Some(k) = read_key_file(&candidate)?
                && k.public() == *public
            {
                fs::rename(&candidate, &main)
                    .map_err(|e| StoreError::io("cannot store key at", &main, e))?;
                return Ok(KeyLookup::Found(k));
            }
        }
        Ok(if has_main {
            KeyLookup::Stale(main)
        } else {
            KeyLookup::Missing(main)
        })
    }

    fn pending_candidates(&self, device: Uuid) -> Result<Vec<PathBuf>, StoreError> {
        let mut out = vec![self.rotation_path(device)];
        let dir = self.keys_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("cannot list", &dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("cannot list", &dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("pending-") && name.ends_with(".key") {
                out.push(entry.path());
            }
        }
        Ok(out)
    }

    /// Deletes every key stored for `device` (after revocation). Returns whether one existed.
    pub fn remove_keys(&self, device: Uuid) -> Result<bool, StoreError> {
        let removed = remove_if_exists(&self.key_path(device))?;
        let removed_new = remove_if_exists(&self.rotation_path(device))?;
        Ok(removed || removed_new)
    }
}

fn key_file_contents(key: &WgKeyPair) -> String {
    format!("{}\n", key.private_base64())
}

/// Reads a key file; `None` if it does not exist.
fn read_key_file(path: &Path) -> Result<Option<WgKeyPair>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("cannot read", path, e)),
    };
    WgKeyPair::from_private_base64(text.trim())
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

fn remove_if_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("cannot remove", path, e)),
    }
}

/// Creates `dir` (and its parents) with mode 0700, or tightens an existing one to 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| StoreError::io("cannot create directory", dir, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let meta = fs::metadata(dir).map_err(|e| StoreError::io("cannot inspect", dir, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| StoreError::io("cannot restrict permissions of", dir, e))?;
        }
    }
    Ok(())
}

/// Writes `contents` to `path` atomically, readable and writable by the owner only (0600).
///
/// The data goes to a new temporary file in the same directory, created with mode 0600, which
/// then replaces `path`. An existing file at `path` with wider permissions is replaced, not
/// reused, so its old mode does not leak onto the secret.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(
        ".{file_name}.tmp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io("cannot write", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TempDir;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    fn store(t: &TempDir) -> Store {
        Store::open(Some(t.path().join("cfg"))).expect("store")
    }

    #[test]
    fn credentials_round_trip_and_debug_hides_token() {
        let t = TempDir::new("creds");
        let s = store(&t);
        assert_eq!(s.load_credentials().expect("load"), None);
        let c = Credentials {
            server: "https://vpn.example.com".into(),
            token: Secret::new("tok-123"),
            email: "a@example.com".into(),
        };
        s.save_credentials(&c).expect("save");
        assert_eq!(s.load_credentials().expect("load"), Some(c.clone()));
        assert!(!format!("{c:?}").contains("tok-123"));
        let json = fs::read_to_string(s.dir().join(CREDENTIALS_FILE)).expect("read");
        assert!(json.contains("\"token\": \"tok-123\""), "{json}");
        assert!(s.remove_credentials().expect("rm"));
        assert!(!s.remove_credentials().expect("rm"));
    }

    #[test]
    fn corrupt_credentials_say_where_and_what_to_do() {
        let t = TempDir::new("corrupt");
        let s = store(&t);
        ensure_private_dir(s.dir()).expect("dir");
        fs::write(s.dir().join(CREDENTIALS_FILE), "{not json").expect("write");
        let err = s.load_credentials().expect_err("corrupt");
        assert!(
            err.to_string().contains("credentials.json is corrupt"),
            "{err}"
        );
        assert!(err.hint().is_some_and(|h| h.contains("clawn login")));
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_0600_in_0700_dirs() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = TempDir::new("perms");
        let s = store(&t);
        s.save_credentials(&Credentials {
            server: "https://x".into(),
            token: Secret::new("t"),
            email: "e".into(),
        })
        .expect("save");
        assert_eq!(mode(s.dir()), 0o700);
        assert_eq!(mode(&s.dir().join(CREDENTIALS_FILE)), 0o600);

        let kp = WgKeyPair::generate();
        let id = Uuid::new_v4();
        let pending = s.stash_new_device_key(&kp).expect("stash");
        assert_eq!(mode(pending.path()), 0o600);
        let path = s.commit_key(&pending, id).expect("commit");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&s.dir().join(KEYS_DIR)), 0o700);

        // An existing world-readable file is replaced by a 0600 one.
        let out = t.path().join("dev.conf");
        fs::write(&out, "old").expect("write");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private_file(&out, b"new").expect("write");
        assert_eq!(mode(&out), 0o600);
        assert_eq!(fs::read_to_string(&out).expect("read"), "new");

        // A pre-existing loose directory is tightened.
        let loose = t.path().join("loose");
        fs::create_dir_all(&loose).expect("mkdir");
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(&loose).expect("tighten");
        assert_eq!(mode(&loose), 0o700);

        // No temporary files are left behind.
        let leftovers: Vec<_> = fs::read_dir(t.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn rotation_replaces_key_only_when_committed() {
        let t = TempDir::new("rotate");
        let s = store(&t);
        let id = Uuid::new_v4();
        let old = WgKeyPair::generate();
        let p = s.stash_new_device_key(&old).expect("stash");
        s.commit_key(&p, id).expect("commit");

        // Refused rotation: the old key stays.
        let refused = WgKeyPair::generate();
        let p = s.stash_rotation_key(id, &refused).expect("stash");
        s.discard_key(&p).expect("discard");
        assert!(
            matches!(s.find_key(id, &old.public()).expect("find"), KeyLookup::Found(k) if k.public() == old.public())
        );

        // Accepted rotation: the new key replaces it and the old public key is now stale.
        let new = WgKeyPair::generate();
        let p = s.stash_rotation_key(id, &new).expect("stash");
        s.commit_key(&p, id).expect("commit");
        assert!(
            matches!(s.find_key(id, &new.public()).expect("find"), KeyLookup::Found(k) if k.public() == new.public())
        );
        assert!(matches!(
            s.find_key(id, &old.public()).expect("find"),
            KeyLookup::Stale(_)
        ));
        assert!(matches!(
            s.find_key(Uuid::new_v4(), &old.public()).expect("find"),
            KeyLookup::Missing(_)
        ));

        assert!(s.remove_keys(id).expect("rm"));
        assert!(!s.has_key(id));
    }

    #[test]
    fn interrupted_commands_are_recovered_by_public_key() {
        let t = TempDir::new("recover");
        let s = store(&t);
        let id = Uuid::new_v4();
        // `add` stashed the key, the server created the device, the answer was lost.
        let kp = WgKeyPair::generate();
        let pending = s.stash_new_device_key(&kp).expect("stash");
        let pending_path = pending.path().to_path_buf();
        drop(pending);
        assert!(!s.has_key(id));
        assert!(
            matches!(s.find_key(id, &kp.public()).expect("find"), KeyLookup::Found(k) if k.public() == kp.public())
        );
        assert!(s.has_key(id));
        assert!(!pending_path.exists());

        // `rotate` stashed a key, the server switched, the answer was lost.
        let rotated = WgKeyPair::generate();
        let _ = s.stash_rotation_key(id, &rotated).expect("stash");
        assert!(
            matches!(s.find_key(id, &rotated.public()).expect("find"), KeyLookup::Found(k) if k.public() == rotated.public())
        );
        assert!(matches!(
            s.find_key(id, &kp.public()).expect("find"),
            KeyLookup::Stale(_)
        ));
    }

    #[test]
    fn corrupt_key_file_is_reported() {
        let t = TempDir::new("badkey");
        let s = store(&t);
        let id = Uuid::new_v4();
        ensure_private_dir(&s.keys_dir()).expect("dir");
        fs::write(s.key_path(id), "garbage").expect("write");
        let err = s
            .find_key(id, &WgKeyPair::generate().public())
            .expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt { .. }));
    }
}
