//! Pure reconciliation: validate a desired state, then plan the difference between what
//! the interface has and what it must have.

use std::collections::{BTreeMap, HashMap};

use clawn_proto::keys::WgPublicKey;
use clawn_proto::node::{Delta, InterfaceSpec, PeerSpec};
use ipnet::Ipv4Net;

use crate::wireguard::{Caps, Ops, PeerState};

/// The peers a node must have: key → allowed IPs (sorted).
pub type PeerMap = BTreeMap<WgPublicKey, Vec<Ipv4Net>>;

/// Why a desired state is refused before anything is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The interface settings do not parse.
    #[error("interface: {0}")]
    Interface(String),
    /// A peer's allowed IP is not a host address inside the pool.
    #[error("peer {key}: allowed IP {ip:?} is not a /32 inside {pool}")]
    AllowedIp {
        /// The peer.
        key: WgPublicKey,
        /// The offending value.
        ip: String,
        /// The node's pool.
        pool: Ipv4Net,
    },
    /// Two peers claim one address, or one key appears twice.
    #[error("duplicate {0}")]
    Duplicate(String),
}

/// Parsed interface settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iface {
    /// The node's own address with the pool prefix.
    pub address: Ipv4Net,
    /// The pool.
    pub pool: Ipv4Net,
    /// UDP port.
    pub listen_port: u16,
}

/// Parses interface settings.
pub fn parse_interface(i: &InterfaceSpec) -> Result<Iface, Invalid> {
    let address: Ipv4Net = i
        .address
        .parse()
        .map_err(|_| Invalid::Interface(format!("address {:?}", i.address)))?;
    let pool: Ipv4Net = i
        .pool
        .parse()
        .map_err(|_| Invalid::Interface(format!("pool {:?}", i.pool)))?;
    if !pool.contains(&address.addr()) || i.listen_port == 0 {
        return Err(Invalid::Interface(format!(
            "address {} outside pool {} or port 0",
            i.address, i.pool
        )));
    }
    Ok(Iface {
        address,
        pool: pool.trunc(),
        listen_port: i.listen_port,
    })
}

fn parse_peer(p: &PeerSpec, pool: Ipv4Net) -> Result<Vec<Ipv4Net>, Invalid> {
    let mut ips = Vec::with_capacity(p.allowed_ips.len());
    for s in &p.allowed_ips {
        let bad = || Invalid::AllowedIp {
            key: p.public_key,
            ip: s.clone(),
            pool,
        };
        let net: Ipv4Net = s.parse().map_err(|_| bad())?;
        if net.prefix_len() != 32 || !pool.contains(&net.addr()) {
            return Err(bad());
        }
        ips.push(net);
    }
    ips.sort();
    ips.dedup();
    Ok(ips)
}

/// Validates a full peer list into a [`PeerMap`]: every allowed IP a /32 in the pool, no
/// key twice, no address twice.
pub fn validate_peers(peers: &[PeerSpec], pool: Ipv4Net) -> Result<PeerMap, Invalid> {
    let mut map = PeerMap::new();
    let mut owners: HashMap<Ipv4Net, WgPublicKey> = HashMap::with_capacity(peers.len());
    for p in peers {
        let ips = parse_peer(p, pool)?;
        for ip in &ips {
            if owners.insert(*ip, p.public_key).is_some() {
                return Err(Invalid::Duplicate(format!("address {ip}")));
            }
        }
        if map.insert(p.public_key, ips).is_some() {
            return Err(Invalid::Duplicate(format!("key {}", p.public_key)));
        }
    }
    Ok(map)
}

/// Plans a delta against the current peers and validates what it adds (each address a
/// /32 in the pool, not owned by a peer that stays). Cost: one pass over the current peers
/// per added peer that is new, and no copy of the map, so a one-peer change stays cheap
/// on a node with many peers. Apply the result with [`commit_delta`].
pub fn plan_delta(current: &PeerMap, d: &Delta, pool: Ipv4Net, caps: Caps) -> Result<Ops, Invalid> {
    let removed: std::collections::HashSet<&WgPublicKey> = d.remove.iter().collect();
    // Peers this delta re-addresses give their old addresses up (a new owner of one of
    // them is checked against `claimed` instead).
    let readdressed: std::collections::HashSet<&WgPublicKey> =
        d.add.iter().map(|p| &p.public_key).collect();
    let mut ops = Ops {
        remove: d
            .remove
            .iter()
            .filter(|k| current.contains_key(k))
            .copied()
            .collect(),
        upsert: Vec::with_capacity(d.add.len()),
    };
    let mut claimed: HashMap<Ipv4Net, WgPublicKey> = HashMap::new();
    for p in &d.add {
        let ips = parse_peer(p, pool)?;
        for ip in &ips {
            if claimed.insert(*ip, p.public_key).is_some() {
                return Err(Invalid::Duplicate(format!("address {ip}")));
            }
            let owner = current.iter().find(|(k, v)| {
                **k != p.public_key
                    && !removed.contains(k)
                    && !readdressed.contains(k)
                    && v.contains(ip)
            });
            if let Some((k, _)) = owner {
                return Err(Invalid::Duplicate(format!("address {ip} (held by {k})")));
            }
        }
        match current.get(&p.public_key) {
            Some(have) if *have == ips && !removed.contains(&p.public_key) => {}
            Some(_) if !caps.update_in_place && !removed.contains(&p.public_key) => {
                ops.remove.push(p.public_key);
                ops.upsert.push((p.public_key, ips));
            }
            _ => ops.upsert.push((p.public_key, ips)),
        }
    }
    Ok(ops)
}

