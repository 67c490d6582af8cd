// The signed-in user's devices: slots, live tunnel status, add / rotate / move / revoke,
// and the notices for a device the system moved or that waits for capacity.

import { useState } from "react";
import { Alert, Button, Card, Col, Form, Modal, Row } from "react-bootstrap";
import { Link } from "react-router";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { ConfigDelivery } from "../components/ConfigDelivery";
import { acknowledgeMove, MovedNotice, MoveRegionModal, PlacementNotes, RotateModal } from "../components/DeviceActions";
import { DeviceBadges } from "../components/status";
import { Notice, RevokeDialog, type NoticeText } from "../components/Revoke";
import { Empty, ErrorAlert, Loading, PageHeader, StateBadge, TunnelBadge } from "../components/common";
import { ago, bytes } from "../format";
import { generateKeyPair, keygenUnavailable, renderConfig } from "../keys";
import type { Device, Region } from "../types";
import { LIVE_MS, useMe } from "../session";
import { useAction } from "../action";

export function DevicesPage() {
  const me = useMe();
  const devices = useQuery({ queryKey: ["devices"], queryFn: api.devices, refetchInterval: LIVE_MS });
  const [adding, setAdding] = useState(false);
  const [rotating, setRotating] = useState<{ device: Device; moved: boolean } | null>(null);
  const [moving, setMoving] = useState<Device | null>(null);
  const [, setAcks] = useState(0);
  const [revoking, setRevoking] = useState<Device | null>(null);
  const [notice, setNotice] = useState<NoticeText | null>(null);
  const qc = useQueryClient();
  const refresh = () => {
    void qc.invalidateQueries({ queryKey: ["devices"] });
    void qc.invalidateQueries({ queryKey: ["me"] });
  };

  const slots = me.data ? { used: me.data.active_devices, total: me.data.device_slots } : undefined;
  const full = slots ? slots.used >= slots.total : true;
  const active = devices.data?.filter((d) => d.state === "active") ?? [];
  const revoked = devices.data?.filter((d) => d.state === "revoked") ?? [];

  return (
    <>
      <PageHeader title="Devices">
        {slots && (
          <span className="align-self-center text-body-secondary" data-testid="slots">
            {slots.used} of {slots.total} slot{slots.total === 1 ? "" : "s"} used
          </span>
        )}
        <Button onClick={() => setAdding(true)} disabled={full} data-testid="add-device">
          Add device
        </Button>
      </PageHeader>
      {slots && full && (
        <Alert variant="info" data-testid="no-slots">
          All your device slots are in use. Revoke a device to free one, or ask an administrator for more slots.
        </Alert>
      )}
      <Notice notice={notice} onClose={() => setNotice(null)} />
      {devices.isPending && <Loading what="devices" />}
      <ErrorAlert error={devices.error} title="Devices could not be loaded" />
      {devices.data && devices.data.length === 0 && (
        <Empty title="No devices yet">
          Add a device: its keys are made in this browser and you get a config file and a QR code.
        </Empty>
      )}
      <Row xs={1} lg={2} className="g-3" data-testid="device-list">
        {active.map((d) => (
          <Col key={d.id}>
            <DeviceCard
              device={d}
              onRotate={(moved) => setRotating({ device: d, moved })}
              onMove={() => setMoving(d)}
              onRevoke={() => setRevoking(d)}
              onDismissMove={() => {
                acknowledgeMove(d);
                setAcks((n) => n + 1);
              }}
            />
          </Col>
        ))}
      </Row>
      {revoked.length > 0 && (
        <>
          <h2 className="h5 mt-4">Revoked</h2>
          <Row xs={1} lg={2} className="g-3" data-testid="revoked-list">
            {revoked.map((d) => (
              <Col key={d.id}>
                <DeviceCard device={d} />
              </Col>
            ))}
          </Row>
        </>
      )}
      {adding && <AddDeviceModal onClose={() => setAdding(false)} onChanged={refresh} />}
      {rotating && (
        <RotateModal device={rotating.device} moved={rotating.moved} onClose={() => setRotating(null)} onChanged={refresh} />
      )}
      {moving && <MoveRegionModal device={moving} onClose={() => setMoving(null)} onChanged={refresh} />}
      <RevokeDialog
        device={revoking}
        title={`Revoke ${revoking?.name ?? ""}?`}
        revoke={api.revokeDevice}
        onClose={() => setRevoking(null)}
        onDone={(n) => {
          setNotice(n);
          refresh();
        }}
      >
        <p>
          The device is cut off at its node at once and its slot is freed. This cannot be undone: to use the device
          again, add it as a new device.
        </p>
      </RevokeDialog>
    </>
  );
}

