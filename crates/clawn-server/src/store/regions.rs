//! Regions: a code, a name, an IPv4 tunnel pool carved into one sub-pool per node, DNS.

use clawn_proto::api::{AdminRegionView, RegionHealth, RegionStatus};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Store, StoreResult, count, uuid};

/// A region row.
#[derive(Debug, Clone)]
pub struct RegionRecord {
    /// Id.
    pub id: Uuid,
    /// Code.
    pub code: String,
    /// Name.
    pub name: String,
    /// Pool.
    pub cidr: String,
    /// Node sub-pool prefix.
    pub node_prefix: u8,
    /// DNS.
    pub dns: Vec<String>,
    /// Created.
    pub created_at: i64,
}

fn region_from_row(r: &AnyRow) -> StoreResult<RegionRecord> {
    let dns: String = r.try_get("dns")?;
    Ok(RegionRecord {
        id: uuid(&r.try_get::<String, _>("id")?, "regions.id")?,
        code: r.try_get("code")?,
        name: r.try_get("name")?,
        cidr: r.try_get("cidr")?,
        node_prefix: u8::try_from(r.try_get::<i64, _>("node_prefix")?).unwrap_or(32),
        dns: serde_json::from_str(&dns).unwrap_or_default(),
        created_at: r.try_get("created_at")?,
    })
}

/// Eligibility counts of a region's nodes.
#[derive(Debug, Clone, Default)]
pub struct RegionCounts {
    /// Nodes that can take new devices now.
    pub eligible: u32,
    /// Nodes not removed.
    pub total: u32,
    /// Nodes online but full.
    pub full: u32,
}

impl RegionCounts {
    /// The health summary shown to users and admins.
    pub fn health(&self) -> RegionHealth {
        let (status, reason) = if self.eligible == 0 {
            let why = if self.total == 0 {
                "no nodes in this region".to_string()
            } else if self.full > 0 {
                "all online nodes are at capacity".to_string()
            } else {
                "no node is online".to_string()
            };
            (RegionStatus::Unavailable, Some(why))
        } else if self.eligible < self.total {
            let n = self.total - self.eligible;
            (
                RegionStatus::Degraded,
                Some(format!(
                    "{n} of {} nodes cannot take new devices",
                    self.total
                )),
            )
        } else {
            (RegionStatus::Healthy, None)
        };
        RegionHealth {
            status,
            eligible_nodes: self.eligible,
            total_nodes: self.total,
            reason,
        }
    }
}

impl Store {
    /// Region by code.
    pub async fn region_by_code(&self, code: &str) -> StoreResult<Option<RegionRecord>> {
        let row = sqlx::query("SELECT * FROM regions WHERE code = $1")
            .bind(code)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(region_from_row).transpose()
    }

    /// All regions with node counts, by code.
    pub async fn list_regions(&self) -> StoreResult<Vec<(RegionRecord, RegionCounts)>> {
        let rows = sqlx::query("SELECT * FROM regions ORDER BY code")
            .fetch_all(self.pool())
            .await?;
        // Eligible: a node with a seat for at least a priority device (no reserve).
        let sql = format!(
            "SELECT n.region_id, COUNT(*) AS total, \
             SUM(CASE WHEN {} THEN 1 ELSE 0 END) AS eligible, \
             SUM(CASE WHEN n.state = 'online' AND n.live_peers >= n.capacity THEN 1 ELSE 0 END) AS full_nodes \
             FROM nodes n WHERE n.removed_at IS NULL GROUP BY n.region_id",
            super::nodes::claimable_sql("n.", "0")
        );
        let counts = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let region = region_from_row(r)?;
            let mut c = RegionCounts::default();
            for cr in &counts {
                if cr.try_get::<String, _>("region_id")? == region.id.to_string() {
                    c.total = count(cr.try_get("total")?);
                    c.eligible = count(cr.try_get::<Option<i64>, _>("eligible")?.unwrap_or(0));
                    c.full = count(cr.try_get::<Option<i64>, _>("full_nodes")?.unwrap_or(0));
                }
            }
            out.push((region, c));
        }
        Ok(out)
    }
}

/// Inserts a region inside `tx`.
pub async fn insert(tx: &mut sqlx::AnyConnection, r: &RegionRecord, now: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO regions (id, code, name, cidr, node_prefix, dns, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(r.id.to_string())
    .bind(&r.code)
    .bind(&r.name)
    .bind(&r.cidr)
    .bind(i64::from(r.node_prefix))
    .bind(serde_json::to_string(&r.dns).unwrap_or_else(|_| "[]".into()))
    .bind(now)
    .execute(tx)
    .await?;
    Ok(())
}

/// Overwrites a region's mutable fields inside `tx`.
pub async fn update(tx: &mut sqlx::AnyConnection, r: &RegionRecord, now: i64) -> StoreResult<()> {
    sqlx::query("UPDATE regions SET name = $2, cidr = $3, node_prefix = $4, dns = $5, updated_at = $6 WHERE id = $1")
        .bind(r.id.to_string())
        .bind(&r.name)
        .bind(&r.cidr)
        .bind(i64::from(r.node_prefix))
        .bind(serde_json::to_string(&r.dns).unwrap_or_else(|_| "[]".into()))
        .bind(now)
        .execute(tx)
        .await?;
    Ok(())
}

/// Live nodes in a region (for the "pool cannot change" rule).
pub async fn node_count(tx: &mut sqlx::AnyConnection, region_id: Uuid) -> StoreResult<i64> {
    Ok(
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM nodes WHERE region_id = $1 AND removed_at IS NULL",
        )
        .bind(region_id.to_string())
        .fetch_one(tx)
        .await?,
    )
}

/// The admin view of a region.
pub fn admin_view(r: &RegionRecord, c: &RegionCounts) -> AdminRegionView {
    AdminRegionView {
        code: r.code.clone(),
        name: r.name.clone(),
        cidr: r.cidr.clone(),
        node_prefix: r.node_prefix,
        dns: r.dns.clone(),
        health: c.health(),
        created_at: r.created_at,
    }
}

/// A region by id inside `tx`.
pub async fn by_id(tx: &mut sqlx::AnyConnection, id: Uuid) -> StoreResult<Option<RegionRecord>> {
    let row = sqlx::query("SELECT * FROM regions WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(tx)
        .await?;
    row.as_ref().map(region_from_row).transpose()
}
