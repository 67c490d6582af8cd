//! The agent loop: keep the stream, verify, apply, save, acknowledge; report telemetry;
//! serve the last snapshot while the control plane is away, and fail closed when policy
//! says it has been away too long.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
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
use tracing::{debug, error, info, warn};

use crate::firewall::{self, FirewallSpec};
use crate::reconcile::{self, PeerMap};
use crate::state::{Identity, StateDir};
use crate::telemetry::Sampler;
use crate::wireguard::{Backend, IfaceConfig};

/// Largest message accepted on the stream: a 100k-peer snapshot is about 16 MB.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;
/// The control plane pings every 15 s; silence for this long means the stream is dead.
pub const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// How often the interface is compared with the applied state while connected.
pub const DRIFT_CHECK: Duration = Duration::from_secs(60);
/// At most one resync request per this interval.
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(5);

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

/// Why a session with the control plane ended.
enum SessionEnd {
    Shutdown,
    Lost(anyhow::Error),
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
    specs: BTreeMap<WgPublicKey, PeerSpec>,
    applied: Option<u64>,
    interface: InterfaceSpec,
    policy: NodePolicy,
    last_contact: UnixMillis,
    contact_saved: UnixMillis,
    failed_closed: bool,
    exit_ipv4: Option<Ipv4Addr>,
    sampler: Sampler,
    last_resync: Option<Instant>,
    /// A resync the rate limit held back; sent as soon as it allows.
    resync_pending: bool,
    /// The rule set last applied successfully (`None`: none, or the last attempt failed).
    firewall_applied: Option<FirewallSpec>,
}

