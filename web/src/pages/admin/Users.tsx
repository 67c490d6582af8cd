// Users: create, disable / enable, device slots, role, password reset.

import { useState } from "react";
import { Badge, Button, ButtonGroup, Form, Table } from "react-bootstrap";
import { useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { useAction } from "../../action";
import { FormModal } from "../../components/FormModal";
import { ConfirmModal } from "../../components/ConfirmModal";
import { ErrorAlert, Loading, PageHeader } from "../../components/common";
import { dateTime } from "../../format";
import type { Role, User } from "../../types";
import { useMe } from "../../session";

type Dialog = { kind: "create" } | { kind: "edit"; user: User } | { kind: "password"; user: User } | { kind: "disable"; user: User };

export function UsersPage() {
  const users = useQuery({ queryKey: ["admin-users"], queryFn: api.adminUsers });
  const me = useMe();
  const qc = useQueryClient();
  const [dialog, setDialog] = useState<Dialog | null>(null);
  const [filter, setFilter] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const refresh = () => qc.invalidateQueries({ queryKey: ["admin-users"] });
  const shown = (users.data ?? []).filter((u) => u.email.includes(filter.trim().toLowerCase()));

  return (
    <>
      <PageHeader title="Users">
        <Form.Control
          placeholder="Filter by email"
          value={filter}
          onChange={(e) => setFilter(e.target.value)}
          className="w-auto"
          aria-label="Filter by email"
        />
        <Button onClick={() => setDialog({ kind: "create" })} data-testid="add-user">
          Create user
        </Button>
      </PageHeader>
      {users.isPending && <Loading what="users" />}
      <ErrorAlert error={users.error ?? error} />
      {notice && <div className="alert alert-success" data-testid="notice">{notice}</div>}
      {users.data && (
        <div className="table-responsive">
          <Table hover className="align-middle" data-testid="users">
            <thead>
              <tr>
                <th>Email</th>
                <th>Role</th>
                <th>Devices / slots</th>
                <th>Status</th>
                <th>Created</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {shown.map((u) => (
                <tr key={u.id} data-testid="user" data-email={u.email}>
                  <td className="text-break">{u.email}</td>
                  <td>{u.role === "admin" ? <Badge bg="dark">admin</Badge> : "user"}</td>
                  <td data-testid="user-slots">
                    {u.active_devices} / {u.device_slots}
                  </td>
                  <td>{u.disabled ? <Badge bg="danger">disabled</Badge> : <Badge bg="success">active</Badge>}</td>
                  <td className="small">{dateTime(u.created_at)}</td>
                  <td>
                    <ButtonGroup size="sm">
                      <Button variant="outline-secondary" onClick={() => setDialog({ kind: "edit", user: u })}>
                        Edit
                      </Button>
                      <Button variant="outline-secondary" onClick={() => setDialog({ kind: "password", user: u })}>
                        Reset password
                      </Button>
                      {u.id !== me.data?.id &&
                        (u.disabled ? (
                          <Button
                            variant="outline-success"
                            onClick={async () => {
                              setError(null);
                              try {
                                await api.updateUser(u.id, { disabled: false });
                                await refresh();
                              } catch (e) {
                                setError(e);
                              }
                            }}
                          >
                            Enable
                          </Button>
                        ) : (
                          <Button variant="outline-danger" onClick={() => setDialog({ kind: "disable", user: u })} data-testid="disable-user">
                            Disable
                          </Button>
                        ))}
                    </ButtonGroup>
                  </td>
                </tr>
              ))}
            </tbody>
          </Table>
        </div>
      )}
      {dialog?.kind === "create" && <UserModal onClose={() => setDialog(null)} onSaved={refresh} />}
      {dialog?.kind === "edit" && <UserModal user={dialog.user} onClose={() => setDialog(null)} onSaved={refresh} />}
      {dialog?.kind === "password" && (
        <PasswordModal
          user={dialog.user}
          onClose={() => setDialog(null)}
          onSaved={() => setNotice(`The password of ${dialog.user.email} was reset; their sessions ended.`)}
        />
      )}
      <ConfirmModal
        show={dialog?.kind === "disable"}
        title={`Disable ${dialog?.kind === "disable" ? dialog.user.email : ""}?`}
        confirmLabel="Disable user"
        onClose={() => setDialog(null)}
        onConfirm={async () => {
          if (dialog?.kind !== "disable") return;
          await api.updateUser(dialog.user.id, { disabled: true });
          setDialog(null);
          await refresh();
        }}
      >
        Their sessions and API tokens end and their tunnels are cut at the nodes. Enabling the user restores the
        devices.
      </ConfirmModal>
    </>
  );
}

const ROLES = ["user", "admin"] as const satisfies readonly Role[];

function UserModal({ user, onClose, onSaved }: { user?: User; onClose: () => void; onSaved: () => Promise<unknown> }) {
  const [email, setEmail] = useState(user?.email ?? "");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState<Role>(user?.role ?? "user");
  const [slots, setSlots] = useState(String(user?.device_slots ?? 1));
  const { busy, error, run } = useAction();
  const save = () =>
    run(async () => {
      if (user) await api.updateUser(user.id, { role, device_slots: Number(slots) });
      else await api.createUser({ email: email.trim(), password, role, device_slots: Number(slots) });
      await onSaved();
      onClose();
    });
  return (
    <FormModal
      title={user ? `Edit ${user.email}` : "Create a user"}
      id="user-form"
      submitLabel={user ? "Save" : "Create user"}
      submitTestId="save-user"
      busy={busy}
      error={error}
      onSubmit={() => void save()}
      onClose={onClose}
    >
      {!user && (
        <>
          <Form.Group className="mb-3" controlId="user-email">
            <Form.Label>Email</Form.Label>
            <Form.Control type="email" value={email} onChange={(e) => setEmail(e.target.value)} required />
          </Form.Group>
          <Form.Group className="mb-3" controlId="user-password">
            <Form.Label>Initial password</Form.Label>
            <Form.Control type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
            <Form.Text>At least 10 characters. Tell the user over a safe channel.</Form.Text>
          </Form.Group>
        </>
      )}
      <Form.Group className="mb-3" controlId="user-role">
        <Form.Label>Role</Form.Label>
        <Form.Select value={role} onChange={(e) => setRole(e.target.value as Role)}>
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </Form.Select>
      </Form.Group>
      <Form.Group className="mb-3" controlId="user-slots">
        <Form.Label>Device slots</Form.Label>
        <Form.Control type="number" min={0} max={1000} value={slots} onChange={(e) => setSlots(e.target.value)} required />
      </Form.Group>
    </FormModal>
  );
}

function PasswordModal({ user, onClose, onSaved }: { user: User; onClose: () => void; onSaved: () => void }) {
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const save = () =>
    run(async () => {
      await api.resetPassword(user.id, password);
      onSaved();
      onClose();
    });
  return (
    <FormModal
      title={`Reset the password of ${user.email}`}
      id="password-form"
      submitLabel="Reset password"
      submitTestId="save-password"
      busy={busy}
      error={error}
      errorTitle="Not reset"
      onSubmit={() => void save()}
      onClose={onClose}
    >
      <Form.Group className="mb-3" controlId="new-password">
        <Form.Label>New password</Form.Label>
        <Form.Control type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        <Form.Text>At least 10 characters. Their sessions end.</Form.Text>
      </Form.Group>
    </FormModal>
  );
}
