//! `kopa`: the appliance's one command. `serve` runs it; the others check configuration,
//! take and restore backups and manage break-glass accounts, talking to a running
//! appliance through its control socket or, when none runs, to the databases directly.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kopa: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::run(args))
}
