//! Link setup over rtnetlink: MTU, the node's tunnel address, link up. Idempotent.

use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use ipnet::Ipv4Net;
use rtnetlink::LinkUnspec;

use super::WgError;

/// WireGuard's usual MTU (1500 minus 80 bytes of IPv6+UDP+WireGuard overhead).
pub const MTU: u32 = 1420;

fn setup(e: impl std::fmt::Display) -> WgError {
    WgError::Setup(e.to_string())
}

/// The interface index of `name`, if it exists.
pub async fn index_of(handle: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, WgError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -ENODEV => Ok(None),
        Err(e) => Err(setup(e)),
    }
}

/// "No such device": the kernel's answer for a name that is not a link.
const ENODEV: i32 = 19;

/// The IPv4 addresses (with prefix length) of link `index`.
pub async fn ipv4_addresses(
    handle: &rtnetlink::Handle,
    index: u32,
) -> Result<Vec<Ipv4Net>, WgError> {
    use rtnetlink::packet_route::address::AddressAttribute;
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut out = Vec::new();
    while let Some(a) = addrs.try_next().await.map_err(setup)? {
        for attr in &a.attributes {
            if let AddressAttribute::Address(IpAddr::V4(ip)) = attr
                && let Ok(net) = Ipv4Net::new(*ip, a.header.prefix_len)
            {
                out.push(net);
            }
        }
    }
    Ok(out)
}

/// Opens an rtnetlink connection on the current network namespace.
pub fn connect() -> Result<rtnetlink::Handle, WgError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(setup)?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Sets MTU, adds `address` (if missing) and brings `name` up.
pub async fn configure(name: &str, address: Ipv4Net) -> Result<(), WgError> {
    let handle = connect()?;
    let index = index_of(&handle, name)
        .await?
        .ok_or_else(|| WgError::Setup(format!("interface {name} does not exist")))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(MTU).up().build())
        .execute()
        .await
        .map_err(setup)?;
    let present = ipv4_addresses(&handle, index).await?.contains(&address);
    if !present {
        handle
            .address()
            .add(index, IpAddr::V4(address.addr()), address.prefix_len())
            .execute()
            .await
            .map_err(setup)?;
    }
    Ok(())
}
