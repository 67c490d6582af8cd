//! Nodes: join tokens, enrollment, admin state changes and removal.

use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::api::{AuditAction, ErrorCode};
use clawn_proto::api::{
    CreateNodeTokenRequest, NodeState, NodeTokenResponse, NodeView, UpdateNodeRequest,
};
use clawn_proto::node::{EnrollRequest, EnrollResponse, InterfaceSpec};
use clawn_proto::time::now_millis;
use serde_json::json;
use uuid::Uuid;

use super::{Changes, Error, Result, run};
use crate::app::AppState;
use crate::auth::{TokenKind, new_token, token_hash};
use crate::store::audit::{self, AuditActor};
use crate::store::nodes::{self, JoinTokenProblem, NewNode};
use crate::store::regions::{self, RegionRecord};

/// Mints a one-time join token for `region` and audits it, in one transaction. Returns the
/// token's id and the token (shown once; only its hash is stored).
pub async fn mint_join_token(
    app: &AppState,
    region: &RegionRecord,
    capacity: u32,
    created_by: Option<Uuid>,
    actor: &AuditActor,
    expires_at: i64,
    extra: serde_json::Value,
) -> Result<(Uuid, String)> {
    let token = new_token(TokenKind::Join);
    let mut w = app.store.write().await?;
    let id = app
        .store
        .insert_join_token(
            &mut w.tx,
            &token_hash(&token),
            region.id,
            capacity,
            created_by,
            now_millis(),
            expires_at,
        )
        .await?;
    let meta = super::with_extra(
        json!({"region": region.code, "expires_at": expires_at, "capacity": capacity}),
        extra,
    );
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::NodeTokenCreate,
        "join_token",
        Some(id.to_string()),
        meta,
    )
    .await?;
    w.commit().await?;
    Ok((id, token))
}

/// An admin's join token for a region, with the exact command that uses it.
pub async fn create_token(
    app: &AppState,
    req: &CreateNodeTokenRequest,
    admin: Uuid,
    actor: &AuditActor,
) -> Result<NodeTokenResponse> {
    let region = app
        .store
        .region_by_code(&req.region)
        .await?
        .ok_or_else(|| Error::not_found("region"))?;
    let secs = req.expires_in_secs.unwrap_or(3600);
    if !(60..=604_800).contains(&secs) {
        return Err(Error::bad_request(
            ErrorCode::InvalidExpiry,
            "expires_in_secs must be 60 to 604800",
        ));
    }
    let capacity = req.capacity.unwrap_or(1000);
    if !(1..=1_000_000).contains(&capacity) {
        return Err(Error::bad_request(
            ErrorCode::InvalidCapacity,
            "capacity must be 1 to 1000000",
        ));
    }
    let expires_at = now_millis() + i64::try_from(secs).unwrap_or(3600) * 1000;
    let (id, token) = mint_join_token(
        app,
        &region,
        capacity,
        Some(admin),
        actor,
        expires_at,
        json!({}),
    )
    .await?;
    let join_command = format!(
        "clawn-node join --server {} --token {token}",
        app.config.public_url
    );
    Ok(NodeTokenResponse {
        id,
        token,
        region: region.code,
        expires_at,
        join_command,
    })
}

fn check_endpoint(endpoint: &str) -> Result<()> {
    let bad = || {
        Error::bad_request(
            ErrorCode::InvalidEndpoint,
            "endpoint must be host:port, e.g. vpn1.example.com:51820",
        )
    };
    let (host, port) = endpoint.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.parse::<std::net::IpAddr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_enroll(req: &EnrollRequest) -> Result<Option<String>> {
    check_endpoint(&req.endpoint)?;
    if req.listen_port == 0 {
        return Err(Error::bad_request(
            ErrorCode::InvalidListenPort,
            "listen_port must be 1 to 65535",
        ));
    }
    clawn_proto::sign::parse_verifying_key(&req.identity_public_key).map_err(|_| {
        Error::bad_request(
            ErrorCode::InvalidIdentityKey,
            "identity_public_key must be a base64 ed25519 public key",
        )
    })?;
    if req.capabilities.len() > 32 || req.capabilities.iter().any(|c| c.len() > 64) {
        return Err(Error::bad_request(
            ErrorCode::InvalidCapabilities,
            "at most 32 capabilities of up to 64 characters",
        ));
    }
    let name = req.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 64) {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            "node names are 1 to 64 characters",
        ));
    }
    Ok(name.map(str::to_string))
}

