// Shared building blocks: loading, empty and error states, badges, copy buttons.

import { useState, type ReactNode } from "react";
import { Alert, Badge, Button, Spinner } from "react-bootstrap";
import { ApiError } from "../api";
import type { DeviceState, NodeState, PriorityStatus, RegionHealthStatus, TunnelState } from "../types";

/** Shows the server's message (and its hint and code) for a failed request. */
export function ErrorAlert({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  const e = error instanceof ApiError ? error : undefined;
  const message = e?.message ?? (error instanceof Error ? error.message : String(error));
  return (
    <Alert variant="danger" role="alert" data-testid="error">
      {title && <strong className="me-1">{title}:</strong>}
      <span data-testid="error-message">{message}</span>
      {e?.hint && <div className="small mt-1">{e.hint}</div>}
      {e && e.code !== "network" && <div className="small text-body-secondary mt-1">code: {e.code}</div>}
    </Alert>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <div className="d-flex align-items-center gap-2 text-body-secondary py-4" role="status" data-testid="loading">
      <Spinner animation="border" size="sm" />
      <span>Loading {what}…</span>
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="text-center border rounded-3 py-5 px-3 bg-body-tertiary" data-testid="empty">
      <h2 className="h5">{title}</h2>
      {children && <div className="text-body-secondary">{children}</div>}
    </div>
  );
}

/** Every state a badge shows: a value the server adds to one of these needs a colour here. */
type BadgeState = DeviceState | NodeState | PriorityStatus | RegionHealthStatus | TunnelState;

const stateVariant: Record<BadgeState, string> = {
  active: "success",
  online: "success",
  healthy: "success",
  inactive: "secondary",
  pending: "info",
  revoked: "danger",
  offline: "danger",
  unavailable: "danger",
  degraded: "warning",
  maintenance: "warning",
  draining: "warning",
  experimental: "secondary",
  scheduled: "info",
  expired: "secondary",
};

/** A coloured state; `data-state` carries the raw value for tests and styling. */
export function StateBadge({ state, label, testId }: { state: BadgeState; label?: string; testId?: string }) {
  return (
    <Badge bg={stateVariant[state] ?? "secondary"} data-testid={testId} data-state={state} className="text-capitalize">
      {label ?? state}
    </Badge>
  );
}

/** A device's tunnel, from the node's last handshake. */
export function TunnelBadge({ status }: { status: TunnelState }) {
  return (
    <StateBadge
      state={status}
      label={status === "active" ? "tunnel up" : "tunnel idle"}
      testId="tunnel-status"
    />
  );
}

/** A button that copies `text` to the clipboard and says whether it worked. */
export function CopyButton({
  text,
  label = "Copy",
  testId,
  onCopied,
}: {
  text: string;
  label?: string;
  testId?: string;
  onCopied?: () => void;
}) {
  const [state, setState] = useState<"idle" | "copied" | "failed">("idle");
  return (
    <Button
      variant="outline-secondary"
      data-testid={testId}
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(text);
          setState("copied");
          onCopied?.();
        } catch {
          setState("failed");
        }
      }}
    >
      {state === "copied" ? "Copied" : state === "failed" ? "Copy failed: select the text" : label}
    </Button>
  );
}

/** A page heading with optional actions on the right. */
export function PageHeader({ title, children }: { title: string; children?: ReactNode }) {
  return (
    <div className="d-flex flex-wrap align-items-center justify-content-between gap-2 mb-3">
      <h1 className="h3 mb-0">{title}</h1>
      {children && <div className="d-flex flex-wrap align-items-center gap-2">{children}</div>}
    </div>
  );
}
