//! Key material at rest: the snapshot-signing key and the all-in-one node's identity.
//!
//! With a secret key configured (`CLAWN_SECRET_KEY` or `--secret-key-file`) these files
//! are age files sealed to it ([`clawn_proto::sealed`]); plaintext files found at start
//! are sealed in place. Without one they stay plaintext 0600, as before, and the server
//! warns once. A sealed file that the configured key cannot open stops the start with a
//! hint: a fresh signing key in its place would make every node refuse the control
//! plane's snapshots, so one is made only when the file does not exist at all.
//! [`rekey`] moves the files to a new secret key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clawn_proto::sealed::{self, AtRest, SealError, SecretKey};
use ed25519_dalek::SigningKey;

use crate::config::Config;

/// Why a key file could not be read or written. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file is sealed and cannot be opened with the key given.
    #[error("cannot decrypt {}: {source}\nhint: {hint}", .path.display())]
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SealError,
        /// What to do.
        hint: &'static str,
    },
    /// The file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file opened but does not hold what it should.
    #[error("{}: {message}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl KeyFileError {
    fn sealed(path: &Path, source: SealError) -> Self {
        let hint = match source {
            SealError::NoKey => {
                "this file is encrypted: start with the secret key it was encrypted with \
                 (CLAWN_SECRET_KEY or --secret-key-file)"
            }
            SealError::WrongKey => {
                "give the secret key this file was encrypted with (`clawn-server rekey` \
                 moves files to a new key); a new signing key is not made in its place, \
                 because every node would refuse its snapshots"
            }
            _ => "restore the file from a backup (`clawn-server restore`, docs/backup.md)",
        };
        Self::Sealed {
            path: path.to_path_buf(),
            source,
            hint,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The all-in-one node's identity file under a data directory.
pub fn node_identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node").join("identity.json")
}

/// Reads a key file that may be sealed (`None`: it does not exist). `keys` are tried in
/// turn; a sealed file with none of them is an error, never plaintext.
pub fn read(path: &Path, keys: &[&SecretKey]) -> Result<Option<AtRest>, KeyFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(KeyFileError::io(path, e)),
    };
    sealed::open_at_rest(&bytes, keys)
        .map(Some)
        .map_err(|e| KeyFileError::sealed(path, e))
}

/// Writes a key file atomically, 0600: sealed to `key`, or plaintext without one.
pub fn write(path: &Path, plaintext: &[u8], key: Option<&SecretKey>) -> Result<(), KeyFileError> {
    let bytes = match key {
        Some(k) => k
            .seal(plaintext)
            .map_err(|e| KeyFileError::sealed(path, e))?,
        None => plaintext.to_vec(),
    };
    crate::auth::write_secret_file(path, &bytes).map_err(|e| KeyFileError::io(path, e))
}

/// Parses the signing key's plaintext (standard base64 of 32 bytes).
pub fn parse_signing_key(path: &Path, plaintext: &[u8]) -> Result<SigningKey, KeyFileError> {
    let invalid = |message: &str| KeyFileError::Invalid {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    let text = std::str::from_utf8(plaintext).map_err(|_| invalid("is not base64"))?;
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| invalid("is not base64"))?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| invalid("must hold 32 bytes"))?;
    Ok(SigningKey::from_bytes(&arr))
}

/// The plaintext form of a signing key (what a file without a secret key holds).
pub fn signing_key_text(key: &SigningKey) -> String {
    STANDARD.encode(key.to_bytes())
}

/// Loads the signing key, which must exist (backups, restores).
pub fn load_signing_key(path: &Path, key: Option<&SecretKey>) -> Result<SigningKey, KeyFileError> {
    let keys: Vec<&SecretKey> = key.into_iter().collect();
    match read(path, &keys)? {
        Some(at_rest) => parse_signing_key(path, &at_rest.plaintext),
        None => Err(KeyFileError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no signing key here"),
        )),
    }
}

/// Loads the snapshot-signing key, creating it on first start (0600; sealed when `key` is
/// given). A plaintext file is sealed in place when `key` is given. A sealed file `key`
/// cannot open is an error: the key is never replaced.
pub fn load_or_create_signing_key(
    path: &Path,
    key: Option<&SecretKey>,
) -> Result<SigningKey, KeyFileError> {
    let keys: Vec<&SecretKey> = key.into_iter().collect();
    match read(path, &keys)? {
        Some(at_rest) => {
            let signing = parse_signing_key(path, &at_rest.plaintext)?;
            if let (Some(k), false) = (key, at_rest.sealed) {
                write(path, signing_key_text(&signing).as_bytes(), Some(k))?;
                tracing::info!(path = %path.display(), "encrypted the plaintext signing key with the secret key");
            }
            Ok(signing)
        }
        None => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let signing = SigningKey::from_bytes(&bytes);
            write(path, signing_key_text(&signing).as_bytes(), key)?;
            tracing::info!(path = %path.display(), encrypted = key.is_some(), "created a new snapshot-signing key");
            Ok(signing)
        }
    }
}