/// Enrolls a node with a one-time join token: its sub-pool, its credential (shown once),
/// the control plane's signing key. Audited as the node itself.
pub async fn enroll(
    app: &AppState,
    req: EnrollRequest,
    client_addr: Option<String>,
) -> Result<EnrollResponse> {
    let name = check_enroll(&req)?;
    let now = now_millis();
    let mut w = app.store.write().await?;
    let grant = match nodes::consume_join_token(&mut w.tx, &token_hash(&req.token), now).await? {
        Ok(g) => g,
        Err(p) => {
            let (code, msg) = match p {
                JoinTokenProblem::Invalid => {
                    (ErrorCode::InvalidJoinToken, "the join token is not valid")
                }
                JoinTokenProblem::Used => {
                    (ErrorCode::JoinTokenUsed, "the join token was already used")
                }
                JoinTokenProblem::Expired => {
                    (ErrorCode::JoinTokenExpired, "the join token has expired")
                }
            };
            return Err(Error::new(StatusCode::UNAUTHORIZED, code, msg).hint(
                "ask an admin for a new token: clawn admin node-token create --region REGION",
            ));
        }
    };
    let region = regions::by_id(&mut w.tx, grant.region_id)
        .await?
        .ok_or_else(|| Error::internal(&"a join token's region is missing"))?;
    let id = Uuid::now_v7();
    let credential = new_token(TokenKind::Node);
    let node = NewNode {
        id,
        region_id: grant.region_id,
        name: name.unwrap_or_else(|| format!("{}-{}", region.code, &id.simple().to_string()[24..])),
        endpoint: req.endpoint.clone(),
        listen_port: req.listen_port,
        wg_public_key: req.wg_public_key,
        identity_public_key: req.identity_public_key.clone(),
        credential_hash: token_hash(&credential),
        exit_ipv4: req.exit_ipv4.map(|ip| ip.to_string()),
        capacity: grant.capacity,
        capabilities: req.capabilities.clone(),
    };
    let cidr = region
        .cidr
        .parse()
        .map_err(|_| Error::internal(&"stored region cidr is invalid"))?;
    let pool = match nodes::insert_node(&mut w.tx, &node, cidr, region.node_prefix, now).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(Error::conflict(
                ErrorCode::RegionPoolFull,
                "the region's address pool has no room for another node",
            )
            .hint("an admin can widen the region's pool or remove unused nodes"));
        }
        Err(e) if e.is_unique_violation() => {
            return Err(Error::conflict(
                ErrorCode::NodeKeyInUse,
                "a node with this WireGuard key is enrolled already",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    nodes::mark_join_token_used_by(&mut w.tx, grant.token_id, id).await?;
    let actor = AuditActor {
        kind: "node",
        id: Some(id),
        label: Some(node.name.clone()),
        client_addr,
    };
    audit::record(&mut w.tx, &actor, AuditAction::NodeEnroll, "node", Some(id.to_string()),
        json!({"region": region.code, "endpoint": node.endpoint, "pool": pool.net.to_string(), "join_token_id": grant.token_id,
               "capabilities": node.capabilities})).await?;
    w.commit().await?;
    tracing::info!(node = %id, name = %node.name, region = %region.code, "node enrolled");
    Ok(EnrollResponse {
        node_id: id,
        credential,
        signing_public_key: STANDARD.encode(app.signer.verifying_key().to_bytes()),
        region: region.code,
        interface: InterfaceSpec {
            listen_port: req.listen_port,
            address: format!("{}/{}", pool.node_addr, pool.net.prefix_len()),
            pool: pool.net.to_string(),
        },
    })
}

/// One node as admins see it.
pub async fn view(app: &AppState, id: Uuid) -> Result<NodeView> {
    app.store
        .node_view(id, |n| app.hub.is_connected(n))
        .await?
        .ok_or_else(|| Error::not_found("node"))
}

/// Sets a node's state, capacity, name or link capacity (audited). Draining and
/// maintenance take effect through the monitor's next pass.
pub async fn update(
    app: &AppState,
    id: Uuid,
    req: &UpdateNodeRequest,
    actor: &AuditActor,
) -> Result<NodeView> {
    if let Some(s) = req.state
        && !matches!(
            s,
            NodeState::Online
                | NodeState::Maintenance
                | NodeState::Draining
                | NodeState::Experimental
        )
    {
        return Err(Error::bad_request(
            ErrorCode::InvalidState,
            "admins can set online, maintenance, draining or experimental",
        ));
    }
    if req.capacity.is_some_and(|c| c > 1_000_000) {
        return Err(Error::bad_request(
            ErrorCode::InvalidCapacity,
            "capacity must be 0 to 1000000",
        ));
    }
    let name = req.name.as_deref().map(str::trim);
    if name.is_some_and(|n| n.is_empty() || n.chars().count() > 64) {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            "node names are 1 to 64 characters",
        ));
    }
    if req.link_mbps.is_some_and(|l| l == 0 || l > 10_000_000) {
        return Err(Error::bad_request(
            ErrorCode::InvalidLinkMbps,
            "link_mbps must be 1 to 10000000 (Mbit/s)",
        ));
    }
    let mut w = app.store.write().await?;
    if !nodes::update_node(&mut w.tx, id, req.state, req.capacity, name, req.link_mbps).await? {
        return Err(Error::not_found("node"));
    }
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::NodeUpdate,
        "node",
        Some(id.to_string()),
        json!({"state": req.state, "capacity": req.capacity, "name": name, "link_mbps": req.link_mbps}),
    )
    .await?;
    w.commit().await?;
    view(app, id).await
}

/// Removes a node: its credential stops working, its peers are retired and its stream
/// closes. With live peers only when `force` (their devices lose their node until placed
/// again).
pub async fn remove(app: &AppState, id: Uuid, force: bool, actor: &AuditActor) -> Result<()> {
    let actor = actor.clone();
    run(app, move |app| async move {
        let now = now_millis();
        let mut w = app.store.write().await?;
        let Some(live) = nodes::lock_live_node(&mut w.tx, id).await? else {
            return Err(Error::not_found("node"));
        };
        if live > 0 && !force {
            return Err(Error::conflict(
                ErrorCode::NodeHasPeers,
                format!("the node still serves {live} devices"),
            )
            .hint("set it to draining and wait, or remove with ?force=true"));
        }
        let version = nodes::remove_node(&mut w.tx, id, now).await?;
        audit::record(
            &mut w.tx,
            &actor,
            AuditAction::NodeRemove,
            "node",
            Some(id.to_string()),
            json!({"retired_peers": live, "force": force}),
        )
        .await?;
        w.commit().await?;
        // The stream sends the last delta (it removes every peer), then notices the
        // node is removed and closes.
        let change = crate::store::devices::NodeChange {
            node_id: id,
            version,
        };
        Ok(((), Changes::versions([change])))
    })
    .await
}
