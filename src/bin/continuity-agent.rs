//! The hand-back agent of a standby's mail pod (see `continuity_operator::handback`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;

use continuity_operator::handback::{self, AgentConfig};
use continuity_operator::shutdown;
use continuity_operator::telemetry::logging::{self, LogFormat};

/// Holds the mail a continuity standby received and hands it back to the primary.
#[derive(Parser, Debug)]
#[command(version)]
struct Flags {
    /// The ledger's directory (on the mail volume).
    #[arg(long, default_value = "/var/mail-data/handback")]
    data_dir: PathBuf,
    /// The settings file the operator renders.
    #[arg(long, default_value = "/etc/continuity/agent/handback.json")]
    settings: PathBuf,
    /// Where Postfix delivers hand-back copies (LMTP).
    #[arg(long, default_value = "127.0.0.1:2426")]
    lmtp_addr: SocketAddr,
    /// The tracking endpoint.
    #[arg(long, default_value = "0.0.0.0:8025")]
    http_addr: SocketAddr,
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> ExitCode {
    let flags = Flags::parse();
    logging::init(flags.log_format);
    let config = AgentConfig {
        data_dir: flags.data_dir,
        settings_file: flags.settings,
        lmtp_addr: flags.lmtp_addr,
        http_addr: flags.http_addr,
    };
    match handback::run(config, shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error!(%error, "exiting");
            ExitCode::FAILURE
        }
    }
}
