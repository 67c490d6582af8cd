//! The one error type of the CLI's commands, and how it is shown to the user.
//!
//! Every variant knows an optional hint; `main` prints `error: <message>` and, when there is
//! one, `hint: <hint>` on the next line, then exits non-zero.

use crate::client::ClientError;
use crate::resolve::ResolveError;
use crate::store::StoreError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server or the connection to it.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The local config directory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A device, node or user name that matched nothing or more than one thing.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// No session and no `CLAWN_TOKEN`.
    #[error("not logged in{}", .server.as_deref().map(|s| format!(" to {s}")).unwrap_or_default())]
    NotLoggedIn {
        /// The server the command was aimed at, if known.
        server: Option<String>,
        /// The server of the saved session, when it is a different one.
        saved_for: Option<String>,
    },
    /// Bad input the server never saw (or a failure with a specific remedy).
    #[error("{message}")]
    Input {
        /// What is wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
    },
    /// A step failed after an earlier one changed state on the server; says what to do next.
    #[error("{source}")]
    After {
        /// The failure.
        source: Box<CliError>,
        /// What already happened and how to recover.
        hint: String,
    },
    /// Terminal or standard stream I/O.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// A plain input error.
    pub fn input(message: impl Into<String>) -> Self {
        Self::Input {
            message: message.into(),
            hint: None,
        }
    }

    /// An input error with a remedy.
    pub fn input_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Input {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// Adds recovery advice to an error that happened after the server already changed state.
    pub fn after(self, hint: impl Into<String>) -> Self {
        Self::After {
            source: Box::new(self),
            hint: hint.into(),
        }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Client(e) => e.hint(),
            Self::Store(e) => e.hint(),
            Self::Resolve(e) => e.hint(),
            Self::NotLoggedIn { server, saved_for } => Some(match (server, saved_for) {
                (Some(s), Some(saved)) => {
                    format!("the saved session is for {saved}; run `clawn login --server {s}` or drop --server")
                }
                (Some(s), None) => format!("run `clawn login --server {s}` (or set CLAWN_TOKEN)"),
                (None, _) => "run `clawn login --server https://YOUR-SERVER` (or set CLAWN_SERVER and CLAWN_TOKEN)".into(),
            }),
            Self::Input { hint, .. } => hint.clone(),
            Self::After { source, hint } => Some(match source.hint() {
                Some(h) => format!("{hint}\nhint: {h}"),
                None => hint.clone(),
            }),
            Self::Io { .. } => None,
        }
    }

    /// The process exit code: 1 for every failure (clap uses 2 for usage errors).
    pub fn exit_code(&self) -> u8 {
        1
    }

    /// The full report: `error: ...` and optionally `hint: ...`, without a trailing newline.
    pub fn report(&self) -> String {
        match self.hint() {
            Some(h) => format!("error: {self}\nhint: {h}"),
            None => format!("error: {self}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawn_proto::api::ApiError;
    use reqwest::StatusCode;

    #[test]
    fn server_errors_show_message_code_and_hint() {
        let e = CliError::from(ClientError::Api {
            status: StatusCode::CONFLICT,
            error: ApiError {
                code: clawn_proto::api::ErrorCode::SlotsExhausted,
                message: "no free device slots".into(),
                hint: Some("revoke a device or ask an admin for more slots".into()),
            },
            retry_after: None,
        });
        assert_eq!(
            e.report(),
            "error: no free device slots (slots_exhausted)\nhint: revoke a device or ask an admin for more slots"
        );
        assert_ne!(e.exit_code(), 0);
    }

    #[test]
    fn not_logged_in_explains_the_mismatch() {
        let e = CliError::NotLoggedIn {
            server: Some("https://b".into()),
            saved_for: Some("https://a".into()),
        };
        assert_eq!(e.to_string(), "not logged in to https://b");
        assert!(e.hint().is_some_and(|h| h.contains("https://a")));
    }
}
