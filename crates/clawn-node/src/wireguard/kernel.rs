//! Kernel WireGuard over generic netlink.
//!
//! Kept thin on purpose: it cannot run on machines without the module (such as the CI
//! machines), so the message building is pure and covered by unit tests, and the I/O is a
//! small request/acknowledge loop on a blocking netlink socket.

use std::net::IpAddr;

use clawn_proto::keys::WgPublicKey;
use ipnet::Ipv4Net;
use netlink_packet_core::{
    Emitable as _, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    NetlinkSerializable,
};
use netlink_packet_generic::GenlMessage;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_wireguard::{
    WireguardAddressFamily, WireguardAllowedIp, WireguardAllowedIpAttr, WireguardAttribute,
    WireguardCmd, WireguardMessage, WireguardPeer, WireguardPeerAttribute, WireguardPeerFlags,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_GENERIC};
use rtnetlink::LinkWireguard;

use super::{IfaceConfig, Ops, PeerState, WgError};

/// Largest message we build; the kernel accepts larger, but small messages keep a failure
/// local and the socket buffers modest.
pub const MAX_MESSAGE: usize = 8 * 1024;

/// Whether the running kernel has (or can load) the wireguard module.
pub fn module_available() -> bool {
    std::path::Path::new("/sys/module/wireguard").exists()
        || std::fs::read_to_string("/proc/modules")
            .map(|m| m.lines().any(|l| l.starts_with("wireguard ")))
            .unwrap_or(false)
}

fn wg_message(ifname: &str, attrs: Vec<WireguardAttribute>) -> GenlMessage<WireguardMessage> {
    let mut attributes = vec![WireguardAttribute::IfName(ifname.to_string())];
    attributes.extend(attrs);
    GenlMessage::from_payload(WireguardMessage {
        cmd: WireguardCmd::SetDevice,
        attributes,
    })
}

fn peer_upsert(key: &WgPublicKey, ips: &[Ipv4Net]) -> WireguardPeer {
    WireguardPeer(vec![
        WireguardPeerAttribute::PublicKey(*key.as_bytes()),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::ReplaceAllowedIps),
        WireguardPeerAttribute::AllowedIps(
            ips.iter()
                .map(|n| {
                    WireguardAllowedIp(vec![
                        WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                        WireguardAllowedIpAttr::IpAddr(IpAddr::V4(n.addr())),
                        WireguardAllowedIpAttr::Cidr(n.prefix_len()),
                    ])
                })
                .collect(),
        ),
    ])
}

fn peer_remove(key: &WgPublicKey) -> WireguardPeer {
    WireguardPeer(vec![
        WireguardPeerAttribute::PublicKey(*key.as_bytes()),
        WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
    ])
}

/// Serialises a generic netlink message with a resolved family id.
fn serialize<F>(mut genl: GenlMessage<F>, family: u16, flags: u16, seq: u32) -> Vec<u8>
where
    GenlMessage<F>: NetlinkSerializable,
    F: netlink_packet_generic::GenlFamily + std::fmt::Debug,
{
    genl.set_resolved_family_id(family);
    let mut nl = NetlinkMessage::from(genl);
    nl.header.flags = flags;
    nl.header.sequence_number = seq;
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    buf
}

/// The `SET_DEVICE` messages for a plan, each at most [`MAX_MESSAGE`] bytes (removals
/// first, then upserts; one peer never spans two messages).
pub fn build_set(ifname: &str, family: u16, ops: &Ops, first_seq: u32) -> Vec<Vec<u8>> {
    let peers: Vec<WireguardPeer> = ops
        .remove
        .iter()
        .map(peer_remove)
        .chain(ops.upsert.iter().map(|(k, ips)| peer_upsert(k, ips)))
        .collect();
    let mut out = Vec::new();
    let mut batch: Vec<WireguardPeer> = Vec::new();
    let mut seq = first_seq;
    let flags = NLM_F_REQUEST | NLM_F_ACK;
    // The message without peers, then each peer's attribute size (header and padding
    // included), so the split costs one pass.
    let base = serialize(
        wg_message(ifname, vec![WireguardAttribute::Peers(vec![])]),
        family,
        flags,
        seq,
    )
    .len();
    let mut size = base;
    for peer in peers {
        let len = peer.buffer_len();
        if size + len > MAX_MESSAGE && !batch.is_empty() {
            out.push(serialize(
                wg_message(
                    ifname,
                    vec![WireguardAttribute::Peers(std::mem::take(&mut batch))],
                ),
                family,
                flags,
                seq,
            ));
            seq = seq.wrapping_add(1);
            size = base;
        }
        size += len;
        batch.push(peer);
    }
    if !batch.is_empty() {
        out.push(serialize(
            wg_message(ifname, vec![WireguardAttribute::Peers(batch)]),
            family,
            flags,
            seq,
        ));
    }
    out
}

