//! The maintenance subcommands of the `clawn-server` binary: `keygen`, `rekey`, `backup`
//! and `restore`. Each prints what it does, one line per step, and its outcome; errors go
//! to stderr with a hint. The work itself is in the library (`keyfiles`, `backup`), where
//! the tests drive it.

use std::path::Path;
use std::process::ExitCode;

use clawn_proto::sealed::SecretKey;
use clawn_server::backup::{self, PG_DUMP_HINT, PG_RESTORE_HINT};
use clawn_server::config::{Config, ServerCommand, read_secret_key};
use clawn_server::keyfiles::{self, RekeyOutcome};

/// Runs a subcommand other than `keygen`.
pub async fn run(command: ServerCommand, config: Config) -> ExitCode {
    let result = match command {
        ServerCommand::Keygen { out } => return keygen(out.as_deref()),
        ServerCommand::Rekey {
            new_secret_key_file,
        } => rekey(&config, &new_secret_key_file),
        ServerCommand::Backup { out, recipient } => backup(&config, &out, &recipient).await,
        ServerCommand::Restore {
            from,
            force,
            identity,
        } => restore(&config, &from, force, identity.as_deref()).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

/// `clawn-server keygen [--out FILE]`.
pub fn keygen(out: Option<&Path>) -> ExitCode {
    let key = SecretKey::generate();
    match out {
        None => {
            print!("{}", key.to_file_text());
            eprintln!("public key: {}", key.recipient());
            ExitCode::SUCCESS
        }
        Some(path) => {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(key.to_file_text().as_bytes())?;
                    f.sync_all()
                });
            match written {
                Ok(()) => {
                    println!("wrote a new secret key to {} (0600)", path.display());
                    println!("public key: {}", key.recipient());
                    println!(
                        "keep a copy off this machine: without it the encrypted key files and \
                         backups cannot be opened"
                    );
                    ExitCode::SUCCESS
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    eprintln!(
                        "error: {} exists\nhint: a key file is never overwritten; pick another path",
                        path.display()
                    );
                    ExitCode::from(2)
                }
                Err(e) => {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn rekey(config: &Config, new_file: &Path) -> Result<(), String> {
    let new = read_secret_key(new_file).map_err(|e| e.to_string())?;
    if config.secret_key.as_ref() == Some(&new) {
        return Err(format!(
            "{} is the key already in use\nhint: make a new one with `clawn-server keygen --out FILE`",
            new_file.display()
        ));
    }
    println!("re-encrypting the key material to {}", new.recipient());
    let done = keyfiles::rekey(config, &new).map_err(|e| e.to_string())?;
    for r in &done {
        let what = match r.outcome {
            RekeyOutcome::Resealed => "re-encrypted",
            RekeyOutcome::AlreadyNew => "already encrypted with the new key",
        };
        println!("  {}: {what}", r.path.display());
    }
    println!(
        "done: start the server with --secret-key-file {} (or its key in CLAWN_SECRET_KEY).\n\
         Backups made before now are encrypted to the old key: keep it as long as you keep them.",
        new_file.display()
    );
    Ok(())
}

async fn backup(config: &Config, out: &Path, recipients: &[String]) -> Result<(), String> {
    let report = backup::backup(config, out, recipients, |line| println!("{line}"))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} bytes: {}), encrypted to {}",
        out.display(),
        report.bytes,
        report.manifest.files.join(", "),
        report.recipients.join(", ")
    );
    if report.manifest.database == "postgres" {
        println!(
            "the PostgreSQL database is not in the archive: dump it beside it with\n  {PG_DUMP_HINT}"
        );
    }
    Ok(())
}

async fn restore(
    config: &Config,
    from: &Path,
    force: bool,
    identity: Option<&Path>,
) -> Result<(), String> {
    let identity = identity
        .map(read_secret_key)
        .transpose()
        .map_err(|e| e.to_string())?;
    let report = backup::restore(config, from, force, identity.as_ref(), |line| {
        println!("{line}")
    })
    .await
    .map_err(|e| e.to_string())?;
    if report.manifest.database == "postgres" {
        println!("restore the PostgreSQL database from its dump with\n  {PG_RESTORE_HINT}");
    }
    println!(
        "restored {} file(s): start the server; nodes reconnect with their existing credentials",
        report.written.len()
    );
    Ok(())
}
