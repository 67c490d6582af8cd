// Operations overview (admin): region load and the scale-out signal, every node with its
// score, health and recent state changes, devices waiting for capacity, and quarantined
// devices to review (release or revoke).

import { useState, type ReactNode } from "react";
import { Badge, Button, ButtonGroup, Card, Col, ProgressBar, Row, Table } from "react-bootstrap";
import { Link } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { ConfirmModal } from "../../components/ConfirmModal";
import { Notice, RevokeDialog, type NoticeText } from "../../components/Revoke";
import { Empty, ErrorAlert, Loading, PageHeader, StateBadge } from "../../components/common";
import { DeviceBadges, EligibleView, HealthView, ScoreView } from "../../components/status";
import { ago, dateTime, percent } from "../../format";
import type { AuditEvent, Device, NodeDiagnostics, RegionLoad } from "../../types";
import { LIVE_MS } from "../../session";

/** A string field of an audit event's metadata, if it has one. */
export function metaField(e: AuditEvent, key: string): string | undefined {
  const m = e.metadata;
  if (m === null || typeof m !== "object" || Array.isArray(m)) return undefined;
  const v = (m as Record<string, unknown>)[key];
  if (v === null || v === undefined) return undefined;
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** What a node state change was, in a few words: the system's reason or the admin's edit. */
function changeSummary(e: AuditEvent): string {
  if (e.action === "node.update") {
    const parts: string[] = [];
    const state = metaField(e, "state");
    const capacity = metaField(e, "capacity");
    const link = metaField(e, "link_mbps");
    const name = metaField(e, "name");
    if (state) parts.push(`state ${state}`);
    if (capacity) parts.push(`capacity ${capacity}`);
    if (link) parts.push(`link ${link} Mbit/s`);
    if (name) parts.push(`name ${name}`);
    return parts.join(", ");
  }
  return metaField(e, "reason") ?? metaField(e, "region") ?? "";
}

export function DiagnosticsPage() {
  const diag = useQuery({ queryKey: ["diagnostics"], queryFn: api.diagnostics, refetchInterval: LIVE_MS });
  const qc = useQueryClient();
  const [releasing, setReleasing] = useState<Device | null>(null);
  const [revoking, setRevoking] = useState<Device | null>(null);
  const [notice, setNotice] = useState<NoticeText | null>(null);
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["diagnostics"] });
    void qc.invalidateQueries({ queryKey: ["admin-devices"] });
  };
  const d = diag.data;
  return (
    <>
      <PageHeader title="Diagnostics" />
      <Notice notice={notice} onClose={() => setNotice(null)} />
      {diag.isPending && <Loading what="diagnostics" />}
      <ErrorAlert error={diag.error} title="Diagnostics could not be loaded" />
      {d && (
        <>
          <RegionLoads regions={d.regions} />
          <h2 className="h5 mt-4">Nodes</h2>
          {d.nodes.length === 0 ? (
            <Empty title="No nodes yet">Nodes join a region with a join command from the Nodes page.</Empty>
          ) : (
            <Row xs={1} xxl={2} className="g-3" data-testid="diag-nodes">
              {d.nodes.map((n) => (
                <Col key={n.node.id}>
                  <NodeCard diag={n} />
                </Col>
              ))}
            </Row>
          )}
          <h2 className="h5 mt-4">Waiting for capacity</h2>
          <p className="small text-body-secondary">
            Devices whose node failed or drains while no node of their region has room. They stay where they are and
            move as soon as a node has room; adding a node (or capacity) in the region helps.
          </p>
          <DeviceTable devices={d.waiting} testId="diag-waiting" empty="No device waits for capacity" />
          <h2 className="h5 mt-4">Quarantined</h2>
          <p className="small text-body-secondary">
            Devices the abuse signals flagged: their region moves are blocked and their owner's priority is suspended.
            Review, then release or revoke.
          </p>
          <DeviceTable
            devices={d.quarantined}
            testId="diag-quarantined"
            empty="No quarantined devices"
            reason
            actions={(dev) => (
              <ButtonGroup size="sm">
                <Button variant="outline-success" onClick={() => setReleasing(dev)} data-testid="release">
                  Release
                </Button>
                <Button variant="outline-danger" onClick={() => setRevoking(dev)} data-testid="admin-revoke">
                  Revoke
                </Button>
              </ButtonGroup>
            )}
          />
        </>
      )}
      <ReleaseDialog
        device={releasing}
        onClose={() => setReleasing(null)}
        onDone={(n) => {
          setNotice(n);
          refresh();
        }}
      />
      <RevokeDialog
        device={revoking}
        title={`Revoke ${revoking?.name ?? ""} of ${revoking?.owner_email ?? ""}?`}
        revoke={api.adminRevokeDevice}
        onClose={() => setRevoking(null)}
        onDone={(n) => {
          setNotice(n);
          refresh();
        }}
      >
        The device is cut off at its node at once and its owner's slot is freed. The owner is not asked; the action is
        audited under your name.
      </RevokeDialog>
    </>
  );
}

/** Asks before releasing a quarantined device. */
export function ReleaseDialog(props: { device: Device | null; onClose: () => void; onDone: (n: NoticeText) => void }) {
  const { device } = props;
  return (
    <ConfirmModal
      show={device !== null}
      title={`Release ${device?.name ?? ""} from quarantine?`}
      confirmLabel="Release"
      onClose={props.onClose}
      onConfirm={async () => {
        if (!device) return;
        const r = await api.releaseDevice(device.id);
        props.onClose();
        props.onDone({ variant: "success", text: `${r.name} is released: region moves and its owner's priority work again.` });
      }}
    >
      <p className="mb-1">
        {device?.name} of {device?.owner_email} was quarantined: <em>{device?.quarantine_reason ?? "no reason recorded"}</em>.
      </p>
      <p className="mb-0">Releasing lifts the block; the abuse signals keep counting and can quarantine it again.</p>
    </ConfirmModal>
  );
}

