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
