//! The agent loop: keep the stream, verify, apply, save, acknowledge; report telemetry;
//! serve the last snapshot while the control plane is away, and fail closed when policy
//! says it has been away too long.
//!
//! The loop never blocks its runtime (in all-in-one mode that is the control plane's
//! own): `state.json` is written on the blocking pool and awaited before the ack, the
//! contact time goes to a writer task, `nft` and `/proc` reads run on the blocking pool.
//! When to fail closed, resync, check drift or drop a silent stream is decided by the
//! pure [`Rules`]; this module only sleeps until their next deadline and carries out
//! what they say.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::keys::{WgKeyPair, WgPublicKey};
use clawn_proto::node::{
    InterfaceSpec, NodeMessage, NodePolicy, PeerSpec, STREAM_PATH, ServerMessage, Telemetry,
};
use clawn_proto::sign::{Rejection, StateVerifier, Verified, parse_verifying_key};
use clawn_proto::time::{UnixMillis, now_millis};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tracing::{debug, error, info, warn};

use crate::firewall::{self, FirewallSpec};
use crate::reconcile::{self, PeerMap};
use crate::rules::{Action, Now, OnRejected, Rules};
pub use crate::rules::{DRIFT_CHECK, RESYNC_INTERVAL, STREAM_SILENCE};
use crate::state::{Identity, StateDir, StateError};
use crate::telemetry::{HostFiles, Sampler};
use crate::wireguard::{Backend, BackendKind, IfaceConfig, WgError};

/// Largest message accepted on the stream: a 100k-peer snapshot is about 16 MB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Run-time settings of the agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// State directory (identity and last snapshot).
    pub state_dir: PathBuf,
    /// For the uapi backend: the implementation to start if its socket is absent.
    pub userspace_bin: Option<PathBuf>,
    /// Exit IPv4 override (else detected from the default route).
    pub exit_ipv4: Option<Ipv4Addr>,
    /// Whether the node forwards and masquerades clients' traffic.
    pub exit: bool,
    /// Manage the nftables table (exit NAT and isolation).
    pub firewall: bool,
    /// Telemetry interval.
    pub telemetry_interval: Duration,
    /// Reconnect backoff ceiling.
    pub backoff_cap: Duration,
    /// The key `identity.json` is sealed with (`None`: plaintext).
    pub secret_key: Option<clawn_proto::sealed::SecretKey>,
}

impl AgentConfig {
    /// Defaults for a state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            userspace_bin: None,
            exit_ipv4: None,
            exit: true,
            firewall: true,
            telemetry_interval: Duration::from_secs(5),
            backoff_cap: Duration::from_secs(30),
            secret_key: None,
        }
    }
}

