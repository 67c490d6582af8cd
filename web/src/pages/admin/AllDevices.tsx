// Every user's devices (admin): filter (also to quarantined or waiting devices), open a
// device's diagnostics, revoke.

import { useState } from "react";
import { Button, ButtonGroup, Form, Table } from "react-bootstrap";
import { Link } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { Notice, RevokeDialog, type NoticeText } from "../../components/Revoke";
import { Empty, ErrorAlert, Loading, PageHeader, StateBadge, TunnelBadge } from "../../components/common";
import { DeviceBadges } from "../../components/status";
import { ago } from "../../format";
import type { Device } from "../../types";
import { LIVE_MS } from "../../session";

export function AllDevicesPage() {
  const [state, setState] = useState("active");
  const [region, setRegion] = useState("");
  const [text, setText] = useState("");
  const [only, setOnly] = useState<"" | "quarantined" | "waiting">("");
  const devices = useQuery({
    queryKey: ["admin-devices", state, only],
    queryFn: () =>
      api.adminDevices({ state: state || undefined, quarantined: only === "quarantined", waiting: only === "waiting" }),
    refetchInterval: LIVE_MS,
  });
  const qc = useQueryClient();
  const [revoking, setRevoking] = useState<Device | null>(null);
  const [notice, setNotice] = useState<NoticeText | null>(null);
  const regions = [...new Set((devices.data ?? []).map((d) => d.region))].sort();
  const q = text.trim().toLowerCase();
  const shown = (devices.data ?? []).filter(
    (d) =>
      (!region || d.region === region) &&
      (!q ||
        d.name.toLowerCase().includes(q) ||
        (d.owner_email ?? "").includes(q) ||
        (d.tunnel_ip ?? "").includes(q) ||
        d.public_key.toLowerCase().includes(q)),
  );
  return (
    <>
      <PageHeader title="All devices" />
      <Form className="row g-2 mb-3" onSubmit={(e) => e.preventDefault()}>
        <div className="col-12 col-md-4">
          <Form.Control placeholder="Search name, owner, IP or key" value={text} onChange={(e) => setText(e.target.value)} aria-label="Search" data-testid="device-search" />
        </div>
        <div className="col-6 col-md-2">
          <Form.Select value={state} onChange={(e) => setState(e.target.value)} aria-label="State">
            <option value="active">Active</option>
            <option value="revoked">Revoked</option>
            <option value="">All states</option>
          </Form.Select>
        </div>
        <div className="col-6 col-md-3">
          <Form.Select value={region} onChange={(e) => setRegion(e.target.value)} aria-label="Region">
            <option value="">All regions</option>
            {regions.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </Form.Select>
        </div>
        <div className="col-12 col-md-3">
          <Form.Select value={only} onChange={(e) => setOnly(e.target.value as typeof only)} aria-label="Show" data-testid="device-only">
            <option value="">Any placement</option>
            <option value="quarantined">Quarantined only</option>
            <option value="waiting">Waiting for capacity only</option>
          </Form.Select>
        </div>
      </Form>
      <Notice notice={notice} onClose={() => setNotice(null)} />
      {devices.isPending && <Loading what="devices" />}
      <ErrorAlert error={devices.error} title="Devices could not be loaded" />
      {devices.data && shown.length === 0 && <Empty title="No devices match" />}
      {shown.length > 0 && (
        <div className="table-responsive">
          <Table hover size="sm" className="align-middle" data-testid="admin-devices">
            <thead>
              <tr>
                <th>Device</th>
                <th>Owner</th>
                <th>State</th>
                <th>Region / node</th>
                <th>Tunnel IP</th>
                <th>Tunnel</th>
                <th>Last seen</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {shown.map((d) => (
                <tr key={d.id} data-testid="admin-device" data-device-name={d.name}>
                  <td className="text-break">
                    <Link to={`/admin/diagnostics/devices/${d.id}`} data-testid="device-diagnostics-link">
                      {d.name}
                    </Link>{" "}
                    <DeviceBadges d={d} />
                  </td>
                  <td className="text-break small">{d.owner_email}</td>
                  <td>
                    <StateBadge state={d.state} />
                  </td>
                  <td className="small">
                    {d.region} / {d.node?.name ?? "–"}
                  </td>
                  <td className="font-monospace small">{d.tunnel_ip ?? "–"}</td>
                  <td>{d.state === "active" && <TunnelBadge status={d.tunnel.status} />}</td>
                  <td className="small">{ago(d.tunnel.last_handshake)}</td>
                  <td>
                    <ButtonGroup size="sm">
                      <Link to={`/admin/diagnostics/devices/${d.id}`} className="btn btn-outline-secondary" data-testid="device-diagnostics">
                        Diagnostics
                      </Link>
                      {d.state === "active" && (
                        <Button variant="outline-danger" onClick={() => setRevoking(d)} data-testid="admin-revoke">
                          Revoke
                        </Button>
                      )}
                    </ButtonGroup>
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      <RevokeDialog
        device={revoking}
        title={`Revoke ${revoking?.name ?? ""} of ${revoking?.owner_email ?? ""}?`}
        revoke={api.adminRevokeDevice}
        onClose={() => setRevoking(null)}
        onDone={(n) => {
          setNotice(n);
          void qc.invalidateQueries({ queryKey: ["admin-devices"] });
        }}
      >
        The device is cut off at its node at once. The owner is not asked; the action is audited under your name.
      </RevokeDialog>
    </>
  );
}
