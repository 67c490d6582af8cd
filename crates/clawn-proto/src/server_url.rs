//! The one rule for the control plane's base URL, as a user types it (`clawn login
//! --server`, `clawn-node join --server`).
//!
//! Accepted: an `http` or `https` URL with a host and an optional path; a bare host
//! (`vpn.example.com`) means `https://`. Refused: other schemes, no host, a query or fragment
//! (they would be dropped silently when paths are appended) and credentials (they would be
//! saved and printed). The result has no trailing slash, so paths can be appended with `/`.

use url::Url;

/// Why a server URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{url:?} is not a usable server URL: {reason}")]
pub struct ServerUrlError {
    /// The input as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Normalises a server URL by the rules in the module docs.
pub fn normalise(input: &str) -> Result<String, ServerUrlError> {
    let bad = |reason: &str| ServerUrlError {
        url: input.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" && url.scheme() != "http" {
        return Err(bad("the scheme must be https or http"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("it must not contain credentials"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        let ok = |s: &str| normalise(s).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("https://vpn.example.com/"), "https://vpn.example.com");
        assert_eq!(ok("vpn.example.com"), "https://vpn.example.com");
        assert_eq!(ok(" http://127.0.0.1:8080 "), "http://127.0.0.1:8080");
        assert_eq!(ok("http://10.0.0.1:8080//"), "http://10.0.0.1:8080");
        assert_eq!(ok("HTTPS://VPN.example.com"), "https://vpn.example.com");
        assert_eq!(
            ok("https://example.com/clawn/"),
            "https://example.com/clawn"
        );
        assert_eq!(ok("[::1]:8080"), "https://[::1]:8080");
    }

    #[test]
    fn unusable_server_urls_are_refused_with_a_reason() {
        for (bad, reason) in [
            ("", "it is empty"),
            ("   ", "it is empty"),
            ("ftp://x", "the scheme must be https or http"),
            ("https://x/?a=b", "it must not have a query or fragment"),
            ("https://x/#top", "it must not have a query or fragment"),
            ("https://u:p@x", "it must not contain credentials"),
            ("https://u@x", "it must not contain credentials"),
        ] {
            assert_eq!(
                normalise(bad).map_err(|e| e.reason),
                Err(reason.to_string()),
                "{bad}"
            );
        }
        assert!(normalise("https://").is_err());
        assert!(normalise("https://exa mple.com").is_err());
    }
}