/// Full-jitter exponential backoff: a random wait in `0..=min(cap, base·2ⁿ)`.
#[derive(Debug)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// A backoff from 250 ms up to `cap`.
    pub fn new(cap: Duration) -> Self {
        Self {
            attempt: 0,
            base: Duration::from_millis(250),
            cap,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ms = rand::random_range(0..=ceiling.as_millis() as u64);
        Duration::from_millis(ms)
    }

    /// Back to the first step (after a verified state).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Why the agent could not start, or could not apply a desired state.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The state directory could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The identity's control-plane signing key does not parse.
    #[error("identity holds a bad signing key: {0}")]
    BadSigningKey(Rejection),
    /// The identity's WireGuard key does not parse.
    #[error("identity holds a bad WireGuard key: {0}")]
    BadWireGuardKey(clawn_proto::keys::KeyError),
    /// The identity's ed25519 identity key does not parse.
    #[error("identity holds a bad ed25519 identity key")]
    BadIdentityKey,
    /// The WireGuard interface could not be set up.
    #[error("cannot set up {name} ({backend} backend)")]
    Backend {
        /// The interface.
        name: String,
        /// The backend.
        backend: BackendKind,
        /// The cause.
        #[source]
        source: WgError,
    },
    /// Interface settings or peers that do not validate (a saved or applied state).
    #[error(transparent)]
    Invalid(#[from] reconcile::Invalid),
    /// The WireGuard implementation failed.
    #[error(transparent)]
    WireGuard(#[from] WgError),
    /// A task on the blocking pool did not finish (the runtime is shutting down).
    #[error("a blocking task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a session with the control plane ended.
enum SessionEnd {
    Shutdown,
    Lost(Lost),
}

/// Why the stream was lost (logged, then the agent reconnects).
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("server URL {0:?} is neither http nor https")]
    BadUrl(String),
    #[error("cannot build the stream request: {0}")]
    Request(String),
    #[error("connect: {0}")]
    Connect(tokio_tungstenite::tungstenite::Error),
    #[error("connect: timed out")]
    ConnectTimeout,
    #[error("stream closed")]
    Closed,
    #[error("closed by the control plane: {0:?}")]
    ClosedByPeer(Option<CloseFrame>),
    #[error(transparent)]
    Stream(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("no message for {STREAM_SILENCE:?}")]
    Silent,
}

/// Persists the contact time off the async loop. The latest value wins; the task ends
/// when [`ContactWriter::finish`] has written the final one.
struct ContactWriter {
    tx: tokio::sync::watch::Sender<UnixMillis>,
    task: tokio::task::JoinHandle<()>,
}

impl ContactWriter {
    fn spawn(dir: StateDir, saved: UnixMillis) -> Self {
        let (tx, mut rx) = tokio::sync::watch::channel(saved);
        let task = tokio::spawn(async move {
            // `changed` still reports a value sent just before the sender went away.
            while rx.changed().await.is_ok() {
                let at = *rx.borrow_and_update();
                let dir = dir.clone();
                match tokio::task::spawn_blocking(move || dir.save_last_contact(at)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => warn!(error = %format!("{e:#}"), "cannot record contact time"),
                    Err(e) => warn!(error = %e, "cannot record contact time"),
                }
            }
        });
        Self { tx, task }
    }

    /// Queues `at` for writing (never waits).
    fn record(&self, at: UnixMillis) {
        self.tx.send_replace(at);
    }

    /// Writes `at` and waits until it is on disk.
    async fn finish(self, at: UnixMillis) {
        self.tx.send_replace(at);
        drop(self.tx);
        if let Err(e) = self.task.await {
            warn!(error = %e, "the contact writer failed");
        }
    }
}

/// The agent's state.
pub struct Agent {
    id: Identity,
    identity_key: ed25519_dalek::SigningKey,
    dir: StateDir,
    cfg: AgentConfig,
    verifier: StateVerifier,
    backend: Backend,
    /// What the interface has (kept in step with every apply).
    mirror: PeerMap,
    /// Shared with the blocking writer of `state.json` while it runs (no copy of the
    /// peers); unique again once the write is awaited.
    specs: Arc<BTreeMap<WgPublicKey, PeerSpec>>,
    interface: InterfaceSpec,
    policy: NodePolicy,
    /// Contact, fail-closed, resync, drift and silence decisions.
    rules: Rules,
    contact: ContactWriter,
    exit_ipv4: Option<Ipv4Addr>,
    sampler: Sampler,
    /// The rule set last applied successfully (`None`: none, or the last attempt failed).
    firewall_applied: Option<FirewallSpec>,
    /// When the lease ends, for the sibling endpoint.
    lease: crate::sibling::LeaseClock,
}

impl Agent {
    /// Loads the identity, opens the interface and restores the last snapshot.
    pub async fn start(cfg: AgentConfig) -> Result<Self, AgentError> {
        let dir = StateDir::open(&cfg.state_dir)?.with_secret_key(cfg.secret_key.clone());
        // `state.json` is megabytes at 100k peers: read and parse it off the loop.
        let (id, saved, last_contact) = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || {
                (
                    dir.load_identity(),
                    dir.load_applied(),
                    dir.load_last_contact(),
                )
            }
        })
        .await?;
        let id = id?;
        let key = parse_verifying_key(&id.signing_public_key).map_err(AgentError::BadSigningKey)?;
        let verifier = StateVerifier::new(key, id.node_id);
        let wg = WgKeyPair::from_private_base64(&id.wg_private_key)
            .map_err(AgentError::BadWireGuardKey)?;
        let identity_key = identity_signing_key(&id).ok_or(AgentError::BadIdentityKey)?;
        let saved = match saved {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %chain(&e), "ignoring the saved snapshot; waiting for the control plane");
                None
            }
        };
        let interface = saved
            .as_ref()
            .map(|s| s.interface.clone())
            .unwrap_or_else(|| id.interface.clone());
        let iface = reconcile::parse_interface(&interface)?;
        let icfg = IfaceConfig {
            name: id.interface_name.clone(),
            key: wg,
            listen_port: iface.listen_port,
            address: iface.address,
            userspace_bin: cfg.userspace_bin.clone(),
        };
        let backend =
            Backend::open(id.backend, &icfg)
                .await
                .map_err(|source| AgentError::Backend {
                    name: icfg.name.clone(),
                    backend: id.backend,
                    source,
                })?;
        let exit_ipv4 = if cfg.exit {
            match cfg.exit_ipv4 {
                Some(ip) => Some(ip),
                None => firewall::detect_exit_ipv4().await,
            }
        } else {
            None
        };
        let last_contact = last_contact.unwrap_or_else(now_millis);
        let policy = saved.as_ref().map(|s| s.policy.clone()).unwrap_or_default();
        let mut agent = Self {
            identity_key,
            verifier,
            backend,
            mirror: PeerMap::new(),
            specs: Arc::default(),
            rules: Rules::new(last_contact, policy.offline_grace_secs),
            contact: ContactWriter::spawn(dir.clone(), last_contact),
            policy,
            interface,
            exit_ipv4,
            sampler: Sampler::default(),
            firewall_applied: None,
            lease: crate::sibling::LeaseClock::default(),
            id,
            dir,
            cfg,
        };
        agent.rules.enable_leases();
        // The region's other nodes ask here whether this node's lease runs (TCP on the
        // WireGuard port number).
        crate::sibling::serve(icfg.listen_port, agent.lease.clone());
        agent.apply_firewall().await;
        if let Some(s) = saved {
            // Whatever happens next, nothing older than this may be applied again.
            agent.rules.restore(s.version);
            if agent.rules.offline_too_long(Now::current()) {
                agent.fail_closed().await;
            } else {
                let pool = reconcile::parse_interface(&s.interface)?.pool;
                let desired = reconcile::validate_peers(&s.peers, pool)?;
                agent.converge(desired).await?;
                agent.set_specs(&s.peers);
                info!(
                    version = s.version,
                    peers = s.peers.len(),
                    "restored the saved snapshot"
                );
            }
        } else {
            // No snapshot: nothing may pass until the control plane says so.
            agent.converge(PeerMap::new()).await?;
        }
        Ok(agent)
    }

    /// The node's id.
    pub fn node_id(&self) -> uuid::Uuid {
        self.id.node_id
    }

    fn firewall_spec(&self) -> Option<FirewallSpec> {
        let pool = reconcile::parse_interface(&self.interface).ok()?.pool;
        Some(FirewallSpec {
            iface: self.id.interface_name.clone(),
            pool,
            exit: self.cfg.exit,
            client_isolation: self.policy.client_isolation,
        })
    }

    /// Enables forwarding and replaces the nftables table, both on the blocking pool.
    async fn apply_firewall(&mut self) {
        if !self.cfg.firewall {
            return;
        }
        let Some(spec) = self.firewall_spec() else {
            return;
        };
        if self.cfg.exit {
            let forwarding = tokio::task::spawn_blocking(firewall::enable_forwarding).await;
            if let Some(e) = match forwarding {
                Ok(r) => r.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            } {
                warn!(error = %e, "cannot enable IPv4 forwarding; clients will not reach the outside");
            }
        }
        match firewall::apply_off_thread(firewall::ruleset(&spec)).await {
            Ok(()) => {
                debug!(?spec, "firewall applied");
                self.firewall_applied = Some(spec);
            }
            Err(e) => {
                self.firewall_applied = None;
                error!(error = %format!("{e:#}"), "firewall not applied: exit NAT and client isolation are OFF")
            }
        }
    }

    async fn fail_closed(&mut self) {
        if self.rules.is_failed_closed() {
            return;
        }
        let grace = self.policy.offline_grace_secs;
        error!(
            offline_grace_secs = grace,
            "control plane unreachable beyond the offline grace: failing closed, removing all peers"
        );
        match self.backend.remove_all().await {
            Ok(()) => {
                self.mirror.clear();
                self.rules.failed_closed();
                metrics::gauge!("clawn_node_failed_closed").set(1.0);
                metrics::gauge!("clawn_node_peers").set(0.0);
            }
            Err(e) => error!(error = %e, "failing closed: cannot remove peers"),
        }
    }

    /// Brings the interface to `desired`, planning against what it really has. The
    /// caller keeps `specs` in step (they only change with a new desired state).
    async fn converge(&mut self, desired: PeerMap) -> Result<(), AgentError> {
        let current = reconcile::from_interface(&self.backend.read().await?);
        let ops = reconcile::plan(&current, &desired, self.backend.caps());
        self.backend.apply(&ops).await?;
        if !ops.is_empty() {
            info!(
                removed = ops.remove.len(),
                upserted = ops.upsert.len(),
                "interface converged"
            );
        }
        self.mirror = desired;
        metrics::gauge!("clawn_node_peers").set(self.mirror.len() as f64);
        Ok(())
    }

    fn set_specs(&mut self, peers: &[PeerSpec]) {
        self.specs = Arc::new(peers.iter().map(|p| (p.public_key, p.clone())).collect());
    }

    /// A verified contact: the rules say when the time is due on disk; the writer task
    /// puts it there without holding up the loop.
    fn touch_contact(&mut self) {
        if let Some(at) = self.rules.on_contact(Now::current()) {
            self.contact.record(at);
        }
    }

    /// Writes `state.json` atomically on the blocking pool and waits for it: the ack
    /// that follows promises the state survives a restart.
    async fn save(&self, version: u64) -> Result<(), AgentError> {
        let started = Instant::now();
        let dir = self.dir.clone();
        let interface = self.interface.clone();
        let policy = self.policy.clone();
        let specs = Arc::clone(&self.specs);
        tokio::task::spawn_blocking(move || {
            dir.save_applied_parts(version, &interface, &policy, specs.values())
        })
        .await??;
        metrics::histogram!("clawn_node_save_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Verifies and applies one signed state. Returns the version to acknowledge, or
    /// why it was rejected.
    async fn handle_state(
        &mut self,
        signed: &clawn_proto::sign::Signed,
    ) -> Result<Result<u64, Rejection>, AgentError> {
        let verified = match self.verifier.verify(signed, self.rules.applied()) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        if let Err(r) = self.rules.admit(&verified) {
            return Ok(Err(r));
        }
        let started = Instant::now();
        let (version, snapshot) = match verified {
            Verified::Snapshot(s) => {
                let iface = match reconcile::parse_interface(&s.interface) {
                    Ok(i) => i,
                    Err(e) => return Ok(Err(Rejection::Malformed(e.to_string()))),
                };
                let desired = match reconcile::validate_peers(&s.peers, iface.pool) {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(Rejection::Malformed(e.to_string()))),
                };
                if s.interface != self.interface {
                    warn!(old = ?self.interface, new = ?s.interface, "interface settings changed; the address and port apply after a restart");
                }
                self.converge(desired).await?;
                self.set_specs(&s.peers);
                self.interface = s.interface.clone();
                self.policy = s.policy.clone();
                self.rules.set_offline_grace(self.policy.offline_grace_secs);
                if self.firewall_spec() != self.firewall_applied {
                    self.apply_firewall().await;
                }
                (s.version, true)
            }
            Verified::Delta(d) => {
                let pool = reconcile::parse_interface(&self.interface)?.pool;
                let ops = match reconcile::plan_delta(&self.mirror, &d, pool, self.backend.caps()) {
                    Ok(o) => o,
                    Err(e) => return Ok(Err(Rejection::Malformed(e.to_string()))),
                };
                self.backend.apply(&ops).await?;
                reconcile::commit_delta(&mut self.mirror, &ops);
                let specs = Arc::make_mut(&mut self.specs);
                for k in &d.remove {
                    specs.remove(k);
                }
                for p in &d.add {
                    specs.insert(p.public_key, p.clone());
                }
                // A class change: the spec is recorded (and saved with the snapshot); the
                // WireGuard peer is not touched, so its session stays up.
                for p in &d.update {
                    if let Some(have) = specs.get_mut(&p.public_key) {
                        have.class = p.class;
                    }
                }
                metrics::gauge!("clawn_node_peers").set(self.mirror.len() as f64);
                (d.to_version, false)
            }
        };
        metrics::histogram!("clawn_node_apply_seconds").record(started.elapsed().as_secs_f64());
        let (was_closed, contact) = self.rules.on_applied(version, snapshot, Now::current());
        if was_closed {
            info!("control plane is back: serving peers again");
            metrics::gauge!("clawn_node_failed_closed").set(0.0);
        }
        if let Some(at) = contact {
            self.contact.record(at);
        }
        self.save(version).await?;
        metrics::gauge!("clawn_node_applied_version").set(version as f64);
        Ok(Ok(version))
    }

    async fn telemetry(&mut self) -> Result<Telemetry, WgError> {
        let peers = self.backend.read().await?;
        let files = HostFiles::read_off_thread().await;
        let now = now_millis();
        Ok(Telemetry {
            at: now,
            host: self.sampler.host(&files, &peers, now),
            peers: self.sampler.changed_peers(&peers),
            exit_ipv4: self.exit_ipv4,
        })
    }

    fn stream_request(
        &self,
    ) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, Lost> {
        let base = &self.id.server_url;
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}{STREAM_PATH}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}{STREAM_PATH}")
        } else {
            return Err(Lost::BadUrl(base.clone()));
        };
        let bad = |e: &dyn std::fmt::Display| Lost::Request(e.to_string());
        let mut req = ws.into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.id.credential)
                .parse()
                .map_err(|e| bad(&e))?,
        );
        // Prove the enrolled identity key on every connect (the credential alone is not
        // enough to open a stream).
        let at = now_millis();
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_TIME_HEADER,
            at.to_string().parse().map_err(|e| bad(&e))?,
        );
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_PROOF_HEADER,
            clawn_proto::sign::identity_proof(&self.identity_key, self.id.node_id, at)
                .parse()
                .map_err(|e| bad(&e))?,
        );
        Ok(req)
    }

    /// Sleeps until the rules' next deadline (forever if there is none).
    async fn rules_due(&self) {
        match self.rules.next_deadline(Now::current()) {
            Some(at) => tokio::time::sleep_until(at.into()).await,
            None => std::future::pending().await,
        }
    }

    /// Carries out every action the rules have due now. Stream actions are returned for
    /// the caller (who holds the stream); off the stream there are none.
    async fn run_due(&mut self) -> Vec<Action> {
        let mut for_stream = Vec::new();
        while let Some(action) = self.rules.poll(Now::current()) {
            match action {
                Action::FailClosed => self.fail_closed().await,
                Action::CheckDrift => {
                    // Someone (or something) changed the interface or the firewall behind
                    // our back: put both back to the applied state.
                    if let Err(e) = self.converge(self.mirror.clone()).await {
                        warn!(error = %chain(&e), "drift check failed");
                    }
                    self.apply_firewall().await;
                }
                Action::CheckSiblings => {
                    let live = crate::sibling::any_live(self.rules.siblings()).await;
                    self.rules.on_siblings(live, Now::current());
                    if self.rules.is_partitioned() {
                        warn!(
                            "lease ran out and a sibling still holds one: this node is cut off from a working control plane; removing all peers (their devices move to other nodes)"
                        );
                    } else {
                        info!(
                            "lease ran out and no sibling holds one: the control plane looks down; serving the last snapshot until the offline grace"
                        );
                    }
                }
                Action::RequestResync | Action::DropStream | Action::RequestLease(_) => {
                    for_stream.push(action)
                }
            }
        }
        for_stream
    }

    /// One connected session, until it breaks or `shutdown` fires.
    async fn session(
        &mut self,
        backoff: &mut Backoff,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> SessionEnd {
        let req = match self.stream_request() {
            Ok(r) => r,
            Err(e) => return SessionEnd::Lost(e),
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), false);
        let connect = tokio::time::timeout(Duration::from_secs(15), connect);
        tokio::pin!(connect);
        let ws = loop {
            tokio::select! {
                r = &mut connect => match r {
                    Ok(Ok((ws, _))) => break ws,
                    Ok(Err(e)) => return SessionEnd::Lost(Lost::Connect(e)),
                    Err(_) => return SessionEnd::Lost(Lost::ConnectTimeout),
                },
                _ = shutdown.changed() => return SessionEnd::Shutdown,
                // The fail-closed deadline runs while connecting too.
                () = self.rules_due() => {
                    self.run_due().await;
                }
            }
        };
        info!(server = %self.id.server_url, "stream connected");
        metrics::gauge!("clawn_node_connected").set(1.0);
        let (mut tx, mut rx) = ws.split();
        let mut tick = tokio::time::interval(self.cfg.telemetry_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The control plane pings every 15 s: the rules drop a stream silent for longer
        // (a silently dropping network never closes the TCP connection by itself), and
        // schedule drift checks while connected.
        self.rules.on_connected(Now::current());
        let end = 'session: loop {
            // What to send, if anything, after this turn.
            let mut out: Vec<NodeMessage> = Vec::new();
            tokio::select! {
                // Shutdown first, then the stream, then the timers: a telemetry read of
                // every peer never delays a state that is already waiting.
                biased;
                _ = shutdown.changed() => {
                    let _ = tx.send(Message::Close(None)).await;
                    break SessionEnd::Shutdown;
                }
                msg = rx.next() => {
                    let msg = match msg {
                        None => break SessionEnd::Lost(Lost::Closed),
                        Some(Err(e)) => break SessionEnd::Lost(e.into()),
                        Some(Ok(m)) => m,
                    };
                    self.rules.on_message(Now::current());
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Close(frame) => break SessionEnd::Lost(Lost::ClosedByPeer(frame)),
                        // The control plane's keep-alive on the authenticated stream.
                        Message::Ping(_) | Message::Pong(_) => {
                            self.touch_contact();
                            continue;
                        }
                        _ => continue,
                    };
                    match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        // `handle_state` records contact only for a verified state.
                        Ok(ServerMessage::State(signed)) => match self.handle_state(&signed).await {
                            Ok(Ok(version)) => {
                                backoff.reset();
                                out.push(NodeMessage::Ack { version });
                            }
                            Ok(Err(r)) => {
                                if self.rejected(&r) == OnRejected::RequestResync {
                                    out.push(NodeMessage::Resync);
                                }
                            }
                            Err(e) => {
                                error!(error = %chain(&e), "applying the desired state failed; asking for a snapshot");
                                if self.rules.on_apply_failed(Now::current()) == OnRejected::RequestResync {
                                    out.push(NodeMessage::Resync);
                                }
                            }
                        },
                        Ok(ServerMessage::Lease { seq, lease_ms, siblings }) => {
                            let now = Now::current();
                            debug!(seq, lease_ms, ?siblings, "lease granted");
                            if self.rules.on_lease(seq, lease_ms, siblings, now).is_some() {
                                let left = self.rules.lease_remaining(now);
                                self.lease.set(now.wall + i64::try_from(left.as_millis()).unwrap_or(0));
                                metrics::gauge!("clawn_node_lease_remaining_seconds").set(left.as_secs_f64());
                            }
                        }
                        Ok(ServerMessage::Error { code, message }) => {
                            warn!(code = %code.escape_debug(), message = %message.escape_debug(), "control plane refused a message");
                        }
                        Err(e) => {
                            warn!(error = %e, "unreadable message from the control plane");
                        }
                    }
                }
                () = self.rules_due() => {
                    for action in self.run_due().await {
                        match action {
                            Action::DropStream => break 'session SessionEnd::Lost(Lost::Silent),
                            Action::RequestResync => out.push(NodeMessage::Resync),
                            Action::RequestLease(seq) => {
                                debug!(seq, "lease renewal");
                                out.push(NodeMessage::LeaseRequest { seq });
                            }
                            Action::FailClosed | Action::CheckDrift | Action::CheckSiblings => {}
                        }
                    }
                }
                _ = tick.tick() => {
                    match self.telemetry().await {
                        Ok(t) => out.push(NodeMessage::Telemetry(t)),
                        Err(e) => warn!(error = %e, "cannot read the interface for telemetry"),
                    }
                }
            }
            let mut failed = None;
            for m in out {
                let text = serde_json::to_string(&m).unwrap_or_default();
                if let Err(e) = tx.send(Message::text(text)).await {
                    failed = Some(e);
                    break;
                }
            }
            if let Some(e) = failed {
                break SessionEnd::Lost(e.into());
            }
        };
        self.rules.on_disconnected();
        metrics::gauge!("clawn_node_connected").set(0.0);
        end
    }

    fn rejected(&mut self, r: &Rejection) -> OnRejected {
        let reason = match r {
            Rejection::Malformed(_) => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongNode { .. } => "wrong_node",
            Rejection::Stale { .. } => "stale",
            Rejection::Gap { .. } => "gap",
        };
        metrics::counter!("clawn_node_rejected_total", "reason" => reason).increment(1);
        warn!(%reason, detail = %r, "rejected a desired state; nothing applied");
        self.rules.on_rejected(r, Now::current())
    }

    /// Runs until `shutdown` becomes true: sessions, reconnects, fail-closed timer. On
    /// shutdown the firewall table is removed; peers stay (a restart resumes them).
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.cfg.backoff_cap);
        'run: loop {
            if *shutdown.borrow() {
                break;
            }
            let wait = match self.session(&mut backoff, &mut shutdown).await {
                SessionEnd::Shutdown => break,
                SessionEnd::Lost(e) => {
                    let wait = backoff.next_delay();
                    warn!(error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "control plane unreachable; serving the last snapshot");
                    wait
                }
            };
            let retry = tokio::time::sleep(wait);
            tokio::pin!(retry);
            loop {
                // Due actions first: the fail-closed deadline may already have passed.
                self.run_due().await;
                tokio::select! {
                    () = &mut retry => break,
                    () = self.rules_due() => {}
                    _ = shutdown.changed() => break 'run,
                }
            }
        }
        self.contact.finish(self.rules.last_contact()).await;
        if self.firewall_applied.is_some()
            && let Err(e) =
                firewall::apply_off_thread(firewall::teardown(&self.id.interface_name)).await
        {
            warn!(error = %format!("{e:#}"), "cannot remove the firewall table");
        }
        info!("agent stopped");
    }

    /// The identity's public part for display.
    pub fn describe(&self) -> String {
        format!(
            "node {} in region {} ({} backend, interface {}, endpoint {})",
            self.id.node_id,
            self.id.region,
            self.id.backend,
            self.id.interface_name,
            self.id.endpoint
        )
    }
}

