// The audit log, newest first, with filters and keyset pagination ("Load older").

import { useState } from "react";
import { Button, Form, Table } from "react-bootstrap";
import { useInfiniteQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { Empty, ErrorAlert, Loading, PageHeader } from "../../components/common";
import { dateTime } from "../../format";

interface Filters {
  actor: string;
  action: string;
  target: string;
  since: string;
  until: string;
}

const EMPTY: Filters = { actor: "", action: "", target: "", since: "", until: "" };

function toMillis(local: string): number | undefined {
  if (!local) return undefined;
  const t = new Date(local).getTime();
  return Number.isNaN(t) ? undefined : t;
}

export function AuditPage() {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const log = useInfiniteQuery({
    queryKey: ["audit", filters],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      api.audit({
        actor: filters.actor.trim(),
        action: filters.action.trim(),
        target: filters.target.trim(),
        since: toMillis(filters.since),
        until: toMillis(filters.until),
        limit: 50,
        cursor: pageParam,
      }),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const items = log.data?.pages.flatMap((p) => p.items) ?? [];
  const field = (k: keyof Filters, label: string, type = "text", placeholder = "") => (
    <Form.Group className="col-6 col-md-4 col-xl" controlId={`audit-${k}`}>
      <Form.Label className="small mb-1">{label}</Form.Label>
      <Form.Control size="sm" type={type} value={draft[k]} placeholder={placeholder} onChange={(e) => setDraft({ ...draft, [k]: e.target.value })} />
    </Form.Group>
  );
  return (
    <>
      <PageHeader title="Audit log" />
      <Form
        className="row g-2 align-items-end mb-3"
        onSubmit={(e) => {
          e.preventDefault();
          setFilters(draft);
        }}
      >
        {field("actor", "Actor (email, node or id)")}
        {field("action", "Action", "text", "device. or user.create")}
        {field("target", "Target id")}
        {field("since", "From", "datetime-local")}
        {field("until", "Until", "datetime-local")}
        <div className="col-12 col-xl-auto d-flex gap-2">
          <Button type="submit" size="sm" data-testid="audit-apply">
            Apply
          </Button>
          <Button
            size="sm"
            variant="outline-secondary"
            onClick={() => {
              setDraft(EMPTY);
              setFilters(EMPTY);
            }}
          >
            Clear
          </Button>
        </div>
      </Form>
      {log.isPending && <Loading what="the audit log" />}
      <ErrorAlert error={log.error} title="The audit log could not be loaded" />
      {log.data && items.length === 0 && <Empty title="No events match" />}
      {items.length > 0 && (
        <div className="table-responsive">
          <Table size="sm" hover className="align-middle" data-testid="audit">
            <thead>
              <tr>
                <th>When</th>
                <th>Actor</th>
                <th>Action</th>
                <th>Target</th>
                <th>Details</th>
              </tr>
            </thead>
            <tbody>
              {items.map((e) => (
                <tr key={e.id} data-testid="audit-event" data-action={e.action}>
                  <td className="small text-nowrap">{dateTime(e.at)}</td>
                  <td className="small text-break">
                    {e.actor_label ?? e.actor_id ?? "–"} <span className="text-body-secondary">({e.actor_kind})</span>
                    {e.client_addr && <div className="text-body-secondary font-monospace">{e.client_addr}</div>}
                  </td>
                  <td className="font-monospace small">{e.action}</td>
                  <td className="small text-break">
                    {e.target_kind}
                    {e.target_id && <div className="font-monospace text-body-secondary">{e.target_id}</div>}
                  </td>
                  <td className="small text-break audit-meta">
                    <Metadata value={e.metadata} />
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      {log.hasNextPage && (
        <Button variant="outline-secondary" onClick={() => void log.fetchNextPage()} disabled={log.isFetchingNextPage} data-testid="audit-more">
          {log.isFetchingNextPage ? "Loading…" : "Load older events"}
        </Button>
      )}
    </>
  );
}

/** Audit metadata as `key: value` lines (nested values as JSON). */
function Metadata({ value }: { value: unknown }) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return <span className="font-monospace">{JSON.stringify(value)}</span>;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return <span className="text-body-secondary">–</span>;
  return (
    <>
      {entries.map(([k, v]) => (
        <div key={k}>
          <span className="text-body-secondary">{k}:</span>{" "}
          <span className="font-monospace">{typeof v === "string" ? v : JSON.stringify(v)}</span>
        </div>
      ))}
    </>
  );
}
