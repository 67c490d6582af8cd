// Nodes by region with live health and load; state changes; join tokens.

import { useState } from "react";
import { Alert, Button, Card, Dropdown, Form, Modal, ProgressBar, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { CopyButton, Empty, ErrorAlert, Loading, PageHeader, StateBadge } from "../../components/common";
import { ago, bytes, dateTime, rate } from "../../format";
import type { NodeTokenResponse, NodeView } from "../../types";
import { LIVE_MS } from "../../session";
import { useAction } from "../../action";

const SETTABLE = ["online", "maintenance", "draining", "experimental"] as const;

export function NodesPage() {
  const nodes = useQuery({ queryKey: ["admin-nodes"], queryFn: api.adminNodes, refetchInterval: LIVE_MS });
  const regions = useQuery({ queryKey: ["admin-regions"], queryFn: api.adminRegions, refetchInterval: LIVE_MS });
  const [joining, setJoining] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const qc = useQueryClient();

  const byRegion = new Map<string, NodeView[]>();
  for (const r of regions.data ?? []) byRegion.set(r.code, []);
  for (const n of nodes.data ?? []) byRegion.set(n.region, [...(byRegion.get(n.region) ?? []), n]);

  const setState = async (n: NodeView, state: string) => {
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
                      <th>Last heartbeat</th>
                      <th>Peers / capacity</th>
                      <th>CPU</th>
                      <th>Memory</th>
                      <th>Bandwidth ↓ / ↑</th>
                      <th />
                    </tr>
                  </thead>
                  <tbody>
                    {list.map((n) => (
                      <NodeRow key={n.id} node={n} onSetState={(s) => void setState(n, s)} />
                    ))}
                  </tbody>
                </Table>
              </div>
            )}
          </Card>
        );
      })}
      {joining && regions.data && <JoinTokenModal regions={regions.data.map((r) => r.code)} onClose={() => setJoining(false)} />}
    </>
  );
}

function NodeRow({ node: n, onSetState }: { node: NodeView; onSetState: (s: string) => void }) {
  const load = n.capacity > 0 ? Math.round((100 * n.live_peers) / n.capacity) : 0;
  const m = n.metrics;
  return (
    <tr data-testid="node" data-node-name={n.name}>
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
      </td>
      <td className="small" title={dateTime(n.last_heartbeat)} data-testid="node-heartbeat">
        {ago(n.last_heartbeat)}
      </td>
      <td className="node-load">
        <div className="small" data-testid="node-peers">
          {n.live_peers} / {n.capacity}
        </div>
        <ProgressBar now={load} variant={load > 90 ? "danger" : load > 70 ? "warning" : "primary"} className="thin" />
      </td>
      <td className="small" data-testid="node-cpu">
        {m ? `${m.cpu_percent.toFixed(0)} %` : "–"}
      </td>
      <td className="small" data-testid="node-memory">
        {m ? `${bytes(m.memory_used_bytes)} / ${bytes(m.memory_total_bytes)}` : "–"}
      </td>
      <td className="small" data-testid="node-bandwidth">
        {m ? `${rate(m.rx_bytes_per_sec)} / ${rate(m.tx_bytes_per_sec)}` : "–"}
      </td>
      <td>
        <Dropdown align="end">
          <Dropdown.Toggle size="sm" variant="outline-secondary" data-testid="node-actions">
            Set state
          </Dropdown.Toggle>
          <Dropdown.Menu>
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
