//! Secrets at rest (feature `sealed`): key files and backups encrypted with
//! [age](https://age-encryption.org) to an X25519 key, the one helper the control plane
//! and the node agent share.
//!
//! A [`SecretKey`] is an age X25519 identity (`AGE-SECRET-KEY-1…`, the format of
//! `age-keygen` and `clawn-server keygen`). A sealed file is a plain binary age file, so
//! an operator can always open one with the `age` tool and the same key. A file that does
//! not start with the age header is plaintext (what a node or server wrote before it was
//! given a key): [`open_at_rest`] reads both, so plaintext files keep working and callers
//! can encrypt them in place.
//!
//! The cryptography is the `age` crate's; nothing here combines primitives. This module
//! does no I/O of its own: it works on byte slices and on the readers and writers it is
//! given.

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret as _;

/// The first bytes of every binary age file.
const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Why a secret could not be sealed or opened. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The data is encrypted, and no key was given.
    #[error("it is encrypted and no secret key was given")]
    NoKey,
    /// None of the given keys opens the data.
    #[error(
        "it is encrypted to another key: the secret key given is not the one it was encrypted with"
    )]
    WrongKey,
    /// The data is not a complete, intact age file (truncated, damaged, or not age).
    #[error("it is truncated or damaged ({0})")]
    Corrupt(String),
    /// The text is not an age X25519 secret key.
    #[error("not an age X25519 secret key (expected one line `AGE-SECRET-KEY-1…`)")]
    InvalidKey,
    /// The text is not an age X25519 public key.
    #[error("`{0}` is not an age X25519 recipient (age1…)")]
    InvalidRecipient(String),
    /// Encryption failed (an I/O error of the writer, or no recipient).
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
}

/// An age X25519 identity: the master key that seals key files and backups. Its `Debug`
/// shows only the public recipient.
#[derive(Clone)]
pub struct SecretKey(age::x25519::Identity);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.recipient())
    }
}

impl PartialEq for SecretKey {
    fn eq(&self, other: &Self) -> bool {
        // Equal identities have equal public keys, and the public key is not secret.
        self.recipient() == other.recipient()
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Self {
        Self(age::x25519::Identity::generate())
    }

    /// Parses a key file or variable: `#` comment lines and blank lines are skipped, and
    /// exactly one `AGE-SECRET-KEY-1…` line must remain.
    pub fn parse(text: &str) -> Result<Self, SealError> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (Some(line), None) = (lines.next(), lines.next()) else {
            return Err(SealError::InvalidKey);
        };
        age::x25519::Identity::from_str(line)
            .map(Self)
            .map_err(|_| SealError::InvalidKey)
    }

    /// The public half, `age1…`: what backups are encrypted to. Not secret.
    pub fn recipient(&self) -> Recipient {
        Recipient(self.0.to_public())
    }

    /// The key in the file format of `age-keygen`: two comment lines (what it is and its
    /// public key) and the secret line. Secret: write it 0600, never log it.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Clawn secret key (age X25519 identity): keep it secret, keep a copy off this machine.\n\
             # public key: {}\n{}\n",
            self.recipient(),
            self.0.to_string().expose_secret()
        )
    }

    /// Encrypts `plaintext` to this key.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        seal_to(&[self.recipient()], plaintext)
    }
}

/// An age X25519 public key (`age1…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient(age::x25519::Recipient);

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Recipient {
    type Err = SealError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        age::x25519::Recipient::from_str(s.trim())
            .map(Self)
            .map_err(|_| SealError::InvalidRecipient(s.trim().chars().take(100).collect()))
    }
}

/// Whether `bytes` is an age file (sealed) rather than plaintext.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.starts_with(AGE_MAGIC)
}

/// Encrypts `plaintext` to `recipients` (any of whose keys will open it).
pub fn seal_to(recipients: &[Recipient], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = seal_stream(recipients, &mut out)?;
    w.write_all(plaintext)
        .map_err(|e| SealError::Encrypt(e.to_string()))?;
    w.finish()?;
    Ok(out)
}

/// A file read from disk that may have been sealed.
#[derive(Debug)]
pub struct AtRest {
    /// The plaintext.
    pub plaintext: Vec<u8>,
    /// Whether it was sealed (`false`: stored in plaintext).
    pub sealed: bool,
}

/// Opens the bytes of a file that may be sealed: plaintext comes back as it is, an age
/// file is opened with whichever of `keys` it was sealed to. A sealed file with no keys
/// is [`SealError::NoKey`], never plaintext.
pub fn open_at_rest(bytes: &[u8], keys: &[&SecretKey]) -> Result<AtRest, SealError> {
    if !is_sealed(bytes) {
        return Ok(AtRest {
            plaintext: bytes.to_vec(),
            sealed: false,
        });
    }
    let mut plaintext = Vec::with_capacity(bytes.len());
    open_stream(keys, bytes)?
        .read_to_end(&mut plaintext)
        .map_err(|e| SealError::Corrupt(e.to_string()))?;
    Ok(AtRest {
        plaintext,
        sealed: true,
    })
}

