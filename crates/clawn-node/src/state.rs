//! The node's state directory: `identity.json` (who it is and whom it trusts) and
//! `state.json` (the last desired state it applied). Both 0600 in a 0700 directory,
//! written atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! With a secret key ([`StateDir::with_secret_key`]: `CLAWN_NODE_SECRET_KEY` or
//! `--secret-key-file`) `identity.json` is an age file sealed to it
//! ([`clawn_proto::sealed`]); a plaintext identity found on load is sealed in place, and
//! a sealed one without its key is an error, never a new identity. `state.json` holds no
//! secret and stays plaintext.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clawn_proto::node::{InterfaceSpec, NodePolicy, PeerSpec};
use clawn_proto::sealed::{self, SealError, SecretKey};
use clawn_proto::time::UnixMillis;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wireguard::BackendKind;

/// What enrollment produced. Holds secrets: the WireGuard private key, the identity key
/// and the stream credential.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// The node's id.
    pub node_id: Uuid,
    /// Base URL of the control plane.
    pub server_url: String,
    /// The stream credential (Bearer).
    pub credential: String,
    /// The control plane's snapshot-signing key (standard base64).
    pub signing_public_key: String,
    /// The node's ed25519 identity secret (standard base64).
    pub identity_secret: String,
    /// The node's WireGuard private key (standard base64).
    pub wg_private_key: String,
    /// Region joined.
    pub region: String,
    /// WireGuard backend.
    pub backend: BackendKind,
    /// Interface name.
    pub interface_name: String,
    /// Interface settings from enrollment (replaced by each snapshot).
    pub interface: InterfaceSpec,
    /// The announced endpoint.
    pub endpoint: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id)
            .field("server_url", &self.server_url)
            .field("region", &self.region)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Why the state directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be created or restricted to 0700.
    #[error("cannot create state directory {}", .path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node has not joined yet.
    #[error("no identity at {} — run `clawn-node join --server URL --token T` first", .path.display())]
    NoIdentity {
        /// Where the identity was looked for.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node has joined already: a node joins once.
    #[error("{} already holds an identity; use another --state-dir or remove it to re-join", .path.display())]
    IdentityExists {
        /// The identity file.
        path: PathBuf,
    },
    /// A file does not parse.
    #[error("corrupt {}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (temporary file, fsync, rename or directory fsync).
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The identity is sealed and the secret key given does not open it.
    #[error("cannot decrypt {}: {source}\nhint: {hint}", .path.display())]
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: SealError,
        /// What to do.
        hint: &'static str,
    },
    /// A value could not be serialised.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being written.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// The last applied desired state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    /// Version applied.
    pub version: u64,
    /// Interface settings.
    pub interface: InterfaceSpec,
    /// Policy.
    pub policy: NodePolicy,
    /// Peers.
    pub peers: Vec<PeerSpec>,
}

/// The state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    secret_key: Option<SecretKey>,
}