/// Applies planned operations to the peer map (what the interface now has).
pub fn commit_delta(current: &mut PeerMap, ops: &Ops) {
    for k in &ops.remove {
        current.remove(k);
    }
    for (k, ips) in &ops.upsert {
        current.insert(*k, ips.clone());
    }
}

/// Converts what an interface reports into a [`PeerMap`].
pub fn from_interface(peers: &[PeerState]) -> PeerMap {
    peers
        .iter()
        .map(|p| {
            let mut ips = p.allowed_ips.clone();
            ips.sort();
            (p.public_key, ips)
        })
        .collect()
}

/// Plans the change from `current` to `desired`: peers not desired are removed, missing
/// ones added, changed ones updated (or removed and re-added when the backend cannot
/// update in place). Removals come first so an address moves cleanly to its new owner.
pub fn plan(current: &PeerMap, desired: &PeerMap, caps: Caps) -> Ops {
    let mut ops = Ops::default();
    for (k, ips) in current {
        match desired.get(k) {
            None => ops.remove.push(*k),
            Some(want) if want != ips && !caps.update_in_place => ops.remove.push(*k),
            _ => {}
        }
    }
    for (k, want) in desired {
        if current.get(k) != Some(want) {
            ops.upsert.push((*k, want.clone()));
        }
    }
    ops
}

