// Wire types of /api/v1, mirroring crates/clawn-proto/src/api.rs (times are Unix ms).

export type Role = "user" | "admin";

export interface User {
  id: string;
  email: string;
  role: Role;
  device_slots: number;
  active_devices: number;
  disabled: boolean;
  created_at: number;
}

export interface LoginResponse {
  user: User;
  session_id: string;
  csrf_token?: string;
  expires_at: number;
}

export interface Session {
  id: string;
  kind: "cookie" | "bearer";
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  client_addr: string | null;
  user_agent: string | null;
  current: boolean;
}

export interface RegionHealth {
  status: "healthy" | "degraded" | "unavailable" | string;
  eligible_nodes: number;
  total_nodes: number;
  reason?: string;
}

export interface Region {
  code: string;
  name: string;
  health: RegionHealth;
}

export interface AdminRegion extends Region {
  cidr: string;
  node_prefix: number;
  dns: string[];
  created_at: number;
}

export interface TunnelStatus {
  status: "active" | "inactive" | string;
  last_handshake: number | null;
  rx_bytes: number;
  tx_bytes: number;
  endpoint: string | null;
}

export interface DeviceNode {
  id: string;
  name: string;
  endpoint: string;
  exit_ipv4: string | null;
}

export type Placement = "assigned" | "waiting_for_capacity" | "unassigned";
export type DeviceClass = "standard" | "priority";
export type MoveReason = "failover" | "drain" | "reassign";

export interface Device {
  id: string;
  name: string;
  state: "active" | "revoked";
  region: string;
  public_key: string;
  tunnel_ip: string | null;
  node: DeviceNode | null;
  tunnel: TunnelStatus;
  created_at: number;
  revoked_at: number | null;
  owner_id?: string;
  owner_email?: string;
  /** `assigned` (a live peer), `waiting_for_capacity` (its node failed or drains and no
   * node of the region has room: it stays where it is meanwhile) or `unassigned`. */
  placement: Placement | string;
  /** `priority` while the owner holds a valid priority token for the region. */
  class: DeviceClass | string;
  /** When the system last moved it to another node: its config changed then. */
  moved_at: number | null;
  moved_reason: MoveReason | string | null;
  /** Region moves blocked and priority suspended. */
  quarantined: boolean;
  /** Admin views only. */
  quarantine_reason?: string;
  /** Admin views only: when its peer was flagged idle. */
  idle_flagged_at?: number;
}

/** Everything of a wg-quick config but the private key. */
export interface ConfigTemplate {
  address: string;
  dns: string[];
  peer_public_key: string;
  endpoint: string;
  allowed_ips: string[];
  persistent_keepalive: number;
  mtu?: number;
}

export interface NodeAck {
  status: "acknowledged" | "timeout" | "offline" | "pending" | "none" | string;
  version: number | null;
  waited_ms: number;
}

export interface DeviceWithConfig {
  device: Device;
  config: ConfigTemplate;
  config_text: string;
  node_ack: NodeAck;
}

export interface DeviceConfig {
  config: ConfigTemplate;
  config_text: string;
}

export interface RevokeResponse {
  device: Device;
  node_ack: NodeAck;
}

export interface HostMetrics {
  cpu_percent: number;
  memory_used_bytes: number;
  memory_total_bytes: number;
  load1: number;
  active_peers: number;
  rx_bytes_per_sec: number;
  tx_bytes_per_sec: number;
}

export type NodeState = "pending" | "online" | "degraded" | "offline" | "maintenance" | "draining" | "experimental";

export interface NodeView {
  id: string;
  name: string;
  region: string;
  state: NodeState;
  connected: boolean;
  endpoint: string;
  wg_public_key: string;
  pool: string;
  exit_ipv4: string | null;
  capacity: number;
  live_peers: number;
  version: number;
  acked_version: number | null;
  last_heartbeat: number | null;
  metrics: HostMetrics | null;
  capabilities: string[];
  created_at: number;
  /** Link capacity used for bandwidth utilisation, Mbit/s. */
  link_mbps: number;
  /** The load score now and its parts (lower is better). */
  score: ScoreParts;
  /** Whether placement would pick this node for a new device now. */
  eligible: boolean;
  /** Why not (`state:degraded`, `heartbeat_stale`, `full`, ...). */
  ineligible_reason: string | null;
  health: NodeHealth;
  offline_since: number | null;
}

/** Each part within 0..=1; `total` is their weighted mean. Lower is better. */
export interface ScoreParts {
  total: number;
  peers: number;
  bandwidth: number;
  cpu: number;
  latency: number;
  /** 0 = best. */
  latency_band: number;
}

export interface NodeHealth {
  rtt_ms: number | null;
  baseline_rtt_ms: number | null;
  loss_ratio: number | null;
  probes: number;
  cpu_high_since: number | null;
  /** `cpu_high`, `packet_loss`, `latency_high`, `over_capacity`. */
  alerts: string[];
  reason: string | null;
  at: number | null;
}

export interface NodeTokenResponse {
  id: string;
  token: string;
  region: string;
  expires_at: number;
  join_command: string;
}

export interface AuditEvent {
  id: string;
  at: number;
  actor_kind: string;
  actor_id: string | null;
  actor_label: string | null;
  action: string;
  target_kind: string;
  target_id: string | null;
  metadata: unknown;
  client_addr: string | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface GrantPriorityTokenRequest {
  user_id?: string;
  email?: string;
  region: string;
  starts_at?: number;
  expires_at?: number;
  duration_secs?: number;
  note?: string;
}

export type PriorityStatus = "scheduled" | "active" | "expired" | "revoked";

export interface PriorityToken {
  id: string;
  user_id: string;
  email: string;
  region: string;
  starts_at: number;
  expires_at: number;
  note: string;
  granted_by: string | null;
  created_at: number;
  revoked_at: number | null;
  status: PriorityStatus | string;
  /** Suspended while a device of the holder is quarantined. */
  suspended: boolean;
}

export interface RegionLoad {
  region: string;
  /** Live peers / capacity of its serving nodes, now (0..=1). */
  load: number;
  load_p95: number;
  samples: number;
  scale_out: boolean;
}

export interface NodeDiagnostics {
  node: NodeView;
  state_changes: AuditEvent[];
  waiting_devices: number;
}

export interface DiagnosticsOverview {
  regions: RegionLoad[];
  nodes: NodeDiagnostics[];
  waiting: Device[];
  quarantined: Device[];
}

export interface AbuseSignals {
  endpoint_changes: number;
  region_switches: number;
  bursts: number;
}

export interface DeviceDiagnostics {
  device: Device;
  handshake_age_ms: number | null;
  moves: AuditEvent[];
  signals: AbuseSignals;
}
