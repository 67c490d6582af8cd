import { useState } from "react";
import { Alert, Button, Card, Form } from "react-bootstrap";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { ErrorAlert } from "../components/common";
import { announceSessionChange } from "../session";
import { useAction } from "../action";

export function LoginPage() {
  const qc = useQueryClient();
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const secure = window.isSecureContext;
  return (
    <div className="login-wrap d-flex align-items-center justify-content-center px-3">
      <Card className="shadow-sm login-card">
        <Card.Body className="p-4">
          <h1 className="h4 mb-1">Sign in to Clawn</h1>
          <p className="text-body-secondary small">WireGuard access for your devices.</p>
          {!secure && (
            <Alert variant="danger">
              This page is not served over HTTPS. Sign-in cookies and in-browser key generation need HTTPS (or
              localhost): put clawn-server behind a TLS proxy and open its https:// address.
            </Alert>
          )}
          <Form
            onSubmit={async (e) => {
              e.preventDefault();
              await run(async () => {
                const r = await api.login(email.trim(), password);
                setPassword("");
                qc.setQueryData(["me"], r.user);
                announceSessionChange();
              });
            }}
          >
            <Form.Group className="mb-3" controlId="email">
              <Form.Label>Email</Form.Label>
              <Form.Control type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required autoFocus />
            </Form.Group>
            <Form.Group className="mb-3" controlId="password">
              <Form.Label>Password</Form.Label>
              <Form.Control
                type="password"
                autoComplete="current-password"
                value={password}
                onChange={(e) => setPassword(e.target.value)}
                required
              />
            </Form.Group>
            <ErrorAlert error={error} />
            <Button type="submit" className="w-100" disabled={busy} data-testid="sign-in">
              {busy ? "Signing in…" : "Sign in"}
            </Button>
          </Form>
          <p className="small text-body-secondary mt-3 mb-0">
            First start? The server printed a one-time setup link (and a <code>clawn setup</code> command):{" "}
            <a href="/setup">set up the first administrator</a>.
          </p>
        </Card.Body>
      </Card>
    </div>
  );
}
