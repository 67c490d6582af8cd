//! The node-facing protocol: enrollment and the desired-state stream (WebSocket).
//!
//! Why a WebSocket: the stream is bidirectional (signed state down; acks, telemetry and
//! resync requests up) over one authenticated connection, which SSE cannot do and which
//! long-polling turns into a request per ack. See docs/decisions.md.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use clawn_proto::api::{ApiError, ErrorCode};
use clawn_proto::node::{
    Delta, DesiredState, EnrollRequest, EnrollResponse, NodeMessage, NodePolicy, ServerMessage,
    Snapshot,
};
use clawn_proto::sign::sign;
use clawn_proto::time::now_millis;
use futures_util::StreamExt as _;
use uuid::Uuid;

use super::error::{ApiErr, ApiJson, ApiResult};
use super::extract::{ClientAddr, bearer};
use crate::app::AppState;
use crate::auth::token_hash;
use crate::store::nodes::NodeAuth;

/// Enroll a node with a one-time join token.
#[utoipa::path(post, path = "/api/v1/node/enroll", tag = "node", request_body = EnrollRequest,
    responses((status = 201, body = EnrollResponse), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 409, body = ApiError)))]
pub async fn enroll(
    State(app): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<EnrollResponse>)> {
    let enrolled = crate::service::nodes::enroll(&app, req, addr).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

async fn authenticate_node(app: &AppState, parts: &Parts) -> ApiResult<NodeAuth> {
    let token = bearer(parts).ok_or_else(|| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            "node credential required",
        )
    })?;
    let node = app
        .store
        .node_by_credential(&token_hash(token))
        .await?
        .ok_or_else(|| {
            ApiErr::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::InvalidNodeCredential,
                "unknown or removed node",
            )
        })?;
    // The credential alone is not enough: the node proves it holds the identity key it
    // enrolled with, over its id and the current time.
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(at), Some(proof)) = (
        header(clawn_proto::sign::IDENTITY_TIME_HEADER),
        header(clawn_proto::sign::IDENTITY_PROOF_HEADER),
    ) else {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::IdentityProofRequired,
            "the stream needs the node's identity proof",
        )
        .hint("upgrade clawn-node; it signs each stream request with its identity key"));
    };
    let at: i64 = at.parse().map_err(|_| {
        ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidIdentityProof,
            "the identity proof time is not a number",
        )
    })?;
    if now_millis().abs_diff(at) > clawn_proto::sign::IDENTITY_PROOF_MAX_SKEW_MS.unsigned_abs() {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::IdentityProofExpired,
            "the identity proof is more than 5 minutes from the control plane's time",
        )
        .hint("check the node's clock (NTP)"));
    }
    let key = clawn_proto::sign::parse_verifying_key(&node.identity_public_key)
        .map_err(|e| ApiErr::internal(&e))?;
    if !clawn_proto::sign::verify_identity_proof(&key, node.id, at, proof) {
        return Err(ApiErr::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidIdentityProof,
            "the identity proof does not match the node's enrolled key",
        ));
    }
    Ok(node)
}

/// The node's desired-state stream (WebSocket; `Authorization: Bearer <node credential>`).
#[utoipa::path(get, path = "/api/v1/node/stream", tag = "node",
    responses((status = 101, description = "WebSocket: ServerMessage down, NodeMessage up"), (status = 401, body = ApiError)))]
pub async fn stream(
    State(app): State<AppState>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    let (parts, _) = req.into_parts();
    // Authenticate first, so a caller without a credential learns nothing else.
    let node = authenticate_node(&app, &parts).await?;
    let ws = ws.map_err(|e| {
        ApiErr::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::UpgradeRequired,
            format!("this is a WebSocket endpoint: {e}"),
        )
    })?;
    Ok(ws
        .max_message_size(64 << 20)
        .on_upgrade(move |socket| async move {
            let id = node.id;
            if let Err(e) = run_stream(app, node, socket).await {
                tracing::info!(node = %id, error = %e, "node stream ended");
            }
        }))
}

fn policy(app: &AppState) -> NodePolicy {
    NodePolicy {
        client_isolation: !app.config.allow_client_to_client,
        offline_grace_secs: app.config.node_offline_grace_secs,
    }
}

