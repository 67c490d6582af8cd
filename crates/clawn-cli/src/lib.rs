//! `clawn`, the command line of Clawn: sign in to a control plane, register devices and get
//! their WireGuard configs, and (for admins) run regions, nodes, users and the audit log.
//!
//! Device private keys are generated here and stay here: the server only ever receives public
//! keys and returns config templates that this crate completes locally.
//!
//! Modules: [`cli`] declares the command line, [`commands`] runs it, [`client`] is the typed
//! HTTP client, [`store`] owns the config directory (session and device keys, with strict
//! permissions), [`resolve`] turns names into ids, [`output`] and [`time`] format for humans,
//! and [`error`] is what a failed command reports.

#![warn(missing_docs)]

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod output;
pub mod resolve;
pub mod store;
pub mod time;

pub use commands::{Env, run};
pub use error::CliError;

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers shared by the unit tests.

    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use clawn_proto::WgKeyPair;
    use clawn_proto::api::{DeviceClass, DeviceState, DeviceView, Placement};

    /// Installs ring as rustls's provider, as `main` does (reqwest has none built in).
    pub(crate) fn install_crypto() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let p = std::env::temp_dir().join(format!(
                "clawn-cli-test-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            Self(p)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// An active, assigned device named `laptop` in region `eu`.
    pub(crate) fn sample_device() -> DeviceView {
        DeviceView {
            id: uuid::Uuid::new_v4(),
            name: "laptop".into(),
            state: DeviceState::Active,
            region: "eu".into(),
            public_key: WgKeyPair::generate().public(),
            tunnel_ip: Some("10.100.0.2".into()),
            node: None,
            tunnel: clawn_proto::api::TunnelStatus {
                status: clawn_proto::api::TunnelState::Inactive,
                last_handshake: None,
                rx_bytes: 0,
                tx_bytes: 0,
                endpoint: None,
            },
            created_at: 0,
            revoked_at: None,
            owner_id: None,
            owner_email: None,
            placement: Placement::Assigned,
            class: DeviceClass::Standard,
            moved_at: None,
            moved_reason: None,
            quarantined: false,
            quarantine_reason: None,
            idle_flagged_at: None,
        }
    }
}
