//! Wire types shared by every Clawn component.
//!
//! This crate owns the shapes that cross a process boundary: the `/api/v1` request and
//! response bodies ([`api`]), the node protocol with its signed, versioned desired state
//! ([`node`], [`sign`]), WireGuard key types with their validation ([`keys`]) and the
//! rendering of a wg-quick configuration ([`config`]); with feature `sealed`, the age
//! encryption of key files and backups at rest (`sealed`). It does no I/O and has no runtime,
//! so the server, the node agent, the CLI and the tests all agree on one definition.

pub mod api;
pub mod config;
pub mod keys;
pub mod node;
#[cfg(feature = "sealed")]
pub mod sealed;
pub mod server_url;
pub mod sign;
pub mod time;

pub use keys::{KeyError, WgKeyPair, WgPublicKey};