impl StateDir {
    /// Opens (creating with 0700) the directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)))
            .map_err(|source| StateError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            dir,
            secret_key: None,
        })
    }

    /// Seals the identity to `key` from now on (`None`: plaintext, as before).
    pub fn with_secret_key(mut self, key: Option<SecretKey>) -> Self {
        self.secret_key = key;
        self
    }

    /// Whether the identity is sealed with a secret key.
    pub fn is_sealed(&self) -> bool {
        self.secret_key.is_some()
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn identity_path(&self) -> PathBuf {
        self.dir.join("identity.json")
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    fn contact_path(&self) -> PathBuf {
        self.dir.join("last_contact")
    }

    /// When the control plane was last heard from (Unix ms), kept in its own small file
    /// so a restart does not extend the fail-closed deadline.
    pub fn load_last_contact(&self) -> Option<UnixMillis> {
        std::fs::read_to_string(self.contact_path())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Records contact with the control plane.
    pub fn save_last_contact(&self, at: UnixMillis) -> Result<(), StateError> {
        write_atomic(&self.contact_path(), at.to_string().as_bytes())
    }

    /// Whether the node has enrolled.
    pub fn has_identity(&self) -> bool {
        self.identity_path().exists()
    }

    /// Loads the identity. A plaintext identity is sealed in place when a secret key is
    /// set.
    pub fn load_identity(&self) -> Result<Identity, StateError> {
        let (id, was_sealed) = self.read_identity(self.secret_key.iter().collect())?;
        if let (Some(key), false) = (&self.secret_key, was_sealed) {
            self.write_identity(&id, Some(key))?;
            tracing::info!(path = %self.identity_path().display(), "encrypted the plaintext identity with the secret key");
        }
        Ok(id)
    }

    /// Re-encrypts the identity with `new` (opened with the current key, or already with
    /// `new` after an interrupted run). Returns whether anything was rewritten.
    pub fn rekey_identity(&self, new: &SecretKey) -> Result<bool, StateError> {
        let mut keys: Vec<&SecretKey> = self.secret_key.iter().collect();
        keys.push(new);
        let (id, was_sealed) = self.read_identity(keys)?;
        let path = self.identity_path();
        let already = was_sealed
            && std::fs::read(&path)
                .ok()
                .is_some_and(|b| sealed::open_at_rest(&b, &[new]).is_ok());
        if !already {
            self.write_identity(&id, Some(new))?;
        }
        Ok(!already)
    }

    fn read_identity(&self, keys: Vec<&SecretKey>) -> Result<(Identity, bool), StateError> {
        let path = self.identity_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(source) => return Err(StateError::NoIdentity { path, source }),
        };
        let at_rest = sealed::open_at_rest(&bytes, &keys).map_err(|source| {
            let hint = match source {
                SealError::NoKey => {
                    "the identity is encrypted: give the secret key it was encrypted with                      (CLAWN_NODE_SECRET_KEY or --secret-key-file)"
                }
                SealError::WrongKey => {
                    "give the secret key the identity was encrypted with; re-joining would                      make a new node"
                }
                _ => "the file is damaged: restore it from a copy, or re-join",
            };
            StateError::Sealed {
                path: path.clone(),
                source,
                hint,
            }
        })?;
        let id = serde_json::from_slice(&at_rest.plaintext)
            .map_err(|source| StateError::Corrupt { path, source })?;
        Ok((id, at_rest.sealed))
    }

    fn write_identity(&self, id: &Identity, key: Option<&SecretKey>) -> Result<(), StateError> {
        let path = self.identity_path();
        let bytes = serde_json::to_vec_pretty(id).map_err(|source| StateError::Encode {
            what: "identity",
            source,
        })?;
        let bytes = match key {
            Some(k) => k.seal(&bytes).map_err(|source| StateError::Sealed {
                path: path.clone(),
                source,
                hint: "the identity could not be encrypted",
            })?,
            None => bytes,
        };
        write_atomic(&path, &bytes)
    }

    /// Saves the identity (refuses to overwrite one: a node joins once).
    pub fn save_identity(&self, id: &Identity) -> Result<(), StateError> {
        if self.has_identity() {
            return Err(StateError::IdentityExists {
                path: self.identity_path(),
            });
        }
        self.write_identity(id, self.secret_key.as_ref())
    }

    /// Loads the last applied state, if any. A corrupt file is reported and ignored (the
    /// control plane sends a full snapshot on connect).
    pub fn load_applied(&self) -> Result<Option<Applied>, StateError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Corrupt { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }

    /// Saves the applied state atomically from its parts (no copy of the peers).
    pub fn save_applied_parts<'a>(
        &self,
        version: u64,
        interface: &'a InterfaceSpec,
        policy: &'a NodePolicy,
        peers: impl Iterator<Item = &'a PeerSpec> + Clone,
    ) -> Result<(), StateError> {
        #[derive(Serialize)]
        struct View<'a, I: Iterator<Item = &'a PeerSpec> + Clone> {
            version: u64,
            interface: &'a InterfaceSpec,
            policy: &'a NodePolicy,
            #[serde(serialize_with = "seq")]
            peers: I,
        }
        fn seq<'a, I, S>(it: &I, s: S) -> Result<S::Ok, S::Error>
        where
            I: Iterator<Item = &'a PeerSpec> + Clone,
            S: serde::Serializer,
        {
            s.collect_seq(it.clone())
        }
        let bytes = serde_json::to_vec(&View {
            version,
            interface,
            policy,
            peers,
        })
        .map_err(|source| StateError::Encode {
            what: "state",
            source,
        })?;
        write_atomic(&self.state_path(), &bytes)
    }

    /// Saves the applied state atomically.
    pub fn save_applied(&self, a: &Applied) -> Result<(), StateError> {
        self.save_applied_parts(a.version, &a.interface, &a.policy, a.peers.iter())
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old or the new file: a
/// 0600 temporary file beside it, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let failed = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().ok_or_else(|| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "path has no directory",
        ))
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|source| StateError::Write {
            path: tmp.clone(),
            source,
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(failed)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(failed)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("clawn-node-state-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&d).expect("tmp");
        d
    }

    #[test]
    fn files_are_private_and_round_trip() {
        let base = tmpdir();
        let sd = StateDir::open(base.join("s")).expect("open");
        let a = Applied {
            version: 7,
            interface: InterfaceSpec {
                listen_port: 1,
                address: "10.0.0.1/24".into(),
                pool: "10.0.0.0/24".into(),
            },
            policy: NodePolicy::default(),
            peers: vec![],
        };
        assert_eq!(sd.load_applied().expect("none"), None);
        sd.save_applied(&a).expect("save");
        assert_eq!(sd.load_applied().expect("load"), Some(a.clone()));
        // The borrowed writer produces the same file.
        sd.save_applied_parts(a.version, &a.interface, &a.policy, a.peers.iter())
            .expect("save parts");
        assert_eq!(sd.load_applied().expect("load"), Some(a));
        let mode = std::fs::metadata(sd.path().join("state.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(sd.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(dmode & 0o777, 0o700);
        // A corrupt file is an error with the path in it, not a silent reset.
        std::fs::write(sd.path().join("state.json"), b"{").expect("write");
        let err = sd.load_applied().expect_err("corrupt");
        assert!(format!("{err:#}").contains("state.json"));
        std::fs::remove_dir_all(base).expect("cleanup");
    }

    fn identity() -> Identity {
        Identity {
            node_id: Uuid::new_v4(),
            server_url: "http://127.0.0.1:1".into(),
            credential: "clawn_node_SECRETCREDENTIAL".into(),
            signing_public_key: "AAAA".into(),
            identity_secret: "SECRETIDENTITY".into(),
            wg_private_key: "SECRETWG".into(),
            region: "eu".into(),
            backend: BackendKind::Embedded,
            interface_name: "clawn0".into(),
            interface: InterfaceSpec {
                listen_port: 51820,
                address: "10.0.0.1/24".into(),
                pool: "10.0.0.0/24".into(),
            },
            endpoint: "192.0.2.1:51820".into(),
        }
    }

    fn on_disk(sd: &StateDir) -> Vec<u8> {
        std::fs::read(sd.path().join("identity.json")).expect("read identity")
    }

    #[test]
    fn identity_is_encrypted_at_rest_and_a_plaintext_one_is_migrated() {
        let base = tmpdir();
        let id = identity();
        // Written before a key was set: plaintext, and it keeps loading without a key.
        let plain = StateDir::open(base.join("s")).expect("open");
        plain.save_identity(&id).expect("save");
        assert!(!sealed::is_sealed(&on_disk(&plain)));
        assert_eq!(
            plain.load_identity().expect("load").credential,
            id.credential
        );

        // With a key, loading seals it in place; the secrets are gone from the file.
        let key = SecretKey::generate();
        let sd = plain.clone().with_secret_key(Some(key.clone()));
        assert_eq!(sd.load_identity().expect("migrate").node_id, id.node_id);
        let bytes = on_disk(&sd);
        assert!(sealed::is_sealed(&bytes));
        for secret in ["SECRETCREDENTIAL", "SECRETIDENTITY", "SECRETWG"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        }
        let mode = std::fs::metadata(sd.path().join("identity.json"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = sd.load_identity().expect("load sealed");
        assert_eq!(again.wg_private_key, id.wg_private_key);

        // No key, or the wrong one: an error that says so, and the file is untouched.
        let err = plain.load_identity().expect_err("no key");
        assert!(err.to_string().contains("CLAWN_NODE_SECRET_KEY"), "{err}");
        let wrong = plain.clone().with_secret_key(Some(SecretKey::generate()));
        let err = wrong.load_identity().expect_err("wrong key");
        assert!(
            matches!(
                err,
                StateError::Sealed {
                    source: SealError::WrongKey,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(on_disk(&sd), bytes);

        // Rotation: the new key opens it, the old one no longer does; a second run is a no-op.
        let new = SecretKey::generate();
        assert!(sd.rekey_identity(&new).expect("rekey"));
        assert!(
            sd.load_identity().is_err(),
            "the old key no longer opens it"
        );
        let rotated = plain.clone().with_secret_key(Some(new.clone()));
        assert_eq!(
            rotated.load_identity().expect("new key").node_id,
            id.node_id
        );
        assert!(!rotated.rekey_identity(&new).expect("again"));

        // Joining with a key writes it sealed from the start.
        let fresh = StateDir::open(base.join("t"))
            .expect("open")
            .with_secret_key(Some(key));
        fresh.save_identity(&id).expect("save");
        assert!(sealed::is_sealed(&on_disk(&fresh)));
        std::fs::remove_dir_all(base).expect("cleanup");
    }
}
