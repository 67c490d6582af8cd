// Priority access tokens (admin): grant a user priority in one region for a time window,
// see every token's status, revoke.

import { useState } from "react";
import { Badge, Button, Col, Form, InputGroup, Row, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { useAction } from "../../action";
import { ConfirmModal } from "../../components/ConfirmModal";
import { FormModal } from "../../components/FormModal";
import { Notice, type NoticeText } from "../../components/Revoke";
import { Empty, ErrorAlert, Loading, PageHeader, StateBadge } from "../../components/common";
import { dateTime } from "../../format";
import type { GrantPriorityTokenRequest, PriorityToken } from "../../types";
import { LIVE_MS } from "../../session";

const UNIT_SECS = { hours: 3600, days: 86_400 } as const;

export function PriorityTokensPage() {
  const tokens = useQuery({ queryKey: ["priority-tokens"], queryFn: api.priorityTokens, refetchInterval: LIVE_MS });
  const qc = useQueryClient();
  const [granting, setGranting] = useState(false);
  const [revoking, setRevoking] = useState<PriorityToken | null>(null);
  const [notice, setNotice] = useState<NoticeText | null>(null);
  const refresh = () => qc.invalidateQueries({ queryKey: ["priority-tokens"] });
  return (
    <>
      <PageHeader title="Priority tokens">
        <Button onClick={() => setGranting(true)} data-testid="grant-priority">
          Grant priority
        </Button>
      </PageHeader>
      <p className="text-body-secondary">
        A priority token gives a user's devices in one region the <em>priority</em> class for a time window: they are
        placed first and may use the capacity each node keeps in reserve. It is suspended while one of the user's
        devices is quarantined.
      </p>
      <Notice notice={notice} onClose={() => setNotice(null)} />
      {tokens.isPending && <Loading what="priority tokens" />}
      <ErrorAlert error={tokens.error} title="Priority tokens could not be loaded" />
      {tokens.data && tokens.data.length === 0 && (
        <Empty title="No priority tokens yet">Use “Grant priority” to give a user priority in a region for a while.</Empty>
      )}
      {tokens.data && tokens.data.length > 0 && (
        <div className="table-responsive">
          <Table hover size="sm" className="align-middle" data-testid="priority-tokens">
            <thead>
              <tr>
                <th>Holder</th>
                <th>Region</th>
                <th>Window</th>
                <th>Status</th>
                <th>Note</th>
                <th>Granted</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {tokens.data.map((t) => (
                <tr key={t.id} data-testid="priority-token" data-token-id={t.id} data-email={t.email} data-status={t.status}>
                  <td className="text-break">{t.email}</td>
                  <td className="font-monospace">{t.region}</td>
                  <td className="small">
                    {dateTime(t.starts_at)} → {dateTime(t.expires_at)}
                  </td>
                  <td>
                    <StateBadge state={t.status} testId="token-status" />{" "}
                    {t.suspended && t.status === "active" && (
                      <Badge bg="warning" text="dark" data-testid="token-suspended">
                        suspended
                      </Badge>
                    )}
                    {t.revoked_at !== null && <div className="small text-body-secondary">{dateTime(t.revoked_at)}</div>}
                  </td>
                  <td className="small text-break">{t.note || "–"}</td>
                  <td className="small">{dateTime(t.created_at)}</td>
                  <td>
                    {(t.status === "active" || t.status === "scheduled") && (
                      <Button size="sm" variant="outline-danger" onClick={() => setRevoking(t)} data-testid="revoke-token">
                        Revoke
                      </Button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      {granting && (
        <GrantModal
          onClose={() => setGranting(false)}
          onGranted={async (t) => {
            setNotice({ variant: "success", text: `${t.email} has priority in ${t.region} until ${dateTime(t.expires_at)}.` });
            await refresh();
          }}
        />
      )}
      <ConfirmModal
        show={revoking !== null}
        title={`Revoke the priority of ${revoking?.email ?? ""} in ${revoking?.region ?? ""}?`}
        confirmLabel="Revoke token"
        onClose={() => setRevoking(null)}
        onConfirm={async () => {
          if (!revoking) return;
          const t = await api.revokePriorityToken(revoking.id);
          setRevoking(null);
          setNotice({ variant: "success", text: `The priority of ${t.email} in ${t.region} is revoked.` });
          await refresh();
        }}
      >
        Their devices in the region lose the priority class at once; their tunnels stay up.
      </ConfirmModal>
    </>
  );
}

function GrantModal({ onClose, onGranted }: { onClose: () => void; onGranted: (t: PriorityToken) => Promise<void> }) {
  const regions = useQuery({ queryKey: ["admin-regions"], queryFn: api.adminRegions });
  const users = useQuery({ queryKey: ["admin-users"], queryFn: api.adminUsers });
  const [email, setEmail] = useState("");
  const [region, setRegion] = useState("");
  const [amount, setAmount] = useState("24");
  const [unit, setUnit] = useState<keyof typeof UNIT_SECS>("hours");
  const [starts, setStarts] = useState("");
  const [note, setNote] = useState("");
  const { busy, error, run } = useAction();
  const chosen = region || regions.data?.[0]?.code || "";
  const save = () =>
    run(async () => {
      const req: GrantPriorityTokenRequest = {
        email: email.trim(),
        region: chosen,
        duration_secs: Math.round(Number(amount) * UNIT_SECS[unit]),
      };
      if (starts) {
        const t = new Date(starts).getTime();
        if (Number.isNaN(t)) throw new Error("The start time is not a valid date.");
        req.starts_at = t;
      }
      if (note.trim()) req.note = note.trim();
      const t = await api.grantPriorityToken(req);
      await onGranted(t);
      onClose();
    });
  return (
    <FormModal
      title="Grant priority"
      id="priority-form"
      submitLabel="Grant priority"
      submitTestId="save-priority"
      busy={busy || !chosen}
      error={error ?? regions.error}
      errorTitle="Not granted"
      onSubmit={() => void save()}
      onClose={onClose}
    >
      <Form.Group className="mb-3" controlId="priority-email">
        <Form.Label>User email</Form.Label>
        <Form.Control type="email" list="priority-users" value={email} onChange={(e) => setEmail(e.target.value)} required autoFocus />
        <datalist id="priority-users">
          {users.data?.map((u) => <option key={u.id} value={u.email} />)}
        </datalist>
      </Form.Group>
      <Form.Group className="mb-3" controlId="priority-region">
        <Form.Label>Region</Form.Label>
        {regions.isPending && <Loading what="regions" />}
        {regions.data && regions.data.length === 0 && <div className="text-body-secondary small">Create a region first.</div>}
        {regions.data && regions.data.length > 0 && (
          <Form.Select value={chosen} onChange={(e) => setRegion(e.target.value)}>
            {regions.data.map((r) => (
              <option key={r.code} value={r.code}>
                {r.name} ({r.code})
              </option>
            ))}
          </Form.Select>
        )}
      </Form.Group>
      <Row className="g-2 mb-3">
        <Col xs={12} sm={6}>
          <Form.Group controlId="priority-duration">
            <Form.Label>Duration</Form.Label>
            <InputGroup>
              <Form.Control type="number" min={0.1} step="any" value={amount} onChange={(e) => setAmount(e.target.value)} required />
              <Form.Select id="priority-duration-unit" aria-label="Duration unit" value={unit} onChange={(e) => setUnit(e.target.value as keyof typeof UNIT_SECS)}>
                <option value="hours">hours</option>
                <option value="days">days</option>
              </Form.Select>
            </InputGroup>
          </Form.Group>
        </Col>
        <Col xs={12} sm={6}>
          <Form.Group controlId="priority-starts">
            <Form.Label>Starts</Form.Label>
            <Form.Control type="datetime-local" value={starts} onChange={(e) => setStarts(e.target.value)} />
            <Form.Text>Empty: now.</Form.Text>
          </Form.Group>
        </Col>
      </Row>
      <Form.Group className="mb-3" controlId="priority-note">
        <Form.Label>Note</Form.Label>
        <Form.Control value={note} onChange={(e) => setNote(e.target.value)} maxLength={200} placeholder="why (optional)" />
      </Form.Group>
    </FormModal>
  );
}
