//! The node protocol: enrollment, the desired-state stream and telemetry.
//!
//! A node enrolls once over HTTPS (`POST /api/v1/node/enroll`) with a one-time join token
//! and gets back its id, a long-lived credential and the control plane's snapshot-signing
//! public key. It then holds a WebSocket at `GET /api/v1/node/stream` (Bearer credential).
//! Down that socket come [`ServerMessage`]s: first a full signed [`Snapshot`] of the
//! node's desired state, then signed [`Delta`]s as the node's version advances. Up the
//! socket go [`NodeMessage`]s: acknowledgements of the version applied, telemetry, and
//! requests for a fresh full snapshot.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::WgPublicKey;
use crate::sign::Signed;
use crate::time::UnixMillis;

/// Path of the enrollment endpoint.
pub const ENROLL_PATH: &str = "/api/v1/node/enroll";
/// Path of the node stream (WebSocket).
pub const STREAM_PATH: &str = "/api/v1/node/stream";

/// Capabilities a node may announce at enrollment.
pub mod capability {
    /// The node forwards clients' traffic to the outside and masquerades it.
    pub const EXIT: &str = "exit";
    /// Kernel WireGuard backend.
    pub const BACKEND_KERNEL: &str = "backend:kernel";
    /// Userspace WireGuard over the UAPI socket.
    pub const BACKEND_UAPI: &str = "backend:uapi";
    /// Embedded userspace WireGuard.
    pub const BACKEND_EMBEDDED: &str = "backend:embedded";
}

/// `POST /api/v1/node/enroll` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time join token an admin created for this node's region.
    pub token: String,
    /// Human name for the node (defaults to a generated one).
    #[serde(default)]
    pub name: Option<String>,
    /// The node's WireGuard public key (generated on the node).
    pub wg_public_key: WgPublicKey,
    /// The node's ed25519 identity public key, standard base64 (generated on the node).
    pub identity_public_key: String,
    /// Public endpoint clients dial, `host:port`.
    pub endpoint: String,
    /// UDP port the WireGuard interface listens on.
    pub listen_port: u16,
    /// Announced capabilities (see [`capability`]).
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// The IPv4 address the node's clients appear from on the internet, if known.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub exit_ipv4: Option<Ipv4Addr>,
}

/// `POST /api/v1/node/enroll` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    /// The node's id.
    pub node_id: Uuid,
    /// The node's credential for the stream (Bearer). Shown once; stored only hashed.
    pub credential: String,
    /// The control plane's ed25519 snapshot-signing public key, standard base64.
    pub signing_public_key: String,
    /// The region the node joined.
    pub region: String,
    /// The node's interface as the control plane sees it.
    pub interface: InterfaceSpec,
}

/// The node's WireGuard interface settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InterfaceSpec {
    /// UDP listen port.
    pub listen_port: u16,
    /// The node's own tunnel address with the pool's prefix, e.g. `10.100.0.1/18`.
    pub address: String,
    /// The address pool peers are allocated from, e.g. `10.100.0.0/18`.
    pub pool: String,
}

/// Per-node policy carried in every snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodePolicy {
    /// Clients of this node may not reach each other's tunnel addresses.
    pub client_isolation: bool,
    /// How long the node may serve its last snapshot without the control plane before
    /// it fails closed and removes all peers. `0` = forever.
    pub offline_grace_secs: u64,
}

impl Default for NodePolicy {
    fn default() -> Self {
        Self {
            client_isolation: true,
            offline_grace_secs: 0,
        }
    }
}

/// One WireGuard peer the node must have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerSpec {
    /// The device's public key.
    pub public_key: WgPublicKey,
    /// Allowed IPs on the node side: the device's tunnel address as a /32.
    pub allowed_ips: Vec<String>,
    /// The device this peer belongs to (for telemetry correlation; never a user id).
    pub device_id: Uuid,
    /// Service class: `priority` while the owner holds a valid priority access token for
    /// the node's region, otherwise `standard`. A class change never re-adds the peer
    /// (its session stays up); it arrives in [`Delta::update`].
    #[serde(default, skip_serializing_if = "PeerClass::is_standard")]
    pub class: PeerClass,
}

/// A peer's service class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PeerClass {
    /// Ordinary routing.
    #[default]
    Standard,
    /// Fast lane: placed on the best node with headroom.
    Priority,
}

impl PeerClass {
    /// Whether this is the default class (omitted on the wire).
    pub fn is_standard(&self) -> bool {
        matches!(self, Self::Standard)
    }
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Priority => "priority",
        }
    }
}

