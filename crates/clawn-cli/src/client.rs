//! A typed client of the control plane's HTTP JSON API (`/api/v1`).
//!
//! One method per endpoint, taking and returning the wire types of `clawn-proto`. Every failure
//! is a [`ClientError`] that keeps what the user needs to act on it: the server's `code`,
//! `message` and `hint` for API errors, and the URL that failed for transport errors.

use std::error::Error as _;
use std::path::Path;
use std::time::Duration;

use clawn_proto::api::{AdminDeviceQuery, AuditQuery, ErrorCode};
use clawn_proto::api::{
    AdminRegionView, ApiError, AuditEventView, CreateDeviceRequest, CreateNodeTokenRequest,
    CreateRegionRequest, CreateUserRequest, DeviceConfigResponse, DeviceDiagnostics, DeviceView,
    DeviceWithConfig, DiagnosticsOverview, GrantPriorityTokenRequest, LoginRequest, LoginResponse,
    NodeDiagnostics, NodeTokenResponse, NodeView, Page, PriorityTokenView, ReassignDeviceRequest,
    RegionView, RenameDeviceRequest, ResetPasswordRequest, RevokeResponse, RotateDeviceRequest,
    SetupRequest, UpdateNodeRequest, UpdateRegionRequest, UpdateUserRequest, UserView,
};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::store::Secret;

/// How long to wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take (revocation waits for the node's acknowledgement, which the
/// server bounds to a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error body.
    #[error("{} ({})", .error.message, .error.code)]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The server's error body.
        error: ApiError,
        /// The `Retry-After` of the answer, seconds (rate limits).
        retry_after: Option<u64>,
    },
    /// The server answered with an error status and a body that is not an API error (a proxy,
    /// or not a Clawn server at all).
    #[error("{url} answered {status}{}", snippet.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
    Status {
        /// The URL requested.
        url: String,
        /// HTTP status.
        status: StatusCode,
        /// The start of the body, if it was text.
        snippet: Option<String>,
    },
    /// The request never got an answer: DNS, refused connection, TLS, timeout.
    #[error("cannot reach {url}: {reason}")]
    Transport {
        /// The URL requested.
        url: String,
        /// The full error chain.
        reason: String,
        /// Whether the request may have reached the server (a timeout, a dropped connection)
        /// rather than failing before it was sent.
        maybe_delivered: bool,
    },
    /// A success answer whose body is not what this client expects.
    #[error("unexpected answer from {url}: {reason}")]
    Decode {
        /// The URL requested.
        url: String,
        /// What did not parse.
        reason: String,
    },
    /// The server URL cannot be used.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidServerUrl {
        /// What was given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be set up (for example an unreadable CA file).
    #[error("{0}")]
    Setup(String),
}

impl ClientError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            // The server's generic hint for a missing session speaks of headers and cookies;
            // a CLI user needs the command instead.
            Self::Api { status, error, .. }
                if *status == StatusCode::UNAUTHORIZED && error.code == ErrorCode::Unauthenticated =>
            {
                Some("the session has ended or the token is not valid; run `clawn login`".into())
            }
            Self::Api { error, .. } => error.hint.clone(),
            Self::Transport { .. } => Some(
                "check the server URL (--server, CLAWN_SERVER or the one saved by `clawn login`) and that the server is running"
                    .into(),
            ),
            Self::Status { .. } => Some("check that --server points at a Clawn control plane".into()),
            Self::Decode { .. } => Some("the server may run a different Clawn version than this client".into()),
            Self::InvalidServerUrl { .. } => Some("use a URL like https://vpn.example.com".into()),
            Self::Setup(_) => None,
        }
    }

    /// Whether the server may have carried out the request even though we got no usable
    /// answer. When this is `false` the request definitely had no effect.
    pub fn outcome_unknown(&self) -> bool {
        match self {
            // An API error body is the server's decision; only an internal error (whose
            // transaction should have rolled back, but we do not bet a key on it) is unsure.
            Self::Api { error, .. } => error.code == ErrorCode::Internal,
            Self::Status { status, .. } => status.is_server_error(),
            Self::Transport {
                maybe_delivered, ..
            } => *maybe_delivered,
            Self::Decode { .. } => true,
            Self::InvalidServerUrl { .. } | Self::Setup(_) => false,
        }
    }
}