/// What an interface looks like after a plan is applied to it (the model the tests use).
#[cfg(test)]
fn simulate(current: &PeerMap, ops: &Ops) -> PeerMap {
    let mut next = current.clone();
    for k in &ops.remove {
        next.remove(k);
    }
    for (k, ips) in &ops.upsert {
        // WireGuard semantics: an address belongs to one peer; setting it elsewhere moves it.
        for other in next.values_mut() {
            other.retain(|ip| !ips.contains(ip));
        }
        next.insert(*k, ips.clone());
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::keys::WgKeyPair;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn pool() -> Ipv4Net {
        "10.100.0.0/24".parse().expect("pool")
    }

    fn spec(k: WgPublicKey, ip: &str) -> PeerSpec {
        PeerSpec {
            public_key: k,
            allowed_ips: vec![ip.to_string()],
            device_id: Uuid::nil(),
            class: Default::default(),
        }
    }

    #[test]
    fn rejects_addresses_outside_the_pool_and_injection() {
        let k = WgKeyPair::generate().public();
        for bad in [
            "10.101.0.2/32",
            "10.100.0.0/24",
            "10.100.0.2/32\nremove=true",
            "fd00::1/128",
            "",
        ] {
            assert!(
                validate_peers(&[spec(k, bad)], pool()).is_err(),
                "{bad:?} accepted"
            );
        }
        assert!(validate_peers(&[spec(k, "10.100.0.2/32")], pool()).is_ok());
    }

    #[test]
    fn rejects_duplicates() {
        let a = WgKeyPair::generate().public();
        let b = WgKeyPair::generate().public();
        assert!(
            validate_peers(
                &[spec(a, "10.100.0.2/32"), spec(b, "10.100.0.2/32")],
                pool()
            )
            .is_err()
        );
        assert!(
            validate_peers(
                &[spec(a, "10.100.0.2/32"), spec(a, "10.100.0.3/32")],
                pool()
            )
            .is_err()
        );
    }

    #[test]
    fn delta_may_not_take_an_address_that_stays_owned() {
        let a = WgKeyPair::generate().public();
        let b = WgKeyPair::generate().public();
        let current: PeerMap = [(a, vec!["10.100.0.2/32".parse().expect("n")])].into();
        let steal = Delta {
            node_id: Uuid::nil(),
            from_version: 1,
            to_version: 2,
            issued_at: 0,
            remove: vec![],
            add: vec![spec(b, "10.100.0.2/32")],
            update: vec![],
        };
        let caps = Caps {
            update_in_place: true,
        };
        assert!(plan_delta(&current, &steal, pool(), caps).is_err());
        // Rotation: the old key goes in the same delta, so the address is free.
        let rotate = Delta {
            remove: vec![a],
            ..steal
        };
        let ops = plan_delta(&current, &rotate, pool(), caps).expect("rotation");
        assert_eq!(ops.remove, vec![a]);
        assert_eq!(ops.upsert.len(), 1);
    }

    #[test]
    fn interface_validation() {
        let ok = InterfaceSpec {
            listen_port: 51820,
            address: "10.100.0.1/24".into(),
            pool: "10.100.0.0/24".into(),
        };
        assert_eq!(parse_interface(&ok).expect("ok").pool, pool());
        let mut bad = ok.clone();
        bad.address = "10.9.0.1/24".into();
        assert!(parse_interface(&bad).is_err());
        let mut bad = ok;
        bad.listen_port = 0;
        assert!(parse_interface(&bad).is_err());
    }

    fn arb_map(keys: Vec<WgPublicKey>) -> impl Strategy<Value = PeerMap> {
        // Each of a fixed set of keys is absent or owns one of a few addresses; addresses
        // are unique per map.
        proptest::collection::vec(proptest::option::of(0u8..12), keys.len()).prop_map(
            move |slots| {
                let mut used = std::collections::HashSet::new();
                keys.iter()
                    .zip(slots)
                    .filter_map(|(k, s)| {
                        let s = s?;
                        used.insert(s).then(|| {
                            (
                                *k,
                                vec![Ipv4Net::new([10, 100, 0, 2 + s].into(), 32).expect("n")],
                            )
                        })
                    })
                    .collect()
            },
        )
    }

    fn fixed_keys() -> Vec<WgPublicKey> {
        (1..=8u8)
            .map(|b| {
                WgKeyPair::from_private_base64(&base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    [b; 32],
                ))
                .expect("key")
                .public()
            })
            .collect()
    }

    proptest! {
        #[test]
        fn delta_plans_match_full_plans(
            current in arb_map(fixed_keys()),
            desired in arb_map(fixed_keys()),
            in_place in any::<bool>(),
        ) {
            // A delta from `current` to `desired`, as the control plane would send it.
            let caps = Caps { update_in_place: in_place };
            let d = Delta {
                node_id: Uuid::nil(),
                from_version: 1,
                to_version: 2,
                issued_at: 0,
                remove: current.keys().filter(|k| !desired.contains_key(k)).copied().collect(),
                add: desired
                    .iter()
                    .filter(|(k, v)| current.get(k) != Some(v))
                    .map(|(k, v)| PeerSpec {
                        public_key: *k,
                        allowed_ips: v.iter().map(ToString::to_string).collect(),
                        device_id: Uuid::nil(),
                        class: Default::default(),
                    })
                    .collect(),
                update: vec![],
            };
            let ops = plan_delta(&current, &d, pool(), caps).expect("valid delta");
            prop_assert_eq!(simulate(&current, &ops), desired.clone());
            let mut mirror = current.clone();
            commit_delta(&mut mirror, &ops);
            prop_assert_eq!(mirror, desired);
            if !in_place {
                for (k, _) in &ops.upsert {
                    prop_assert!(!current.contains_key(k) || ops.remove.contains(k));
                }
            }
        }

        #[test]
        fn plan_reaches_the_desired_state(
            current in arb_map(fixed_keys()),
            desired in arb_map(fixed_keys()),
            in_place in any::<bool>(),
        ) {
            let caps = Caps { update_in_place: in_place };
            let ops = plan(&current, &desired, caps);
            prop_assert_eq!(simulate(&current, &ops), desired.clone());
            // Idempotent: planning again from the result does nothing.
            prop_assert!(plan(&desired, &desired, caps).is_empty());
            // A desired peer whose addresses are unchanged is never touched.
            for (k, ips) in &desired {
                if current.get(k) == Some(ips) {
                    prop_assert!(!ops.remove.contains(k));
                    prop_assert!(!ops.upsert.iter().any(|(u, _)| u == k));
                }
            }
            // Without in-place updates, every upserted key is absent when it is added.
            if !in_place {
                for (k, _) in &ops.upsert {
                    prop_assert!(!current.contains_key(k) || ops.remove.contains(k));
                }
            }
        }
    }
}
