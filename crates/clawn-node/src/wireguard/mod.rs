//! WireGuard backends behind one interface.
//!
//! Every backend manages exactly one interface with one UDP port for all peers. The agent
//! only ever asks three things of it: set the interface up ([`Backend::init`]), tell what
//! peers it has ([`Backend::read`]) and apply a plan of removals and upserts
//! ([`Backend::apply`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clawn_proto::keys::{WgKeyPair, WgPublicKey};
use clawn_proto::time::UnixMillis;
use ipnet::Ipv4Net;

#[cfg(feature = "embedded")]
pub mod embedded;
pub mod kernel;
pub mod link;
pub mod uapi;

/// Which WireGuard implementation a node drives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Linux kernel WireGuard over generic netlink.
    Kernel,
    /// Any userspace implementation speaking the cross-platform UAPI on a unix socket
    /// (wireguard-go is the reference). Started by the agent if its socket is absent.
    Uapi,
    /// Userspace WireGuard inside the agent (boringtun) on a TUN device.
    Embedded,
}

impl BackendKind {
    /// The capability string announced at enrollment.
    pub fn capability(self) -> &'static str {
        use clawn_proto::node::capability::*;
        match self {
            Self::Kernel => BACKEND_KERNEL,
            Self::Uapi => BACKEND_UAPI,
            Self::Embedded => BACKEND_EMBEDDED,
        }
    }

    /// The default for this machine: kernel where the module is loaded or loadable,
    /// embedded otherwise.
    pub fn detect() -> Self {
        if kernel::module_available() {
            Self::Kernel
        } else {
            Self::Embedded
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::Uapi => "uapi",
            Self::Embedded => "embedded",
        })
    }
}

/// Interface settings applied at start.
#[derive(Debug, Clone)]
pub struct IfaceConfig {
    /// Interface name (validated by [`valid_ifname`]).
    pub name: String,
    /// The node's WireGuard key pair.
    pub key: WgKeyPair,
    /// UDP listen port.
    pub listen_port: u16,
    /// The node's tunnel address with the pool prefix.
    pub address: Ipv4Net,
    /// For the uapi backend: the userspace implementation to start when its socket is
    /// absent (`None` = expect it to be running).
    pub userspace_bin: Option<PathBuf>,
}

/// One peer as the interface has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    /// Public key.
    pub public_key: WgPublicKey,
    /// Allowed IPs.
    pub allowed_ips: Vec<Ipv4Net>,
    /// Last endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Last handshake, Unix ms.
    pub last_handshake: Option<UnixMillis>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
}

/// What a backend can do.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    /// Whether an existing peer's allowed IPs can be replaced in place (boringtun cannot:
    /// it panics, so such a change is a remove and an add).
    pub update_in_place: bool,
}

/// A plan: removals first, then upserts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ops {
    /// Peers to remove.
    pub remove: Vec<WgPublicKey>,
    /// Peers to add, or whose allowed IPs to replace.
    pub upsert: Vec<(WgPublicKey, Vec<Ipv4Net>)>,
}

impl Ops {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.upsert.is_empty()
    }
}

/// Errors of a backend.
#[derive(Debug, thiserror::Error)]
pub enum WgError {
    /// I/O with the implementation failed.
    #[error("wireguard I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The implementation answered with an error number.
    #[error("wireguard refused the change (errno {0})")]
    Errno(i64),
    /// The implementation's answer could not be parsed.
    #[error("wireguard protocol: {0}")]
    Protocol(String),
    /// Setting up the interface failed.
    #[error("interface setup: {0}")]
    Setup(String),
}

/// A WireGuard implementation the agent drives.
pub enum Backend {
    /// UAPI over a unix socket.
    Uapi(uapi::UapiBackend),
    /// Embedded boringtun.
    #[cfg(feature = "embedded")]
    Embedded(embedded::EmbeddedBackend),
    /// Kernel netlink.
    Kernel(kernel::KernelBackend),
}

impl Backend {
    /// Creates the interface (or attaches to it) and applies key and port. Idempotent.
    pub async fn open(kind: BackendKind, cfg: &IfaceConfig) -> Result<Self, WgError> {
        if !valid_ifname(&cfg.name) {
            return Err(WgError::Setup(format!(
                "invalid interface name {:?}: 1-15 of [A-Za-z0-9_.-]",
                cfg.name
            )));
        }
        let backend = match kind {
            BackendKind::Uapi => Self::Uapi(uapi::UapiBackend::open(cfg).await?),
            #[cfg(feature = "embedded")]
            BackendKind::Embedded => Self::Embedded(embedded::EmbeddedBackend::open(cfg).await?),
            #[cfg(not(feature = "embedded"))]
            BackendKind::Embedded => {
                return Err(WgError::Setup(
                    "this build has no embedded backend (feature `embedded`)".into(),
                ));
            }
            BackendKind::Kernel => Self::Kernel(kernel::KernelBackend::open(cfg).await?),
        };
        link::configure(&cfg.name, cfg.address).await?;
        Ok(backend)
    }

    /// What the backend can do.
    pub fn caps(&self) -> Caps {
        match self {
            Self::Uapi(_) | Self::Kernel(_) => Caps {
                update_in_place: true,
            },
            #[cfg(feature = "embedded")]
            Self::Embedded(_) => Caps {
                update_in_place: false,
            },
        }
    }

    /// The peers the interface has now.
    pub async fn read(&mut self) -> Result<Vec<PeerState>, WgError> {
        match self {
            Self::Uapi(b) => b.read().await,
            #[cfg(feature = "embedded")]
            Self::Embedded(b) => b.conn.read().await,
            Self::Kernel(b) => b.read().await,
        }
    }

    /// Applies a plan.
    pub async fn apply(&mut self, ops: &Ops) -> Result<(), WgError> {
        if ops.is_empty() {
            return Ok(());
        }
        match self {
            Self::Uapi(b) => b.apply(ops).await,
            #[cfg(feature = "embedded")]
            Self::Embedded(b) => b.conn.apply(ops).await,
            Self::Kernel(b) => b.apply(ops).await,
        }
    }

    /// Removes every peer (fail-closed).
    pub async fn remove_all(&mut self) -> Result<(), WgError> {
        let peers = self.read().await?;
        let ops = Ops {
            remove: peers.into_iter().map(|p| p.public_key).collect(),
            upsert: vec![],
        };
        self.apply(&ops).await
    }
}

/// Interface names the agent accepts: what Linux accepts, minus anything odd.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!(valid_ifname("wg0"));
        assert!(valid_ifname("clawn-n1.a_b"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a-very-long-name-x"));
        assert!(!valid_ifname("wg0;rm"));
        assert!(!valid_ifname("wg 0"));
        assert!(!valid_ifname("../x"));
        assert!(!valid_ifname(".."));
    }
}
