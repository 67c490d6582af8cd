//! Tunnel address arithmetic: carving a region's pool into node sub-pools and choosing a
//! free address inside a node's pool. Pure functions; the store supplies what is in use.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A node's sub-pool: the node's own address and the range handed to peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePool {
    /// The sub-pool, e.g. `10.100.16.0/20`.
    pub net: Ipv4Net,
    /// The node's own tunnel address (first host).
    pub node_addr: Ipv4Addr,
    /// First address for peers.
    pub first: u32,
    /// Last address for peers.
    pub last: u32,
}

impl NodePool {
    /// Splits a sub-pool into the node address and the peer range. `None` if the pool
    /// is too small to hold the node and at least one peer.
    pub fn new(net: Ipv4Net) -> Option<Self> {
        let net = net.trunc();
        let network = u32::from(net.network());
        let broadcast = u32::from(net.broadcast());
        if broadcast.checked_sub(network)? < 3 {
            return None;
        }
        Some(Self {
            net,
            node_addr: Ipv4Addr::from(network + 1),
            first: network + 2,
            last: broadcast - 1,
        })
    }

    /// How many peers fit.
    pub fn size(&self) -> u32 {
        self.last - self.first + 1
    }
}

/// The first sub-pool of `prefix` inside `region` that no live node uses.
pub fn free_node_pool(region: Ipv4Net, prefix: u8, used: &BTreeSet<Ipv4Net>) -> Option<NodePool> {
    region
        .subnets(prefix)
        .ok()?
        .find(|n| !used.contains(n))
        .and_then(NodePool::new)
}

/// Chooses a peer address: one past the highest in use if it fits (O(1) with an index on
/// the store side), otherwise the lowest gap. `in_use` must be sorted ascending.
pub fn next_free(
    first: u32,
    last: u32,
    max_in_use: Option<u32>,
    in_use: impl FnOnce() -> Vec<u32>,
) -> Option<u32> {
    match max_in_use {
        None => Some(first),
        Some(m) if m < last => Some(m.max(first - 1) + 1),
        Some(_) => {
            let mut candidate = first;
            for ip in in_use() {
                if ip > candidate {
                    break;
                }
                if ip == candidate {
                    candidate = candidate.checked_add(1)?;
                }
            }
            (candidate <= last).then_some(candidate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn carves_node_pools() {
        let region: Ipv4Net = "10.100.0.0/16".parse().expect("net");
        let mut used = BTreeSet::new();
        let a = free_node_pool(region, 20, &used).expect("pool");
        assert_eq!(a.net.to_string(), "10.100.0.0/20");
        assert_eq!(a.node_addr, Ipv4Addr::new(10, 100, 0, 1));
        assert_eq!(Ipv4Addr::from(a.first), Ipv4Addr::new(10, 100, 0, 2));
        assert_eq!(Ipv4Addr::from(a.last), Ipv4Addr::new(10, 100, 15, 254));
        used.insert(a.net);
        let b = free_node_pool(region, 20, &used).expect("pool");
        assert_eq!(b.net.to_string(), "10.100.16.0/20");
        let all: BTreeSet<_> = region.subnets(20).expect("subnets").collect();
        assert!(free_node_pool(region, 20, &all).is_none());
        assert!(NodePool::new("10.0.0.0/31".parse().expect("net")).is_none());
    }

    proptest! {
        /// Whatever is in use, the chosen address is inside the range and not in use;
        /// and if none is chosen, the range is full.
        #[test]
        fn allocator_never_collides(used in proptest::collection::btree_set(0u32..64, 0..64)) {
            let (first, last) = (1000u32, 1063u32);
            let in_use: Vec<u32> = used.iter().map(|o| first + o).collect();
            let max = in_use.last().copied();
            match next_free(first, last, max, || in_use.clone()) {
                Some(ip) => {
                    prop_assert!((first..=last).contains(&ip));
                    prop_assert!(!in_use.contains(&ip));
                }
                None => prop_assert_eq!(in_use.len(), 64),
            }
        }
    }
}
