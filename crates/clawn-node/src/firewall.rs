//! The node's packet filter: exit masquerade and client isolation, in one nftables table
//! the agent owns (`inet clawn_<iface>`).
//!
//! Rules are built as typed values with the `nftables` crate and handed to `nft -j -f -`
//! as JSON on stdin: a fixed binary and fixed arguments, no shell, and nothing from the
//! network in argv. The whole table is replaced in one transaction, so a crash or a policy
//! change never leaves half a rule set.

use std::borrow::Cow;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{Chain, FlushObject, NfCmd, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

/// Where `nft` is looked for (an absolute path, never `PATH`).
pub const NFT_CANDIDATES: &[&str] = &["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"];

/// What the filter must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallSpec {
    /// The WireGuard interface.
    pub iface: String,
    /// The client address pool.
    pub pool: Ipv4Net,
    /// Masquerade the pool's traffic leaving by any other interface.
    pub exit: bool,
    /// Drop traffic from one client to another.
    pub client_isolation: bool,
}

/// The table name for an interface.
pub fn table_name(iface: &str) -> String {
    let safe: String = iface
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("clawn_{safe}")
}

fn s(v: impl Into<String>) -> Expression<'static> {
    Expression::String(Cow::Owned(v.into()))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

/// The transaction that (re)creates the table for `spec`.
pub fn ruleset(spec: &FirewallSpec) -> Nftables<'static> {
    let table = table_name(&spec.iface);
    let mut b = Batch::new();
    let t = Table {
        family: NfFamily::INet,
        name: Cow::Owned(table.clone()),
        handle: None,
    };
    b.add(NfListObject::Table(t.clone()));
    b.add_cmd(NfCmd::Flush(FlushObject::Table(t)));
    let chain = |name: &str, ty: NfChainType, hook: NfHook, prio: i32| Chain {
        family: NfFamily::INet,
        table: Cow::Owned(table.clone()),
        name: Cow::Owned(name.to_string()),
        _type: Some(ty),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    };
    let rule = |chain: &str, expr: Vec<Statement<'static>>| Rule {
        family: NfFamily::INet,
        table: Cow::Owned(table.clone()),
        chain: Cow::Owned(chain.to_string()),
        expr: Cow::Owned(expr),
        ..Rule::default()
    };
    b.add(NfListObject::Chain(chain(
        "forward",
        NfChainType::Filter,
        NfHook::Forward,
        0,
    )));
    b.add(NfListObject::Chain(chain(
        "postrouting",
        NfChainType::NAT,
        NfHook::Postrouting,
        100,
    )));
    if spec.client_isolation {
        b.add(NfListObject::Rule(rule(
            "forward",
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, s(&spec.iface)),
                matches(meta(MetaKey::Oifname), Operator::EQ, s(&spec.iface)),
                Statement::Drop(None),
            ],
        )));
    }
    if spec.exit {
        b.add(NfListObject::Rule(rule(
            "postrouting",
            vec![
                matches(
                    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
                        PayloadField {
                            protocol: Cow::Borrowed("ip"),
                            field: Cow::Borrowed("saddr"),
                        },
                    ))),
                    Operator::EQ,
                    Expression::Named(NamedExpression::Prefix(Prefix {
                        addr: Box::new(s(spec.pool.network().to_string())),
                        len: u32::from(spec.pool.prefix_len()),
                    })),
                ),
                matches(meta(MetaKey::Oifname), Operator::NEQ, s(&spec.iface)),
                Statement::Masquerade(None),
            ],
        )));
    }
    b.to_nftables()
}

/// The transaction that removes the table.
pub fn teardown(iface: &str) -> Nftables<'static> {
    let t = Table {
        family: NfFamily::INet,
        name: Cow::Owned(table_name(iface)),
        handle: None,
    };
    let mut b = Batch::new();
    // Adding first makes the delete succeed whether or not the table exists.
    b.add(NfListObject::Table(t.clone()));
    b.delete(NfListObject::Table(t));
    b.to_nftables()
}

/// The `nft` binary, if installed.
pub fn nft_path() -> Option<&'static str> {
    NFT_CANDIDATES
        .iter()
        .copied()
        .find(|p| std::path::Path::new(p).exists())
}

