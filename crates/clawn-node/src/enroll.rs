//! Joining a control plane: keys are generated here, only public halves leave the node.

use std::net::Ipv4Addr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::api::ApiError;
use clawn_proto::keys::WgKeyPair;
use clawn_proto::node::{ENROLL_PATH, EnrollRequest, EnrollResponse, capability};
use clawn_proto::sign::parse_verifying_key;

use crate::state::{Identity, StateDir};
use crate::wireguard::{BackendKind, valid_ifname};

/// What `clawn-node join` needs.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    /// Control plane base URL.
    pub server: String,
    /// One-time join token.
    pub token: String,
    /// Public endpoint clients dial (`host:port`); default: exit IP and listen port.
    pub endpoint: Option<String>,
    /// UDP port.
    pub listen_port: u16,
    /// Backend.
    pub backend: BackendKind,
    /// Interface name.
    pub interface_name: String,
    /// Node name.
    pub name: Option<String>,
    /// Exit IPv4 override (else detected from the default route).
    pub exit_ipv4: Option<Ipv4Addr>,
    /// Whether this node forwards and masquerades clients' traffic.
    pub exit: bool,
}

/// A failed join, with the server's code when it gave one.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The control plane refused (bad, used or expired token, ...).
    #[error("{message} ({code}){}", hint.as_ref().map(|h| format!("\nhint: {h}")).unwrap_or_default())]
    Refused {
        /// Machine-readable code.
        code: String,
        /// Human message.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// The state directory already holds an identity.
    #[error("{} already holds a node identity; use another --state-dir to join again", .0.display())]
    AlreadyJoined(std::path::PathBuf),
    /// The interface name is not one the agent accepts.
    #[error("invalid --interface {0:?}: 1-15 of [A-Za-z0-9_.-]")]
    InvalidInterface(String),
    /// The server URL is not usable (the message says why).
    #[error("{0}")]
    InvalidServer(String),
    /// No `--endpoint` and no exit address to build one from.
    #[error("cannot tell this node's public address; pass --endpoint host:port")]
    NoEndpoint,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(reqwest::Error),
    /// The control plane did not answer.
    #[error("cannot reach the control plane at {server}: {error}")]
    Unreachable {
        /// The control plane's URL.
        server: String,
        /// The cause.
        error: reqwest::Error,
    },
    /// The control plane answered with an error that is not an API error body.
    #[error("enrollment failed: HTTP {status}: {body}")]
    Failed {
        /// The HTTP status.
        status: reqwest::StatusCode,
        /// The answer's body.
        body: String,
    },
    /// The control plane's success answer does not parse.
    #[error("unreadable enrollment answer: {0}")]
    UnreadableAnswer(reqwest::Error),
    /// The control plane sent a signing key the node cannot use.
    #[error("control plane sent an unusable signing key: {0}")]
    BadSigningKey(clawn_proto::sign::Rejection),
    /// The identity could not be saved.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Server text shown on a terminal, without control characters.
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(500).collect()
}

/// Enrolls and saves the identity. Returns it.
pub async fn join(dir: &StateDir, opts: &JoinOptions) -> Result<Identity, JoinError> {
    if dir.has_identity() {
        return Err(JoinError::AlreadyJoined(dir.path().to_path_buf()));
    }
    if !valid_ifname(&opts.interface_name) {
        return Err(JoinError::InvalidInterface(opts.interface_name.clone()));
    }
    let server = clawn_proto::server_url::normalise(&opts.server)
        .map_err(|e| JoinError::InvalidServer(format!("--server: {e}")))?;
    let wg = WgKeyPair::generate();
    let identity = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let exit_ipv4 = match opts.exit_ipv4 {
        Some(ip) => Some(ip),
        None => crate::firewall::detect_exit_ipv4().await,
    };
    let endpoint = match &opts.endpoint {
        Some(e) => e.clone(),
        None => match exit_ipv4 {
            Some(ip) => format!("{ip}:{}", opts.listen_port),
            None => return Err(JoinError::NoEndpoint),
        },
    };
    let mut capabilities = vec![opts.backend.capability().to_string()];
    if opts.exit {
        capabilities.push(capability::EXIT.to_string());
    }
    let req = EnrollRequest {
        token: opts.token.clone(),
        name: opts.name.clone(),
        wg_public_key: wg.public(),
        identity_public_key: STANDARD.encode(identity.verifying_key().to_bytes()),
        endpoint: endpoint.clone(),
        listen_port: opts.listen_port,
        capabilities,
        exit_ipv4: if opts.exit { exit_ipv4 } else { None },
    };
    let resp = crate::http_client()
        .map_err(JoinError::Client)?
        .post(format!("{server}{ENROLL_PATH}"))
        .json(&req)
        .send()
        .await
        .map_err(|error| JoinError::Unreachable {
            server: server.clone(),
            error,
        })?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => JoinError::Refused {
                code: printable(e.code.as_str()),
                message: printable(&e.message),
                hint: e.hint.as_deref().map(printable),
            },
            Err(_) => JoinError::Failed { status, body: text },
        });
    }
    let e: EnrollResponse = resp.json().await.map_err(JoinError::UnreadableAnswer)?;
    parse_verifying_key(&e.signing_public_key).map_err(JoinError::BadSigningKey)?;
    let id = Identity {
        node_id: e.node_id,
        server_url: server,
        credential: e.credential,
        signing_public_key: e.signing_public_key,
        identity_secret: STANDARD.encode(identity.to_bytes()),
        wg_private_key: wg.private_base64(),
        region: e.region,
        backend: opts.backend,
        interface_name: opts.interface_name.clone(),
        interface: e.interface,
        endpoint,
    };
    dir.save_identity(&id)?;
    Ok(id)
}
