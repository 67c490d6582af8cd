import { useState } from "react";
import { Badge, Button, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { ConfirmModal } from "../components/ConfirmModal";
import { ErrorAlert, Loading, PageHeader } from "../components/common";
import { ago, dateTime } from "../format";
import { announceSessionChange, signedOut } from "../session";

export function SessionsPage() {
  const qc = useQueryClient();
  const sessions = useQuery({ queryKey: ["sessions"], queryFn: api.sessions });
  const [confirmAll, setConfirmAll] = useState(false);
  const [error, setError] = useState<unknown>(null);
  return (
    <>
      <PageHeader title="Sessions">
        <Button variant="outline-danger" onClick={() => setConfirmAll(true)} data-testid="sign-out-everywhere">
          Sign out everywhere
        </Button>
      </PageHeader>
      <p className="text-body-secondary">Where you are signed in: browsers and the clawn CLI.</p>
      {sessions.isPending && <Loading what="sessions" />}
      <ErrorAlert error={sessions.error ?? error} />
      {sessions.data && (
        <div className="table-responsive">
          <Table hover className="align-middle" data-testid="sessions">
            <thead>
              <tr>
                <th>Client</th>
                <th>Address</th>
                <th>Signed in</th>
                <th>Last active</th>
                <th>Expires</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {sessions.data.map((s) => (
                <tr key={s.id} data-testid="session">
                  <td className="text-break small">
                    {s.kind === "cookie" ? "Browser" : "CLI / API"} {s.current && <Badge bg="primary">this session</Badge>}
                    <div className="text-body-secondary">{s.user_agent ?? ""}</div>
                  </td>
                  <td className="font-monospace small">{s.client_addr ?? "–"}</td>
                  <td className="small">{dateTime(s.created_at)}</td>
                  <td className="small">{ago(s.last_seen_at)}</td>
                  <td className="small">{dateTime(s.expires_at)}</td>
                  <td>
                    {!s.current && (
                      <Button
                        size="sm"
                        variant="outline-secondary"
                        onClick={async () => {
                          setError(null);
                          try {
                            await api.endSession(s.id);
                            await qc.invalidateQueries({ queryKey: ["sessions"] });
                          } catch (e) {
                            setError(e);
                          }
                        }}
                      >
                        Sign out
                      </Button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      <ConfirmModal
        show={confirmAll}
        title="Sign out everywhere?"
        confirmLabel="Sign out everywhere"
        onClose={() => setConfirmAll(false)}
        onConfirm={async () => {
          await api.endAllSessions();
          setConfirmAll(false);
          announceSessionChange();
          signedOut(qc);
        }}
      >
        Every session ends, this one included: browsers and CLI logins must sign in again. Devices keep working.
      </ConfirmModal>
    </>
  );
}
