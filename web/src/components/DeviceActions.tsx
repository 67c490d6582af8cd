// What a user does to one of their devices besides revoking it: rotate its keys, move it
// to another region, and pick up a config the system changed (failover, drain). All of
// them end the same way: a key pair made in this browser and the new config handed over
// by ConfigDelivery. The private key never leaves the browser; that is also why a moved
// device needs new keys here: the server does not have (and this browser never kept) the
// old private key, so the only config this page can hand over is one with a new key.

import { useState } from "react";
import { Alert, Button, Form, Modal } from "react-bootstrap";
import { useQuery } from "@tanstack/react-query";
import { api, ApiError } from "../api";
import { ConfigDelivery } from "./ConfigDelivery";
import { ErrorAlert, Loading } from "./common";
import { dateTime, moveReason } from "../format";
import { generateKeyPair, keygenUnavailable, renderConfig } from "../keys";
import type { Device, DeviceWithConfig, NodeAck, Region } from "../types";
import { LIVE_MS } from "../session";
import { useAction } from "../action";

// ---- "your config changed" -----------------------------------------------------------

const ACK_PREFIX = "clawn.config-updated.";

/** Remembers (in this browser) that the user got a config after the device's last move. */
export function acknowledgeMove(d: Device) {
  if (d.moved_at == null) return;
  try {
    localStorage.setItem(ACK_PREFIX + d.id, String(d.moved_at));
  } catch {
    // storage unavailable: the notice just stays until the device connects
  }
}

function acknowledged(d: Device): boolean {
  try {
    return localStorage.getItem(ACK_PREFIX + d.id) === String(d.moved_at);
  } catch {
    return false;
  }
}

/**
 * Whether the user still has to install a new config: the system moved the device, it has
 * not connected since (a handshake after the move means the new config is in place), and
 * the user did not get a new config in this browser since.
 */
export function needsNewConfig(d: Device): boolean {
  if (d.state !== "active" || d.moved_at == null) return false;
  if (d.tunnel.last_handshake != null && d.tunnel.last_handshake > d.moved_at) return false;
  return !acknowledged(d);
}

/** The notice on a moved device, with the one action that gets a working config again. */
export function MovedNotice({ device: d, onRotate, onDismiss }: { device: Device; onRotate: () => void; onDismiss: () => void }) {
  if (!needsNewConfig(d)) return null;
  return (
    <Alert variant="warning" className="small py-2 px-3 mb-2" data-testid="moved-notice" data-moved-reason={d.moved_reason ?? ""}>
      <strong>
        Your config changed on {dateTime(d.moved_at)} ({moveReason(d.moved_reason)}): get the new config.
      </strong>{" "}
      The device now connects through {d.node ? d.node.name : "another node"}; its old config no longer reaches it. Your
      private key exists only on the device, so this browser makes a new key pair and gives you a new config to install.
      <div className="d-flex flex-wrap gap-2 mt-2">
        <Button size="sm" variant="warning" onClick={onRotate} data-testid="moved-rotate">
          Get the new config (new keys)
        </Button>
        <Button size="sm" variant="link" className="p-0" onClick={onDismiss} data-testid="moved-dismiss">
          I updated the config by hand
        </Button>
      </div>
    </Alert>
  );
}

// ---- placement

/** Why an active device is not simply served: waiting for room, no node, quarantined. */
export function PlacementNotes({ device: d }: { device: Device }) {
  if (d.state !== "active") return null;
  return (
    <>
      {d.placement === "waiting_for_capacity" && (
        <Alert variant="warning" className="small py-1 px-2 mb-2" data-testid="waiting-notice">
          Waiting for capacity: {d.node ? `its node ${d.node.name}` : "its node"} is unavailable or being emptied and no
          other node in {d.region} has room yet. {d.node ? "It stays there meanwhile" : "It is placed"} and moves on its
          own as soon as a node has room; you will then get a new config here.
        </Alert>
      )}
      {d.placement !== "waiting_for_capacity" && !d.node && (
        <Alert variant="warning" className="small py-1 px-2 mb-2" data-testid="no-node-notice">
          No node serves this device right now. Use “Reconnect” on the device page to place it on a node again.
        </Alert>
      )}
      {d.quarantined && (
        <Alert variant="danger" className="small py-1 px-2 mb-2" data-testid="quarantine-notice">
          An administrator is reviewing unusual activity of this device: region moves and priority are paused. The
          tunnel keeps working.
        </Alert>
      )}
    </>
  );
}

