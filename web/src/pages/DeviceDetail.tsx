// One device in full, with its config template (everything but the private key): rename,
// rotate, move to another region, reconnect a device that lost its node.

import { useState } from "react";
import { Alert, Button, Card, Form, InputGroup } from "react-bootstrap";
import { Link, useParams } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ApiError } from "../api";
import { ErrorAlert, Loading, PageHeader, StateBadge, TunnelBadge } from "../components/common";
import { acknowledgeMove, MovedNotice, MoveRegionModal, PlacementNotes, RotateModal } from "../components/DeviceActions";
import { DeviceBadges } from "../components/status";
import { ago, bytes, dateTime, moveReason } from "../format";
import { LIVE_MS } from "../session";
import { useAction } from "../action";

export function DeviceDetailPage() {
  const { id = "" } = useParams();
  const device = useQuery({ queryKey: ["device", id], queryFn: () => api.device(id), refetchInterval: LIVE_MS, retry: false });
  const active = device.data?.state === "active" && device.data.tunnel_ip !== null;
  // Keyed by where the device is, so a move (by the system too) shows the new template.
  const config = useQuery({
    queryKey: ["device-config", id, device.data?.node?.id, device.data?.tunnel_ip],
    queryFn: () => api.deviceConfig(id),
    enabled: active,
    retry: false,
  });
  const qc = useQueryClient();
  const [rotating, setRotating] = useState<{ moved: boolean } | null>(null);
  const [moving, setMoving] = useState(false);
  const [, setAcks] = useState(0);
  const reconnect = useAction();
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["device", id] });
    void qc.invalidateQueries({ queryKey: ["device-config", id] });
    void qc.invalidateQueries({ queryKey: ["devices"] });
    void qc.invalidateQueries({ queryKey: ["me"] });
  };
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
        <DeviceBadges d={d} />
        {d.state === "active" ? <TunnelBadge status={d.tunnel.status} /> : <StateBadge state={d.state} />}
      </PageHeader>
      <MovedNotice
        device={d}
        onRotate={() => setRotating({ moved: true })}
        onDismiss={() => {
          acknowledgeMove(d);
          setAcks((n) => n + 1);
        }}
      />
      <PlacementNotes device={d} />
      {d.state === "active" && <RenameForm id={d.id} name={d.name} />}
      {d.state === "active" && (
        <div className="d-flex flex-wrap gap-2 mb-3">
          <Button size="sm" variant="outline-primary" onClick={() => setRotating({ moved: false })} data-testid="rotate">
            Rotate keys
          </Button>
          <Button size="sm" variant="outline-secondary" onClick={() => setMoving(true)} disabled={d.quarantined} data-testid="move-region">
            Move to another region
          </Button>
          {!d.node && (
            <Button
              size="sm"
              variant="outline-success"
              disabled={reconnect.busy}
              data-testid="reconnect"
              onClick={() =>
                void reconnect.run(async () => {
                  // Fetching the config is what places a device without a peer again.
                  await api.deviceConfig(d.id);
                  refresh();
                })
              }
            >
              {reconnect.busy ? "Reconnecting…" : "Reconnect"}
            </Button>
          )}
        </div>
      )}
      <ErrorAlert error={reconnect.error} title="The device could not be placed" />
      <Card className="mb-3">
        <Card.Body>
          <dl className="row mb-0">
            <dt className="col-sm-3">Region</dt>
            <dd className="col-sm-9" data-testid="device-region">
              {d.region}
            </dd>
            <dt className="col-sm-3">Class</dt>
            <dd className="col-sm-9" data-testid="device-class-text">
              {d.class === "priority" ? "priority (placed first, may use reserved capacity)" : "standard"}
            </dd>
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
            {d.moved_at !== null && (
              <>
                <dt className="col-sm-3">Last moved</dt>
                <dd className="col-sm-9" data-testid="device-moved">
                  {dateTime(d.moved_at)} ({moveReason(d.moved_reason)})
                </dd>
              </>
            )}
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
              The private key exists only on the device. Lost the config? Rotate the keys to get a new one. After a move
              you can also put these values into the existing config by hand, keeping its private key.
            </p>
            <pre className="config-text p-2 border rounded bg-body-tertiary mb-0">{config.data.config_text}</pre>
          </Card.Body>
        </Card>
      )}
      {rotating && <RotateModal device={d} moved={rotating.moved} onClose={() => setRotating(null)} onChanged={refresh} />}
      {moving && <MoveRegionModal device={d} onClose={() => setMoving(false)} onChanged={refresh} />}
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
