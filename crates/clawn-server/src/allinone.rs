//! All-in-one: a node agent inside the server process (`--with-node`), so one command on
//! one machine gives a working VPN.
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
use clawn_proto::api::AuditAction;
use clawn_proto::time::now_millis;
use serde_json::json;
use uuid::Uuid;

use crate::app::AppState;
use crate::store::audit::{self, AuditActor};
use crate::store::regions::{self, RegionRecord};

/// The region the in-process node joins.
pub const DEFAULT_REGION: &str = "default";
/// Its pool when the server has to create it.
pub const DEFAULT_POOL: &str = "10.100.0.0/16";

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
    let dir = StateDir::open(cfg.data_dir.join("node"))?;
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
    Agent::start(AgentConfig::new(dir.path())).await
}

async fn ensure_region(app: &AppState) -> anyhow::Result<RegionRecord> {
    if let Some(r) = app.store.region_by_code(DEFAULT_REGION).await? {
        return Ok(r);
    }
    if !app.store.list_regions().await?.is_empty() {
        // Never guess a pool next to an operator's regions: it could overlap one.
        anyhow::bail!(
            "regions exist but none is called `{DEFAULT_REGION}`: create it \
             (clawn admin region create {DEFAULT_REGION} --cidr ...) for the all-in-one node"
        );
    }
    let now = now_millis();
    let rec = RegionRecord {
        id: Uuid::now_v7(),
        code: DEFAULT_REGION.into(),
        name: "Default".into(),
        cidr: DEFAULT_POOL.into(),
        node_prefix: 20,
        dns: vec![],
        created_at: now,
    };
    let mut w = app.store.write().await?;
    regions::insert(&mut w.tx, &rec, now).await?;
    audit::record(
        &mut w.tx,
        &AuditActor::system(),
        AuditAction::RegionCreate,
        "region",
        Some(rec.code.clone()),
        json!({"name": rec.name, "cidr": rec.cidr, "node_prefix": rec.node_prefix, "reason": "all-in-one"}),
    )
    .await?;
    w.commit().await?;
    tracing::info!(
        region = DEFAULT_REGION,
        pool = DEFAULT_POOL,
        "created the default region for the all-in-one node"
    );
    Ok(rec)
}

async fn mint_token(app: &AppState, region: &RegionRecord) -> anyhow::Result<String> {
    let (_, token) = crate::http::admin::mint_join_token(
        app,
        region,
        100_000,
        None,
        &AuditActor::system(),
        now_millis() + 300_000,
        json!({"reason": "all-in-one"}),
    )
    .await?;
    Ok(token)
}
