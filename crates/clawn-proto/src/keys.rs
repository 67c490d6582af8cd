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
        if has_small_order(&bytes) {
            return Err(KeyError::LowOrder);
        }
        Ok(Self(bytes))
    }

    /// Wraps bytes read back from a WireGuard interface without the small-order check:
    /// a peer an interface already has must be representable so it can be removed. Never
    /// use it for keys that arrive from a client.
    pub fn from_bytes_unchecked(bytes: [u8; 32]) -> Self {
        Self(bytes)
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

/// The u-coordinates of Curve25519 points of small order, and their non-canonical
/// encodings (p-1, p, p+1), as in libsodium's `has_small_order`. X25519 ignores the top
/// bit, so it is cleared before comparing. A key on this list makes every shared secret
/// all zeros. A table lookup instead of a Diffie-Hellman probe: keys are parsed for every
/// peer of every snapshot (100,000 per node), and a probe costs tens of microseconds.
const SMALL_ORDER: [[u8; 32]; 7] = {
    let mut p_minus_1 = [0xff; 32];
    p_minus_1[0] = 0xec;
    p_minus_1[31] = 0x7f;
    let mut p = p_minus_1;
    p[0] = 0xed;
    let mut p_plus_1 = p_minus_1;
    p_plus_1[0] = 0xee;
    let mut one = [0u8; 32];
    one[0] = 1;
    [
        [0u8; 32],
        one,
        [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f,
            0xc4, 0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16,
            0x5f, 0x49, 0xb8, 0x00,
        ],
        [
            0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83,
            0xef, 0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd,
            0xd0, 0x9f, 0x11, 0x57,
        ],
        p_minus_1,
        p,
        p_plus_1,
    ]
};

fn has_small_order(bytes: &[u8; 32]) -> bool {
    let mut b = *bytes;
    b[31] &= 0x7f;
    SMALL_ORDER.contains(&b)
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
#[derive(Clone)]
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

    /// The private half as raw bytes (for the kernel's netlink interface).
    pub fn private_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
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

    /// The reference: a key is low-order iff X25519 with it is non-contributory.
    fn dh_probe_rejects(bytes: [u8; 32]) -> bool {
        let probe = StaticSecret::from([0x5a; 32]);
        !probe
            .diffie_hellman(&PublicKey::from(bytes))
            .was_contributory()
    }

    #[test]
    fn small_order_table_matches_the_diffie_hellman_probe() {
        for entry in SMALL_ORDER {
            for top in [0u8, 0x80] {
                let mut b = entry;
                b[31] |= top;
                assert!(dh_probe_rejects(b), "{b:02x?} is not actually low order");
                assert_eq!(WgPublicKey::from_bytes(b), Err(KeyError::LowOrder));
            }
        }
        // Around the edges of the field: small u and u near p, both top-bit variants.
        let p = SMALL_ORDER[5];
        for i in 0u8..=255 {
            let mut low = [0u8; 32];
            low[0] = i;
            let mut near_p = p;
            near_p[0] = p[0].wrapping_sub(128).wrapping_add(i);
            for mut b in [low, near_p] {
                for top in [0u8, 0x80] {
                    b[31] = (b[31] & 0x7f) | top;
                    assert_eq!(has_small_order(&b), dh_probe_rejects(b), "{b:02x?}");
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn table_and_probe_agree_on_random_keys(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            proptest::prop_assert_eq!(has_small_order(&bytes), dh_probe_rejects(bytes));
        }
    }

    #[test]
    fn debug_redacts_private_key() {
        let kp = WgKeyPair::generate();
        assert!(!format!("{kp:?}").contains(&kp.private_base64()));
    }
}