function DeviceCard({
  device: d,
  onRotate,
  onMove,
  onRevoke,
  onDismissMove,
}: {
  device: Device;
  onRotate?: (moved: boolean) => void;
  onMove?: () => void;
  onRevoke?: () => void;
  onDismissMove?: () => void;
}) {
  return (
    <Card data-testid="device" data-device-id={d.id} data-device-name={d.name} data-placement={d.placement} data-class={d.class}>
      <Card.Body>
        <div className="d-flex flex-wrap align-items-center gap-2 mb-2">
          <Card.Title className="mb-0 me-auto text-break">
            <Link to={`/devices/${d.id}`} className="text-reset">
              {d.name}
            </Link>
          </Card.Title>
          <DeviceBadges d={d} />
          {d.state === "active" ? <TunnelBadge status={d.tunnel.status} /> : <StateBadge state={d.state} testId="device-state" />}
        </div>
        {onRotate && <MovedNotice device={d} onRotate={() => onRotate(true)} onDismiss={() => onDismissMove?.()} />}
        <dl className="row small mb-2 device-facts">
          <dt className="col-5 col-sm-4">Region</dt>
          <dd className="col-7 col-sm-8" data-testid="device-region">
            {d.region}
          </dd>
          <dt className="col-5 col-sm-4">Node</dt>
          <dd className="col-7 col-sm-8" data-testid="device-node">
            {d.node ? `${d.node.name} (${d.node.endpoint})` : "–"}
          </dd>
          <dt className="col-5 col-sm-4">Tunnel IP</dt>
          <dd className="col-7 col-sm-8 font-monospace" data-testid="tunnel-ip">
            {d.tunnel_ip ?? "–"}
          </dd>
          <dt className="col-5 col-sm-4">Exit IP</dt>
          <dd className="col-7 col-sm-8 font-monospace" data-testid="exit-ip">
            {d.node?.exit_ipv4 ?? "–"}
          </dd>
          <dt className="col-5 col-sm-4">Last seen</dt>
          <dd className="col-7 col-sm-8" data-testid="last-seen">
            {ago(d.tunnel.last_handshake)}
          </dd>
          <dt className="col-5 col-sm-4">Traffic</dt>
          <dd className="col-7 col-sm-8" data-testid="traffic">
            ↓ {bytes(d.tunnel.tx_bytes)} · ↑ {bytes(d.tunnel.rx_bytes)}
          </dd>
        </dl>
        <PlacementNotes device={d} />
        {d.state === "active" && (onRotate || onRevoke) && (
          <div className="d-flex flex-wrap gap-2">
            {onRotate && (
              <Button size="sm" variant="outline-primary" onClick={() => onRotate(false)} data-testid="rotate">
                Rotate keys
              </Button>
            )}
            {onMove && (
              <Button size="sm" variant="outline-secondary" onClick={onMove} disabled={d.quarantined} data-testid="move-region">
                Move to another region
              </Button>
            )}
            {onRevoke && (
              <Button size="sm" variant="outline-danger" onClick={onRevoke} data-testid="revoke">
                Revoke
              </Button>
            )}
          </div>
        )}
      </Card.Body>
    </Card>
  );
}

