//! Signing and verifying desired state.
//!
//! The control plane signs the exact JSON bytes of a [`DesiredState`] with its ed25519
//! key; the envelope carries those bytes as a string, so no canonical-JSON step is needed
//! and the node verifies exactly what was signed before parsing it. The signed message
//! is prefixed with a domain-separation tag so a signature can never be replayed as
//! anything else.
//!
//! [`StateVerifier`] is the node side as a pure function of (message, applied version):
//! signature, node id, then version order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::node::{Delta, DesiredState, Snapshot};

const DOMAIN: &[u8] = b"clawn-desired-state-v1\0";

/// A signed desired state: the JSON payload and its ed25519 signature (both as strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Signed {
    /// JSON of a [`DesiredState`], exactly as signed.
    pub payload: String,
    /// ed25519 signature over the domain tag and `payload`, standard base64.
    pub signature: String,
}

/// Signs desired state (control plane side).
pub fn sign(key: &SigningKey, state: &DesiredState) -> Signed {
    let payload = serde_json::to_string(state).unwrap_or_default();
    let sig = key.sign(&message(&payload));
    Signed {
        payload,
        signature: STANDARD.encode(sig.to_bytes()),
    }
}

fn message(payload: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(DOMAIN.len() + payload.len());
    m.extend_from_slice(DOMAIN);
    m.extend_from_slice(payload.as_bytes());
    m
}

/// Parses a standard-base64 ed25519 public key.
pub fn parse_verifying_key(s: &str) -> Result<VerifyingKey, Rejection> {
    let bytes = STANDARD
        .decode(s.trim())
        .map_err(|_| Rejection::Malformed("key is not base64".into()))?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| Rejection::Malformed("key must be 32 bytes".into()))?;
    VerifyingKey::from_bytes(&arr).map_err(|_| Rejection::Malformed("not an ed25519 key".into()))
}

/// Header carrying the time (Unix ms) a node's stream request was made.
pub const IDENTITY_TIME_HEADER: &str = "x-clawn-node-time";
/// Header carrying the node's identity proof (ed25519 signature, standard base64).
pub const IDENTITY_PROOF_HEADER: &str = "x-clawn-node-proof";
/// How far a proof's time may be from the control plane's clock.
pub const IDENTITY_PROOF_MAX_SKEW_MS: i64 = 300_000;

const PROOF_DOMAIN: &[u8] = b"clawn-node-stream-v1\0";

fn proof_message(node_id: Uuid, at: i64) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROOF_DOMAIN.len() + 24);
    m.extend_from_slice(PROOF_DOMAIN);
    m.extend_from_slice(node_id.as_bytes());
    m.extend_from_slice(&at.to_be_bytes());
    m
}

/// The proof a node sends with its stream request: its enrolled ed25519 identity key
/// signs its id and the current time, so the bearer credential alone does not open a
/// stream.
pub fn identity_proof(key: &SigningKey, node_id: Uuid, at: i64) -> String {
    STANDARD.encode(key.sign(&proof_message(node_id, at)).to_bytes())
}

/// Checks a node's identity proof against its enrolled key.
pub fn verify_identity_proof(key: &VerifyingKey, node_id: Uuid, at: i64, proof: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(proof.trim()) else {
        return false;
    };
    let Ok(sig) = Signature::from_slice(&bytes) else {
        return false;
    };
    key.verify(&proof_message(node_id, at), &sig).is_ok()
}

/// Why a node refuses a desired-state message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The envelope or payload could not be decoded.
    #[error("malformed desired state: {0}")]
    Malformed(String),
    /// The signature does not verify with the control plane key from enrollment.
    #[error("bad signature")]
    BadSignature,
    /// The state is addressed to another node.
    #[error("state is for node {got}, this node is {expected}")]
    WrongNode {
        /// Node id in the payload.
        got: Uuid,
        /// This node's id.
        expected: Uuid,
    },
    /// Older than what is applied: a replay or a stale message.
    #[error("stale version {got}, already at {applied}")]
    Stale {
        /// Version in the payload.
        got: u64,
        /// Version applied.
        applied: u64,
    },
    /// A delta that does not start where the node is: ask for a full snapshot.
    #[error("delta from {from} does not follow applied version {applied:?}")]
    Gap {
        /// The delta's base version.
        from: u64,
        /// Version applied, if any.
        applied: Option<u64>,
    },
}

impl Rejection {
    /// Whether the node should answer by asking for a full snapshot.
    pub fn wants_resync(&self) -> bool {
        matches!(
            self,
            Self::Gap { .. } | Self::BadSignature | Self::Malformed(_)
        )
    }
}

/// A verified desired state, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Replace everything with this snapshot.
    Snapshot(Snapshot),
    /// Apply this delta on top of the applied version.
    Delta(Delta),
}

/// Verifies signed desired state for one node (node side, no I/O).
#[derive(Debug, Clone)]
pub struct StateVerifier {
    key: VerifyingKey,
    node_id: Uuid,
}

impl StateVerifier {
    /// A verifier for `node_id` trusting the control-plane key `key`.
    pub fn new(key: VerifyingKey, node_id: Uuid) -> Self {
        Self { key, node_id }
    }

