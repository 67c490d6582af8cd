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
}
