//! Regions: the user's list of regions that can take a device, and the admin's create
//! and update (pools are validated here; a region with nodes keeps its pool).

use clawn_proto::api::{AdminRegionView, CreateRegionRequest, RegionView, UpdateRegionRequest};
use clawn_proto::api::{AuditAction, ErrorCode};
use clawn_proto::time::now_millis;
use ipnet::Ipv4Net;
use serde_json::json;
use uuid::Uuid;

use super::{Error, Result};
use crate::app::AppState;
use crate::store::audit::{self, AuditActor};
use crate::store::regions::{self, RegionRecord};

/// The region the all-in-one node joins.
pub const DEFAULT_REGION: &str = "default";
/// Its pool when the server has to create it.
pub const DEFAULT_POOL: &str = "10.100.0.0/16";

fn check_region_code(code: &str) -> Result<()> {
    let ok = (2..=32).contains(&code.len())
        && code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            ErrorCode::InvalidRegionCode,
            "region codes are 2-32 of a-z, 0-9 and -",
        ))
    }
}

fn check_pool(cidr: &str, node_prefix: u8) -> Result<Ipv4Net> {
    let net: Ipv4Net = cidr.parse().map_err(|_| {
        Error::bad_request(
            ErrorCode::InvalidCidr,
            format!("`{cidr}` is not an IPv4 CIDR like 10.100.0.0/16"),
        )
    })?;
    if net.trunc() != net {
        return Err(Error::bad_request(
            ErrorCode::InvalidCidr,
            format!("`{cidr}` has host bits set; did you mean {}?", net.trunc()),
        ));
    }
    if node_prefix < net.prefix_len() || !(8..=30).contains(&node_prefix) {
        return Err(Error::bad_request(
            ErrorCode::InvalidNodePrefix,
            format!(
                "node_prefix must be between the pool's prefix /{} and /30",
                net.prefix_len()
            ),
        ));
    }
    Ok(net)
}

fn check_dns(dns: &[String]) -> Result<()> {
    if dns.len() > 4 || dns.iter().any(|d| d.parse::<std::net::IpAddr>().is_err()) {
        return Err(Error::bad_request(
            ErrorCode::InvalidDns,
            "dns must be up to 4 IP addresses",
        ));
    }
    Ok(())
}

fn check_region_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(Error::bad_request(
            ErrorCode::InvalidName,
            "region names are 1 to 64 characters",
        ));
    }
    Ok(name.to_string())
}

/// Regions with at least one node that can take a device, with a health summary.
pub async fn user_regions(app: &AppState) -> Result<Vec<RegionView>> {
    let regions = app.store.list_regions().await?;
    Ok(regions
        .into_iter()
        .filter(|(_, c)| c.eligible > 0)
        .map(|(r, c)| RegionView {
            code: r.code,
            name: r.name,
            health: c.health(),
        })
        .collect())
}

/// All regions, as admins see them.
pub async fn admin_regions(app: &AppState) -> Result<Vec<AdminRegionView>> {
    Ok(app
        .store
        .list_regions()
        .await?
        .iter()
        .map(|(r, c)| regions::admin_view(r, c))
        .collect())
}

/// One region as admins see it.
pub async fn admin_region(app: &AppState, code: &str) -> Result<AdminRegionView> {
    let all = app.store.list_regions().await?;
    all.iter()
        .find(|(r, _)| r.code == code)
        .map(|(r, c)| regions::admin_view(r, c))
        .ok_or_else(|| Error::not_found("region"))
}

/// Creates a region (audited).
pub async fn create(
    app: &AppState,
    req: &CreateRegionRequest,
    actor: &AuditActor,
) -> Result<AdminRegionView> {
    check_region_code(&req.code)?;
    let node_prefix = req.node_prefix.unwrap_or(20);
    let net = check_pool(&req.cidr, node_prefix)?;
    check_dns(&req.dns)?;
    let name = check_region_name(&req.name)?;
    let now = now_millis();
    let rec = RegionRecord {
        id: Uuid::now_v7(),
        code: req.code.clone(),
        name,
        cidr: net.to_string(),
        node_prefix,
        dns: req.dns.clone(),
        created_at: now,
    };
    insert(app, &rec, actor, json!({})).await.map_err(|e| {
        if e.is_unique_violation() {
            Error::conflict(ErrorCode::RegionExists, "a region with this code exists")
        } else {
            e.into()
        }
    })?;
    admin_region(app, &rec.code).await
}