/// The `SET_DEVICE` message for key and port.
pub fn build_init(cfg: &IfaceConfig, family: u16, seq: u32) -> Vec<u8> {
    serialize(
        wg_message(
            &cfg.name,
            vec![
                WireguardAttribute::PrivateKey(cfg.key.private_bytes()),
                WireguardAttribute::ListenPort(cfg.listen_port),
            ],
        ),
        family,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
    )
}

/// Parses the peers of `GET_DEVICE` answers.
pub fn parse_peers(msgs: &[WireguardMessage]) -> Vec<PeerState> {
    let mut out: Vec<PeerState> = Vec::new();
    for m in msgs {
        for attr in &m.attributes {
            let WireguardAttribute::Peers(peers) = attr else {
                continue;
            };
            for WireguardPeer(pattrs) in peers {
                let mut p = PeerState {
                    public_key: WgPublicKey::from_bytes_unchecked([0; 32]),
                    allowed_ips: vec![],
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                };
                for a in pattrs {
                    match a {
                        WireguardPeerAttribute::PublicKey(k) => {
                            p.public_key = WgPublicKey::from_bytes_unchecked(*k);
                        }
                        WireguardPeerAttribute::Endpoint(e) => p.endpoint = Some(*e),
                        WireguardPeerAttribute::LastHandshake(t) if t.seconds != 0 => {
                            p.last_handshake = Some(t.seconds * 1000 + t.nano_seconds / 1_000_000);
                        }
                        WireguardPeerAttribute::RxBytes(n) => p.rx_bytes = *n,
                        WireguardPeerAttribute::TxBytes(n) => p.tx_bytes = *n,
                        WireguardPeerAttribute::AllowedIps(ips) => {
                            for WireguardAllowedIp(ia) in ips {
                                let mut ip = None;
                                let mut cidr = 32;
                                for x in ia {
                                    match x {
                                        WireguardAllowedIpAttr::IpAddr(IpAddr::V4(v)) => {
                                            ip = Some(*v);
                                        }
                                        WireguardAllowedIpAttr::Cidr(c) => cidr = *c,
                                        _ => {}
                                    }
                                }
                                if let Some(net) = ip.and_then(|i| Ipv4Net::new(i, cidr).ok()) {
                                    p.allowed_ips.push(net);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                // A dump splits a peer with many allowed IPs over messages: merge.
                match out.last_mut() {
                    Some(prev) if prev.public_key == p.public_key => {
                        prev.allowed_ips.extend(p.allowed_ips);
                    }
                    _ => out.push(p),
                }
            }
        }
    }
    out
}

/// A netlink socket bound to the wireguard generic family.
struct Genl {
    sock: Socket,
    family: u16,
    seq: u32,
}

fn io(e: impl std::fmt::Display) -> WgError {
    WgError::Setup(format!("netlink: {e}"))
}

impl Genl {
    fn open() -> Result<Self, WgError> {
        let mut sock = Socket::new(NETLINK_GENERIC)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        let mut g = Self {
            sock,
            family: 0,
            seq: 1,
        };
        let req = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName("wireguard".into())],
        });
        // The control family has the fixed id GENL_ID_CTRL = 0x10.
        let buf = serialize(req, 0x10, NLM_F_REQUEST | NLM_F_ACK, g.seq);
        let replies: Vec<GenlMessage<GenlCtrl>> = g.roundtrip(&buf)?;
        g.family = replies
            .iter()
            .flat_map(|m| m.payload.nlas.iter())
            .find_map(|a| match a {
                GenlCtrlAttrs::FamilyId(id) => Some(*id),
                _ => None,
            })
            .ok_or_else(|| WgError::Setup("the kernel has no wireguard family".into()))?;
        Ok(g)
    }

    /// Sends one request and collects its answers until the ACK or DONE.
    fn roundtrip<T>(&mut self, buf: &[u8]) -> Result<Vec<T>, WgError>
    where
        T: netlink_packet_core::NetlinkDeserializable + std::fmt::Debug,
    {
        self.seq = self.seq.wrapping_add(1);
        self.sock.send(buf, 0)?;
        let mut out = Vec::new();
        loop {
            let (data, _) = self.sock.recv_from_full()?;
            let mut off = 0;
            while off < data.len() {
                let msg = NetlinkMessage::<T>::deserialize(&data[off..]).map_err(io)?;
                let len = msg.header.length as usize;
                match msg.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(WgError::Errno(i64::from(code.get()))),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
            }
        }
    }
}

/// The kernel backend.
pub struct KernelBackend {
    name: String,
}

impl KernelBackend {
    /// Creates the `wireguard` link if missing and sets key and port.
    pub async fn open(cfg: &IfaceConfig) -> Result<Self, WgError> {
        let handle = super::link::connect()?;
        if super::link::index_of(&handle, &cfg.name).await?.is_none() {
            handle
                .link()
                .add(LinkWireguard::new(&cfg.name).build())
                .execute()
                .await
                .map_err(|e| WgError::Setup(format!("cannot create wireguard link: {e}")))?;
        }
        let cfg = cfg.clone();
        let name = cfg.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = Genl::open()?;
            let buf = build_init(&cfg, g.family, g.seq);
            g.roundtrip::<GenlMessage<WireguardMessage>>(&buf)
                .map(|_| ())
        })
        .await
        .map_err(io)??;
        Ok(Self { name })
    }

    /// Dumps the device's peers.
    pub async fn read(&mut self) -> Result<Vec<PeerState>, WgError> {
        let name = self.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = Genl::open()?;
            let mut msg = GenlMessage::from_payload(WireguardMessage {
                cmd: WireguardCmd::GetDevice,
                attributes: vec![WireguardAttribute::IfName(name)],
            });
            msg.finalize();
            let buf = serialize(msg, g.family, NLM_F_REQUEST | NLM_F_DUMP, g.seq);
            let replies: Vec<GenlMessage<WireguardMessage>> = g.roundtrip(&buf)?;
            let msgs: Vec<WireguardMessage> = replies.into_iter().map(|m| m.payload).collect();
            Ok(parse_peers(&msgs))
        })
        .await
        .map_err(io)?
    }

    /// Applies a plan.
    pub async fn apply(&mut self, ops: &Ops) -> Result<(), WgError> {
        let name = self.name.clone();
        let ops = ops.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = Genl::open()?;
            let seq = g.seq;
            for buf in build_set(&name, g.family, &ops, seq) {
                g.roundtrip::<GenlMessage<WireguardMessage>>(&buf)?;
            }
            Ok(())
        })
        .await
        .map_err(io)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::keys::WgKeyPair;

    fn decode(buf: &[u8]) -> (u16, WireguardMessage) {
        let nl = NetlinkMessage::<GenlMessage<WireguardMessage>>::deserialize(buf).expect("decode");
        assert_eq!(nl.header.length as usize, buf.len());
        assert_eq!(nl.header.flags, NLM_F_REQUEST | NLM_F_ACK);
        let NetlinkPayload::InnerMessage(g) = nl.payload else {
            panic!("not an inner message")
        };
        (nl.header.message_type, g.payload)
    }

    fn keys(n: usize) -> Vec<WgPublicKey> {
        (0..n).map(|_| WgKeyPair::generate().public()).collect()
    }

    #[test]
    fn remove_message_round_trips() {
        let k = keys(1);
        let ops = Ops {
            remove: k.clone(),
            upsert: vec![],
        };
        let msgs = build_set("wg0", 27, &ops, 1);
        assert_eq!(msgs.len(), 1);
        let (ty, m) = decode(&msgs[0]);
        assert_eq!(ty, 27);
        assert_eq!(m.cmd, WireguardCmd::SetDevice);
        assert_eq!(m.attributes[0], WireguardAttribute::IfName("wg0".into()));
        assert_eq!(
            m.attributes[1],
            WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(*k[0].as_bytes()),
                WireguardPeerAttribute::Flags(WireguardPeerFlags::RemoveMe),
            ])])
        );
    }

    #[test]
    fn ten_thousand_upserts_split_under_the_limit_and_each_key_once() {
        let ks = keys(10_000);
        let ops = Ops {
            remove: vec![],
            upsert: ks
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let ip = std::net::Ipv4Addr::from(0x0a64_0000u32 + i as u32 + 2);
                    (*k, vec![Ipv4Net::new(ip, 32).expect("net")])
                })
                .collect(),
        };
        let msgs = build_set("wg0", 27, &ops, 1);
        assert!(msgs.len() > 1);
        let mut seen = Vec::new();
        for buf in &msgs {
            assert!(buf.len() <= MAX_MESSAGE, "{} bytes", buf.len());
            let (_, m) = decode(buf);
            for a in m.attributes {
                if let WireguardAttribute::Peers(ps) = a {
                    for WireguardPeer(pa) in ps {
                        assert!(pa.contains(&WireguardPeerAttribute::Flags(
                            WireguardPeerFlags::ReplaceAllowedIps
                        )));
                        for x in pa {
                            if let WireguardPeerAttribute::PublicKey(k) = x {
                                seen.push(WgPublicKey::from_bytes_unchecked(k));
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(seen, ks);
    }

    #[test]
    fn parses_a_dump() {
        let k = keys(1)[0];
        let msgs = vec![WireguardMessage {
            cmd: WireguardCmd::GetDevice,
            attributes: vec![WireguardAttribute::Peers(vec![WireguardPeer(vec![
                WireguardPeerAttribute::PublicKey(*k.as_bytes()),
                WireguardPeerAttribute::RxBytes(5),
                WireguardPeerAttribute::AllowedIps(vec![WireguardAllowedIp(vec![
                    WireguardAllowedIpAttr::Family(WireguardAddressFamily::Ipv4),
                    WireguardAllowedIpAttr::IpAddr("10.1.0.2".parse().expect("ip")),
                    WireguardAllowedIpAttr::Cidr(32),
                ])]),
            ])])],
        }];
        let peers = parse_peers(&msgs);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].public_key, k);
        assert_eq!(peers[0].rx_bytes, 5);
        assert_eq!(
            peers[0].allowed_ips,
            vec!["10.1.0.2/32".parse().expect("n")]
        );
    }
}
