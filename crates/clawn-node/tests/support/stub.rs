//! A stub control plane: enrolls a node and sends it whatever the test signs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Json, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::node::{EnrollRequest, EnrollResponse, InterfaceSpec, NodeMessage, ServerMessage};
use ed25519_dalek::SigningKey;
use tokio::sync::{Mutex, mpsc};
use uuid::Uuid;

use super::{HUB_IP, SERVER_PORT};

/// Interface settings the stub hands out.
pub fn iface(address: &str, pool: &str) -> InterfaceSpec {
    InterfaceSpec {
        listen_port: 51820,
        address: address.into(),
        pool: pool.into(),
    }
}

/// Serves enrollment and the stream on the hub address (the calling thread must be in the
/// hub). Returns the sender of messages for the node and the receiver of its replies.
pub async fn start(
    node_id: Uuid,
    key: SigningKey,
    interface: InterfaceSpec,
) -> (mpsc::Sender<ServerMessage>, mpsc::Receiver<NodeMessage>) {
    let (out_tx, out_rx) = mpsc::channel(16);
    let (in_tx, in_rx) = mpsc::channel(64);
    let stub = Arc::new(Stub {
        node_id,
        key,
        interface,
        outbox: Mutex::new(Some(out_rx)),
        inbox: in_tx,
    });
    let app = Router::new()
        .route("/api/v1/node/enroll", post(enroll))
        .route("/api/v1/node/stream", get(stream))
        .with_state(stub);
    let listener = tokio::net::TcpListener::bind((HUB_IP, SERVER_PORT))
        .await
        .expect("bind stub");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (out_tx, in_rx)
}

struct Stub {
    node_id: Uuid,
    key: SigningKey,
    interface: InterfaceSpec,
    /// Messages the test wants sent down the stream.
    outbox: Mutex<Option<mpsc::Receiver<ServerMessage>>>,
    /// What the node sends up.
    inbox: mpsc::Sender<NodeMessage>,
}

async fn enroll(State(s): State<Arc<Stub>>, Json(_req): Json<EnrollRequest>) -> impl IntoResponse {
    Json(EnrollResponse {
        node_id: s.node_id,
        credential: "stub-credential".into(),
        signing_public_key: STANDARD.encode(s.key.verifying_key().to_bytes()),
        region: "eu".into(),
        interface: s.interface.clone(),
    })
}

async fn stream(State(s): State<Arc<Stub>>, ws: WebSocketUpgrade) -> impl IntoResponse {
    ws.on_upgrade(move |socket| pump(s, socket))
}

async fn pump(s: Arc<Stub>, mut socket: WebSocket) {
    let Some(mut outbox) = s.outbox.lock().await.take() else {
        return;
    };
    loop {
        tokio::select! {
            m = outbox.recv() => {
                let Some(m) = m else { return };
                let text = serde_json::to_string(&m).expect("json");
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Ok(msg) = serde_json::from_str::<NodeMessage>(t.as_str()) {
                        let _ = s.inbox.send(msg).await;
                    }
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}
