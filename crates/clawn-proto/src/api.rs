//! Request and response bodies of the HTTP JSON API (`/api/v1`).
//!
//! Every error body is an [`ApiError`]: a stable machine-readable `code` and a human
//! `message` (plus an optional `hint`). Request bodies reject unknown fields, so a
//! smuggled `user_id`, `role` or `private_key` is a 400, not silently ignored.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::ConfigTemplate;
use crate::keys::WgPublicKey;
use crate::node::HostMetrics;
use crate::time::UnixMillis;

mod states;
pub use states::{
    AckStatus, AuditAction, DeviceClass, ErrorCode, HealthAlert, Placement, PriorityStatus,
    RegionStatus, TunnelState,
};

/// The error body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    /// Stable machine-readable code, e.g. `not_found`, `slots_exhausted`.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
    /// What to do about it, when there is something to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Role of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An ordinary user: manages their own devices.
    User,
    /// An operator: everything.
    Admin,
}

impl Role {
    /// The stored and wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "admin",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Self::User),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------- auth

/// How the client wants its session delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// An `HttpOnly` cookie plus a CSRF token in the body (browsers). The session token
    /// itself is never readable by scripts.
    #[default]
    Cookie,
    /// The token in the body, to be sent as `Authorization: Bearer` (CLI).
    Bearer,
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
    /// Cookie (default) or bearer.
    #[serde(default)]
    pub session: SessionKind,
}

/// Answer to a successful login or registration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// The signed-in user.
    pub user: UserView,
    /// The session id (for the session list).
    pub session_id: Uuid,
    /// Bearer token; only for `session: bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// CSRF token to send as `X-CSRF-Token` on state-changing requests; only for cookies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
    /// Absolute expiry of the session.
    pub expires_at: UnixMillis,
}

/// `POST /api/v1/auth/register` (only when self-registration is on).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address.
    pub email: String,
    /// Password (at least 10 characters).
    pub password: String,
    /// Cookie (default) or bearer.
    #[serde(default)]
    pub session: SessionKind,
}

/// `POST /api/v1/auth/setup`: create the first admin with the one-time setup token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The token printed once at first start.
    pub setup_token: String,
    /// Admin email.
    pub email: String,
    /// Admin password (at least 10 characters).
    pub password: String,
    /// How the new admin's session is delivered: `bearer` (the default, for the CLI) or
    /// `cookie` (the dashboard).
    #[serde(default)]
    pub session: Option<SessionKind>,
}

/// `POST /api/v1/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The current password.
    pub current_password: String,
    /// The new password (at least 10 characters).
    pub new_password: String,
}

/// A user as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserView {
    /// Id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Device slots.
    pub device_slots: u32,
    /// Active devices (slots used).
    pub active_devices: u32,
    /// Disabled users cannot sign in and have no sessions.
    pub disabled: bool,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// A session of the current user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    /// Id.
    pub id: Uuid,
    /// `cookie` or `bearer`.
    pub kind: SessionKind,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last use (updated at most once a minute).
    pub last_seen_at: UnixMillis,
    /// Absolute expiry.
    pub expires_at: UnixMillis,
    /// Client address at sign-in.
    pub client_addr: Option<String>,
    /// User agent at sign-in.
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateApiTokenRequest {
    /// Name to recognise it by.
    pub name: String,
    /// Lifetime in days (1–365, default 90).
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A personal API token (the secret is shown only at creation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Expiry.
    pub expires_at: UnixMillis,
    /// Last use.
    pub last_used_at: Option<UnixMillis>,
    /// The secret, only in the creation answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

// ---------------------------------------------------------------- regions

/// A region as users see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionView {
    /// Short code, e.g. `eu`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Health summary.
    pub health: RegionHealth,
}

/// How a region is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionHealth {
    /// `healthy` (all nodes eligible), `degraded` (some nodes not eligible) or `unavailable`.
    pub status: RegionStatus,
    /// Nodes that can take new devices.
    pub eligible_nodes: u32,
    /// All nodes in the region.
    pub total_nodes: u32,
    /// Why the region is degraded, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A region as admins see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminRegionView {
    /// Short code.
    pub code: String,
    /// Display name.
    pub name: String,
    /// Tunnel address pool of the region, e.g. `10.100.0.0/16`.
    pub cidr: String,
    /// Prefix length of the sub-pool each node gets.
    pub node_prefix: u8,
    /// DNS servers put in device configs.
    pub dns: Vec<String>,
    /// Health summary.
    pub health: RegionHealth,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// `POST /api/v1/admin/regions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRegionRequest {
    /// Short code: 2–32 of `a-z 0-9 -`.
    pub code: String,
    /// Display name.
    pub name: String,
    /// IPv4 tunnel pool, e.g. `10.100.0.0/16`.
    pub cidr: String,
    /// Prefix length of each node's sub-pool (default 20: 4094 addresses per node).
    #[serde(default)]
    pub node_prefix: Option<u8>,
    /// DNS servers for device configs.
    #[serde(default)]
    pub dns: Vec<String>,
}

