//! Secrets: argon2id password hashing, random tokens stored only as SHA-256, atomic
//! 0600 secret files, and the login rate limiters.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Token kinds, visible as a prefix so leaked tokens are recognisable by secret scanners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Browser or CLI session.
    Session,
    /// Personal API token.
    ApiToken,
    /// CSRF token.
    Csrf,
    /// Node join token.
    Join,
    /// Node credential.
    Node,
    /// One-time setup token.
    Setup,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Session => "clawn_s_",
            Self::ApiToken => "clawn_pat_",
            Self::Csrf => "clawn_csrf_",
            Self::Join => "clawn_join_",
            Self::Node => "clawn_node_",
            Self::Setup => "clawn_setup_",
        }
    }

    /// Whether `token` carries this kind's prefix.
    pub fn matches(self, token: &str) -> bool {
        token.starts_with(self.prefix())
    }
}

/// A new random 256-bit token: `clawn_<kind>_<base64url>`.
pub fn new_token(kind: TokenKind) -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of a token, hex. Tokens are 256-bit random, so a fast hash is the right tool:
/// what is stored can not be used to authenticate.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of two hashes.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

fn argon2() -> Argon2<'static> {
    // OWASP: argon2id, m = 19 MiB, t = 2, p = 1.
    let params = Params::new(19_456, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (CPU-heavy: call from `spawn_blocking`).
pub fn hash_password(password: &str) -> Result<String, String> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Verifies a password against a PHC string (CPU-heavy: call from `spawn_blocking`).
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Minimum password length.
pub const MIN_PASSWORD_LEN: usize = 10;

/// Writes a file readable only by its owner, atomically.
pub fn write_secret_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(content)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable once the directory is synced.
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

/// Login rate limiters: attempts per account and per client address.
#[derive(Clone)]
pub struct LoginLimiter {
    per_account: Arc<DefaultKeyedRateLimiter<String>>,
    per_addr: Arc<DefaultKeyedRateLimiter<String>>,
    calls: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginLimiter")
    }
}

impl LoginLimiter {
    /// Budgets per minute.
    pub fn new(per_account: u32, per_addr: u32) -> Self {
        let q = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN));
        Self {
            per_account: Arc::new(RateLimiter::keyed(q(per_account))),
            per_addr: Arc::new(RateLimiter::keyed(q(per_addr))),
            calls: Arc::default(),
        }
    }

    /// Takes one attempt from both budgets; `Err(seconds)` says when to retry.
    pub fn check(&self, account: &str, addr: &str) -> Result<(), u64> {
        let clock = governor::clock::DefaultClock::default();
        use governor::clock::Clock as _;
        // Forget keys whose budget has fully refilled, so the maps stay bounded.
        if self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % 1024
            == 1023
        {
            self.per_account.retain_recent();
            self.per_addr.retain_recent();
        }
        let account: String = account.chars().take(254).collect();
        for (limiter, key) in [
            (&self.per_addr, addr),
            (&self.per_account, account.as_str()),
        ] {
            if let Err(not_until) = limiter.check_key(&key.to_string()) {
                return Err(not_until.wait_time_from(clock.now()).as_secs().max(1));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_owasp_argon2id() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let a = new_token(TokenKind::Session);
        let b = new_token(TokenKind::Session);
        assert_ne!(a, b);
        assert!(TokenKind::Session.matches(&a));
        assert_eq!(a.len(), "clawn_s_".len() + 43);
        let h = token_hash(&a);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&a));
        assert!(hashes_equal(&h, &token_hash(&a)));
        assert!(!hashes_equal(&h, &token_hash(&b)));
    }

    #[test]
    fn limiter_blocks_after_budget() {
        let l = LoginLimiter::new(2, 100);
        assert!(l.check("a@x", "1.1.1.1").is_ok());
        assert!(l.check("a@x", "1.1.1.1").is_ok());
        assert!(l.check("a@x", "1.1.1.1").is_err());
        assert!(l.check("b@x", "1.1.1.1").is_ok());
    }
}
