//! The wg-quick configuration a device needs, without its private key.
//!
//! The server fills a [`ConfigTemplate`]; the client (CLI or browser) inserts the private
//! key it generated and renders the final `.conf`. The same rendering code is used by the
//! server (which renders with a placeholder) and by the CLI (which renders the real file),
//! so the two can never drift.

use serde::{Deserialize, Serialize};

use crate::keys::WgPublicKey;

/// Placeholder the server puts where the client's private key goes.
pub const PRIVATE_KEY_PLACEHOLDER: &str = "<insert-your-private-key>";

/// Everything in a device's wg-quick config except `PrivateKey`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConfigTemplate {
    /// Interface address with prefix, e.g. `10.100.0.2/32`.
    pub address: String,
    /// DNS servers the tunnel should use (may be empty).
    pub dns: Vec<String>,
    /// The node's WireGuard public key.
    pub peer_public_key: WgPublicKey,
    /// The node's public endpoint `host:port`.
    pub endpoint: String,
    /// Routes sent through the tunnel, e.g. `0.0.0.0/0`.
    pub allowed_ips: Vec<String>,
    /// PersistentKeepalive in seconds (0 = off).
    pub persistent_keepalive: u16,
    /// Interface MTU, if the operator set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
}

impl ConfigTemplate {
    /// Renders the wg-quick file. `private_key` is the client's base64 key; `None`
    /// renders [`PRIVATE_KEY_PLACEHOLDER`].
    pub fn render(&self, private_key: Option<&str>) -> String {
        let mut out = String::from("[Interface]\n");
        out.push_str(&format!(
            "PrivateKey = {}\n",
            private_key.unwrap_or(PRIVATE_KEY_PLACEHOLDER)
        ));
        out.push_str(&format!("Address = {}\n", self.address));
        if !self.dns.is_empty() {
            out.push_str(&format!("DNS = {}\n", self.dns.join(", ")));
        }
        if let Some(mtu) = self.mtu {
            out.push_str(&format!("MTU = {mtu}\n"));
        }
        out.push_str("\n[Peer]\n");
        out.push_str(&format!("PublicKey = {}\n", self.peer_public_key));
        out.push_str(&format!("AllowedIPs = {}\n", self.allowed_ips.join(", ")));
        out.push_str(&format!("Endpoint = {}\n", self.endpoint));
        if self.persistent_keepalive > 0 {
            out.push_str(&format!(
                "PersistentKeepalive = {}\n",
                self.persistent_keepalive
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::WgKeyPair;

    #[test]
    fn renders_wg_quick_file() {
        let node = WgKeyPair::generate().public();
        let t = ConfigTemplate {
            address: "10.100.0.2/32".into(),
            dns: vec!["1.1.1.1".into(), "9.9.9.9".into()],
            peer_public_key: node,
            endpoint: "vpn.example.com:51820".into(),
            allowed_ips: vec!["0.0.0.0/0".into(), "::/0".into()],
            persistent_keepalive: 25,
            mtu: None,
        };
        let text = t.render(Some("PRIV"));
        assert_eq!(
            text,
            format!(
                "[Interface]\nPrivateKey = PRIV\nAddress = 10.100.0.2/32\nDNS = 1.1.1.1, 9.9.9.9\n\n\
                 [Peer]\nPublicKey = {node}\nAllowedIPs = 0.0.0.0/0, ::/0\nEndpoint = vpn.example.com:51820\n\
                 PersistentKeepalive = 25\n"
            )
        );
        assert!(t.render(None).contains(PRIVATE_KEY_PLACEHOLDER));
    }
}