async fn send_snapshot(
    app: &AppState,
    node: Uuid,
    socket: &mut WebSocket,
) -> anyhow::Result<Option<u64>> {
    let Some(s) = app.store.desired_snapshot(node).await? else {
        return Ok(None);
    };
    let state = DesiredState::Snapshot(Snapshot {
        node_id: node,
        version: s.version,
        issued_at: now_millis(),
        interface: s.interface,
        policy: policy(app),
        peers: s.peers,
    });
    send(socket, &ServerMessage::State(sign(&app.signer, &state))).await?;
    Ok(Some(s.version))
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> anyhow::Result<()> {
    socket
        .send(Message::Text(serde_json::to_string(msg)?.into()))
        .await?;
    Ok(())
}

/// How often the stream compares its sent version with the stored one.
const SAFETY_CHECK: Duration = Duration::from_secs(15);
/// Pongs refresh the stored heartbeat at most this often (telemetry always does); a
/// lease is granted only after a heartbeat write at most this old (the monitor's bound on
/// a silent node's lease relies on it).
pub const HEARTBEAT_WRITE_MS: i64 = 5_000;
const HEARTBEAT_WRITE: Duration = Duration::from_millis(HEARTBEAT_WRITE_MS as u64);
/// A node that sends nothing (not even a pong) for this long is treated as gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// Telemetry reports one stream may send in a burst; after that one per second, the rest
/// is dropped (a flooding node cannot hold the database writer).
const TELEMETRY_BURST: u32 = 5;
/// Peers in one telemetry message, at most.
const TELEMETRY_MAX_PEERS: usize = 200_000;

async fn run_stream(app: AppState, node: NodeAuth, mut socket: WebSocket) -> anyhow::Result<()> {
    let id = node.id;
    // This stream holds the node now, on whichever replica it runs.
    let stream = Uuid::new_v4();
    app.store
        .node_connected(id, stream, app.replica_id, now_millis())
        .await?;
    let acked = app
        .store
        .node_view(id, |_| true)
        .await?
        .and_then(|n| n.acked_version)
        .unwrap_or(0);
    let conn = app.hub.connect(id, acked);
    tracing::info!(node = %id, name = %node.name, "node stream connected");
    let result = stream_loop(&app, &node, &mut socket, conn).await;
    // If no newer stream took over (here or on another replica), the node is offline.
    // Not when this replica shuts down: the node did nothing wrong (it reconnects to
    // another replica), and marking every node offline would start the failover clock
    // for all of them.
    if *app.shutdown.borrow() {
        app.store.node_stream_released(id, stream).await?;
    } else {
        app.store.node_disconnected(id, stream).await?;
        tracing::info!(node = %id, "node stream disconnected");
    }
    result
}

/// Sends a Close frame and reads until the node answers it (bounded), so the last state
/// message is not lost to a TCP reset caused by unread data on our side.
async fn close_gracefully(socket: &mut WebSocket) {
    if socket.send(Message::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(msg)) = socket.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn send_delta(
    app: &AppState,
    id: Uuid,
    socket: &mut WebSocket,
    sent: u64,
    current: u64,
) -> anyhow::Result<()> {
    let d = app.store.desired_delta(id, sent, current).await?;
    let state = DesiredState::Delta(Delta {
        node_id: id,
        from_version: sent,
        to_version: current,
        issued_at: now_millis(),
        remove: d.remove,
        add: d.add,
        update: d.update,
    });
    send(socket, &ServerMessage::State(sign(&app.signer, &state))).await
}

/// Sends the delta from `sent` to the stored version, if it moved. True when the stream
/// must end: the node is gone, or was removed (the last delta removed every peer and the
/// credential is gone; the stream was closed).
async fn catch_up(
    app: &AppState,
    id: Uuid,
    socket: &mut WebSocket,
    sent: &mut u64,
) -> anyhow::Result<bool> {
    let Some((current, removed)) = app.store.node_version_state(id).await? else {
        return Ok(true);
    };
    if current > *sent {
        send_delta(app, id, socket, *sent, current).await?;
        *sent = current;
    }
    if removed {
        tracing::info!(node = %id, "node removed; closing its stream");
        close_gracefully(socket).await;
        return Ok(true);
    }
    Ok(false)
}

async fn stream_loop(
    app: &AppState,
    node: &NodeAuth,
    socket: &mut WebSocket,
    mut conn: crate::hub::Connection,
) -> anyhow::Result<()> {
    let id = node.id;
    let mut shutdown = app.shutdown.clone();
    let Some(mut sent) = send_snapshot(app, id, socket).await? else {
        return Ok(());
    };
    let hc = app.config.health.clone();
    let mut ping = tokio::time::interval(Duration::from_millis(hc.probe_interval_ms));
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut probes =
        crate::health::Probes::new(hc.probe_window, Duration::from_millis(hc.probe_timeout_ms));
    let mut memory = app
        .store
        .node_view(id, |_| true)
        .await?
        .map(|n| crate::health::Memory {
            baseline_ms: n.health.baseline_rtt_ms,
            // A high-CPU spell only continues across a reconnect if it was measured just
            // now; an old one would make the first report after a long break "sustained".
            cpu_high_since: n
                .health
                .cpu_high_since
                .filter(|_| n.health.at.is_some_and(|at| now_millis() - at < 15_000)),
        })
        .unwrap_or_default();
    let mut last_safety_check = tokio::time::Instant::now();
    let mut last_heartbeat_write = tokio::time::Instant::now();
    let mut last_heard = tokio::time::Instant::now();
    let mut lease_recorded = false;
    let telemetry_budget = governor::RateLimiter::direct(
        governor::Quota::per_second(std::num::NonZeroU32::MIN).allow_burst(
            std::num::NonZeroU32::new(TELEMETRY_BURST).unwrap_or(std::num::NonZeroU32::MIN),
        ),
    );
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                close_gracefully(socket).await;
                return Ok(());
            }
            _ = conn.replaced.changed() => {
                tracing::info!(node = %id, "node stream replaced by a newer connection");
                close_gracefully(socket).await;
                return Ok(());
            }
            changed = conn.desired.changed() => {
                if changed.is_err() { return Ok(()); }
                if catch_up(app, id, socket, &mut sent).await? {
                    return Ok(());
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    tracing::warn!(node = %id, "node silent for {}s; closing its stream", SILENCE_LIMIT.as_secs());
                    close_gracefully(socket).await;
                    return Ok(());
                }
                let payload = probes.sent(std::time::Instant::now());
                socket.send(Message::Ping(payload.to_vec().into())).await?;
                // Safety net for a missed wake-up (another replica wrote, or a notify was
                // lost): compare with the stored version. Pushes stay the normal path.
                if last_safety_check.elapsed() >= SAFETY_CHECK {
                    last_safety_check = tokio::time::Instant::now();
                    if catch_up(app, id, socket, &mut sent).await? {
                        return Ok(());
                    }
                }
            }
            msg = socket.next() => {
                let Some(msg) = msg else { return Ok(()) };
                last_heard = tokio::time::Instant::now();
                let text = match msg? {
                    Message::Text(t) => t,
                    Message::Pong(payload) => {
                        probes.answered(&payload, std::time::Instant::now());
                        if last_heartbeat_write.elapsed() >= HEARTBEAT_WRITE {
                            last_heartbeat_write = tokio::time::Instant::now();
                            app.store.node_heartbeat(id, now_millis()).await?;
                        }
                        continue;
                    }
                    Message::Close(_) => return Ok(()),
                    _ => continue,
                };
                match serde_json::from_str::<NodeMessage>(text.as_str()) {
                    Ok(NodeMessage::Ack { version }) => {
                        if app.store.record_ack(id, version, now_millis()).await? {
                            crate::replicas::acked(app, id, version);
                        }
                    }
                    Ok(NodeMessage::LeaseRequest { seq }) => {
                        let lease_ms = app.config.node_lease_secs.saturating_mul(1000);
                        if lease_ms == 0 {
                            continue;
                        }
                        // The grant follows a recent heartbeat write (see HEARTBEAT_WRITE_MS).
                        if last_heartbeat_write.elapsed() >= HEARTBEAT_WRITE {
                            last_heartbeat_write = tokio::time::Instant::now();
                            app.store.node_heartbeat(id, now_millis()).await?;
                        }
                        // The monitor must know this node holds leases before it relies on one.
                        if !lease_recorded {
                            app.store.record_lease(id, lease_ms).await?;
                            lease_recorded = true;
                        }
                        // Read every time: a node that joined the region counts at once.
                        let siblings = app.store.sibling_endpoints(id).await?;
                        send(socket, &ServerMessage::Lease { seq, lease_ms, siblings }).await?;
                    }
                    Ok(NodeMessage::Resync) => {
                        match send_snapshot(app, id, socket).await? {
                            Some(v) => sent = v,
                            None => return Ok(()),
                        }
                    }
                    Ok(NodeMessage::Telemetry(t)) => {
                        if telemetry_budget.check().is_err() {
                            tracing::debug!(node = %id, "telemetry over budget; dropped");
                            continue;
                        }
                        if t.peers.len() > TELEMETRY_MAX_PEERS {
                            let reply = ServerMessage::Error {
                                code: "telemetry_too_large".into(),
                                message: format!("at most {TELEMETRY_MAX_PEERS} peers per report"),
                            };
                            send(socket, &reply).await?;
                            continue;
                        }
                        let now = now_millis();
                        let busy = std::time::Instant::now();
                        let signals = app.store.record_telemetry(id, &t, now).await?;
                        probes.excuse(busy, std::time::Instant::now());
                        last_heartbeat_write = tokio::time::Instant::now();
                        crate::monitor::telemetry_signals(app, &signals).await;
                        let Some((live_peers, capacity)) = app.store.node_load(id).await? else { return Ok(()) };
                        let health = crate::health::evaluate(&hc, &mut memory, crate::health::Inputs {
                            now_ms: now,
                            cpu_percent: t.host.cpu_percent,
                            live_peers,
                            capacity,
                            probes: probes.stats(std::time::Instant::now()),
                        });
                        if let Some(state) = app.store.record_health(id, &health, now).await? {
                            tracing::info!(node = %id, state = state.as_str(), reason = ?health.reason, "node health changed");
                        }
                    }
                    Err(e) => {
                        let reply = ServerMessage::Error { code: "invalid_message".into(), message: e.to_string() };
                        send(socket, &reply).await?;
                    }
                }
            }
        }
    }
}
