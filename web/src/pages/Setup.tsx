// First start: create the first administrator with the one-time setup token the server
// printed. The link it prints carries the token in the URL fragment, which browsers never
// send to a server; the page reads it and removes it from the address bar at once.

import { useState } from "react";
import { Alert, Button, Card, Form } from "react-bootstrap";
import { useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { ErrorAlert } from "../components/common";
import { announceSessionChange } from "../session";
import { useAction } from "../action";

function tokenFromFragment(): string {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token") ?? "";
  if (window.location.hash) window.history.replaceState(null, "", window.location.pathname);
  return token;
}

export function SetupPage() {
  const qc = useQueryClient();
  const [token, setToken] = useState(tokenFromFragment);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const { busy, error, run } = useAction();
  const mismatch = again.length > 0 && again !== password;
  return (
    <div className="login-wrap d-flex align-items-center justify-content-center px-3">
      <Card className="shadow-sm login-card">
        <Card.Body className="p-4">
          <h1 className="h4 mb-1">Set up Clawn</h1>
          <p className="text-body-secondary small">
            Create the first administrator with the one-time setup token the server printed at its first start.
          </p>
          {!window.isSecureContext && (
            <Alert variant="danger">This page is not served over HTTPS (or localhost): the sign-in cookie will not be kept.</Alert>
          )}
          <Form
            onSubmit={async (e) => {
              e.preventDefault();
              if (mismatch) return;
              await run(async () => {
                const r = await api.setup(token.trim(), email.trim(), password);
                window.history.replaceState(null, "", "/");
                qc.setQueryData(["me"], r.user);
                announceSessionChange();
              });
            }}
          >
            <Form.Group className="mb-3" controlId="setup-token">
              <Form.Label>Setup token</Form.Label>
              <Form.Control value={token} onChange={(e) => setToken(e.target.value)} placeholder="clawn_setup_…" required autoComplete="off" />
            </Form.Group>
            <Form.Group className="mb-3" controlId="setup-email">
              <Form.Label>Admin email</Form.Label>
              <Form.Control type="email" autoComplete="username" value={email} onChange={(e) => setEmail(e.target.value)} required />
            </Form.Group>
            <Form.Group className="mb-3" controlId="setup-password">
              <Form.Label>Password</Form.Label>
              <Form.Control type="password" autoComplete="new-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
              <Form.Text>At least 10 characters.</Form.Text>
            </Form.Group>
            <Form.Group className="mb-3" controlId="setup-again">
              <Form.Label>Password again</Form.Label>
              <Form.Control
                type="password"
                autoComplete="new-password"
                value={again}
                onChange={(e) => setAgain(e.target.value)}
                isInvalid={mismatch}
                required
              />
              <Form.Control.Feedback type="invalid">The passwords differ.</Form.Control.Feedback>
            </Form.Group>
            <ErrorAlert error={error} />
            <Button type="submit" className="w-100" disabled={busy || mismatch} data-testid="set-up">
              {busy ? "Creating…" : "Create administrator"}
            </Button>
          </Form>
          <p className="small mt-3 mb-0">
            <a href="/">Already set up? Sign in</a>
          </p>
        </Card.Body>
      </Card>
    </div>
  );
}