/// `PATCH /api/v1/admin/regions/{code}`: name and DNS can change; the pool cannot
/// once nodes exist.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateRegionRequest {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New DNS servers.
    #[serde(default)]
    pub dns: Option<Vec<String>>,
    /// New pool (only while the region has no nodes).
    #[serde(default)]
    pub cidr: Option<String>,
    /// New node prefix (only while the region has no nodes).
    #[serde(default)]
    pub node_prefix: Option<u8>,
}

// ---------------------------------------------------------------- devices

/// `POST /api/v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDeviceRequest {
    /// Device name, 1–64 characters.
    pub name: String,
    /// The device's WireGuard public key (the private key stays on the device).
    pub public_key: WgPublicKey,
    /// Region code.
    pub region: String,
}

/// `PATCH /api/v1/devices/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RenameDeviceRequest {
    /// New name.
    pub name: String,
}

/// `POST /api/v1/devices/{id}/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RotateDeviceRequest {
    /// The new public key.
    pub public_key: WgPublicKey,
}

/// Device state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// Has (or is waiting for) a live peer.
    Active,
    /// Revoked for good.
    Revoked,
}

/// The node a device is on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceNodeView {
    /// Node id.
    pub id: Uuid,
    /// Node name.
    pub name: String,
    /// Public endpoint.
    pub endpoint: String,
    /// Exit IPv4 the device's traffic leaves from, if the node reported it.
    pub exit_ipv4: Option<String>,
}

/// Live tunnel status of a device, from the node's telemetry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunnelStatus {
    /// `active` (handshake within 3 minutes) or `inactive`.
    pub status: TunnelState,
    /// Last handshake, Unix ms.
    pub last_handshake: Option<UnixMillis>,
    /// Bytes received by the node from the device.
    pub rx_bytes: u64,
    /// Bytes sent by the node to the device.
    pub tx_bytes: u64,
    /// Last endpoint the node saw the device at.
    pub endpoint: Option<String>,
}

/// A device as its owner (or an admin) sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// State.
    pub state: DeviceState,
    /// Region code.
    pub region: String,
    /// Current public key.
    pub public_key: WgPublicKey,
    /// Tunnel address (no prefix), if the device has a live peer.
    pub tunnel_ip: Option<String>,
    /// The node serving it, if any.
    pub node: Option<DeviceNodeView>,
    /// Tunnel status.
    pub tunnel: TunnelStatus,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Revocation time.
    pub revoked_at: Option<UnixMillis>,
    /// Owner id (admin views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<Uuid>,
    /// Owner email (admin views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    /// `assigned` (a live peer on a node), `waiting_for_capacity` (its node failed or
    /// drains and no node of the region has room; it stays where it is meanwhile) or
    /// `unassigned` (no peer; fetching the config places it again).
    pub placement: Placement,
    /// `priority` while the owner holds a valid priority token for the region.
    pub class: DeviceClass,
    /// When the system last moved it to another node (failover, drain, region move); its
    /// config changed then and must be fetched again.
    pub moved_at: Option<UnixMillis>,
    /// Why: `failover`, `drain` or `reassign`.
    pub moved_reason: Option<String>,
    /// Whether it is quarantined (region moves blocked, priority suspended).
    pub quarantined: bool,
    /// Why (admin views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_reason: Option<String>,
    /// When its peer was flagged idle (admin views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_flagged_at: Option<UnixMillis>,
}

/// Whether the owning node confirmed a change.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeAck {
    /// `acknowledged`: the node applied the version; `timeout`: connected but no ack in
    /// time; `offline`: the node is not connected (it will apply the change when it
    /// reconnects); `pending`: pushed to a connected node, not waited for (device
    /// creation answers at once); `none`: no node was involved.
    pub status: AckStatus,
    /// The node's desired-state version carrying the change.
    pub version: Option<u64>,
    /// How long the server waited, ms.
    pub waited_ms: u64,
}

