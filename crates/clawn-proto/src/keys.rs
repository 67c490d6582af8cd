//! WireGuard (Curve25519) keys: parsing, validation and generation.
//!
//! The server only ever sees public keys. A public key that is not 32 bytes of
//! base64, is all zeros, or is a low-order point (one whose Diffie-Hellman output is
//! all zeros for every secret) is rejected: such a key would let a client pin a
//! predictable session and is never produced by an honest implementation.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::{PublicKey, StaticSecret};

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not standard base64.
    #[error("key is not valid base64")]
    Base64,
    /// Decoded to the wrong number of bytes.
    #[error("key must be 32 bytes, got {0}")]
    Length(usize),
    /// All-zero or another low-order point of Curve25519.
    #[error(
        "key is a low-order point (for example all zeros) and can never be a real WireGuard key"
    )]
    LowOrder,
}

/// A validated WireGuard public key (32 bytes), shown as standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgPublicKey([u8; 32]);

impl WgPublicKey {
    /// Parses and validates a base64 public key.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let bytes = decode32(s.trim())?;
        Self::from_bytes(bytes)
    }

    /// Validates raw bytes as a public key.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        // A low-order point gives an all-zero shared secret with any scalar; x25519-dalek
        // reports that as a non-contributory exchange. Use a fixed, non-secret scalar:
        // this is a property check, not a key exchange.
        let probe = StaticSecret::from([0x5a; 32]);
        let shared = probe.diffie_hellman(&PublicKey::from(bytes));
        if !shared.was_contributory() {
            return Err(KeyError::LowOrder);
        }
        Ok(Self(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Standard base64, as wg-quick and the WireGuard apps show keys.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Lower-case hex, as the cross-platform UAPI protocol wants keys.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Whether `s` is standard base64 of exactly 32 bytes (the shape of any WireGuard key,
/// public or private).
pub fn decodes_to_32_bytes(s: &str) -> bool {
    decode32(s).is_ok()
}

fn decode32(s: &str) -> Result<[u8; 32], KeyError> {
    let v = STANDARD.decode(s).map_err(|_| KeyError::Base64)?;
    <[u8; 32]>::try_from(v.as_slice()).map_err(|_| KeyError::Length(v.len()))
}

impl fmt::Display for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for WgPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgPublicKey({})", self.to_base64())
    }
}

impl std::str::FromStr for WgPublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for WgPublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for WgPublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for WgPublicKey {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("WireGuard public key, 32 bytes in standard base64"))
            .examples(["xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="])
            .into()
    }
}
#[cfg(feature = "openapi")]
impl utoipa::ToSchema for WgPublicKey {}

/// A WireGuard key pair generated locally (CLI, node agent, tests). The private half
/// never leaves the process that generated it except into a file or config it writes.
pub struct WgKeyPair {
    secret: StaticSecret,
    public: WgPublicKey,
}

impl WgKeyPair {
    /// Generates a new key pair from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        Self::from_private_bytes(bytes)
    }

    /// Rebuilds a pair from a stored base64 private key.
    pub fn from_private_base64(s: &str) -> Result<Self, KeyError> {
        Ok(Self::from_private_bytes(decode32(s.trim())?))
    }

    fn from_private_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = WgPublicKey(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The public half.
    pub fn public(&self) -> WgPublicKey {
        self.public
    }

    /// The private half in standard base64 (for the config file the owner writes).
    pub fn private_base64(&self) -> String {
        STANDARD.encode(self.secret.to_bytes())
    }

    /// The private half in hex (for UAPI).
    pub fn private_hex(&self) -> String {
        self.secret
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for WgKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WgKeyPair {{ public: {}, private: <redacted> }}",
            self.public
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_and_validate() {
        let kp = WgKeyPair::generate();
        let parsed = WgPublicKey::parse(&kp.public().to_base64()).expect("valid");
        assert_eq!(parsed, kp.public());
        let again = WgKeyPair::from_private_base64(&kp.private_base64()).expect("valid");
        assert_eq!(again.public(), kp.public());
    }

    #[test]
    fn rejects_bad_keys() {
        assert_eq!(WgPublicKey::parse("not base64!"), Err(KeyError::Base64));
        assert_eq!(
            WgPublicKey::parse(&STANDARD.encode([1u8; 16])),
            Err(KeyError::Length(16))
        );
        assert_eq!(
            WgPublicKey::parse(&STANDARD.encode([0u8; 32])),
            Err(KeyError::LowOrder)
        );
        // u = 1 is a point of order 4 on Curve25519.
        let mut one = [0u8; 32];
        one[0] = 1;
        assert_eq!(WgPublicKey::from_bytes(one), Err(KeyError::LowOrder));
        // The order-8 point listed by the libsodium blocklist.
        let order8 = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ];
        assert_eq!(WgPublicKey::from_bytes(order8), Err(KeyError::LowOrder));
    }

    #[test]
    fn debug_redacts_private_key() {
        let kp = WgKeyPair::generate();
        assert!(!format!("{kp:?}").contains(&kp.private_base64()));
    }
}
