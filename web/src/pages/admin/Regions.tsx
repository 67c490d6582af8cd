// Regions: create and edit (name, DNS; pool and node prefix while the region has no nodes).

import { useState } from "react";
import { Button, Form, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { useAction } from "../../action";
import { FormModal } from "../../components/FormModal";
import { Empty, ErrorAlert, Loading, PageHeader, StateBadge } from "../../components/common";
import type { AdminRegion } from "../../types";

function splitList(s: string): string[] {
  return s
    .split(/[\s,]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

export function RegionsPage() {
  const regions = useQuery({ queryKey: ["admin-regions"], queryFn: api.adminRegions });
  const [editing, setEditing] = useState<AdminRegion | "new" | null>(null);
  return (
    <>
      <PageHeader title="Regions">
        <Button onClick={() => setEditing("new")} data-testid="add-region">
          Create region
        </Button>
      </PageHeader>
      {regions.isPending && <Loading what="regions" />}
      <ErrorAlert error={regions.error} title="Regions could not be loaded" />
      {regions.data?.length === 0 && <Empty title="No regions yet">A region groups nodes and has a tunnel address pool.</Empty>}
      {regions.data && regions.data.length > 0 && (
        <div className="table-responsive">
          <Table hover className="align-middle" data-testid="regions">
            <thead>
              <tr>
                <th>Code</th>
                <th>Name</th>
                <th>Pool</th>
                <th>Node prefix</th>
                <th>DNS</th>
                <th>Health</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {regions.data.map((r) => (
                <tr key={r.code} data-testid="region" data-region={r.code}>
                  <td className="font-monospace">{r.code}</td>
                  <td>{r.name}</td>
                  <td className="font-monospace">{r.cidr}</td>
                  <td>/{r.node_prefix}</td>
                  <td className="font-monospace small">{r.dns.join(", ") || "–"}</td>
                  <td>
                    <StateBadge state={r.health.status} />{" "}
                    <span className="small text-body-secondary">
                      {r.health.eligible_nodes}/{r.health.total_nodes} nodes{r.health.reason ? `: ${r.health.reason}` : ""}
                    </span>
                  </td>
                  <td>
                    <Button size="sm" variant="outline-secondary" onClick={() => setEditing(r)} data-testid="edit-region">
                      Edit
                    </Button>
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      {editing && <RegionModal region={editing === "new" ? null : editing} onClose={() => setEditing(null)} />}
    </>
  );
}

function RegionModal({ region, onClose }: { region: AdminRegion | null; onClose: () => void }) {
  const qc = useQueryClient();
  const [code, setCode] = useState(region?.code ?? "");
  const [name, setName] = useState(region?.name ?? "");
  const [cidr, setCidr] = useState(region?.cidr ?? "10.100.0.0/16");
  const [prefix, setPrefix] = useState(String(region?.node_prefix ?? 20));
  const [dns, setDns] = useState(region?.dns.join(", ") ?? "");
  const { busy, error, run } = useAction();
  const hasNodes = (region?.health.total_nodes ?? 0) > 0;

  const save = () =>
    run(async () => {
      if (region) {
        const patch: { name?: string; dns?: string[]; cidr?: string; node_prefix?: number } = { name, dns: splitList(dns) };
        if (cidr !== region.cidr) patch.cidr = cidr;
        if (Number(prefix) !== region.node_prefix) patch.node_prefix = Number(prefix);
        await api.updateRegion(region.code, patch);
      } else {
        await api.createRegion({ code: code.trim(), name: name.trim(), cidr: cidr.trim(), node_prefix: Number(prefix), dns: splitList(dns) });
      }
      await qc.invalidateQueries({ queryKey: ["admin-regions"] });
      onClose();
    });

  return (
    <FormModal
      title={region ? `Edit ${region.code}` : "Create a region"}
      id="region-form"
      submitLabel={region ? "Save" : "Create region"}
      submitTestId="save-region"
      busy={busy}
      error={error}
      onSubmit={() => void save()}
      onClose={onClose}
    >
      {!region && (
        <Form.Group className="mb-3" controlId="region-code">
          <Form.Label>Code</Form.Label>
          <Form.Control value={code} onChange={(e) => setCode(e.target.value)} placeholder="eu" required />
          <Form.Text>2–32 of a–z, 0–9 and “-”. Cannot change later.</Form.Text>
        </Form.Group>
      )}
      <Form.Group className="mb-3" controlId="region-name">
        <Form.Label>Name</Form.Label>
        <Form.Control value={name} onChange={(e) => setName(e.target.value)} placeholder="Europe" required />
      </Form.Group>
      <Form.Group className="mb-3" controlId="region-cidr">
        <Form.Label>Tunnel pool (IPv4)</Form.Label>
        <Form.Control value={cidr} onChange={(e) => setCidr(e.target.value)} disabled={hasNodes} required />
        {hasNodes && <Form.Text>The pool cannot change while the region has nodes.</Form.Text>}
      </Form.Group>
      <Form.Group className="mb-3" controlId="region-prefix">
        <Form.Label>Node sub-pool prefix</Form.Label>
        <Form.Control type="number" min={8} max={30} value={prefix} onChange={(e) => setPrefix(e.target.value)} disabled={hasNodes} />
      </Form.Group>
      <Form.Group className="mb-3" controlId="region-dns">
        <Form.Label>DNS servers for device configs</Form.Label>
        <Form.Control value={dns} onChange={(e) => setDns(e.target.value)} placeholder="1.1.1.1, 9.9.9.9" />
      </Form.Group>
    </FormModal>
  );
}