/// A writer that encrypts what it is given; [`SealWriter::finish`] must be called, or the
/// output is truncated (and will not open).
pub struct SealWriter<W: Write>(age::stream::StreamWriter<W>);

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> SealWriter<W> {
    /// Writes the final chunk and returns the inner writer.
    pub fn finish(self) -> Result<W, SealError> {
        self.0
            .finish()
            .map_err(|e| SealError::Encrypt(e.to_string()))
    }
}

/// Starts encrypting to `recipients` into `out` (streaming: for archives).
pub fn seal_stream<W: Write>(recipients: &[Recipient], out: W) -> Result<SealWriter<W>, SealError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| &r.0 as &dyn age::Recipient))
            .map_err(|e| SealError::Encrypt(e.to_string()))?;
    encryptor
        .wrap_output(out)
        .map(SealWriter)
        .map_err(|e| SealError::Encrypt(e.to_string()))
}

/// Starts decrypting `input` with whichever of `keys` it was sealed to (streaming: for
/// archives). The header is checked here; each chunk is authenticated as it is read, and
/// a truncated stream fails with an I/O error of kind `InvalidData` or `UnexpectedEof`
/// at its end, so read to the end before trusting anything.
pub fn open_stream<'a, R: Read + 'a>(
    keys: &[&SecretKey],
    input: R,
) -> Result<impl Read + 'a, SealError> {
    if keys.is_empty() {
        return Err(SealError::NoKey);
    }
    let decryptor = age::Decryptor::new(input).map_err(decrypt_error)?;
    decryptor
        .decrypt(keys.iter().map(|k| &k.0 as &dyn age::Identity))
        .map_err(decrypt_error)
}

fn decrypt_error(e: age::DecryptError) -> SealError {
    match e {
        age::DecryptError::NoMatchingKeys => SealError::WrongKey,
        age::DecryptError::InvalidHeader => {
            SealError::Corrupt("not an age file, or its header is cut short".into())
        }
        other => SealError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_the_same_key_only() {
        let key = SecretKey::generate();
        let sealed = key.seal(b"the secret").expect("seal");
        assert!(is_sealed(&sealed));
        assert!(!sealed.windows(10).any(|w| w == b"the secret"));
        let open = open_at_rest(&sealed, &[&key]).expect("open");
        assert!(open.sealed);
        assert_eq!(open.plaintext, b"the secret");
        let other = SecretKey::generate();
        assert!(matches!(
            open_at_rest(&sealed, &[&other]),
            Err(SealError::WrongKey)
        ));
        assert!(matches!(open_at_rest(&sealed, &[]), Err(SealError::NoKey)));
        // Either of two keys opens it when one is right (rekey retries with both).
        assert!(open_at_rest(&sealed, &[&other, &key]).is_ok());
    }

    #[test]
    fn plaintext_passes_through_and_truncation_is_refused() {
        let key = SecretKey::generate();
        let plain = open_at_rest(b"{\"a\":1}", &[&key]).expect("plain");
        assert!(!plain.sealed);
        assert_eq!(plain.plaintext, b"{\"a\":1}");
        let sealed = key.seal(&[7u8; 200_000]).expect("seal");
        for cut in [sealed.len() - 1, sealed.len() - 70_000, 40] {
            let err = open_at_rest(&sealed[..cut], &[&key]).expect_err("truncated");
            assert!(matches!(err, SealError::Corrupt(_)), "cut at {cut}: {err}");
        }
    }

    #[test]
    fn key_text_round_trips_and_hides_the_secret() {
        let key = SecretKey::generate();
        let text = key.to_file_text();
        assert!(text.contains("AGE-SECRET-KEY-1"));
        assert!(text.contains(&key.recipient().to_string()));
        assert_eq!(SecretKey::parse(&text).expect("parse"), key);
        let debug = format!("{key:?}");
        assert!(debug.contains("age1") && !debug.contains("AGE-SECRET-KEY"));
        assert!(matches!(
            SecretKey::parse("AGE-SECRET-KEY-1NOPE"),
            Err(SealError::InvalidKey)
        ));
        assert!(matches!(SecretKey::parse(""), Err(SealError::InvalidKey)));
        let two = format!("{text}{text}");
        assert!(matches!(SecretKey::parse(&two), Err(SealError::InvalidKey)));
        let r: Recipient = key.recipient().to_string().parse().expect("recipient");
        assert_eq!(r, key.recipient());
        assert!("age1bogus".parse::<Recipient>().is_err());
    }
}
