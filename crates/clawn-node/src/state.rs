//! The node's state directory: `identity.json` (who it is and whom it trusts) and
//! `state.json` (the last desired state it applied). Both 0600 in a 0700 directory,
//! written atomically (temporary file, fsync, rename, fsync of the directory).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clawn_proto::node::{InterfaceSpec, NodePolicy, PeerSpec};
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
        Ok(Self { dir })
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

    /// Loads the identity.
    pub fn load_identity(&self) -> Result<Identity, StateError> {
        let path = self.identity_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(source) => return Err(StateError::NoIdentity { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path, source })
    }

    /// Saves the identity (refuses to overwrite one: a node joins once).
    pub fn save_identity(&self, id: &Identity) -> Result<(), StateError> {
        if self.has_identity() {
            return Err(StateError::IdentityExists {
                path: self.identity_path(),
            });
        }
        let bytes = serde_json::to_vec_pretty(id).map_err(|source| StateError::Encode {
            what: "identity",
            source,
        })?;
        write_atomic(&self.identity_path(), &bytes)
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
}
