//! A minimal node-protocol client: enrolls with a join token, holds the stream, verifies
//! every signed message (signature, node id, version order), keeps the applied peer set
//! and acknowledges. It is what the integration tests and the benchmark use to stand in
//! for a node; the real agent lives in `clawn-node`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clawn_proto::node::{
    EnrollRequest, EnrollResponse, NodeMessage, PeerSpec, ServerMessage, Telemetry,
};
use clawn_proto::sign::{Rejection, Signed, StateVerifier, Verified, parse_verifying_key};
use clawn_proto::{WgKeyPair, WgPublicKey};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = futures_util::stream::SplitSink<Ws, Message>;

/// The open stream: the write half, and the messages a reader task took off the read
/// half. The reader keeps reading (so pings are answered, as a real node's are) until
/// paused or the stream closes.
struct Conn {
    sink: Sink,
    inbox: tokio::sync::mpsc::UnboundedReceiver<anyhow::Result<Message>>,
    paused: tokio::sync::watch::Sender<bool>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// What the last accepted message changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// A full snapshot.
    Snapshot {
        /// Its version.
        version: u64,
        /// Peers in it.
        peers: usize,
    },
    /// A delta.
    Delta {
        /// Base version.
        from: u64,
        /// New version.
        to: u64,
        /// Keys added.
        added: Vec<WgPublicKey>,
        /// Keys removed.
        removed: Vec<WgPublicKey>,
    },
}

/// A stand-in node speaking the real protocol.
pub struct ProtoNode {
    /// Node id from enrollment.
    pub node_id: Uuid,
    /// Node credential.
    pub credential: String,
    /// The control plane's signing key, from enrollment.
    pub verifier: StateVerifier,
    /// The node's WireGuard key pair.
    pub wg: WgKeyPair,
    /// The node's ed25519 identity key (proves the node on each stream request).
    pub identity: ed25519_dalek::SigningKey,
    /// Enrollment answer.
    pub enrollment: EnrollResponse,
    /// Version applied.
    pub applied: Option<u64>,
    /// Peers applied.
    pub peers: BTreeMap<WgPublicKey, PeerSpec>,
    /// Acknowledge automatically after applying.
    pub auto_ack: bool,
    url: String,
    ws: Option<Conn>,
}