    /// Checks signature, node id and version order against the applied version.
    ///
    /// A snapshot is accepted when its version is at least the applied one (equal means
    /// a resync of the same state); a delta only when it starts exactly at the applied
    /// version.
    pub fn verify(&self, signed: &Signed, applied: Option<u64>) -> Result<Verified, Rejection> {
        let sig_bytes = STANDARD
            .decode(&signed.signature)
            .map_err(|_| Rejection::Malformed("signature is not base64".into()))?;
        let sig = Signature::from_slice(&sig_bytes).map_err(|_| Rejection::BadSignature)?;
        self.key
            .verify(&message(&signed.payload), &sig)
            .map_err(|_| Rejection::BadSignature)?;
        let state: DesiredState = serde_json::from_str(&signed.payload)
            .map_err(|e| Rejection::Malformed(e.to_string()))?;
        if state.node_id() != self.node_id {
            return Err(Rejection::WrongNode {
                got: state.node_id(),
                expected: self.node_id,
            });
        }
        match state {
            DesiredState::Snapshot(s) => match applied {
                Some(a) if s.version < a => Err(Rejection::Stale {
                    got: s.version,
                    applied: a,
                }),
                _ => Ok(Verified::Snapshot(s)),
            },
            DesiredState::Delta(d) => match applied {
                Some(a) if d.to_version <= a => Err(Rejection::Stale {
                    got: d.to_version,
                    applied: a,
                }),
                Some(a) if d.from_version == a && d.to_version > a => Ok(Verified::Delta(d)),
                _ => Err(Rejection::Gap {
                    from: d.from_version,
                    applied,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{InterfaceSpec, NodePolicy};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn snapshot(node_id: Uuid, version: u64) -> DesiredState {
        DesiredState::Snapshot(Snapshot {
            node_id,
            version,
            issued_at: 1,
            interface: InterfaceSpec {
                listen_port: 51820,
                address: "10.0.0.1/24".into(),
                pool: "10.0.0.0/24".into(),
            },
            policy: NodePolicy::default(),
            peers: vec![],
        })
    }

    fn delta(node_id: Uuid, from: u64, to: u64) -> DesiredState {
        DesiredState::Delta(Delta {
            node_id,
            from_version: from,
            to_version: to,
            issued_at: 1,
            remove: vec![],
            add: vec![],
            update: vec![],
        })
    }

    #[test]
    fn identity_proofs_bind_key_node_and_time() {
        let k = key(7);
        let node = Uuid::new_v4();
        let p = identity_proof(&k, node, 1_000);
        assert!(verify_identity_proof(&k.verifying_key(), node, 1_000, &p));
        assert!(!verify_identity_proof(&k.verifying_key(), node, 1_001, &p));
        assert!(!verify_identity_proof(
            &k.verifying_key(),
            Uuid::new_v4(),
            1_000,
            &p
        ));
        assert!(!verify_identity_proof(
            &key(8).verifying_key(),
            node,
            1_000,
            &p
        ));
        assert!(!verify_identity_proof(
            &k.verifying_key(),
            node,
            1_000,
            "not base64!"
        ));
    }

    #[test]
    fn accepts_in_order_and_rejects_forgeries() {
        let k = key(1);
        let node = Uuid::new_v4();
        let v = StateVerifier::new(k.verifying_key(), node);
        assert!(matches!(
            v.verify(&sign(&k, &snapshot(node, 5)), None),
            Ok(Verified::Snapshot(_))
        ));
        assert!(matches!(
            v.verify(&sign(&k, &delta(node, 5, 6)), Some(5)),
            Ok(Verified::Delta(_))
        ));
        // Forged: signed by another key.
        assert_eq!(
            v.verify(&sign(&key(2), &snapshot(node, 9)), Some(5)),
            Err(Rejection::BadSignature)
        );
        // Tampered payload.
        let mut s = sign(&k, &snapshot(node, 9));
        s.payload = s.payload.replace("51820", "51821");
        assert_eq!(v.verify(&s, Some(5)), Err(Rejection::BadSignature));
        // Replayed older snapshot.
        assert_eq!(
            v.verify(&sign(&k, &snapshot(node, 4)), Some(5)),
            Err(Rejection::Stale { got: 4, applied: 5 })
        );
        // Another node's state.
        let other = Uuid::new_v4();
        assert!(matches!(
            v.verify(&sign(&k, &snapshot(other, 9)), Some(5)),
            Err(Rejection::WrongNode { .. })
        ));
        // A gap.
        assert_eq!(
            v.verify(&sign(&k, &delta(node, 7, 8)), Some(5)),
            Err(Rejection::Gap {
                from: 7,
                applied: Some(5)
            })
        );
        assert!(
            Rejection::Gap {
                from: 7,
                applied: None
            }
            .wants_resync()
        );
        // A replayed delta.
        assert_eq!(
            v.verify(&sign(&k, &delta(node, 4, 5)), Some(5)),
            Err(Rejection::Stale { got: 5, applied: 5 })
        );
    }
}