/// Normalises a server URL by the one rule in [`clawn_proto::server_url`] (a bare host means
/// `https://`; no query, fragment or credentials; no trailing slash).
pub fn normalize_server_url(input: &str) -> Result<String, ClientError> {
    clawn_proto::server_url::normalise(input).map_err(|e| ClientError::InvalidServerUrl {
        url: e.url,
        reason: e.reason,
    })
}

/// Whether sending a token to `server` would expose it on the network: plain http to a host
/// that is not the loopback.
pub fn is_insecure(server: &str) -> bool {
    let Ok(url) = Url::parse(server) else {
        return false;
    };
    if url.scheme() != "http" {
        return false;
    }
    !matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

#[derive(Serialize)]
struct UserQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<Uuid>,
}

#[derive(Serialize)]
struct ForceQuery {
    force: bool,
}

/// The API client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<Secret>,
}

impl Client {
    /// A client for `server` (already normalised), sending `token` as a bearer token when set.
    /// `ca_cert` is an extra PEM bundle to trust (self-signed deployments).
    pub fn new(
        server: &str,
        token: Option<Secret>,
        ca_cert: Option<&Path>,
    ) -> Result<Self, ClientError> {
        let base = Url::parse(server).map_err(|e| ClientError::InvalidServerUrl {
            url: server.to_string(),
            reason: e.to_string(),
        })?;
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("clawn-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(path) = ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ClientError::Setup(format!(
                    "cannot read CA certificate {}: {e}",
                    path.display()
                ))
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ClientError::Setup(format!("invalid CA certificate {}: {e}", path.display()))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(format!("cannot set up HTTP client: {e}")))?;
        Ok(Self { http, base, token })
    }

    /// The server this client talks to.
    pub fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            path.extend(["api", "v1"]);
            path.extend(segments);
        }
        url
    }

    async fn send<B: Serialize + ?Sized, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let url = self.url(segments);
        let shown = url.to_string();
        let mut req = self.http.request(method, url);
        if let Some(q) = query {
            req = req.query(q);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = &self.token {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| transport(&shown, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok((shown, resp));
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let bytes = resp.bytes().await.map_err(|e| transport(&shown, &e))?;
        if let Ok(error) = serde_json::from_slice::<ApiError>(&bytes) {
            return Err(ClientError::Api {
                status,
                error,
                retry_after,
            });
        }
        let text = String::from_utf8_lossy(&bytes);
        let snippet = text.trim();
        let snippet = (!snippet.is_empty()).then(|| snippet.chars().take(200).collect());
        Err(ClientError::Status {
            url: shown,
            status,
            snippet,
        })
    }

    async fn json<T: DeserializeOwned, B: Serialize + ?Sized, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (url, resp) = self.send(method, segments, query, body).await?;
        let bytes = resp.bytes().await.map_err(|e| transport(&url, &e))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        self.json(Method::GET, segments, None::<&()>, None::<&()>)
            .await
    }

    async fn get_query<T: DeserializeOwned, Q: Serialize>(
        &self,
        segments: &[&str],
        q: &Q,
    ) -> Result<T, ClientError> {
        self.json(Method::GET, segments, Some(q), None::<&()>).await
    }

    async fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(Method::POST, segments, None::<&()>, Some(body))
            .await
    }

    async fn patch<T: DeserializeOwned, B: Serialize>(
        &self,
        segments: &[&str],
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(Method::PATCH, segments, None::<&()>, Some(body))
            .await
    }

    /// Sends a request whose answer body does not matter (204, or a body we do not need).
    async fn call<B: Serialize + ?Sized, Q: Serialize + ?Sized>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&Q>,
        body: Option<&B>,
    ) -> Result<(), ClientError> {
        let (url, resp) = self.send(method, segments, query, body).await?;
        resp.bytes().await.map_err(|e| transport(&url, &e))?;
        Ok(())
    }

    // ------------------------------------------------------------ auth

    /// `POST /auth/login`.
    pub async fn login(&self, req: &LoginRequest) -> Result<LoginResponse, ClientError> {
        self.post(&["auth", "login"], req).await
    }

    /// `POST /auth/setup`: creates the first admin with the one-time setup token.
    pub async fn setup(&self, req: &SetupRequest) -> Result<LoginResponse, ClientError> {
        self.post(&["auth", "setup"], req).await
    }

    /// `POST /auth/logout`: ends the session of the token this client sends.
    pub async fn logout(&self) -> Result<(), ClientError> {
        self.call(Method::POST, &["auth", "logout"], None::<&()>, None::<&()>)
            .await
    }

    /// `GET /me`.
    pub async fn me(&self) -> Result<UserView, ClientError> {
        self.get(&["me"]).await
    }

    /// `GET /regions`.
    pub async fn regions(&self) -> Result<Vec<RegionView>, ClientError> {
        self.get(&["regions"]).await
    }

    // ------------------------------------------------------------ devices

    /// `POST /devices`.
    pub async fn create_device(
        &self,
        req: &CreateDeviceRequest,
    ) -> Result<DeviceWithConfig, ClientError> {
        self.post(&["devices"], req).await
    }

    /// `GET /devices`.
    pub async fn devices(&self) -> Result<Vec<DeviceView>, ClientError> {
        self.get(&["devices"]).await
    }

    /// `GET /devices/{id}`.
    pub async fn device(&self, id: Uuid) -> Result<DeviceView, ClientError> {
        self.get(&["devices", &id.to_string()]).await
    }

    /// `PATCH /devices/{id}`.
    pub async fn rename_device(&self, id: Uuid, name: &str) -> Result<DeviceView, ClientError> {
        self.patch(
            &["devices", &id.to_string()],
            &RenameDeviceRequest {
                name: name.to_string(),
            },
        )
        .await
    }

    /// `POST /devices/{id}/revoke`.
    pub async fn revoke_device(&self, id: Uuid) -> Result<RevokeResponse, ClientError> {
        self.json(
            Method::POST,
            &["devices", &id.to_string(), "revoke"],
            None::<&()>,
            None::<&()>,
        )
        .await
    }

    /// `POST /devices/{id}/rotate`.
    pub async fn rotate_device(
        &self,
        id: Uuid,
        req: &RotateDeviceRequest,
    ) -> Result<DeviceWithConfig, ClientError> {
        self.post(&["devices", &id.to_string(), "rotate"], req)
            .await
    }

    /// `GET /devices/{id}/config`.
    pub async fn device_config(&self, id: Uuid) -> Result<DeviceConfigResponse, ClientError> {
        self.get(&["devices", &id.to_string(), "config"]).await
    }

    /// `POST /devices/{id}/region`: moves the device to another region (same key, new node).
    pub async fn move_device(
        &self,
        id: Uuid,
        req: &ReassignDeviceRequest,
    ) -> Result<DeviceWithConfig, ClientError> {
        self.post(&["devices", &id.to_string(), "region"], req)
            .await
    }

    // ------------------------------------------------------------ admin

    /// `GET /admin/regions`.
    pub async fn admin_regions(&self) -> Result<Vec<AdminRegionView>, ClientError> {
        self.get(&["admin", "regions"]).await
    }

    /// `POST /admin/regions`.
    pub async fn create_region(
        &self,
        req: &CreateRegionRequest,
    ) -> Result<AdminRegionView, ClientError> {
        self.post(&["admin", "regions"], req).await
    }

    /// `PATCH /admin/regions/{code}`.
    pub async fn update_region(
        &self,
        code: &str,
        req: &UpdateRegionRequest,
    ) -> Result<AdminRegionView, ClientError> {
        self.patch(&["admin", "regions", code], req).await
    }

    /// `POST /admin/node-tokens`.
    pub async fn create_node_token(
        &self,
        req: &CreateNodeTokenRequest,
    ) -> Result<NodeTokenResponse, ClientError> {
        self.post(&["admin", "node-tokens"], req).await
    }

    /// `GET /admin/nodes`.
    pub async fn nodes(&self) -> Result<Vec<NodeView>, ClientError> {
        self.get(&["admin", "nodes"]).await
    }

    /// `PATCH /admin/nodes/{id}`.
    pub async fn update_node(
        &self,
        id: Uuid,
        req: &UpdateNodeRequest,
    ) -> Result<NodeView, ClientError> {
        self.patch(&["admin", "nodes", &id.to_string()], req).await
    }

    /// `DELETE /admin/nodes/{id}` (`force` also removes a node that still serves devices).
    pub async fn remove_node(&self, id: Uuid, force: bool) -> Result<(), ClientError> {
        let query = force.then_some(ForceQuery { force: true });
        self.call(
            Method::DELETE,
            &["admin", "nodes", &id.to_string()],
            query.as_ref(),
            None::<&()>,
        )
        .await
    }

    /// `GET /admin/users`.
    pub async fn users(&self) -> Result<Vec<UserView>, ClientError> {
        self.get(&["admin", "users"]).await
    }

    /// `POST /admin/users`.
    pub async fn create_user(&self, req: &CreateUserRequest) -> Result<UserView, ClientError> {
        self.post(&["admin", "users"], req).await
    }

    /// `PATCH /admin/users/{id}`.
    pub async fn update_user(
        &self,
        id: Uuid,
        req: &UpdateUserRequest,
    ) -> Result<UserView, ClientError> {
        self.patch(&["admin", "users", &id.to_string()], req).await
    }

    /// `POST /admin/users/{id}/password`.
    pub async fn reset_password(
        &self,
        id: Uuid,
        req: &ResetPasswordRequest,
    ) -> Result<(), ClientError> {
        self.call(
            Method::POST,
            &["admin", "users", &id.to_string(), "password"],
            None::<&()>,
            Some(req),
        )
        .await
    }

    /// `GET /admin/devices`.
    pub async fn admin_devices(
        &self,
        q: &AdminDeviceQuery,
    ) -> Result<Vec<DeviceView>, ClientError> {
        self.get_query(&["admin", "devices"], q).await
    }

    /// `POST /admin/devices/{id}/revoke`.
    pub async fn admin_revoke_device(&self, id: Uuid) -> Result<RevokeResponse, ClientError> {
        self.json(
            Method::POST,
            &["admin", "devices", &id.to_string(), "revoke"],
            None::<&()>,
            None::<&()>,
        )
        .await
    }

    /// `POST /admin/devices/{id}/release`: ends a device's quarantine.
    pub async fn release_device(&self, id: Uuid) -> Result<DeviceView, ClientError> {
        self.json(
            Method::POST,
            &["admin", "devices", &id.to_string(), "release"],
            None::<&()>,
            None::<&()>,
        )
        .await
    }

    /// `GET /admin/priority-tokens` (all, or one user's).
    pub async fn priority_tokens(
        &self,
        user_id: Option<Uuid>,
    ) -> Result<Vec<PriorityTokenView>, ClientError> {
        self.get_query(&["admin", "priority-tokens"], &UserQuery { user_id })
            .await
    }

    /// `POST /admin/priority-tokens`.
    pub async fn grant_priority_token(
        &self,
        req: &GrantPriorityTokenRequest,
    ) -> Result<PriorityTokenView, ClientError> {
        self.post(&["admin", "priority-tokens"], req).await
    }

    /// `POST /admin/priority-tokens/{id}/revoke`.
    pub async fn revoke_priority_token(&self, id: Uuid) -> Result<PriorityTokenView, ClientError> {
        self.json(
            Method::POST,
            &["admin", "priority-tokens", &id.to_string(), "revoke"],
            None::<&()>,
            None::<&()>,
        )
        .await
    }

    /// `GET /admin/diagnostics`.
    pub async fn diagnostics(&self) -> Result<DiagnosticsOverview, ClientError> {
        self.get(&["admin", "diagnostics"]).await
    }

    /// `GET /admin/diagnostics/devices/{id}`.
    pub async fn device_diagnostics(&self, id: Uuid) -> Result<DeviceDiagnostics, ClientError> {
        self.get(&["admin", "diagnostics", "devices", &id.to_string()])
            .await
    }

    /// `GET /admin/diagnostics/nodes/{id}`.
    pub async fn node_diagnostics(&self, id: Uuid) -> Result<NodeDiagnostics, ClientError> {
        self.get(&["admin", "diagnostics", "nodes", &id.to_string()])
            .await
    }

    /// `GET /admin/audit`.
    pub async fn audit(&self, q: &AuditQuery) -> Result<Page<AuditEventView>, ClientError> {
        self.get_query(&["admin", "audit"], q).await
    }
}