impl Agent {
    /// Loads the identity, opens the interface and restores the last snapshot.
    pub async fn start(cfg: AgentConfig) -> anyhow::Result<Self> {
        let dir = StateDir::open(&cfg.state_dir)?;
        let id = dir.load_identity()?;
        let key = parse_verifying_key(&id.signing_public_key)
            .map_err(|e| anyhow::anyhow!("identity holds a bad signing key: {e}"))?;
        let verifier = StateVerifier::new(key, id.node_id);
        let wg = WgKeyPair::from_private_base64(&id.wg_private_key)
            .map_err(|e| anyhow::anyhow!("identity holds a bad WireGuard key: {e}"))?;
        let identity_key = identity_signing_key(&id)
            .ok_or_else(|| anyhow::anyhow!("identity holds a bad ed25519 identity key"))?;
        let saved = match dir.load_applied() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "ignoring the saved snapshot; waiting for the control plane");
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
        let backend = Backend::open(id.backend, &icfg)
            .await
            .with_context(|| format!("cannot set up {} ({} backend)", icfg.name, id.backend))?;
        let exit_ipv4 = if cfg.exit {
            match cfg.exit_ipv4 {
                Some(ip) => Some(ip),
                None => firewall::detect_exit_ipv4().await,
            }
        } else {
            None
        };
        let last_contact = dir.load_last_contact().unwrap_or_else(now_millis);
        let mut agent = Self {
            identity_key,
            verifier,
            backend,
            mirror: PeerMap::new(),
            specs: BTreeMap::new(),
            applied: None,
            policy: saved.as_ref().map(|s| s.policy.clone()).unwrap_or_default(),
            interface,
            last_contact,
            contact_saved: last_contact,
            failed_closed: false,
            exit_ipv4,
            sampler: Sampler::default(),
            last_resync: None,
            resync_pending: false,
            firewall_applied: None,
            id,
            dir,
            cfg,
        };
        agent.apply_firewall();
        if let Some(s) = saved {
            // Whatever happens next, nothing older than this may be applied again.
            agent.applied = Some(s.version);
            if agent.offline_too_long() {
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

    fn apply_firewall(&mut self) {
        if !self.cfg.firewall {
            return;
        }
        let Some(spec) = self.firewall_spec() else {
            return;
        };
        if self.cfg.exit
            && let Err(e) = firewall::enable_forwarding()
        {
            warn!(error = %e, "cannot enable IPv4 forwarding; clients will not reach the outside");
        }
        match firewall::apply(&firewall::ruleset(&spec)) {
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

    fn offline_too_long(&self) -> bool {
        let grace = self.policy.offline_grace_secs;
        let grace_ms = i64::try_from(grace)
            .unwrap_or(i64::MAX)
            .saturating_mul(1000);
        grace > 0 && now_millis().saturating_sub(self.last_contact) > grace_ms
    }

    async fn fail_closed(&mut self) {
        if self.failed_closed {
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
                self.failed_closed = true;
                metrics::gauge!("clawn_node_failed_closed").set(1.0);
                metrics::gauge!("clawn_node_peers").set(0.0);
            }
            Err(e) => error!(error = %e, "failing closed: cannot remove peers"),
        }
    }

    /// Brings the interface to `desired`, planning against what it really has. The
    /// caller keeps `specs` in step (they only change with a new desired state).
    async fn converge(&mut self, desired: PeerMap) -> anyhow::Result<()> {
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
        self.specs = peers.iter().map(|p| (p.public_key, p.clone())).collect();
    }

    fn touch_contact(&mut self) {
        let now = now_millis();
        self.last_contact = now;
        if now - self.contact_saved > 10_000 {
            self.contact_saved = now;
            if let Err(e) = self.dir.save_last_contact(now) {
                warn!(error = %format!("{e:#}"), "cannot record contact time");
            }
        }
    }

    fn save(&self, version: u64) -> anyhow::Result<()> {
        let started = Instant::now();
        self.dir
            .save_applied_parts(version, &self.interface, &self.policy, self.specs.values())?;
        metrics::histogram!("clawn_node_save_seconds").record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Verifies and applies one signed state. Returns the version to acknowledge, or
    /// whether to ask for a resync.
    async fn handle_state(
        &mut self,
        signed: &clawn_proto::sign::Signed,
    ) -> anyhow::Result<Result<u64, Rejection>> {
        let verified = match self.verifier.verify(signed, self.applied) {
            Ok(v) => v,
            Err(r) => return Ok(Err(r)),
        };
        if self.failed_closed && matches!(verified, Verified::Delta(_)) {
            // The interface is empty: only a full snapshot can bring it back.
            return Ok(Err(Rejection::Gap {
                from: self.applied.unwrap_or_default(),
                applied: None,
            }));
        }
        let started = Instant::now();
        let version = match verified {
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
                if self.firewall_spec() != self.firewall_applied {
                    self.apply_firewall();
                }
                self.resync_pending = false;
                s.version
            }
            Verified::Delta(d) => {
                let pool = reconcile::parse_interface(&self.interface)?.pool;
                let ops = match reconcile::plan_delta(&self.mirror, &d, pool, self.backend.caps()) {
                    Ok(o) => o,
                    Err(e) => return Ok(Err(Rejection::Malformed(e.to_string()))),
                };
                self.backend.apply(&ops).await?;
                reconcile::commit_delta(&mut self.mirror, &ops);
                for k in &d.remove {
                    self.specs.remove(k);
                }
                for p in &d.add {
                    self.specs.insert(p.public_key, p.clone());
                }
                // A class change: the spec is recorded (and saved with the snapshot); the
                // WireGuard peer is not touched, so its session stays up.
                for p in &d.update {
                    if let Some(have) = self.specs.get_mut(&p.public_key) {
                        have.class = p.class;
                    }
                }
                metrics::gauge!("clawn_node_peers").set(self.mirror.len() as f64);
                d.to_version
            }
        };
        metrics::histogram!("clawn_node_apply_seconds").record(started.elapsed().as_secs_f64());
        if self.failed_closed {
            info!("control plane is back: serving peers again");
            self.failed_closed = false;
            metrics::gauge!("clawn_node_failed_closed").set(0.0);
        }
        self.applied = Some(version);
        self.touch_contact();
        self.save(version)?;
        metrics::gauge!("clawn_node_applied_version").set(version as f64);
        Ok(Ok(version))
    }

    async fn telemetry(&mut self) -> anyhow::Result<Telemetry> {
        let peers = self.backend.read().await?;
        let now = now_millis();
        Ok(Telemetry {
            at: now,
            host: self.sampler.host(&peers, now),
            peers: self.sampler.changed_peers(&peers),
            exit_ipv4: self.exit_ipv4,
        })
    }

    fn stream_request(
        &self,
    ) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
        let base = &self.id.server_url;
        let ws = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}{STREAM_PATH}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}{STREAM_PATH}")
        } else {
            anyhow::bail!("server URL {base:?} is neither http nor https");
        };
        let mut req = ws.into_client_request()?;
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.id.credential).parse()?,
        );
        // Prove the enrolled identity key on every connect (the credential alone is not
        // enough to open a stream).
        let at = now_millis();
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_TIME_HEADER,
            at.to_string().parse()?,
        );
        req.headers_mut().insert(
            clawn_proto::sign::IDENTITY_PROOF_HEADER,
            clawn_proto::sign::identity_proof(&self.identity_key, self.id.node_id, at).parse()?,
        );
        Ok(req)
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
        let ws = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(15), connect) => match r {
                Ok(Ok((ws, _))) => ws,
                Ok(Err(e)) => return SessionEnd::Lost(anyhow::anyhow!("connect: {e}")),
                Err(_) => return SessionEnd::Lost(anyhow::anyhow!("connect: timed out")),
            },
            _ = shutdown.changed() => return SessionEnd::Shutdown,
        };
        info!(server = %self.id.server_url, "stream connected");
        metrics::gauge!("clawn_node_connected").set(1.0);
        let (mut tx, mut rx) = ws.split();
        let mut tick = tokio::time::interval(self.cfg.telemetry_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drift = tokio::time::interval(DRIFT_CHECK);
        drift.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        drift.tick().await;
        // The control plane pings every 15 s: silence past this deadline is a dead stream
        // (a silently dropping network never closes the TCP connection by itself).
        let mut silence = tokio::time::Instant::now() + STREAM_SILENCE;
        let end = loop {
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
                        None => break SessionEnd::Lost(anyhow::anyhow!("stream closed")),
                        Some(Err(e)) => break SessionEnd::Lost(e.into()),
                        Some(Ok(m)) => m,
                    };
                    silence = tokio::time::Instant::now() + STREAM_SILENCE;
                    let text = match msg {
                        Message::Text(t) => t,
                        Message::Close(frame) => break SessionEnd::Lost(anyhow::anyhow!("closed by the control plane: {frame:?}")),
                        // The control plane's keep-alive on the authenticated stream.
                        Message::Ping(_) | Message::Pong(_) => {
                            self.touch_contact();
                            continue;
                        }
                        _ => continue,
                    };
                    let reply = match serde_json::from_str::<ServerMessage>(text.as_str()) {
                        // `handle_state` records contact only for a verified state.
                        Ok(ServerMessage::State(signed)) => match self.handle_state(&signed).await {
                            Ok(Ok(version)) => {
                                backoff.reset();
                                Some(NodeMessage::Ack { version })
                            }
                            Ok(Err(r)) => self.rejected(&r),
                            Err(e) => {
                                error!(error = %format!("{e:#}"), "applying the desired state failed; asking for a snapshot");
                                self.resync_request()
                            }
                        },
                        Ok(ServerMessage::Error { code, message }) => {
                            warn!(code = %code.escape_debug(), message = %message.escape_debug(), "control plane refused a message");
                            None
                        }
                        Err(e) => {
                            warn!(error = %e, "unreadable message from the control plane");
                            None
                        }
                    };
                    if let Some(m) = reply {
                        let text = serde_json::to_string(&m).unwrap_or_default();
                        if let Err(e) = tx.send(Message::text(text)).await {
                            break SessionEnd::Lost(e.into());
                        }
                    }
                }
                _ = tokio::time::sleep_until(silence) => {
                    break SessionEnd::Lost(anyhow::anyhow!("no message for {STREAM_SILENCE:?}"));
                }
                _ = drift.tick() => {
                    // Someone (or something) changed the interface or the firewall behind
                    // our back: put both back to the applied state.
                    if self.applied.is_some() && !self.failed_closed {
                        if let Err(e) = self.converge(self.mirror.clone()).await {
                            warn!(error = %format!("{e:#}"), "drift check failed");
                        }
                        self.apply_firewall();
                    }
                }
                _ = tick.tick() => {
                    if self.offline_too_long() {
                        // Connected, but nothing verified for too long.
                        self.fail_closed().await;
                    }
                    if self.resync_pending
                        && let Some(m) = self.resync_request()
                    {
                        let text = serde_json::to_string(&m).unwrap_or_default();
                        if let Err(e) = tx.send(Message::text(text)).await {
                            break SessionEnd::Lost(e.into());
                        }
                    }
                    match self.telemetry().await {
                        Ok(t) => {
                            let text = serde_json::to_string(&NodeMessage::Telemetry(t)).unwrap_or_default();
                            if let Err(e) = tx.send(Message::text(text)).await {
                                break SessionEnd::Lost(e.into());
                            }
                        }
                        Err(e) => warn!(error = %e, "cannot read the interface for telemetry"),
                    }
                }
            }
        };
        metrics::gauge!("clawn_node_connected").set(0.0);
        end
    }

    fn rejected(&mut self, r: &Rejection) -> Option<NodeMessage> {
        let reason = match r {
            Rejection::Malformed(_) => "malformed",
            Rejection::BadSignature => "bad_signature",
            Rejection::WrongNode { .. } => "wrong_node",
            Rejection::Stale { .. } => "stale",
            Rejection::Gap { .. } => "gap",
        };
        metrics::counter!("clawn_node_rejected_total", "reason" => reason).increment(1);
        warn!(%reason, detail = %r, "rejected a desired state; nothing applied");
        if r.wants_resync() {
            self.resync_request()
        } else {
            None
        }
    }

    /// A resync request if the rate limit allows one now; otherwise it stays pending and
    /// the next telemetry tick sends it.
    fn resync_request(&mut self) -> Option<NodeMessage> {
        let now = Instant::now();
        if self
            .last_resync
            .is_some_and(|t| now.duration_since(t) < RESYNC_INTERVAL)
        {
            self.resync_pending = true;
            return None;
        }
        self.last_resync = Some(now);
        self.resync_pending = false;
        Some(NodeMessage::Resync)
    }

    /// Runs until `shutdown` becomes true: sessions, reconnects, fail-closed timer. On
    /// shutdown the firewall table is removed; peers stay (a restart resumes them).
    pub async fn run(mut self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut backoff = Backoff::new(self.cfg.backoff_cap);
        loop {
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
            if self.offline_too_long() {
                self.fail_closed().await;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Err(e) = self.dir.save_last_contact(self.last_contact) {
            warn!(error = %format!("{e:#}"), "cannot record contact time");
        }
        if self.firewall_applied.is_some()
            && let Err(e) = firewall::apply(&firewall::teardown(&self.id.interface_name))
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
}
