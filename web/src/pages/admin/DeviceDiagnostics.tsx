// One device's diagnostics (admin): where it is served from, its tunnel, its recent moves
// and the abuse signals counted in the current window; release or revoke from here.

import { useState, type ReactNode } from "react";
import { Alert, Button, Card, Col, Row, Table } from "react-bootstrap";
import { Link, useParams } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "../../api";
import { Notice, RevokeDialog, type NoticeText } from "../../components/Revoke";
import { ErrorAlert, Loading, PageHeader, StateBadge, TunnelBadge } from "../../components/common";
import { DeviceBadges } from "../../components/status";
import { bytes, dateTime, duration, moveReason } from "../../format";
import { LIVE_MS } from "../../session";
import { metaField, ReleaseDialog } from "./Diagnostics";

export function DeviceDiagnosticsPage() {
  const { id = "" } = useParams();
  const qc = useQueryClient();
  const diag = useQuery({
    queryKey: ["device-diagnostics", id],
    queryFn: () => api.deviceDiagnostics(id),
    refetchInterval: LIVE_MS,
    retry: false,
  });
  // Node ids in the move records, by name.
  const nodes = useQuery({ queryKey: ["admin-nodes"], queryFn: api.adminNodes });
  const nodeName = (nid: string | undefined) => (nid ? (nodes.data?.find((n) => n.id === nid)?.name ?? nid) : "–");
  const [releasing, setReleasing] = useState(false);
  const [revoking, setRevoking] = useState(false);
  const [notice, setNotice] = useState<NoticeText | null>(null);
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["device-diagnostics", id] });
    void qc.invalidateQueries({ queryKey: ["diagnostics"] });
    void qc.invalidateQueries({ queryKey: ["admin-devices"] });
  };

  if (diag.isPending) return <Loading what="the device's diagnostics" />;
  if (diag.error instanceof ApiError && diag.error.status === 404) {
    return (
      <Alert variant="secondary" data-testid="device-not-found">
        <h1 className="h5">Device not found</h1>
        No device has this id. <Link to="/admin/devices">All devices</Link>
      </Alert>
    );
  }
  if (!diag.data) return <ErrorAlert error={diag.error} title="The device's diagnostics could not be loaded" />;
  const { device: d, handshake_age_ms, moves, signals } = diag.data;
  const fact = (label: string, value: ReactNode, testId?: string, mono = false) => (
    <>
      <dt className="col-sm-4 col-lg-3">{label}</dt>
      <dd className={`col-sm-8 col-lg-9${mono ? " font-monospace" : ""}`} data-testid={testId}>
        {value}
      </dd>
    </>
  );
  return (
    <>
      <div className="small mb-2">
        <Link to="/admin/diagnostics">Diagnostics</Link> · <Link to="/admin/devices">All devices</Link>
      </div>
      <PageHeader title={d.name}>
        {d.state === "active" ? <TunnelBadge status={d.tunnel.status} /> : <StateBadge state={d.state} />}
        <DeviceBadges d={d} />
        {d.quarantined && (
          <Button size="sm" variant="outline-success" onClick={() => setReleasing(true)} data-testid="release">
            Release
          </Button>
        )}
        {d.state === "active" && (
          <Button size="sm" variant="outline-danger" onClick={() => setRevoking(true)} data-testid="admin-revoke">
            Revoke
          </Button>
        )}
      </PageHeader>
      <Notice notice={notice} onClose={() => setNotice(null)} />
      {d.quarantined && (
        <Alert variant="danger" data-testid="quarantine-notice">
          Quarantined: {d.quarantine_reason ?? "no reason recorded"}. Region moves are blocked and the owner's priority is
          suspended until released.
        </Alert>
      )}
      <Card className="mb-3" data-testid="device-diagnostics" data-device-id={d.id}>
        <Card.Body>
          <dl className="row mb-0 device-facts">
            {fact("Owner", d.owner_email ?? "–", "diag-owner")}
            {fact("Region", d.region, "diag-region")}
            {fact("Node", d.node ? `${d.node.name} (${d.node.endpoint})` : "–", "diag-node")}
            {fact("Exit IP", d.node?.exit_ipv4 ?? "–", "diag-exit-ip", true)}
            {fact("Tunnel IP", d.tunnel_ip ?? "–", "diag-tunnel-ip", true)}
            {fact("Placement", d.placement.replace(/_/g, " "), "diag-placement")}
            {fact("Class", d.class, "diag-class")}
            {fact(
              "Last handshake",
              handshake_age_ms === null ? "never" : `${duration(handshake_age_ms)} ago (${dateTime(d.tunnel.last_handshake)})`,
              "diag-handshake",
            )}
            {fact("Last endpoint", d.tunnel.endpoint ?? "–", "diag-endpoint", true)}
            {fact("Traffic", `↓ ${bytes(d.tunnel.tx_bytes)} · ↑ ${bytes(d.tunnel.rx_bytes)}`, "diag-traffic")}
            {fact("Last moved", d.moved_at ? `${dateTime(d.moved_at)} (${moveReason(d.moved_reason)})` : "never", "diag-moved")}
            {d.idle_flagged_at != null && fact("Idle since", dateTime(d.idle_flagged_at), "diag-idle")}
            {fact("Public key", d.public_key, undefined, true)}
            {fact("Created", dateTime(d.created_at))}
          </dl>
        </Card.Body>
      </Card>
      <Row className="g-3">
        <Col lg={4}>
          <Card data-testid="diag-signals">
            <Card.Header>Abuse signals (current window)</Card.Header>
            <Card.Body>
              <dl className="row mb-0 small">
                <dt className="col-8">Endpoint changes</dt>
                <dd className="col-4 text-end" data-testid="signal-endpoint-changes">
                  {signals.endpoint_changes}
                </dd>
                <dt className="col-8">Region switches</dt>
                <dd className="col-4 text-end" data-testid="signal-region-switches">
                  {signals.region_switches}
                </dd>
                <dt className="col-8">Byte bursts</dt>
                <dd className="col-4 text-end mb-0" data-testid="signal-bursts">
                  {signals.bursts}
                </dd>
              </dl>
            </Card.Body>
          </Card>
        </Col>
        <Col lg={8}>
          <Card data-testid="diag-moves">
            <Card.Header>Recent moves</Card.Header>
            {moves.length === 0 ? (
              <Card.Body className="text-body-secondary" data-testid="diag-moves-empty">
                This device has not been moved.
              </Card.Body>
            ) : (
              <div className="table-responsive">
                <Table size="sm" className="mb-0 align-middle">
                  <thead>
                    <tr>
                      <th>When</th>
                      <th>What</th>
                      <th>From</th>
                      <th>To</th>
                      <th>By</th>
                    </tr>
                  </thead>
                  <tbody>
                    {moves.map((e) => (
                      <tr key={e.id} data-testid="diag-move" data-action={e.action}>
                        <td className="small text-nowrap">{dateTime(e.at)}</td>
                        <td className="small font-monospace">{e.action}</td>
                        <td className="small">
                          {e.action === "device.waiting"
                            ? `${metaField(e, "region") ?? "–"} / ${nodeName(metaField(e, "node_id"))}`
                            : `${metaField(e, "from_region") ?? "–"} / ${nodeName(metaField(e, "from_node"))}`}
                        </td>
                        <td className="small">
                          {e.action === "device.waiting"
                            ? `waiting (${metaField(e, "reason") ?? "no room"})`
                            : `${metaField(e, "to_region") ?? "–"} / ${nodeName(metaField(e, "to_node"))}`}
                        </td>
                        <td className="small text-break">{e.actor_label ?? e.actor_kind}</td>
                      </tr>
                    ))}
                  </tbody>
                </Table>
              </div>
            )}
          </Card>
        </Col>
      </Row>
      <ReleaseDialog
        device={releasing ? d : null}
        onClose={() => setReleasing(false)}
        onDone={(n) => {
          setNotice(n);
          refresh();
        }}
      />
      <RevokeDialog
        device={revoking ? d : null}
        title={`Revoke ${d.name} of ${d.owner_email ?? ""}?`}
        revoke={api.adminRevokeDevice}
        onClose={() => setRevoking(false)}
        onDone={(n) => {
          setNotice(n);
          refresh();
        }}
      >
        The device is cut off at its node at once. The owner is not asked; the action is audited under your name.
      </RevokeDialog>
    </>
  );
}