/// One file [`rekey`] handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    /// The file.
    pub path: PathBuf,
    /// What was done.
    pub outcome: RekeyOutcome,
}

/// What [`rekey`] did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyOutcome {
    /// It was sealed to the old key (or plaintext) and is now sealed to the new one.
    Resealed,
    /// It was already sealed to the new key (a rekey run again after an interruption).
    AlreadyNew,
}

/// Re-encrypts the signing key and the all-in-one node's identity (when present) with
/// `new`. Every file is opened first, then each is replaced atomically; a file already
/// sealed to `new` is left alone, so running it again after an interruption finishes the
/// job. Files may be opened by the configured key or be plaintext.
pub fn rekey(config: &Config, new: &SecretKey) -> Result<Vec<Rekeyed>, KeyFileError> {
    let mut keys: Vec<&SecretKey> = config.secret_key.iter().collect();
    keys.push(new);
    let mut opened = Vec::new();
    for path in [
        config.signing_key_file.clone(),
        node_identity_path(&config.data_dir),
    ] {
        let required = path == config.signing_key_file;
        match read(&path, &keys)? {
            Some(at_rest) => {
                let already = at_rest.sealed
                    && std::fs::read(&path)
                        .ok()
                        .is_some_and(|b| sealed::open_at_rest(&b, &[new]).is_ok());
                opened.push((path, at_rest.plaintext, already));
            }
            None if required => {
                return Err(KeyFileError::io(
                    &path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no signing key here"),
                ));
            }
            None => {}
        }
    }
    let mut done = Vec::new();
    for (path, plaintext, already) in opened {
        let outcome = if already {
            RekeyOutcome::AlreadyNew
        } else {
            write(&path, &plaintext, Some(new))?;
            RekeyOutcome::Resealed
        };
        done.push(Rekeyed { path, outcome });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!("clawn-keyfiles-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).expect("tmp");
        d
    }

    #[test]
    fn sealed_signing_key_round_trips_and_a_wrong_key_is_refused_not_replaced() {
        let dir = tmp();
        let path = dir.join("signing.key");
        let key = SecretKey::generate();
        let made = load_or_create_signing_key(&path, Some(&key)).expect("create");
        let on_disk = std::fs::read(&path).expect("read");
        assert!(sealed::is_sealed(&on_disk), "created sealed");
        assert!(!String::from_utf8_lossy(&on_disk).contains(&signing_key_text(&made)));
        let again = load_or_create_signing_key(&path, Some(&key)).expect("load");
        assert_eq!(again.to_bytes(), made.to_bytes());

        let wrong =
            load_or_create_signing_key(&path, Some(&SecretKey::generate())).expect_err("wrong key");
        assert!(
            matches!(
                wrong,
                KeyFileError::Sealed {
                    source: SealError::WrongKey,
                    ..
                }
            ),
            "{wrong}"
        );
        assert!(wrong.to_string().contains("hint:"), "{wrong}");
        let missing = load_or_create_signing_key(&path, None).expect_err("no key");
        assert!(
            missing.to_string().contains("CLAWN_SECRET_KEY"),
            "{missing}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), on_disk, "untouched");
        std::fs::remove_dir_all(dir).expect("cleanup");
    }

    #[test]
    fn plaintext_is_sealed_in_place_and_rekey_is_idempotent() {
        let dir = tmp();
        let mut config = Config::for_data_dir(&dir);
        let plain = load_or_create_signing_key(&config.signing_key_file, None).expect("plain");
        let text = std::fs::read_to_string(&config.signing_key_file).expect("read");
        assert_eq!(text.trim(), signing_key_text(&plain));

        let old = SecretKey::generate();
        let migrated =
            load_or_create_signing_key(&config.signing_key_file, Some(&old)).expect("migrate");
        assert_eq!(migrated.to_bytes(), plain.to_bytes());
        let bytes = std::fs::read(&config.signing_key_file).expect("read");
        assert!(sealed::is_sealed(&bytes), "sealed in place");
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(&config.signing_key_file)
                .expect("meta")
                .permissions()
                .mode()
        };
        assert_eq!(mode & 0o777, 0o600);

        config.secret_key = Some(old.clone());
        let new = SecretKey::generate();
        let done = rekey(&config, &new).expect("rekey");
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].outcome, RekeyOutcome::Resealed);
        assert!(load_signing_key(&config.signing_key_file, Some(&old)).is_err());
        let after = load_signing_key(&config.signing_key_file, Some(&new)).expect("new key");
        assert_eq!(after.to_bytes(), plain.to_bytes());
        // Run again (an interrupted rekey, restarted): nothing to do, nothing lost.
        let done = rekey(&config, &new).expect("again");
        assert_eq!(done[0].outcome, RekeyOutcome::AlreadyNew);
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