/// Answer to create and rotate: the device and its config template.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceWithConfig {
    /// The device.
    pub device: DeviceView,
    /// The config without the private key.
    pub config: ConfigTemplate,
    /// The same config rendered with a placeholder for the private key.
    pub config_text: String,
    /// Whether the node confirmed.
    pub node_ack: NodeAck,
}

/// Answer to revoke.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeResponse {
    /// The device, now revoked.
    pub device: DeviceView,
    /// Whether the node confirmed the peer is gone.
    pub node_ack: NodeAck,
}

/// `GET /api/v1/devices/{id}/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceConfigResponse {
    /// The config without the private key.
    pub config: ConfigTemplate,
    /// Rendered with a placeholder for the private key.
    pub config_text: String,
}

/// A page of results.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// Items.
    pub items: Vec<T>,
    /// Cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

// ---------------------------------------------------------------- admin

/// `POST /api/v1/admin/users`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Email.
    pub email: String,
    /// Initial password (at least 10 characters).
    pub password: String,
    /// Role (default `user`).
    #[serde(default)]
    pub role: Option<Role>,
    /// Device slots (default from server settings, 1).
    #[serde(default)]
    pub device_slots: Option<u32>,
}

/// `PATCH /api/v1/admin/users/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// Disable (ends all sessions) or enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Device slots (0–1000).
    #[serde(default)]
    pub device_slots: Option<u32>,
    /// Role.
    #[serde(default)]
    pub role: Option<Role>,
}

/// `POST /api/v1/admin/users/{id}/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The new password (at least 10 characters). Ends the user's sessions.
    pub password: String,
}

/// `POST /api/v1/admin/node-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateNodeTokenRequest {
    /// Region the node joins.
    pub region: String,
    /// Lifetime in seconds (60–604800, default 3600).
    #[serde(default)]
    pub expires_in_secs: Option<u64>,
    /// Max peers of the node (default 1000).
    #[serde(default)]
    pub capacity: Option<u32>,
}

/// A node join token (secret shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeTokenResponse {
    /// Token id.
    pub id: Uuid,
    /// The secret join token.
    pub token: String,
    /// Region.
    pub region: String,
    /// Expiry.
    pub expires_at: UnixMillis,
    /// The command to run on the node.
    pub join_command: String,
}

/// Node state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Enrolled, never connected.
    Pending,
    /// Serving and eligible.
    Online,
    /// Unhealthy; not eligible.
    Degraded,
    /// No heartbeat.
    Offline,
    /// Operator maintenance; not eligible.
    Maintenance,
    /// Being emptied; not eligible.
    Draining,
    /// Only for testing; not eligible.
    Experimental,
}

impl NodeState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Online => "online",
            Self::Degraded => "degraded",
            Self::Offline => "offline",
            Self::Maintenance => "maintenance",
            Self::Draining => "draining",
            Self::Experimental => "experimental",
        }
    }
    /// Parses the stored spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "online" => Self::Online,
            "degraded" => Self::Degraded,
            "offline" => Self::Offline,
            "maintenance" => Self::Maintenance,
            "draining" => Self::Draining,
            "experimental" => Self::Experimental,
            _ => return None,
        })
    }
    /// All states.
    pub const ALL: [NodeState; 7] = [
        Self::Pending,
        Self::Online,
        Self::Degraded,
        Self::Offline,
        Self::Maintenance,
        Self::Draining,
        Self::Experimental,
    ];
}

/// A node as admins see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeView {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Region code.
    pub region: String,
    /// State.
    pub state: NodeState,
    /// Whether its stream is connected to this control plane now.
    pub connected: bool,
    /// Public endpoint.
    pub endpoint: String,
    /// WireGuard public key.
    pub wg_public_key: WgPublicKey,
    /// Tunnel pool.
    pub pool: String,
    /// Exit IPv4.
    pub exit_ipv4: Option<String>,
    /// Max peers.
    pub capacity: u32,
    /// Live peers.
    pub live_peers: u32,
    /// Desired-state version.
    pub version: u64,
    /// Last version the node acknowledged.
    pub acked_version: Option<u64>,
    /// Last heartbeat (telemetry or stream activity).
    pub last_heartbeat: Option<UnixMillis>,
    /// Latest host metrics.
    pub metrics: Option<HostMetrics>,
    /// Capabilities announced at enrollment.
    pub capabilities: Vec<String>,
    /// Enrollment time.
    pub created_at: UnixMillis,
    /// Link capacity used for bandwidth utilisation, Mbit/s.
    pub link_mbps: u64,
    /// The load score now and its parts (lower is better).
    pub score: ScoreParts,
    /// Whether placement would pick this node for a new device now, and why not.
    pub eligible: bool,
    /// Why it is not eligible, if it is not (`state:degraded`, `heartbeat_stale`, `full`).
    pub ineligible_reason: Option<String>,
    /// Health measurements and verdict.
    pub health: NodeHealth,
    /// Since when the node is offline, if it is.
    pub offline_since: Option<UnixMillis>,
}

