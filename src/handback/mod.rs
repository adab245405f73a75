//! The hand-back agent: our binary (`continuity-agent`, in the operator image) running as a
//! container of each domain's mail pod. It holds every message the standby accepted for a
//! covered user in a [`ledger`] on the mail volume, hands them to the primary once the domain
//! is routed back to it ([`sender`]), and tells the operator and `kubectl continuity` how far
//! that got ([`tracking`]).
//!
//! Postfix's own queue does the first half of the work: the standby's Postfix adds a
//! hand-back copy to every message for a covered user as it accepts it (its
//! `recipient_bcc_maps`, see [`addresses`]), so the message and that extra recipient are on
//! the volume, in Postfix's queue, before the sender gets its 250; Postfix then delivers the
//! user's copy to Dovecot and the hand-back copy to the agent over LMTP ([`lmtp`]), each
//! retried on its own until it is through. What the user does with their copy in the webmail
//! cannot touch the hand-back copy.

pub mod addresses;
pub mod ledger;
pub mod lmtp;
pub mod sender;
pub mod settings;
pub mod tracking;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use crate::{Error, Result};
use ledger::Ledger;
use settings::HandBackSettings;

/// How often the agent reads its settings file again.
pub const SETTINGS_POLL: Duration = Duration::from_secs(2);

/// Where the agent listens and keeps its state.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The ledger's directory, on the mail volume.
    pub data_dir: PathBuf,
    /// Its settings file (from the ConfigMap).
    pub settings_file: PathBuf,
    pub lmtp_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

fn io_error(what: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |source| Error::HandBack { what, source }
}

/// The settings file's content, if it can be read and parsed.
fn read_settings(path: &Path) -> std::result::Result<HandBackSettings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

/// Follows the settings file: the last good content stays in force while it is missing or
/// unreadable (nothing is held back from a primary because of a half-written file).
async fn follow_settings(path: PathBuf, publish: watch::Sender<HandBackSettings>) {
    let mut complained = false;
    loop {
        match read_settings(&path) {
            Ok(settings) => {
                complained = false;
                publish.send_if_modified(|current| {
                    let changed = *current != settings;
                    *current = settings;
                    changed
                });
            }
            Err(error) if !complained => {
                warn!(file = %path.display(), %error, "cannot read the hand-back settings; keeping the last ones");
                complained = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(SETTINGS_POLL).await;
    }
}

/// Runs the agent until `stop` resolves.
pub async fn run(config: AgentConfig, stop: impl Future<Output = ()>) -> Result<()> {
    let dir = config.data_dir.clone();
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&dir))
        .await
        .map_err(|e| Error::HandBack {
            what: "opening the ledger",
            source: std::io::Error::other(e),
        })?
        .map_err(io_error("opening the ledger"))?;
    let counts = ledger.counts();
    info!(dir = %config.data_dir.display(), held = counts.held, pending = counts.pending, "ledger open");
    let ledger = Arc::new(Mutex::new(ledger));
    let arrived = Arc::new(Notify::new());
    let (publish, settings) = watch::channel(HandBackSettings::hold_everything());

    let lmtp = TcpListener::bind(config.lmtp_addr)
        .await
        .map_err(io_error("binding LMTP"))?;
    let http = TcpListener::bind(config.http_addr)
        .await
        .map_err(io_error("binding HTTP"))?;
    info!(
        lmtp = %lmtp.local_addr().map_err(io_error("binding LMTP"))?,
        http = %http.local_addr().map_err(io_error("binding HTTP"))?,
        "agent listening"
    );
    tokio::spawn(follow_settings(config.settings_file.clone(), publish));
    tokio::spawn(lmtp::serve(lmtp, ledger.clone(), arrived.clone()));
    tokio::spawn(sender::run(ledger.clone(), settings.clone(), arrived));
    let app = tracking::router(ledger, settings);
    tokio::select! {
        served = axum::serve(http, app).into_future() => served.map_err(io_error("serving HTTP")),
        () = stop => Ok(()),
    }
}
