// Nodes by region with live health and load; load score and eligibility; state changes,
// capacity and link edits; join tokens.

import { useState } from "react";
import { Alert, Button, Card, Dropdown, Form, Modal, ProgressBar, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { CopyButton, Empty, ErrorAlert, Loading, PageHeader, StateBadge } from "../../components/common";
import { FormModal } from "../../components/FormModal";
import { EligibleView, HealthView, ScoreView } from "../../components/status";
import { ago, bytes, dateTime, rate } from "../../format";
import type { NodeState, NodeTokenResponse, NodeView } from "../../types";
import { LIVE_MS } from "../../session";
import { useAction } from "../../action";

const SETTABLE = ["online", "maintenance", "draining", "experimental"] as const;

export function NodesPage() {
  const nodes = useQuery({ queryKey: ["admin-nodes"], queryFn: api.adminNodes, refetchInterval: LIVE_MS });
  const regions = useQuery({ queryKey: ["admin-regions"], queryFn: api.adminRegions, refetchInterval: LIVE_MS });
  const [joining, setJoining] = useState(false);
  const [editing, setEditing] = useState<NodeView | null>(null);
  const [error, setError] = useState<unknown>(null);
  const qc = useQueryClient();

  const byRegion = new Map<string, NodeView[]>();
  for (const r of regions.data ?? []) byRegion.set(r.code, []);
  for (const n of nodes.data ?? []) byRegion.set(n.region, [...(byRegion.get(n.region) ?? []), n]);

  const setState = async (n: NodeView, state: NodeState) => {
    setError(null);
    try {
      await api.setNodeState(n.id, state);
      await qc.invalidateQueries({ queryKey: ["admin-nodes"] });
    } catch (e) {
      setError(e);
    }
  };

  return (
    <>
      <PageHeader title="Nodes">
        <Button onClick={() => setJoining(true)} disabled={!regions.data?.length} data-testid="add-node">
          Add node
        </Button>
      </PageHeader>
      {(nodes.isPending || regions.isPending) && <Loading what="nodes" />}
      <ErrorAlert error={nodes.error ?? regions.error} title="Nodes could not be loaded" />
      <ErrorAlert error={error} title="The node could not be changed" />
      {regions.data && regions.data.length === 0 && (
        <Empty title="No regions yet">Create a region first; nodes join a region.</Empty>
      )}
      {[...byRegion.entries()].map(([code, list]) => {
        const region = regions.data?.find((r) => r.code === code);
        return (
          <Card key={code} className="mb-3" data-testid="node-region" data-region={code}>
            <Card.Header className="d-flex flex-wrap gap-2 align-items-center">
              <strong className="me-auto">
                {region?.name ?? code} <span className="text-body-secondary">({code})</span>
              </strong>
              {region && <StateBadge state={region.health.status} />}
              {region?.health.reason && <span className="small text-body-secondary">{region.health.reason}</span>}
            </Card.Header>
            {list.length === 0 ? (
              <Card.Body className="text-body-secondary">No nodes in this region. Use “Add node” to get a join command.</Card.Body>
            ) : (
              <div className="table-responsive">
                <Table className="mb-0 align-middle" size="sm" hover>
                  <thead>
                    <tr>
                      <th>Node</th>
                      <th>State</th>
                      <th>Peers / capacity</th>
                      <th>CPU / memory</th>
                      <th>Bandwidth ↓ / ↑</th>
                      <th>Load score</th>
                      <th>Health</th>
                      <th />
                    </tr>
                  </thead>
                  <tbody>
                    {list.map((n) => (
                      <NodeRow key={n.id} node={n} onSetState={(s) => void setState(n, s)} onEdit={() => setEditing(n)} />
                    ))}
                  </tbody>
                </Table>
              </div>
            )}
          </Card>
        );
      })}
      {joining && regions.data && <JoinTokenModal regions={regions.data.map((r) => r.code)} onClose={() => setJoining(false)} />}
      {editing && <EditNodeModal node={editing} onClose={() => setEditing(null)} />}
    </>
  );
}

function NodeRow({ node: n, onSetState, onEdit }: { node: NodeView; onSetState: (s: NodeState) => void; onEdit: () => void }) {
  const load = n.capacity > 0 ? Math.round((100 * n.live_peers) / n.capacity) : 100;
  const m = n.metrics;
  const degraded = n.state === "degraded";
  return (
    <tr data-testid="node" data-node-name={n.name} data-node-id={n.id} className={degraded ? "table-warning" : undefined}>
      <td>
        <div className="fw-semibold text-break">{n.name}</div>
        <div className="small text-body-secondary font-monospace">{n.endpoint}</div>
        <div className="small text-body-secondary">
          exit {n.exit_ipv4 ?? "–"} · v{n.version}
          {n.acked_version !== null && n.acked_version !== n.version ? ` (acked v${n.acked_version})` : ""}
        </div>
      </td>
      <td>
        <StateBadge state={n.state} testId="node-state" />
        <div className="small text-body-secondary">{n.connected ? "connected" : "not connected"}</div>
        <div className="small text-body-secondary text-nowrap" title={dateTime(n.last_heartbeat)} data-testid="node-heartbeat">
          heartbeat {ago(n.last_heartbeat)}
        </div>
        {n.offline_since !== null && <div className="small text-danger-emphasis">offline since {dateTime(n.offline_since)}</div>}
        <div className="mt-1">
          <EligibleView n={n} />
        </div>
      </td>
      <td className="node-load">
        <div className="small" data-testid="node-peers">
          {n.live_peers} / {n.capacity}
        </div>
        <ProgressBar now={Math.min(load, 100)} variant={load > 90 ? "danger" : load > 70 ? "warning" : "primary"} className="thin" />
      </td>
      <td className="small">
        <div data-testid="node-cpu">{m ? `${m.cpu_percent.toFixed(0)} %` : "–"}</div>
        <div data-testid="node-memory" className="text-nowrap">
          {m ? `${bytes(m.memory_used_bytes)} / ${bytes(m.memory_total_bytes)}` : "–"}
        </div>
      </td>
      <td className="small">
        <div data-testid="node-bandwidth">{m ? `${rate(m.rx_bytes_per_sec)} / ${rate(m.tx_bytes_per_sec)}` : "–"}</div>
        <div className="text-body-secondary" data-testid="node-link">
          link {n.link_mbps} Mbit/s
        </div>
      </td>
      <td className="small">
        <ScoreView s={n.score} />
      </td>
      <td className="node-health">
        <HealthView h={n.health} degraded={degraded} />
      </td>
      <td>
        <Dropdown align="end">
          <Dropdown.Toggle size="sm" variant="outline-secondary" data-testid="node-actions">
            Actions
          </Dropdown.Toggle>
          <Dropdown.Menu>
            <Dropdown.Item onClick={onEdit} data-testid="edit-node">
              Edit capacity and link…
            </Dropdown.Item>
            <Dropdown.Divider />
            <Dropdown.Header>Set state</Dropdown.Header>
            {SETTABLE.map((s) => (
              <Dropdown.Item key={s} disabled={n.state === s} onClick={() => onSetState(s)} data-testid={`set-${s}`}>
                {s}
              </Dropdown.Item>
            ))}
          </Dropdown.Menu>
        </Dropdown>
      </td>
    </tr>
  );
}

/** Name, max peers and link capacity (the bandwidth part of the load score). */
function EditNodeModal({ node, onClose }: { node: NodeView; onClose: () => void }) {
  const qc = useQueryClient();
  const [name, setName] = useState(node.name);
  const [capacity, setCapacity] = useState(String(node.capacity));
  const [link, setLink] = useState(String(node.link_mbps));
  const { busy, error, run } = useAction();
  const save = () =>
    run(async () => {
      const patch: { name?: string; capacity?: number; link_mbps?: number } = {};
      if (name.trim() !== node.name) patch.name = name.trim();
      if (Number(capacity) !== node.capacity) patch.capacity = Number(capacity);
      if (Number(link) !== node.link_mbps) patch.link_mbps = Number(link);
      if (Object.keys(patch).length > 0) await api.updateNode(node.id, patch);
      await qc.invalidateQueries({ queryKey: ["admin-nodes"] });
      await qc.invalidateQueries({ queryKey: ["diagnostics"] });
      onClose();
    });
  return (
    <FormModal
      title={`Edit ${node.name}`}
      id="node-form"
      submitLabel="Save"
      submitTestId="save-node"
      busy={busy}
      error={error}
      onSubmit={() => void save()}
      onClose={onClose}
    >
      <Form.Group className="mb-3" controlId="node-name">
        <Form.Label>Name</Form.Label>
        <Form.Control value={name} onChange={(e) => setName(e.target.value)} maxLength={64} required />
      </Form.Group>
      <Form.Group className="mb-3" controlId="node-capacity">
        <Form.Label>Capacity (max peers)</Form.Label>
        <Form.Control type="number" min={0} max={1000000} value={capacity} onChange={(e) => setCapacity(e.target.value)} required />
        <Form.Text>Below the live peers ({node.live_peers}) the node is over capacity and reported degraded.</Form.Text>
      </Form.Group>
      <Form.Group className="mb-3" controlId="node-link">
        <Form.Label>Link capacity (Mbit/s)</Form.Label>
        <Form.Control type="number" min={1} max={10000000} value={link} onChange={(e) => setLink(e.target.value)} required />
        <Form.Text>Bandwidth use is measured against this in the load score.</Form.Text>
      </Form.Group>
    </FormModal>
  );
}

function JoinTokenModal({ regions, onClose }: { regions: string[]; onClose: () => void }) {
  const [region, setRegion] = useState(regions[0] ?? "");
  const [capacity, setCapacity] = useState("1000");
  const [hours, setHours] = useState("1");
  const { busy, error, run } = useAction();
  const [token, setToken] = useState<NodeTokenResponse | null>(null);
  return (
    <Modal show onHide={onClose} centered size="lg" backdrop="static" fullscreen="sm-down">
      <Modal.Header closeButton>
        <Modal.Title>{token ? "Join command" : "Add a node"}</Modal.Title>
      </Modal.Header>
      <Modal.Body>
        {token ? (
          <>
            <Alert variant="warning">
              <strong>This command is shown only once.</strong> It holds a one-time join token for region{" "}
              <strong>{token.region}</strong>, valid until {dateTime(token.expires_at)}. Run it as root on the node
              machine, then start the agent with <code>clawn-node run</code>.
            </Alert>
            <pre className="config-text p-2 border rounded bg-body-tertiary" data-testid="join-command">
              {token.join_command}
            </pre>
            <CopyButton text={token.join_command} label="Copy command" testId="copy-join" />
          </>
        ) : (
          <Form
            id="node-token"
            onSubmit={async (e) => {
              e.preventDefault();
              await run(async () => {
                setToken(await api.createNodeToken(region, Number(capacity), Math.round(Number(hours) * 3600)));
              });
            }}
          >
            <Form.Group className="mb-3" controlId="token-region">
              <Form.Label>Region</Form.Label>
              <Form.Select value={region} onChange={(e) => setRegion(e.target.value)}>
                {regions.map((r) => (
                  <option key={r}>{r}</option>
                ))}
              </Form.Select>
            </Form.Group>
            <Form.Group className="mb-3" controlId="token-capacity">
              <Form.Label>Capacity (max peers)</Form.Label>
              <Form.Control type="number" min={1} value={capacity} onChange={(e) => setCapacity(e.target.value)} required />
            </Form.Group>
            <Form.Group className="mb-3" controlId="token-hours">
              <Form.Label>Token valid for (hours)</Form.Label>
              <Form.Control type="number" min={0.1} step={0.1} max={168} value={hours} onChange={(e) => setHours(e.target.value)} required />
            </Form.Group>
            <ErrorAlert error={error} title="No token" />
          </Form>
        )}
      </Modal.Body>
      <Modal.Footer>
        {token ? (
          <Button onClick={onClose} data-testid="done">
            Done
          </Button>
        ) : (
          <>
            <Button variant="secondary" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" form="node-token" disabled={busy} data-testid="create-token">
              {busy ? "Creating…" : "Create join token"}
            </Button>
          </>
        )}
      </Modal.Footer>
    </Modal>
  );
}