// ---- delivery of a new config --------------------------------------------------------

function AckAlert({ ack }: { ack: NodeAck }) {
  return (
    <Alert variant={ack.status === "acknowledged" ? "success" : "warning"} data-testid="rotate-ack">
      {ack.status === "acknowledged"
        ? `The node switched to the new key (${ack.waited_ms} ms); the old config no longer works.`
        : ack.status === "offline"
          ? "The node is offline; it switches to the new key when it reconnects."
          : `The node has not confirmed yet (${ack.status}); it switches as soon as it processes the change.`}
    </Alert>
  );
}

/** New keys made here, the server told the public one; resolves the config to hand over. */
async function rotateHere(id: string): Promise<{ config: string; ack: NodeAck; result: DeviceWithConfig }> {
  const keys = await generateKeyPair();
  const r = await api.rotateDevice(id, keys.publicKey);
  acknowledgeMove(r.device);
  return { config: renderConfig(r.config, keys.privateKey), ack: r.node_ack, result: r };
}

// ---- rotate --------------------------------------------------------------------------

export function RotateModal({
  device,
  moved = false,
  onClose,
  onChanged,
}: {
  device: Device;
  /** Opened from the "your config changed" notice. */
  moved?: boolean;
  onClose: () => void;
  onChanged: () => void;
}) {
  const { busy, error, run } = useAction();
  const [result, setResult] = useState<{ config: string; ack: NodeAck } | null>(null);
  const keygenProblem = keygenUnavailable();
  const rotate = async () => {
    await run(async () => {
      const r = await rotateHere(device.id);
      setResult({ config: r.config, ack: r.ack });
      onChanged();
    });
  };
  return (
    <Modal show onHide={() => !busy && onClose()} size="lg" centered backdrop="static" fullscreen="sm-down">
      <Modal.Header closeButton>
        <Modal.Title>
          {result ? `New keys for ${device.name}` : moved ? `Get the new config of ${device.name}` : `Rotate keys of ${device.name}?`}
        </Modal.Title>
      </Modal.Header>
      <Modal.Body>
        {result ? (
          <>
            <AckAlert ack={result.ack} />
            <ConfigDelivery deviceName={device.name} config={result.config} />
          </>
        ) : (
          <>
            {keygenProblem && <Alert variant="danger">{keygenProblem}</Alert>}
            {moved ? (
              <p>
                {device.name} was moved to {device.node ? device.node.name : "another node"} on {dateTime(device.moved_at)} (
                {moveReason(device.moved_reason)}). A new key pair is made in this browser and you get a config for the
                new node: install it on the device, replacing the old one.
              </p>
            ) : (
              <p>
                A new key pair is made in this browser. The device keeps its tunnel address, but the old config stops
                working at once: install the new one on the device.
              </p>
            )}
            <ErrorAlert error={error} title="The keys could not be rotated" />
          </>
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
            <Button onClick={rotate} disabled={busy || !!keygenProblem} data-testid="confirm-rotate">
              {busy ? "Rotating…" : moved ? "Make new keys and config" : "Rotate keys"}
            </Button>
          </>
        )}
      </Modal.Footer>
    </Modal>
  );
}

// ---- move to another region ----------------------------------------------------------

function regionLabel(r: Region): string {
  const base = `${r.name} (${r.code})`;
  return r.health.status === "healthy" ? base : `${base}: ${r.health.status}`;
}

/**
 * Moves a device to another region, then makes new keys here for the config of the new
 * node (the browser has no private key to put in it otherwise). Keys are made before the
 * move, so a browser that cannot make them changes nothing; a move the server refuses
 * (rate limit, quarantine, no room) changes nothing either.
 */
