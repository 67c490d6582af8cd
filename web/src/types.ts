// Wire types of /api/v1 (times are Unix ms), taken from the server's OpenAPI document.
//
// `src/api-schema.d.ts` is GENERATED from `../docs/openapi.json` by openapi-typescript
// (`npm run gen:api`, which `npm run build`, `typecheck` and `dev` run first); it is not
// committed. docs/openapi.json is what clawn-server serves (a server test keeps them equal),
// so a field renamed or removed on the server, or an enum value renamed, is a type error in
// `npm run build` rather than a broken page. Nothing here is written by hand but the names:
// add an alias here rather than an interface, and never widen a schema type with `| string`.

import type { components } from "./api-schema";

type Schemas = components["schemas"];

// ---- account

export type Role = Schemas["Role"];
export type LoginRequest = Schemas["LoginRequest"];
export type SetupRequest = Schemas["SetupRequest"];
export type User = Schemas["UserView"];
export type LoginResponse = Schemas["LoginResponse"];
export type Session = Schemas["SessionView"];

// ---- regions

export type RegionHealth = Schemas["RegionHealth"];
/** `healthy`, `degraded` or `unavailable`. */
export type RegionHealthStatus = RegionHealth["status"];
export type Region = Schemas["RegionView"];
export type AdminRegion = Schemas["AdminRegionView"];
export type CreateRegionRequest = Schemas["CreateRegionRequest"];
export type UpdateRegionRequest = Schemas["UpdateRegionRequest"];

// ---- devices

export type Device = Schemas["DeviceView"];
export type DeviceState = Schemas["DeviceState"];
export type DeviceNode = Schemas["DeviceNodeView"];
export type CreateDeviceRequest = Schemas["CreateDeviceRequest"];
export type RotateDeviceRequest = Schemas["RotateDeviceRequest"];
export type RenameDeviceRequest = Schemas["RenameDeviceRequest"];
export type ReassignDeviceRequest = Schemas["ReassignDeviceRequest"];
export type TunnelStatus = Schemas["TunnelStatus"];
/** `active` (handshake within 3 minutes) or `inactive`. */
export type TunnelState = TunnelStatus["status"];
/** `assigned`, `waiting_for_capacity` or `unassigned`. */
export type Placement = Device["placement"];
/** `standard` or `priority`. */
export type DeviceClass = Device["class"];
/** `failover`, `drain` or `reassign`. */
export type MoveReason = NonNullable<Device["moved_reason"]>;
/** Everything of a wg-quick config but the private key. */
export type ConfigTemplate = Schemas["ConfigTemplate"];
export type NodeAck = Schemas["NodeAck"];
/** `acknowledged`, `timeout`, `offline`, `pending` or `none`. */
export type AckStatus = NodeAck["status"];
export type DeviceWithConfig = Schemas["DeviceWithConfig"];
export type DeviceConfig = Schemas["DeviceConfigResponse"];
export type RevokeResponse = Schemas["RevokeResponse"];

// ---- nodes

export type NodeState = Schemas["NodeState"];
export type NodeView = Schemas["NodeView"];
export type HostMetrics = Schemas["HostMetrics"];
/** Each part within 0..=1; `total` is their weighted mean. Lower is better. */
export type ScoreParts = Schemas["ScoreParts"];
export type NodeHealth = Schemas["NodeHealth"];
/** `cpu_high`, `packet_loss`, `latency_high` or `over_capacity`. */
export type NodeAlert = NodeHealth["alerts"][number];
export type UpdateNodeRequest = Schemas["UpdateNodeRequest"];
export type CreateNodeTokenRequest = Schemas["CreateNodeTokenRequest"];
export type NodeTokenResponse = Schemas["NodeTokenResponse"];

// ---- users, priority, audit, diagnostics

export type CreateUserRequest = Schemas["CreateUserRequest"];
export type UpdateUserRequest = Schemas["UpdateUserRequest"];
export type ResetPasswordRequest = Schemas["ResetPasswordRequest"];
export type GrantPriorityTokenRequest = Schemas["GrantPriorityTokenRequest"];
export type PriorityToken = Schemas["PriorityTokenView"];
/** `scheduled`, `active`, `expired` or `revoked`. */
export type PriorityStatus = PriorityToken["status"];
export type AuditEvent = Schemas["AuditEventView"];
/** E.g. `device.create`. */
export type AuditAction = AuditEvent["action"];
export type AuditPage = Schemas["Page_AuditEventView"];
export type RegionLoad = Schemas["RegionLoad"];
export type NodeDiagnostics = Schemas["NodeDiagnostics"];
export type DiagnosticsOverview = Schemas["DiagnosticsOverview"];
export type AbuseSignals = Schemas["AbuseSignals"];
export type DeviceDiagnostics = Schemas["DeviceDiagnostics"];

// ---- errors

/** The body of every non-2xx answer. */
export type ApiErrorBody = Schemas["ApiError"];
/** The server's stable machine-readable codes, e.g. `not_found`, `slots_exhausted`. */
export type ApiErrorCode = ApiErrorBody["code"];
