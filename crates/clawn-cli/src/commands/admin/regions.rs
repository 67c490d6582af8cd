//! `clawn admin region ...`: the regions and their address pools.

use clawn_proto::api::{AdminRegionView, CreateRegionRequest, UpdateRegionRequest};

use crate::cli::RegionCommand;
use crate::client::Client;
use crate::commands::auth::health_cell;
use crate::error::CliError;
use crate::output::{Table, emit, emit_json, note};

fn region_table(regions: &[AdminRegionView]) -> String {
    let mut t = Table::new(&[
        "CODE",
        "NAME",
        "POOL",
        "NODE PREFIX",
        "DNS",
        "HEALTH (ELIGIBLE/ALL NODES)",
    ]);
    for r in regions {
        t.row(vec![
            r.code.clone(),
            r.name.clone(),
            r.cidr.clone(),
            format!("/{}", r.node_prefix),
            if r.dns.is_empty() {
                "-".into()
            } else {
                r.dns.join(",")
            },
            health_cell(&r.health),
        ]);
    }
    t.render()
}

pub(super) async fn region(client: &Client, cmd: RegionCommand) -> Result<(), CliError> {
    match cmd {
        RegionCommand::List(f) => {
            let regions = client.admin_regions().await?;
            if f.json {
                return emit_json(&regions);
            }
            if regions.is_empty() {
                note(
                    "no regions yet; create one with `clawn admin region create CODE --name NAME --cidr 10.100.0.0/16`",
                );
                return Ok(());
            }
            emit(&region_table(&regions))
        }
        RegionCommand::Create {
            code,
            name,
            cidr,
            node_prefix,
            dns,
            json,
        } => {
            let r = client
                .create_region(&CreateRegionRequest {
                    code,
                    name,
                    cidr,
                    node_prefix,
                    dns,
                })
                .await?;
            if json {
                return emit_json(&r);
            }
            emit(&format!(
                "created region {} ({}), pool {} split into /{} per node\nnext: `clawn admin node-token create --region {}`",
                r.code, r.name, r.cidr, r.node_prefix, r.code
            ))
        }
        RegionCommand::Update {
            code,
            name,
            dns,
            no_dns,
            cidr,
            node_prefix,
            json,
        } => {
            let dns = if no_dns {
                Some(Vec::new())
            } else if dns.is_empty() {
                None
            } else {
                Some(dns)
            };
            let req = UpdateRegionRequest {
                name,
                dns,
                cidr,
                node_prefix,
            };
            if req.name.is_none()
                && req.dns.is_none()
                && req.cidr.is_none()
                && req.node_prefix.is_none()
            {
                return Err(CliError::input_with_hint(
                    "nothing to change",
                    "pass --name, --dns, --no-dns, --cidr or --node-prefix",
                ));
            }
            let r = client.update_region(&code, &req).await?;
            if json {
                return emit_json(&r);
            }
            emit(&region_table(std::slice::from_ref(&r)))
        }
    }
}