/// The load score of a node, lower is better: `total` is the weighted mean of the parts,
/// each within 0..=1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreParts {
    /// Weighted total.
    pub total: f64,
    /// Live peers / capacity.
    pub peers: f64,
    /// (rx + tx rate) / link capacity.
    pub bandwidth: f64,
    /// CPU / 100.
    pub cpu: f64,
    /// Latency band / number of bands.
    pub latency: f64,
    /// The latency band (0 = best).
    pub latency_band: u32,
}

/// A node's health: the control plane's probe measurements and the verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeHealth {
    /// Median probe round trip over the recent probes, ms.
    pub rtt_ms: Option<f64>,
    /// The node's latency baseline, ms.
    pub baseline_rtt_ms: Option<f64>,
    /// Share of probes in the window that went unanswered.
    pub loss_ratio: Option<f64>,
    /// Probes in the window.
    pub probes: u32,
    /// Since when CPU is above the threshold.
    pub cpu_high_since: Option<UnixMillis>,
    /// Alert conditions holding now: `cpu_high`, `packet_loss`, `latency_high`,
    /// `over_capacity` (any of them makes an online node degraded).
    pub alerts: Vec<HealthAlert>,
    /// Human-readable reason, e.g. "packet loss 6.7% > 2%".
    pub reason: Option<String>,
    /// When this was measured.
    pub at: Option<UnixMillis>,
}

/// `POST /api/v1/devices/{id}/region`: move a device to another region.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReassignDeviceRequest {
    /// Target region code.
    pub region: String,
}

/// `POST /api/v1/admin/priority-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantPriorityTokenRequest {
    /// The user (id or email; one of the two).
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// The user's email.
    #[serde(default)]
    pub email: Option<String>,
    /// Region code.
    pub region: String,
    /// Start of the window, Unix ms [default: now].
    #[serde(default)]
    pub starts_at: Option<UnixMillis>,
    /// End of the window, Unix ms (or `duration_secs`).
    #[serde(default)]
    pub expires_at: Option<UnixMillis>,
    /// Length of the window from its start, seconds (or `expires_at`).
    #[serde(default)]
    pub duration_secs: Option<u64>,
    /// Why it was granted.
    #[serde(default)]
    pub note: Option<String>,
}

/// A priority access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorityTokenView {
    /// Id.
    pub id: Uuid,
    /// Holder.
    pub user_id: Uuid,
    /// Holder's email.
    pub email: String,
    /// Region code.
    pub region: String,
    /// Window start.
    pub starts_at: UnixMillis,
    /// Window end.
    pub expires_at: UnixMillis,
    /// Note.
    pub note: String,
    /// Granting admin.
    pub granted_by: Option<Uuid>,
    /// Grant time.
    pub created_at: UnixMillis,
    /// Revocation time.
    pub revoked_at: Option<UnixMillis>,
    /// `scheduled`, `active`, `expired` or `revoked`.
    pub status: PriorityStatus,
    /// Whether it is suspended because a device of the holder is quarantined.
    pub suspended: bool,
}

/// Admin diagnostics of one device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceDiagnostics {
    /// The device (node, exit IP, tunnel status, bytes).
    pub device: DeviceView,
    /// Time since the last handshake, ms.
    pub handshake_age_ms: Option<i64>,
    /// Recent moves (failover, drain, reassignment, waiting), newest first.
    pub moves: Vec<AuditEventView>,
    /// Abuse signals counted in the current window.
    pub signals: AbuseSignals,
}

/// Per-device abuse signals over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AbuseSignals {
    /// Endpoint changes the node saw.
    pub endpoint_changes: u32,
    /// Region moves asked for.
    pub region_switches: u32,
    /// Telemetry intervals above the burst rate.
    pub bursts: u32,
}