/// Turns a reqwest error into a [`ClientError::Transport`] with the whole cause chain, which is
/// where the useful part ("Connection refused", "certificate not valid") is.
fn transport(url: &str, e: &reqwest::Error) -> ClientError {
    let mut reason = if e.is_timeout() {
        "timed out".to_string()
    } else {
        String::new()
    };
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty() && !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        source = s.source();
    }
    if reason.is_empty() {
        reason = e.to_string();
    }
    ClientError::Transport {
        url: url.to_string(),
        reason,
        maybe_delivered: !e.is_connect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        let ok = |s: &str| normalize_server_url(s).expect(s);
        assert_eq!(ok("https://vpn.example.com/"), "https://vpn.example.com");
        assert_eq!(ok("vpn.example.com"), "https://vpn.example.com");
        assert_eq!(ok(" http://127.0.0.1:8080 "), "http://127.0.0.1:8080");
        assert_eq!(
            ok("https://example.com/clawn/"),
            "https://example.com/clawn"
        );
        for bad in ["", "ftp://x", "https://", "https://x/?a=b", "https://u:p@x"] {
            assert!(normalize_server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_built_from_encoded_segments() {
        crate::test_support::install_crypto();
        let c = Client::new("https://example.com/clawn", None, None).expect("client");
        assert_eq!(
            c.url(&["devices"]).as_str(),
            "https://example.com/clawn/api/v1/devices"
        );
        assert_eq!(
            c.url(&["admin", "regions", "eu/../x?y"]).as_str(),
            "https://example.com/clawn/api/v1/admin/regions/eu%2F..%2Fx%3Fy"
        );
        let c = Client::new("http://127.0.0.1:1", None, None).expect("client");
        assert_eq!(c.url(&["me"]).as_str(), "http://127.0.0.1:1/api/v1/me");
        assert_eq!(c.server(), "http://127.0.0.1:1");
    }

    #[test]
    fn plain_http_is_insecure_except_on_loopback() {
        assert!(is_insecure("http://vpn.example.com"));
        assert!(!is_insecure("http://127.0.0.1:8080"));
        assert!(!is_insecure("http://localhost:8080"));
        assert!(!is_insecure("https://vpn.example.com"));
    }

    #[test]
    fn api_errors_read_like_the_server_meant() {
        let e = ClientError::Api {
            status: StatusCode::CONFLICT,
            error: ApiError {
                code: ErrorCode::SlotsExhausted,
                message: "no free device slots".into(),
                hint: Some("revoke a device or ask an admin for more slots".into()),
            },
            retry_after: None,
        };
        assert_eq!(e.to_string(), "no free device slots (slots_exhausted)");
        assert_eq!(
            e.hint().as_deref(),
            Some("revoke a device or ask an admin for more slots")
        );
        assert!(!e.outcome_unknown());
        let e = ClientError::Api {
            status: StatusCode::UNAUTHORIZED,
            error: ApiError {
                code: ErrorCode::Unauthenticated,
                message: "sign in first".into(),
                hint: Some("send `Authorization: Bearer <token>`".into()),
            },
            retry_after: None,
        };
        assert!(e.hint().is_some_and(|h| h.contains("clawn login")));
    }

    #[tokio::test]
    async fn connection_errors_name_the_url() {
        // Bind then drop a listener so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        crate::test_support::install_crypto();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), None, None).expect("client");
        let err = c.me().await.expect_err("closed port");
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("cannot reach http://127.0.0.1:{port}/api/v1/me")),
            "{text}"
        );
        assert!(err.hint().is_some_and(|h| h.contains("--server")));
        assert!(!err.outcome_unknown());
    }
}