export function MoveRegionModal({ device, onClose, onChanged }: { device: Device; onClose: () => void; onChanged: () => void }) {
  const regions = useQuery({ queryKey: ["regions"], queryFn: api.regions, refetchInterval: LIVE_MS });
  const others = regions.data?.filter((r) => r.code !== device.region) ?? [];
  const [region, setRegion] = useState("");
  const chosen = others.find((r) => r.code === (region || others[0]?.code));
  const { busy, error, run } = useAction();
  /** Set once the move went through; the keys may still be missing (`config` null). */
  const [moved, setMoved] = useState<{ region: string; node: string } | null>(null);
  const [result, setResult] = useState<{ config: string; ack: NodeAck } | null>(null);
  const keygenProblem = keygenUnavailable();

  const move = () =>
    run(async () => {
      if (!chosen) return;
      // Fails here, before anything changed, where the browser cannot make keys.
      const keys = await generateKeyPair();
      const m = await api.moveDevice(device.id, chosen.code);
      setMoved({ region: m.device.region, node: m.device.node?.name ?? "a node" });
      onChanged();
      const r = await api.rotateDevice(device.id, keys.publicKey);
      acknowledgeMove(r.device);
      setResult({ config: renderConfig(r.config, keys.privateKey), ack: r.node_ack });
      onChanged();
    });
  const retryKeys = () =>
    run(async () => {
      const r = await rotateHere(device.id);
      setResult({ config: r.config, ack: r.ack });
      onChanged();
    });

  const rateLimited = error instanceof ApiError && error.code === "reassign_rate_limited";
  return (
    <Modal show onHide={() => !busy && onClose()} size="lg" centered backdrop="static" fullscreen="sm-down">
      <Modal.Header closeButton>
        <Modal.Title>
          {result && moved ? `${device.name} is in ${moved.region}` : `Move ${device.name} to another region`}
        </Modal.Title>
      </Modal.Header>
      <Modal.Body>
        {result && moved ? (
          <>
            <Alert variant="success" data-testid="move-done">
              {device.name} now connects through {moved.node} in {moved.region}. Install this config on the device,
              replacing the old one: the old config no longer works.
            </Alert>
            <AckAlert ack={result.ack} />
            <ConfigDelivery deviceName={device.name} config={result.config} />
          </>
        ) : moved ? (
          <>
            <Alert variant="warning" data-testid="move-keys-missing">
              {device.name} moved to {moved.region}, but the new keys could not be set, so there is no config for it yet.
              Try again (or use “Rotate keys” later).
            </Alert>
            <ErrorAlert error={error} title="No new keys" />
          </>
        ) : (
          <Form
            id="move-device"
            onSubmit={(e) => {
              e.preventDefault();
              void move();
            }}
          >
            {keygenProblem && <Alert variant="danger">{keygenProblem}</Alert>}
            {device.quarantined && (
              <Alert variant="danger" data-testid="move-quarantined">
                Region moves are blocked for this device while an administrator reviews it.
              </Alert>
            )}
            <p>
              The device gets a node in the new region: its exit IP, tunnel address and config change. Your private key
              exists only on the device, so a new key pair is made in this browser and you get the new config right after
              the move. The current config stops working.
            </p>
            <Form.Group className="mb-3" controlId="move-region">
              <Form.Label>New region</Form.Label>
              {regions.isPending && <Loading what="regions" />}
              <ErrorAlert error={regions.error} title="Regions could not be loaded" />
              {regions.data && others.length === 0 && (
                <Alert variant="info" data-testid="no-other-regions">
                  No other region can take a device right now (now in {device.region}).
                </Alert>
              )}
              {others.length > 0 && (
                <>
                  <Form.Select value={chosen?.code ?? ""} onChange={(e) => setRegion(e.target.value)}>
                    {others.map((r) => (
                      <option key={r.code} value={r.code}>
                        {regionLabel(r)}
                      </option>
                    ))}
                  </Form.Select>
                  <Form.Text>Now in {device.region}. A device can move a few times an hour.</Form.Text>
                </>
              )}
            </Form.Group>
            <ErrorAlert error={error} title={rateLimited ? "Too many moves" : "The device was not moved"} />
          </Form>
        )}
      </Modal.Body>
      <Modal.Footer>
        {result ? (
          <Button onClick={onClose} data-testid="done">
            Done
          </Button>
        ) : moved ? (
          <>
            <Button variant="secondary" onClick={onClose} disabled={busy}>
              Close
            </Button>
            <Button onClick={() => void retryKeys()} disabled={busy || !!keygenProblem} data-testid="retry-keys">
              {busy ? "Working…" : "Make new keys"}
            </Button>
          </>
        ) : (
          <>
            <Button variant="secondary" onClick={onClose} disabled={busy}>
              Cancel
            </Button>
            <Button
              type="submit"
              form="move-device"
              disabled={busy || !chosen || !!keygenProblem || device.quarantined}
              data-testid="confirm-move"
            >
              {busy ? "Moving…" : chosen ? `Move to ${chosen.code} and get the new config` : "Move"}
            </Button>
          </>
        )}
      </Modal.Footer>
    </Modal>
  );
}