async fn insert(
    app: &AppState,
    rec: &RegionRecord,
    actor: &AuditActor,
    extra: serde_json::Value,
) -> crate::store::StoreResult<()> {
    let mut w = app.store.write().await?;
    regions::insert(&mut w.tx, rec, rec.created_at).await?;
    let meta = super::with_extra(
        json!({"name": rec.name, "cidr": rec.cidr, "node_prefix": rec.node_prefix, "dns": rec.dns}),
        extra,
    );
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::RegionCreate,
        "region",
        Some(rec.code.clone()),
        meta,
    )
    .await?;
    w.commit().await
}

/// Updates a region's name, DNS or (while it has no nodes) pool (audited).
pub async fn update(
    app: &AppState,
    code: &str,
    req: &UpdateRegionRequest,
    actor: &AuditActor,
) -> Result<AdminRegionView> {
    let mut rec = app
        .store
        .region_by_code(code)
        .await?
        .ok_or_else(|| Error::not_found("region"))?;
    if let Some(name) = &req.name {
        rec.name = check_region_name(name)?;
    }
    if let Some(dns) = &req.dns {
        check_dns(dns)?;
        rec.dns = dns.clone();
    }
    let pool_change = req.cidr.is_some() || req.node_prefix.is_some();
    if pool_change {
        let cidr = req.cidr.clone().unwrap_or_else(|| rec.cidr.clone());
        let prefix = req.node_prefix.unwrap_or(rec.node_prefix);
        rec.cidr = check_pool(&cidr, prefix)?.to_string();
        rec.node_prefix = prefix;
    }
    let mut w = app.store.write().await?;
    if pool_change && regions::node_count(&mut w.tx, rec.id).await? > 0 {
        return Err(Error::conflict(
            ErrorCode::RegionHasNodes,
            "the pool of a region with nodes cannot change",
        )
        .hint("remove the region's nodes first"));
    }
    regions::update(&mut w.tx, &rec, now_millis()).await?;
    audit::record(
        &mut w.tx,
        actor,
        AuditAction::RegionUpdate,
        "region",
        Some(rec.code.clone()),
        json!({"name": rec.name, "cidr": rec.cidr, "node_prefix": rec.node_prefix, "dns": rec.dns}),
    )
    .await?;
    w.commit().await?;
    admin_region(app, &rec.code).await
}

/// The region the all-in-one node joins: `default`, created (audited as the system) only
/// when there are no regions at all, so a guessed pool never sits next to an operator's.
pub async fn ensure_default(app: &AppState) -> Result<RegionRecord> {
    if let Some(r) = app.store.region_by_code(DEFAULT_REGION).await? {
        return Ok(r);
    }
    if !app.store.list_regions().await?.is_empty() {
        return Err(Error::new(
            axum::http::StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("regions exist but none is called `{DEFAULT_REGION}`"),
        )
        .hint(format!(
            "create it (clawn admin region create {DEFAULT_REGION} --cidr ...) for the all-in-one node"
        )));
    }
    let rec = RegionRecord {
        id: Uuid::now_v7(),
        code: DEFAULT_REGION.into(),
        name: "Default".into(),
        cidr: DEFAULT_POOL.into(),
        node_prefix: 20,
        dns: vec![],
        created_at: now_millis(),
    };
    insert(
        app,
        &rec,
        &AuditActor::system(),
        json!({"reason": "all-in-one"}),
    )
    .await?;
    tracing::info!(
        region = DEFAULT_REGION,
        pool = DEFAULT_POOL,
        "created the default region for the all-in-one node"
    );
    Ok(rec)
}