/// Why a rule set was not applied.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// No `nft` binary in [`NFT_CANDIDATES`].
    #[error("nft not found (install nftables); exit NAT and isolation need it")]
    NftMissing,
    /// `nft` ran and refused the transaction (or could not be run).
    #[error("nft refused the rule set: {0}")]
    Refused(nftables::helper::NftablesError),
    /// The blocking task running `nft` did not finish (the runtime is shutting down).
    #[error("the nft task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Applies a transaction with `nft -j -f -`. This waits for a child process: call it
/// from a blocking context, or use [`apply_off_thread`] on the async loop.
pub fn apply(n: &Nftables<'_>) -> Result<(), FirewallError> {
    let nft = nft_path().ok_or(FirewallError::NftMissing)?;
    nftables::helper::apply_ruleset_with_args(n, Some(&nft), nftables::helper::DEFAULT_ARGS)
        .map_err(FirewallError::Refused)
}

/// [`apply`] on the blocking pool, so the async loop (in all-in-one mode, the control
/// plane's own runtime) keeps running while `nft` works.
pub async fn apply_off_thread(n: Nftables<'static>) -> Result<(), FirewallError> {
    tokio::task::spawn_blocking(move || apply(&n)).await?
}

/// Turns on IPv4 forwarding in this network namespace.
pub fn enable_forwarding() -> std::io::Result<()> {
    std::fs::write("/proc/sys/net/ipv4/ip_forward", b"1")
}

/// The IPv4 address of the interface that holds the default route, if any: the address
/// clients appear from once masqueraded.
pub async fn detect_exit_ipv4() -> Option<Ipv4Addr> {
    let routes = tokio::fs::read_to_string("/proc/net/route").await.ok()?;
    let iface = default_route_iface(&routes)?;
    let handle = crate::wireguard::link::connect().ok()?;
    let index = crate::wireguard::link::index_of(&handle, &iface)
        .await
        .ok()??;
    let addrs = crate::wireguard::link::ipv4_addresses(&handle, index)
        .await
        .ok()?;
    addrs.first().map(|n| n.addr())
}

/// Parses `/proc/net/route` for the default route's interface.
pub fn default_route_iface(routes: &str) -> Option<String> {
    routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_json_is_what_we_mean() {
        let spec = FirewallSpec {
            iface: "wg-n1".into(),
            pool: "10.100.0.0/20".parse().expect("pool"),
            exit: true,
            client_isolation: true,
        };
        let json = serde_json::to_value(ruleset(&spec)).expect("json");
        let expected = serde_json::json!({"nftables": [
            {"add": {"table": {"family": "inet", "name": "clawn_wg_n1"}}},
            {"flush": {"table": {"family": "inet", "name": "clawn_wg_n1"}}},
            {"add": {"chain": {"family": "inet", "table": "clawn_wg_n1", "name": "forward",
                "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}},
            {"add": {"chain": {"family": "inet", "table": "clawn_wg_n1", "name": "postrouting",
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}},
            {"add": {"rule": {"family": "inet", "table": "clawn_wg_n1", "chain": "forward", "expr": [
                {"match": {"left": {"meta": {"key": "iifname"}}, "right": "wg-n1", "op": "=="}},
                {"match": {"left": {"meta": {"key": "oifname"}}, "right": "wg-n1", "op": "=="}},
                {"drop": null}]}}},
            {"add": {"rule": {"family": "inet", "table": "clawn_wg_n1", "chain": "postrouting", "expr": [
                {"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"prefix": {"addr": "10.100.0.0", "len": 20}}, "op": "=="}},
                {"match": {"left": {"meta": {"key": "oifname"}}, "right": "wg-n1", "op": "!="}},
                {"masquerade": null}]}}}
        ]});
        assert_eq!(
            json,
            expected,
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    }

    #[test]
    fn isolation_off_means_no_forward_rule() {
        let spec = FirewallSpec {
            iface: "wg0".into(),
            pool: "10.100.0.0/20".parse().expect("pool"),
            exit: false,
            client_isolation: false,
        };
        let json = serde_json::to_string(&ruleset(&spec)).expect("json");
        assert!(!json.contains("drop"));
        assert!(!json.contains("masquerade"));
    }

    #[test]
    fn default_route_parsing() {
        let routes = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
                      veth0\t0071CBCB\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
                      veth0\t00000000\t640071CB\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(default_route_iface(routes).as_deref(), Some("veth0"));
        assert_eq!(default_route_iface("Iface\n"), None);
    }
}