/// Admin diagnostics of one node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeDiagnostics {
    /// The node (state, score, health).
    pub node: NodeView,
    /// Recent state changes (offline, online, degraded, recovered, admin changes), newest first.
    pub state_changes: Vec<AuditEventView>,
    /// Devices whose peer is on this node and that wait for capacity elsewhere.
    pub waiting_devices: u32,
}

/// `GET /api/v1/admin/diagnostics`: the region view.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DiagnosticsOverview {
    /// Per region: current load, p95 over the window, scale-out signal.
    pub regions: Vec<RegionLoad>,
    /// Nodes with their recent state changes.
    pub nodes: Vec<NodeDiagnostics>,
    /// Devices waiting for capacity.
    pub waiting: Vec<DeviceView>,
    /// Quarantined devices, for review.
    pub quarantined: Vec<DeviceView>,
}

/// A region's load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegionLoad {
    /// Region code.
    pub region: String,
    /// Live peers / capacity of its serving nodes, now.
    pub load: f64,
    /// 95th percentile of the load samples in the window.
    pub load_p95: f64,
    /// Samples in the window.
    pub samples: u32,
    /// Whether the p95 is above the scale-out threshold (add a node).
    pub scale_out: bool,
}

/// `PATCH /api/v1/admin/nodes/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateNodeRequest {
    /// `online`, `maintenance`, `draining` or `experimental`.
    #[serde(default)]
    pub state: Option<NodeState>,
    /// Max peers.
    #[serde(default)]
    pub capacity: Option<u32>,
    /// Name.
    #[serde(default)]
    pub name: Option<String>,
    /// Link capacity, Mbit/s (for bandwidth utilisation in the load score).
    #[serde(default)]
    pub link_mbps: Option<u64>,
}

/// Query of `GET /api/v1/admin/audit`: filters and paging. The CLI sends it, the server
/// reads it; absent filters are left out of the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AuditQuery {
    /// Actor id or label (email, node name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Action, or a prefix ending in `.` such as `device.`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Target id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// From (Unix ms, inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
    /// Until (Unix ms, exclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
    /// Page size, 1–500 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// Query of `GET /api/v1/admin/devices`: filters of the admin device list. Absent filters
/// (and `false` flags) are left out of the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
pub struct AdminDeviceQuery {
    /// Only this user's devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<Uuid>,
    /// Only devices in this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<DeviceState>,
    /// Only quarantined devices (for review).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    /// Only devices waiting for capacity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub waiting: bool,
}

/// An audit event.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEventView {
    /// Id (time-ordered).
    pub id: Uuid,
    /// When.
    pub at: UnixMillis,
    /// `user`, `admin`, `system` or `node`.
    pub actor_kind: String,
    /// Actor id (user or node), if any.
    pub actor_id: Option<Uuid>,
    /// Actor label (email or node name) at the time.
    pub actor_label: Option<String>,
    /// Action, e.g. `device.create`.
    pub action: AuditAction,
    /// Target kind, e.g. `device`.
    pub target_kind: String,
    /// Target id.
    pub target_id: Option<String>,
    /// Extra facts (never secrets).
    pub metadata: serde_json::Value,
    /// Client address of the request, if any.
    pub client_addr: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smuggled_fields_are_refused() {
        let k = crate::WgKeyPair::generate().public();
        let body = format!(r#"{{"name":"a","public_key":"{k}","region":"eu","user_id":"x"}}"#);
        assert!(serde_json::from_str::<CreateDeviceRequest>(&body).is_err());
        let body = format!(r#"{{"name":"a","public_key":"{k}","region":"eu","private_key":"x"}}"#);
        assert!(serde_json::from_str::<CreateDeviceRequest>(&body).is_err());
        let ok = format!(r#"{{"name":"a","public_key":"{k}","region":"eu"}}"#);
        assert!(serde_json::from_str::<CreateDeviceRequest>(&ok).is_ok());
    }

    #[test]
    fn wire_spellings_are_pinned() {
        let e = ApiError {
            code: ErrorCode::NotFound,
            message: "device not found".into(),
            hint: None,
        };
        assert_eq!(
            serde_json::to_string(&e).ok().as_deref(),
            Some(r#"{"code":"not_found","message":"device not found"}"#)
        );
        assert_eq!(
            serde_json::to_string(&NodeState::Draining).ok().as_deref(),
            Some(r#""draining""#)
        );
        for s in NodeState::ALL {
            assert_eq!(NodeState::parse(s.as_str()), Some(s));
        }
    }
}
