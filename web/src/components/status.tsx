// Shared views of a node's load score, eligibility and health, and of a device's
// placement, class and quarantine: the Nodes, Diagnostics and device pages all show them
// the same way.

import { Badge } from "react-bootstrap";
import type { Device, NodeAlert, NodeHealth, NodeView, ScoreParts } from "../types";
import { ineligibleReason, millis, percent, score } from "../format";

const ALERT_LABEL: Record<NodeAlert, string> = {
  cpu_high: "CPU high",
  packet_loss: "packet loss",
  latency_high: "latency high",
  over_capacity: "over capacity",
};

/** The load score: the total, and its parts in a small breakdown (also the tooltip). */
export function ScoreView({ s }: { s: ScoreParts }) {
  const parts = `peers ${score(s.peers)} · bandwidth ${score(s.bandwidth)} · CPU ${score(s.cpu)} · latency ${score(s.latency)} (band ${s.latency_band})`;
  return (
    <div data-testid="node-score" data-score-total={s.total} data-score-peers={s.peers} title={`Load score ${score(s.total)} (lower is better): ${parts}`}>
      <span className="fw-semibold" data-testid="node-score-total">
        {score(s.total)}
      </span>
      <div className="small text-body-secondary score-parts" data-testid="node-score-parts">
        {parts}
      </div>
    </div>
  );
}

/** Whether placement picks the node for new devices, and why not. */
export function EligibleView({ n }: { n: NodeView }) {
  return n.eligible ? (
    <Badge bg="success" data-testid="node-eligible" data-eligible="true">
      eligible
    </Badge>
  ) : (
    <div data-testid="node-eligible" data-eligible="false">
      <Badge bg="secondary">not eligible</Badge>
      <div className="small text-body-secondary" data-testid="node-ineligible-reason">
        {ineligibleReason(n.ineligible_reason)}
      </div>
    </div>
  );
}

/** The probes' round trip against the baseline, loss, alerts and the verdict's reason. */
export function HealthView({ h, degraded }: { h: NodeHealth; degraded: boolean }) {
  return (
    <div className="small" data-testid="node-health" data-probes={h.probes}>
      <div>
        rtt <span data-testid="node-rtt">{millis(h.rtt_ms)}</span>
        <span className="text-body-secondary"> (baseline {millis(h.baseline_rtt_ms)})</span>
      </div>
      <div>
        loss <span data-testid="node-loss">{percent(h.loss_ratio)}</span>
        <span className="text-body-secondary"> · {h.probes} probes</span>
      </div>
      {h.alerts.length > 0 && (
        <div className="d-flex flex-wrap gap-1 mt-1" data-testid="node-alerts">
          {h.alerts.map((a) => (
            <Badge key={a} bg="warning" text="dark" data-alert={a}>
              {ALERT_LABEL[a] ?? a}
            </Badge>
          ))}
        </div>
      )}
      {h.reason && (
        <div className={degraded ? "text-danger-emphasis fw-semibold mt-1" : "text-body-secondary mt-1"} data-testid="node-health-reason">
          {degraded ? "Degraded: " : ""}
          {h.reason}
        </div>
      )}
    </div>
  );
}

/** Badges for what is special about a device: priority, waiting, quarantine. */
export function DeviceBadges({ d }: { d: Device }) {
  if (d.state !== "active") return null;
  return (
    <>
      {d.class === "priority" && (
        <Badge bg="primary" data-testid="device-class" data-class={d.class}>
          priority
        </Badge>
      )}
      {d.placement === "waiting_for_capacity" && (
        <Badge bg="warning" text="dark" data-testid="device-placement" data-placement={d.placement}>
          waiting for capacity
        </Badge>
      )}
      {d.placement === "unassigned" && (
        <Badge bg="secondary" data-testid="device-placement" data-placement={d.placement}>
          not placed
        </Badge>
      )}
      {d.quarantined && (
        <Badge bg="danger" data-testid="device-quarantined">
          quarantined
        </Badge>
      )}
    </>
  );
}