/// An error with its sources, `: `-joined (as `anyhow`'s `{:#}` prints them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The node's ed25519 identity key from its identity file.
fn identity_signing_key(id: &Identity) -> Option<ed25519_dalek::SigningKey> {
    let bytes = STANDARD.decode(&id.identity_secret).ok()?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice()).ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&arr))
}

/// The public half of the node's identity key (for display).
pub fn identity_public(id: &Identity) -> Option<String> {
    Some(STANDARD.encode(identity_signing_key(id)?.verifying_key().to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(2));
        for _ in 0..40 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }

    #[tokio::test]
    async fn the_contact_writer_persists_the_latest_time_and_the_final_one() {
        let base =
            std::env::temp_dir().join(format!("clawn-node-contact-{}", uuid::Uuid::new_v4()));
        let dir = StateDir::open(&base).expect("open");
        let w = ContactWriter::spawn(dir.clone(), 1);
        assert_eq!(
            dir.load_last_contact(),
            None,
            "the start value came from disk: not written again"
        );
        w.record(2);
        w.record(3);
        w.finish(4).await;
        assert_eq!(dir.load_last_contact(), Some(4));
        let w = ContactWriter::spawn(dir.clone(), 4);
        w.record(5);
        // `finish` waits for the write: after it the file holds the final value.
        w.finish(5).await;
        assert_eq!(dir.load_last_contact(), Some(5));
        std::fs::remove_dir_all(base).expect("cleanup");
    }

    #[test]
    fn error_chains_read_like_anyhow() {
        let e = AgentError::State(StateError::Write {
            path: "/x/state.json".into(),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(chain(&e), "cannot write /x/state.json: disk full");
    }
}
