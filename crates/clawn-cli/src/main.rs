//! The `clawn` binary: parse the command line, run it, report failures.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use clawn_cli::cli::Cli;
use clawn_cli::{Env, run};

fn main() -> ExitCode {
    // reqwest is built with `rustls-no-provider`: pick ring before any client exists. An error
    // only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, Env::from_process())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}