function regionLabel(r: Region): string {
  const base = `${r.name} (${r.code})`;
  return r.health.status === "healthy" ? base : `${base}: ${r.health.status}`;
}

function AddDeviceModal({ onClose, onChanged }: { onClose: () => void; onChanged: () => void }) {
  const regions = useQuery({ queryKey: ["regions"], queryFn: api.regions, refetchInterval: LIVE_MS });
  const [name, setName] = useState("");
  const [region, setRegion] = useState("");
  const { busy, error, run } = useAction();
  const [result, setResult] = useState<{ name: string; config: string } | null>(null);
  const keygenProblem = keygenUnavailable();
  const chosen = regions.data?.find((r) => r.code === (region || regions.data?.[0]?.code));

  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    if (!chosen) return;
    await run(async () => {
      const keys = await generateKeyPair();
      const created = await api.createDevice(name.trim(), keys.publicKey, chosen.code);
      setResult({ name: created.device.name, config: renderConfig(created.config, keys.privateKey) });
      onChanged();
    });
  };

  return (
    <Modal show onHide={() => !busy && onClose()} size="lg" centered backdrop="static" fullscreen="sm-down">
      <Modal.Header closeButton>
        <Modal.Title>{result ? `${result.name} is ready` : "Add a device"}</Modal.Title>
      </Modal.Header>
      <Modal.Body>
        {result ? (
          <ConfigDelivery deviceName={result.name} config={result.config} />
        ) : (
          <Form id="add-device" onSubmit={submit}>
            {keygenProblem && <Alert variant="danger">{keygenProblem}</Alert>}
            <Form.Group className="mb-3" controlId="device-name">
              <Form.Label>Name</Form.Label>
              <Form.Control
                value={name}
                onChange={(e) => setName(e.target.value)}
                placeholder="laptop"
                maxLength={64}
                required
                autoFocus
              />
            </Form.Group>
            <Form.Group className="mb-3" controlId="device-region">
              <Form.Label>Region</Form.Label>
              {regions.isPending && <Loading what="regions" />}
              <ErrorAlert error={regions.error} title="Regions could not be loaded" />
              {regions.data && regions.data.length === 0 && (
                <Alert variant="warning" data-testid="no-regions">
                  No region can take a new device right now (no node is online with room). Try again later or ask an
                  administrator.
                </Alert>
              )}
              {regions.data && regions.data.length > 0 && (
                <>
                  <Form.Select value={chosen?.code ?? ""} onChange={(e) => setRegion(e.target.value)}>
                    {regions.data.map((r) => (
                      <option key={r.code} value={r.code}>
                        {regionLabel(r)}
                      </option>
                    ))}
                  </Form.Select>
                  {chosen && chosen.health.status !== "healthy" && (
                    <Form.Text className="text-warning-emphasis" data-testid="region-degraded">
                      {chosen.name} is {chosen.health.status}: {chosen.health.reason ?? "some nodes cannot take devices"} (
                      {chosen.health.eligible_nodes} of {chosen.health.total_nodes} nodes available).
                    </Form.Text>
                  )}
                </>
              )}
            </Form.Group>
            <p className="small text-body-secondary mb-0">
              The key pair is made in this browser. Only the public key is sent to the server.
            </p>
            <ErrorAlert error={error} title="The device could not be added" />
          </Form>
        )}
      </Modal.Body>
      <Modal.Footer>
        {result ? (
          <Button onClick={onClose} data-testid="done">
            Done
          </Button>
        ) : (
          <>
            <Button variant="secondary" onClick={onClose} disabled={busy}>
              Cancel
            </Button>
            <Button type="submit" form="add-device" disabled={busy || !chosen || !!keygenProblem} data-testid="create">
              {busy ? "Creating…" : "Create device"}
            </Button>
          </>
        )}
      </Modal.Footer>
    </Modal>
  );
}
