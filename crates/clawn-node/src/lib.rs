//! The Clawn node agent.
//!
//! A node enrolls once with a join token ([`enroll::join`]), then [`agent::Agent`] keeps
//! the signed desired-state stream to the control plane and applies it to one WireGuard
//! interface through a [`wireguard::Backend`] (kernel netlink, UAPI, or embedded userspace),
//! with exit NAT and client isolation in an nftables table it owns ([`firewall`]).

pub mod agent;
pub mod enroll;
pub mod firewall;
pub mod reconcile;
pub mod rules;
pub mod sibling;
pub mod state;
pub mod telemetry;
pub mod wireguard;

pub use agent::{Agent, AgentConfig, AgentError};

/// An HTTP client with the crate's TLS provider installed.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    install_crypto();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
}

/// Installs rustls' ring provider as the process default (idempotent).
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
