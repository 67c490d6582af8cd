// The one way the dashboard talks to the server: same-origin JSON over the public
// /api/v1. Sessions are an HttpOnly cookie the script never sees; every state-changing
// request carries the CSRF token from the readable `__Host-clawn_csrf` cookie.

import type {
  AdminRegion,
  ApiErrorBody,
  ApiErrorCode,
  AuditPage,
  CreateDeviceRequest,
  CreateNodeTokenRequest,
  CreateRegionRequest,
  CreateUserRequest,
  Device,
  DeviceConfig,
  DeviceDiagnostics,
  DeviceWithConfig,
  DiagnosticsOverview,
  GrantPriorityTokenRequest,
  LoginRequest,
  LoginResponse,
  NodeTokenResponse,
  NodeDiagnostics,
  NodeState,
  NodeView,
  PriorityToken,
  Region,
  ReassignDeviceRequest,
  RenameDeviceRequest,
  ResetPasswordRequest,
  RevokeResponse,
  RotateDeviceRequest,
  Session,
  SetupRequest,
  UpdateNodeRequest,
  UpdateRegionRequest,
  UpdateUserRequest,
  User,
} from "./types";

/** The server's codes, and the dashboard's own for no answer or no JSON body. */
export type ErrorCode = ApiErrorCode | "network" | `http_${number}`;

/** A non-2xx answer: the server's `{code, message, hint}`. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  constructor(status: number, code: ErrorCode, message: string, hint?: string | null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.hint = hint ?? undefined;
  }
}

function csrfToken(): string | undefined {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === "__Host-clawn_csrf") return decodeURIComponent(v.join("="));
  }
  return undefined;
}

/** Called on every 401 so the app can return to the sign-in page. */
let onUnauthenticated: () => void = () => {};
export function setUnauthenticatedHandler(f: () => void) {
  onUnauthenticated = f;
}

async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") {
    const csrf = csrfToken();
    if (csrf) headers["X-CSRF-Token"] = csrf;
  }
  let resp: Response;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached.", "Check your connection; the page retries on its own.");
  }
  const text = await resp.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  if (!resp.ok) {
    const e = (json ?? {}) as Partial<ApiErrorBody>;
    if (resp.status === 401 && !path.startsWith("/auth/")) onUnauthenticated();
    throw new ApiError(resp.status, e.code ?? `http_${resp.status}`, e.message ?? resp.statusText, e.hint);
  }
  return json as T;
}

const enc = encodeURIComponent;

export const api = {
  // auth and account
  login: (email: string, password: string) =>
    request<LoginResponse>("POST", "/auth/login", { email, password, session: "cookie" } satisfies LoginRequest),
  setup: (setupToken: string, email: string, password: string) =>
    request<LoginResponse>("POST", "/auth/setup", { setup_token: setupToken, email, password, session: "cookie" } satisfies SetupRequest),
  logout: () => request<void>("POST", "/auth/logout"),
  me: () => request<User>("GET", "/me"),
  sessions: () => request<Session[]>("GET", "/sessions"),
  endSession: (id: string) => request<void>("DELETE", `/sessions/${enc(id)}`),
  endAllSessions: () => request<void>("POST", "/sessions/end-all"),

  // devices
  regions: () => request<Region[]>("GET", "/regions"),
  devices: () => request<Device[]>("GET", "/devices"),
  device: (id: string) => request<Device>("GET", `/devices/${enc(id)}`),
  deviceConfig: (id: string) => request<DeviceConfig>("GET", `/devices/${enc(id)}/config`),
  createDevice: (name: string, publicKey: string, region: string) =>
    request<DeviceWithConfig>("POST", "/devices", { name, public_key: publicKey, region } satisfies CreateDeviceRequest),
  rotateDevice: (id: string, publicKey: string) =>
    request<DeviceWithConfig>("POST", `/devices/${enc(id)}/rotate`, { public_key: publicKey } satisfies RotateDeviceRequest),
  revokeDevice: (id: string) => request<RevokeResponse>("POST", `/devices/${enc(id)}/revoke`),
  renameDevice: (id: string, name: string) => request<Device>("PATCH", `/devices/${enc(id)}`, { name } satisfies RenameDeviceRequest),
  /** Moves the device to another region (same key; the config changes). */
  moveDevice: (id: string, region: string) =>
    request<DeviceWithConfig>("POST", `/devices/${enc(id)}/region`, { region } satisfies ReassignDeviceRequest),

  // admin
  adminNodes: () => request<NodeView[]>("GET", "/admin/nodes"),
  setNodeState: (id: string, state: NodeState) => request<NodeView>("PATCH", `/admin/nodes/${enc(id)}`, { state } satisfies UpdateNodeRequest),
  updateNode: (id: string, patch: Pick<UpdateNodeRequest, "name" | "capacity" | "link_mbps">) =>
    request<NodeView>("PATCH", `/admin/nodes/${enc(id)}`, patch),
  createNodeToken: (region: string, capacity?: number, expiresInSecs?: number) =>
    request<NodeTokenResponse>("POST", "/admin/node-tokens", {
      region,
      capacity,
      expires_in_secs: expiresInSecs,
    } satisfies CreateNodeTokenRequest),
  adminRegions: () => request<AdminRegion[]>("GET", "/admin/regions"),
  createRegion: (r: CreateRegionRequest) =>
    request<AdminRegion>("POST", "/admin/regions", r),
  updateRegion: (code: string, r: UpdateRegionRequest) =>
    request<AdminRegion>("PATCH", `/admin/regions/${enc(code)}`, r),
  adminUsers: () => request<User[]>("GET", "/admin/users"),
  createUser: (u: CreateUserRequest) =>
    request<User>("POST", "/admin/users", u),
  updateUser: (id: string, patch: UpdateUserRequest) =>
    request<User>("PATCH", `/admin/users/${enc(id)}`, patch),
  resetPassword: (id: string, password: string) =>
    request<void>("POST", `/admin/users/${enc(id)}/password`, { password } satisfies ResetPasswordRequest),
  adminDevices: (q: { state?: string; quarantined?: boolean; waiting?: boolean } = {}) => {
    const params = new URLSearchParams();
    if (q.state) params.set("state", q.state);
    if (q.quarantined) params.set("quarantined", "true");
    if (q.waiting) params.set("waiting", "true");
    const qs = params.toString();
    return request<Device[]>("GET", `/admin/devices${qs ? `?${qs}` : ""}`);
  },
  adminRevokeDevice: (id: string) => request<RevokeResponse>("POST", `/admin/devices/${enc(id)}/revoke`),
  releaseDevice: (id: string) => request<Device>("POST", `/admin/devices/${enc(id)}/release`),
  priorityTokens: () => request<PriorityToken[]>("GET", "/admin/priority-tokens"),
  grantPriorityToken: (req: GrantPriorityTokenRequest) => request<PriorityToken>("POST", "/admin/priority-tokens", req),
  revokePriorityToken: (id: string) => request<PriorityToken>("POST", `/admin/priority-tokens/${enc(id)}/revoke`),
  diagnostics: () => request<DiagnosticsOverview>("GET", "/admin/diagnostics"),
  deviceDiagnostics: (id: string) => request<DeviceDiagnostics>("GET", `/admin/diagnostics/devices/${enc(id)}`),
  nodeDiagnostics: (id: string) => request<NodeDiagnostics>("GET", `/admin/diagnostics/nodes/${enc(id)}`),
  audit: (q: Record<string, string | number | undefined>) => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== "") params.set(k, String(v));
    const qs = params.toString();
    return request<AuditPage>("GET", `/admin/audit${qs ? `?${qs}` : ""}`);
  },
};
