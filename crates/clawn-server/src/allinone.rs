//! All-in-one: a node agent inside the server process (`--with-node`), so one command on
//! one machine gives a working VPN. Composed here, in the `clawn-server` binary (feature
//! `with-node`), from two libraries that do not know each other: the control plane
//! (`clawn_server`) and the node agent (`clawn_node`).
//!
//! On first start the server makes sure region `default` exists (created, audited as the
//! system, only when there are no regions at all), mints a one-time join token for it and
//! enrolls the in-process node over its own HTTP listener, exactly as a remote node
//! would. Later starts reuse `<data_dir>/node/identity.json`.

use std::net::{Ipv4Addr, SocketAddr};

use clawn_node::enroll::{JoinOptions, join};
use clawn_node::state::StateDir;
use clawn_node::wireguard::BackendKind;
use clawn_node::{Agent, AgentConfig};
use clawn_proto::time::now_millis;
use serde_json::json;

use clawn_server::app::AppState;
use clawn_server::service;
use clawn_server::store::audit::AuditActor;
use clawn_server::store::regions::RegionRecord;

/// Enrolls (first start) and runs the in-process node until the server shuts down.
pub async fn run(app: AppState, bound: SocketAddr) {
    match prepare(&app, bound).await {
        Ok(agent) => {
            tracing::info!("all-in-one: {}", agent.describe());
            agent.run(app.shutdown.clone()).await;
        }
        Err(e) => tracing::error!(
            error = %format!("{e:#}"),
            "all-in-one node did not start; the control plane keeps running without it \
             (hint: run as root or with CAP_NET_ADMIN, and pass --node-endpoint HOST:PORT \
             if this machine has no default route)"
        ),
    }
}

async fn prepare(app: &AppState, bound: SocketAddr) -> anyhow::Result<Agent> {
    let cfg = &app.config;
    // The in-process node's identity is sealed with the server's own secret key.
    let dir = StateDir::open(cfg.data_dir.join("node"))?.with_secret_key(cfg.secret_key.clone());
    if !dir.has_identity() {
        let region = ensure_region(app).await?;
        let token = mint_token(app, &region).await?;
        let host = match bound.ip() {
            ip if ip.is_unspecified() => std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
            ip => ip,
        };
        let opts = JoinOptions {
            server: format!("http://{}", SocketAddr::new(host, bound.port())),
            token,
            endpoint: cfg.node_endpoint.clone(),
            listen_port: cfg.node_listen_port,
            backend: BackendKind::detect(),
            interface_name: cfg.node_interface.clone(),
            name: Some("local".into()),
            exit_ipv4: None,
            exit: true,
        };
        let id = join(&dir, &opts)
            .await
            .map_err(|e| anyhow::anyhow!("enrolling the in-process node: {e}"))?;
        tracing::info!(node = %id.node_id, region = %id.region, endpoint = %id.endpoint, "all-in-one node enrolled");
    }
    let mut agent = AgentConfig::new(dir.path());
    agent.secret_key = cfg.secret_key.clone();
    Ok(Agent::start(agent).await?)
}

async fn ensure_region(app: &AppState) -> anyhow::Result<RegionRecord> {
    service::regions::ensure_default(app).await.map_err(|e| {
        anyhow::anyhow!(
            "{}{}",
            e.message,
            e.hint.map(|h| format!(" ({h})")).unwrap_or_default()
        )
    })
}

async fn mint_token(app: &AppState, region: &RegionRecord) -> anyhow::Result<String> {
    let (_, token) = service::nodes::mint_join_token(
        app,
        region,
        100_000,
        None,
        &AuditActor::system(),
        now_millis() + 300_000,
        json!({"reason": "all-in-one"}),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    Ok(token)
}