impl ProtoNode {
    /// Enrolls with a join token.
    pub async fn enroll(url: &str, token: &str) -> anyhow::Result<Self> {
        let wg = WgKeyPair::generate();
        let identity = ed25519_dalek::SigningKey::from_bytes(&rand_bytes());
        let req = EnrollRequest {
            token: token.to_string(),
            name: None,
            wg_public_key: wg.public(),
            identity_public_key: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                identity.verifying_key().to_bytes(),
            ),
            endpoint: "192.0.2.10:51820".into(),
            listen_port: 51820,
            capabilities: vec!["exit".into()],
            exit_ipv4: Some("192.0.2.10".parse()?),
        };
        let resp = reqwest::Client::new()
            .post(format!("{url}{}", clawn_proto::node::ENROLL_PATH))
            .json(&req)
            .send()
            .await?;
        if !resp.status().is_success() {
            bail!(
                "enroll failed: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let enrollment: EnrollResponse = resp.json().await?;
        let key =
            parse_verifying_key(&enrollment.signing_public_key).map_err(|e| anyhow!("{e}"))?;
        Ok(Self {
            node_id: enrollment.node_id,
            credential: enrollment.credential.clone(),
            verifier: StateVerifier::new(key, enrollment.node_id),
            wg,
            identity,
            enrollment,
            applied: None,
            peers: BTreeMap::new(),
            auto_ack: true,
            url: url.to_string(),
            ws: None,
        })
    }

    /// A second, unconnected client with this node's id, credential and trust (a fresh
    /// `wg` key pair: the control plane never learns a node's WireGuard private key, so
    /// nothing here depends on it). Connecting it replaces this client's stream.
    pub fn twin(&self) -> Self {
        Self {
            node_id: self.node_id,
            credential: self.credential.clone(),
            verifier: self.verifier.clone(),
            wg: WgKeyPair::generate(),
            identity: self.identity.clone(),
            enrollment: self.enrollment.clone(),
            applied: None,
            peers: BTreeMap::new(),
            auto_ack: self.auto_ack,
            url: self.url.clone(),
            ws: None,
        }
    }

    /// Points the client at another server URL (another replica of the control plane,
    /// or a restored server on another port): the next [`Self::connect`] goes there; the
    /// enrollment, credential and trust stay as they are.
    pub fn use_server(&mut self, url: &str) {
        self.url = url.to_string();
    }

    /// Opens the stream.
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        let ws_url = format!(
            "{}{}",
            self.url.replacen("http", "ws", 1),
            clawn_proto::node::STREAM_PATH
        );
        let mut req = ws_url.into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.credential).parse()?,
        );
        let at = clawn_proto::time::now_millis();
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_TIME_HEADER,
            at.to_string().parse()?,
        );
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_PROOF_HEADER,
            clawn_proto::sign::identity_proof(&self.identity, self.node_id, at).parse()?,
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .context("connect node stream")?;
        let (sink, mut stream) = ws.split();
        let (tx, inbox) = tokio::sync::mpsc::unbounded_channel();
        let (paused, mut paused_rx) = tokio::sync::watch::channel(false);
        let reader = tokio::spawn(async move {
            loop {
                if paused_rx.wait_for(|p| !*p).await.is_err() {
                    return;
                }
                tokio::select! {
                    _ = paused_rx.changed() => continue,
                    msg = stream.next() => {
                        let Some(msg) = msg else { return };
                        let done = matches!(msg, Err(_) | Ok(Message::Close(_)));
                        if tx.send(msg.map_err(anyhow::Error::from)).is_err() || done {
                            return;
                        }
                    }
                }
            }
        });
        self.ws = Some(Conn {
            sink,
            inbox,
            paused,
            reader,
        });
        Ok(())
    }

    /// Stops (or resumes) reading the stream: while paused the server's pings go
    /// unanswered, like a node that hangs or a path that drops everything.
    pub fn pause_reading(&self, paused: bool) {
        if let Some(c) = &self.ws {
            c.paused.send_replace(paused);
        }
    }

    /// Closes the stream.
    pub async fn disconnect(&mut self) {
        if let Some(mut c) = self.ws.take() {
            let _ = c.sink.close().await;
        }
    }

    /// Waits for the next signed state message, without verifying it.
    pub async fn recv_signed(&mut self, timeout: Duration) -> anyhow::Result<Signed> {
        let c = self.ws.as_mut().context("not connected")?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, c.inbox.recv())
                .await
                .context("timed out waiting for state")?;
            match msg.context("stream closed")?? {
                Message::Text(t) => match serde_json::from_str::<ServerMessage>(t.as_str())? {
                    ServerMessage::State(s) => return Ok(s),
                    ServerMessage::Error { code, message } => {
                        bail!("server error {code}: {message}")
                    }
                    // This client never asks for a lease.
                    ServerMessage::Lease { .. } => {}
                },
                Message::Close(_) => bail!("stream closed by server"),
                _ => {}
            }
        }
    }

    /// Verifies a signed message against the applied version (no side effects).
    pub fn verify(&self, signed: &Signed) -> Result<Verified, Rejection> {
        self.verifier.verify(signed, self.applied)
    }

    /// Waits for, verifies, applies and (if `auto_ack`) acknowledges the next state.
    pub async fn next_state(&mut self, timeout: Duration) -> anyhow::Result<Applied> {
        let signed = self.recv_signed(timeout).await?;
        let verified = self.verify(&signed).map_err(|r| anyhow!("rejected: {r}"))?;
        let applied = self.apply(verified);
        if self.auto_ack
            && let Some(v) = self.applied
        {
            self.send(&NodeMessage::Ack { version: v }).await?;
        }
        Ok(applied)
    }

    /// Applies a verified state to the local peer set.
    pub fn apply(&mut self, v: Verified) -> Applied {
        match v {
            Verified::Snapshot(s) => {
                self.peers = s.peers.into_iter().map(|p| (p.public_key, p)).collect();
                self.applied = Some(s.version);
                Applied::Snapshot {
                    version: s.version,
                    peers: self.peers.len(),
                }
            }
            Verified::Delta(d) => {
                for k in &d.remove {
                    self.peers.remove(k);
                }
                let added = d.add.iter().map(|p| p.public_key).collect();
                for p in d.add {
                    self.peers.insert(p.public_key, p);
                }
                for p in d.update {
                    if let Some(have) = self.peers.get_mut(&p.public_key) {
                        *have = p;
                    }
                }
                self.applied = Some(d.to_version);
                Applied::Delta {
                    from: d.from_version,
                    to: d.to_version,
                    added,
                    removed: d.remove,
                }
            }
        }
    }

    /// Sends a message up the stream.
    pub async fn send(&mut self, msg: &NodeMessage) -> anyhow::Result<()> {
        let c = self.ws.as_mut().context("not connected")?;
        c.sink
            .send(Message::Text(serde_json::to_string(msg)?.into()))
            .await?;
        Ok(())
    }

    /// Sends telemetry.
    pub async fn telemetry(&mut self, t: Telemetry) -> anyhow::Result<()> {
        self.send(&NodeMessage::Telemetry(t)).await
    }
}

fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    b
}
