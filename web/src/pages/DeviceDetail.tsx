// One device in full, with its config template (everything but the private key).

import { useState } from "react";
import { Alert, Button, Card, Form, InputGroup } from "react-bootstrap";
import { Link, useParams } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "../api";
import { ErrorAlert, Loading, PageHeader, StateBadge, TunnelBadge } from "../components/common";
import { ago, bytes, dateTime } from "../format";
import { LIVE_MS } from "../session";
import { useAction } from "../action";

export function DeviceDetailPage() {
  const { id = "" } = useParams();
  const device = useQuery({ queryKey: ["device", id], queryFn: () => api.device(id), refetchInterval: LIVE_MS, retry: false });
  const active = device.data?.state === "active" && device.data.tunnel_ip !== null;
  const config = useQuery({ queryKey: ["device-config", id], queryFn: () => api.deviceConfig(id), enabled: active, retry: false });
  if (device.isPending) return <Loading what="the device" />;
  if (device.error instanceof ApiError && device.error.status === 404) {
    return (
      <Alert variant="secondary" data-testid="device-not-found">
        <h1 className="h5">Device not found</h1>
        There is no device with this id among yours. <Link to="/">Back to your devices</Link>
      </Alert>
    );
  }
  if (!device.data) return <ErrorAlert error={device.error} title="The device could not be loaded" />;
  const d = device.data;
  return (
    <>
      <PageHeader title={d.name}>
        {d.state === "active" ? <TunnelBadge status={d.tunnel.status} /> : <StateBadge state={d.state} />}
      </PageHeader>
      {d.state === "active" && <RenameForm id={d.id} name={d.name} />}
      <Card className="mb-3">
        <Card.Body>
          <dl className="row mb-0">
            <dt className="col-sm-3">Region</dt>
            <dd className="col-sm-9">{d.region}</dd>
            <dt className="col-sm-3">Node</dt>
            <dd className="col-sm-9">{d.node ? `${d.node.name} (${d.node.endpoint})` : "–"}</dd>
            <dt className="col-sm-3">Tunnel IP</dt>
            <dd className="col-sm-9 font-monospace">{d.tunnel_ip ?? "–"}</dd>
            <dt className="col-sm-3">Exit IP</dt>
            <dd className="col-sm-9 font-monospace">{d.node?.exit_ipv4 ?? "–"}</dd>
            <dt className="col-sm-3">Public key</dt>
            <dd className="col-sm-9 font-monospace text-break">{d.public_key}</dd>
            <dt className="col-sm-3">Last handshake</dt>
            <dd className="col-sm-9">{ago(d.tunnel.last_handshake)}</dd>
            <dt className="col-sm-3">Last endpoint</dt>
            <dd className="col-sm-9 font-monospace">{d.tunnel.endpoint ?? "–"}</dd>
            <dt className="col-sm-3">Traffic</dt>
            <dd className="col-sm-9">
              ↓ {bytes(d.tunnel.tx_bytes)} · ↑ {bytes(d.tunnel.rx_bytes)}
            </dd>
            <dt className="col-sm-3">Created</dt>
            <dd className="col-sm-9">{dateTime(d.created_at)}</dd>
            {d.revoked_at && (
              <>
                <dt className="col-sm-3">Revoked</dt>
                <dd className="col-sm-9">{dateTime(d.revoked_at)}</dd>
              </>
            )}
          </dl>
        </Card.Body>
      </Card>
      {config.data && (
        <Card>
          <Card.Header>Config without the private key</Card.Header>
          <Card.Body>
            <p className="small text-body-secondary">
              The private key exists only on the device. Lost the config? Rotate the keys on the Devices page to get a
              new one.
            </p>
            <pre className="config-text p-2 border rounded bg-body-tertiary mb-0">{config.data.config_text}</pre>
          </Card.Body>
        </Card>
      )}
    </>
  );
}

function RenameForm({ id, name }: { id: string; name: string }) {
  const qc = useQueryClient();
  const [value, setValue] = useState(name);
  const { busy, error, run } = useAction();
  return (
    <Form
      className="mb-3"
      onSubmit={async (e) => {
        e.preventDefault();
        await run(async () => {
          await api.renameDevice(id, value.trim());
          await qc.invalidateQueries({ queryKey: ["device", id] });
          await qc.invalidateQueries({ queryKey: ["devices"] });
        });
      }}
    >
      <InputGroup className="rename">
        <Form.Control value={value} onChange={(e) => setValue(e.target.value)} maxLength={64} required aria-label="Device name" />
        <Button type="submit" variant="outline-primary" disabled={busy || value.trim() === name} data-testid="rename">
          Rename
        </Button>
      </InputGroup>
      <ErrorAlert error={error} title="Not renamed" />
    </Form>
  );
}