function RegionLoads({ regions }: { regions: RegionLoad[] }) {
  return (
    <Card data-testid="diag-regions">
      <Card.Header>Region load</Card.Header>
      {regions.length === 0 ? (
        <Card.Body className="text-body-secondary">No load samples yet: the server samples each region every second.</Card.Body>
      ) : (
        <div className="table-responsive">
          <Table size="sm" className="mb-0 align-middle">
            <thead>
              <tr>
                <th>Region</th>
                <th>Load now</th>
                <th>p95 over the window</th>
                <th>Samples</th>
                <th>Scale-out</th>
              </tr>
            </thead>
            <tbody>
              {regions.map((r) => (
                <tr key={r.region} data-testid="diag-region" data-region={r.region} data-load={r.load}>
                  <td className="font-monospace">{r.region}</td>
                  <td className="node-load">
                    <div className="small" data-testid="region-load">
                      {percent(r.load)}
                    </div>
                    <ProgressBar now={Math.min(100, r.load * 100)} variant={r.load > 0.9 ? "danger" : r.load > 0.7 ? "warning" : "primary"} className="thin" />
                  </td>
                  <td className="small" data-testid="region-p95">
                    {percent(r.load_p95)}
                  </td>
                  <td className="small">{r.samples}</td>
                  <td>
                    {r.scale_out ? (
                      <Badge bg="danger" data-testid="scale-out" data-scale-out="true">
                        add a node
                      </Badge>
                    ) : (
                      <Badge bg="success" data-testid="scale-out" data-scale-out="false">
                        enough capacity
                      </Badge>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
    </Card>
  );
}

function NodeCard({ diag }: { diag: NodeDiagnostics }) {
  const n = diag.node;
  const degraded = n.state === "degraded";
  return (
    <Card data-testid="diag-node" data-node-name={n.name} data-node-id={n.id} border={degraded ? "warning" : undefined}>
      <Card.Header className="d-flex flex-wrap gap-2 align-items-center">
        <strong className="me-auto text-break">{n.name}</strong>
        <span className="small text-body-secondary font-monospace">{n.region}</span>
        <StateBadge state={n.state} testId="node-state" />
      </Card.Header>
      <Card.Body>
        <Row className="g-3 small">
          <Col xs={12} sm={6} lg={4}>
            <div className="text-body-secondary">Load score</div>
            <ScoreView s={n.score} />
          </Col>
          <Col xs={12} sm={6} lg={4}>
            <div className="text-body-secondary">Health</div>
            <HealthView h={n.health} degraded={degraded} />
          </Col>
          <Col xs={12} lg={4}>
            <div className="text-body-secondary">Placement</div>
            <EligibleView n={n} />
            <div className="mt-1">
              {n.live_peers} / {n.capacity} peers · heartbeat {ago(n.last_heartbeat)}
            </div>
            <div data-testid="node-waiting">
              {diag.waiting_devices} device{diag.waiting_devices === 1 ? "" : "s"} waiting to leave
            </div>
          </Col>
        </Row>
        <h3 className="h6 mt-3">Recent state changes</h3>
        {diag.state_changes.length === 0 ? (
          <div className="small text-body-secondary">None recorded.</div>
        ) : (
          <ul className="list-unstyled small mb-0" data-testid="state-changes">
            {diag.state_changes.slice(0, 8).map((e) => (
              <li key={e.id} data-testid="state-change" data-action={e.action} className="d-flex flex-wrap gap-2">
                <span className="text-body-secondary text-nowrap">{dateTime(e.at)}</span>
                <span className="font-monospace">{e.action}</span>
                <span className="text-break">{changeSummary(e)}</span>
                <span className="text-body-secondary">by {e.actor_label ?? e.actor_kind}</span>
              </li>
            ))}
          </ul>
        )}
      </Card.Body>
    </Card>
  );
}

function DeviceTable(props: {
  devices: Device[];
  testId: string;
  empty: string;
  reason?: boolean;
  actions?: (d: Device) => ReactNode;
}) {
  if (props.devices.length === 0) {
    return (
      <div className="text-body-secondary border rounded-3 p-3 bg-body-tertiary" data-testid={`${props.testId}-empty`}>
        {props.empty}.
      </div>
    );
  }
  return (
    <div className="table-responsive">
      <Table size="sm" hover className="align-middle" data-testid={props.testId}>
        <thead>
          <tr>
            <th>Device</th>
            <th>Owner</th>
            <th>Region / node</th>
            {props.reason && <th>Reason</th>}
            <th>Last seen</th>
            {props.actions && <th />}
          </tr>
        </thead>
        <tbody>
          {props.devices.map((d) => (
            <tr key={d.id} data-testid="diag-device" data-device-name={d.name} data-device-id={d.id}>
              <td className="text-break">
                <Link to={`/admin/diagnostics/devices/${d.id}`} data-testid="device-diagnostics-link">
                  {d.name}
                </Link>{" "}
                <DeviceBadges d={d} />
              </td>
              <td className="small text-break">{d.owner_email}</td>
              <td className="small">
                {d.region} / {d.node?.name ?? "–"}
              </td>
              {props.reason && (
                <td className="small text-break" data-testid="quarantine-reason">
                  {d.quarantine_reason ?? "–"}
                </td>
              )}
              <td className="small">{ago(d.tunnel.last_handshake)}</td>
              {props.actions && <td>{props.actions(d)}</td>}
            </tr>
          ))}
        </tbody>
      </Table>
    </div>
  );
}
