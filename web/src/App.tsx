// The shell: sign-in gate, navigation, routes.

import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { Container, Nav, Navbar, NavDropdown } from "react-bootstrap";
import { BrowserRouter, NavLink, Navigate, Route, Routes } from "react-router";
import { useQueryClient } from "@tanstack/react-query";
import { api, ApiError, setUnauthenticatedHandler } from "./api";
import { ErrorAlert, Loading } from "./components/common";
import { announceSessionChange, onSessionChange, signedOut, useMe } from "./session";
import { LoginPage } from "./pages/Login";
import { SetupPage } from "./pages/Setup";
import { DevicesPage } from "./pages/Devices";
import { DeviceDetailPage } from "./pages/DeviceDetail";
import { SessionsPage } from "./pages/Sessions";
import { NodesPage } from "./pages/admin/Nodes";
import { RegionsPage } from "./pages/admin/Regions";
import { UsersPage } from "./pages/admin/Users";
import { AllDevicesPage } from "./pages/admin/AllDevices";
import { AuditPage } from "./pages/admin/Audit";
import { DiagnosticsPage } from "./pages/admin/Diagnostics";
import { DeviceDiagnosticsPage } from "./pages/admin/DeviceDiagnostics";
import { PriorityTokensPage } from "./pages/admin/PriorityTokens";
import type { User } from "./types";

export function App() {
  const qc = useQueryClient();
  const me = useMe();
  useEffect(() => {
    setUnauthenticatedHandler(() => {
      signedOut(qc);
    });
    // Another tab signed in or out: the cookie is shared, so ask who we are now.
    return onSessionChange(() => void qc.invalidateQueries({ queryKey: ["me"] }));
  }, [qc]);
  // The cookie now belongs to someone else (another tab signed in as another user): drop
  // everything loaded for the previous user before showing anything of the new one.
  const shownUser = useRef<string | null>(null);
  const id = me.data?.id ?? null;
  useLayoutEffect(() => {
    if (shownUser.current !== null && id !== null && id !== shownUser.current) {
      qc.removeQueries({ predicate: (q) => q.queryKey[0] !== "me" });
    }
    if (id !== null) shownUser.current = id;
  }, [id, qc]);

  const unauthenticated = me.data === null || (me.error instanceof ApiError && me.error.status === 401);
  if (unauthenticated) return window.location.pathname === "/setup" ? <SetupPage /> : <LoginPage />;
  if (me.isPending) {
    return (
      <Container className="py-5">
        <Loading what="your account" />
      </Container>
    );
  }
  if (!me.data) {
    return (
      <Container className="py-5">
        <ErrorAlert error={me.error} title="The server did not answer" />
      </Container>
    );
  }
  return (
    <BrowserRouter>
      <Shell user={me.data} />
    </BrowserRouter>
  );
}

function Shell({ user }: { user: User }) {
  const qc = useQueryClient();
  const admin = user.role === "admin";
  const [signOutError, setSignOutError] = useState<unknown>(null);
  const signOut = async () => {
    setSignOutError(null);
    try {
      await api.logout();
    } catch (e) {
      // Only a session the server ended (or no longer knows) counts as signed out: on any
      // other failure the cookie still works, so say so instead of pretending.
      if (!(e instanceof ApiError && e.status === 401)) {
        setSignOutError(e);
        return;
      }
    }
    announceSessionChange();
    signedOut(qc);
  };
  return (
    <>
      <Navbar expand="md" bg="dark" data-bs-theme="dark" className="mb-4" collapseOnSelect>
        <Container>
          <Navbar.Brand as={NavLink} to="/">
            Clawn
          </Navbar.Brand>
          <Navbar.Toggle aria-controls="nav" />
          <Navbar.Collapse id="nav">
            <Nav className="me-auto">
              <Nav.Link as={NavLink} to="/" end eventKey="devices">
                Devices
              </Nav.Link>
              <Nav.Link as={NavLink} to="/sessions" eventKey="sessions">
                Sessions
              </Nav.Link>
              {admin && (
                <NavDropdown title="Admin" id="admin-menu" data-testid="admin-menu">
                  <NavDropdown.Item as={NavLink} to="/admin/nodes" eventKey="nodes">
                    Nodes
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/regions" eventKey="regions">
                    Regions
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/users" eventKey="users">
                    Users
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/devices" eventKey="all-devices">
                    All devices
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/diagnostics" eventKey="diagnostics">
                    Diagnostics
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/priority-tokens" eventKey="priority-tokens">
                    Priority tokens
                  </NavDropdown.Item>
                  <NavDropdown.Item as={NavLink} to="/admin/audit" eventKey="audit">
                    Audit log
                  </NavDropdown.Item>
                </NavDropdown>
              )}
            </Nav>
            <Nav>
              <Navbar.Text className="me-3 text-break" data-testid="whoami">
                {user.email}
              </Navbar.Text>
              <Nav.Link as="button" onClick={() => void signOut()} data-testid="sign-out">
                Sign out
              </Nav.Link>
            </Nav>
          </Navbar.Collapse>
        </Container>
      </Navbar>
      <Container as="main" className="pb-5">
        <ErrorAlert error={signOutError} title="Sign-out failed, you are still signed in" />
        <Routes>
          <Route path="/" element={<DevicesPage />} />
          <Route path="/devices/:id" element={<DeviceDetailPage />} />
          <Route path="/sessions" element={<SessionsPage />} />
          {admin && (
            <>
              <Route path="/admin/nodes" element={<NodesPage />} />
              <Route path="/admin/regions" element={<RegionsPage />} />
              <Route path="/admin/users" element={<UsersPage />} />
              <Route path="/admin/devices" element={<AllDevicesPage />} />
              <Route path="/admin/diagnostics" element={<DiagnosticsPage />} />
              <Route path="/admin/diagnostics/devices/:id" element={<DeviceDiagnosticsPage />} />
              <Route path="/admin/priority-tokens" element={<PriorityTokensPage />} />
              <Route path="/admin/audit" element={<AuditPage />} />
            </>
          )}
          <Route path="*" element={<Navigate to="/" replace />} />
        </Routes>
      </Container>
    </>
  );
}