/// A full desired state for one node at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    /// The node this state is for; a node rejects any other.
    pub node_id: Uuid,
    /// Monotonic desired-state version.
    pub version: u64,
    /// When the control plane signed it.
    pub issued_at: UnixMillis,
    /// Interface settings.
    pub interface: InterfaceSpec,
    /// Policy.
    pub policy: NodePolicy,
    /// Every peer the node must have; any other peer must be removed.
    pub peers: Vec<PeerSpec>,
}

/// The change from one version to the next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Delta {
    /// The node this change is for.
    pub node_id: Uuid,
    /// The version this delta applies on top of.
    pub from_version: u64,
    /// The version after applying it.
    pub to_version: u64,
    /// When the control plane signed it.
    pub issued_at: UnixMillis,
    /// Peers to remove (by public key). Applied before `add`.
    pub remove: Vec<WgPublicKey>,
    /// Peers to add or update.
    pub add: Vec<PeerSpec>,
    /// Peers that stay, with a changed attribute (their class). The node records the new
    /// spec without touching the WireGuard peer, so the session is not interrupted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub update: Vec<PeerSpec>,
}

/// What a signed payload carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DesiredState {
    /// A full snapshot.
    Snapshot(Snapshot),
    /// A delta.
    Delta(Delta),
}

impl DesiredState {
    /// The node the state is addressed to.
    pub fn node_id(&self) -> Uuid {
        match self {
            Self::Snapshot(s) => s.node_id,
            Self::Delta(d) => d.node_id,
        }
    }
}

/// A message from the control plane to a node (WebSocket text frame, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A signed [`DesiredState`].
    State(Signed),
    /// The control plane refuses something the node sent; the stream stays open.
    Error {
        /// Machine-readable code.
        code: String,
        /// Human message.
        message: String,
    },
    /// The answer to [`NodeMessage::LeaseRequest`] `seq`: the node may keep serving its
    /// peers for `lease_ms` counted from when it *sent* that request (so its lease always
    /// ends before the control plane's view of it). `siblings` are the other nodes of its
    /// region (`host:port`, TCP on each node's WireGuard port), asked when the lease runs
    /// out to tell "this node is cut off" from "the control plane is down".
    Lease {
        /// The request answered.
        seq: u64,
        /// Lease length, ms.
        lease_ms: u64,
        /// The region's other nodes.
        #[serde(default)]
        siblings: Vec<String>,
    },
}

/// A message from a node to the control plane (WebSocket text frame, JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMessage {
    /// The node applied this version to its interface and saved it.
    Ack {
        /// The version applied.
        version: u64,
    },
    /// Send me a full snapshot (after a gap, a bad signature, or a restart).
    Resync,
    /// Periodic telemetry.
    Telemetry(Telemetry),
    /// Renew my lease (see [`ServerMessage::Lease`]).
    LeaseRequest {
        /// Sequence number, echoed in the grant.
        seq: u64,
    },
}

/// What a node's sibling endpoint answers (one JSON line, then close): how long its own
/// lease still runs. A sibling with a running lease proves the control plane is up, so a
/// node whose lease ran out is the one cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiblingStatus {
    /// Milliseconds left on the sibling's lease (0 = none).
    pub lease_remaining_ms: u64,
}

/// Periodic report from a node. Counters and timestamps only; nothing about traffic content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Telemetry {
    /// When the node sampled this.
    pub at: UnixMillis,
    /// Host metrics.
    pub host: HostMetrics,
    /// Per-peer statistics (only peers with a change since the last report need be sent).
    pub peers: Vec<PeerStats>,
    /// The exit IPv4 the node's clients appear from, if the node knows it.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub exit_ipv4: Option<Ipv4Addr>,
}

/// Host-level metrics of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostMetrics {
    /// CPU busy, 0–100.
    pub cpu_percent: f64,
    /// Memory in use, bytes.
    pub memory_used_bytes: u64,
    /// Memory total, bytes.
    pub memory_total_bytes: u64,
    /// 1-minute load average.
    pub load1: f64,
    /// Peers with a handshake in the last 3 minutes.
    pub active_peers: u64,
    /// Receive rate over the interface, bytes per second.
    #[serde(default)]
    pub rx_bytes_per_sec: u64,
    /// Transmit rate over the interface, bytes per second.
    #[serde(default)]
    pub tx_bytes_per_sec: u64,
}

/// Statistics of one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PeerStats {
    /// The peer's public key.
    pub public_key: WgPublicKey,
    /// Last completed handshake, Unix ms (`None` = never).
    pub last_handshake: Option<UnixMillis>,
    /// Bytes received from the peer.
    pub rx_bytes: u64,
    /// Bytes sent to the peer.
    pub tx_bytes: u64,
    /// The peer's last seen endpoint `ip:port`.
    pub endpoint: Option<String>,
}
