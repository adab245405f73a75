//! `kubectl continuity`: the kubectl plugin (see [`continuity_operator::plugin`]).

use std::process::ExitCode;

use clap::Parser;

use continuity_operator::plugin::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    match plugin::run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}
