//! The standby mail system of a domain, as configuration: what Postfix and Dovecot run with
//! (rendered here, pure) and where things live in the mail pod ([`layout`]). The Kubernetes
//! objects that carry it are built in [`crate::resources::mail`] and
//! [`crate::resources::webmail`].
//!
//! Postfix receives the domain's mail on SMTP and hands the covered addresses' mail to Dovecot
//! over LMTP; any other address of the domain is deferred with a 4xx, so the sender retries
//! and the mail reaches the primary once it is back. Dovecot stores the mail (and expunges it
//! after the retention period) and serves IMAP to the webmail; users log in with emergency
//! passwords, stored only as SHA512-CRYPT hashes. Postfix's submission port, authenticated
//! through Dovecot, lets the webmail send.

pub mod dovecot;
pub mod passwords;
pub mod postfix;
pub mod webmail;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;

use crate::resources::packed;

/// The images the standby runs unless configured otherwise: the project's own (`images/`),
/// built from Debian bookworm's packages, the very ones the tests run the rendered
/// configuration with, and started by the end-to-end suite on a real node.
pub mod images {
    /// Postfix and Dovecot (2.3: the rendered configuration is 2.3's) in one image, with the
    /// `vmail` user (uid 1000) Dovecot runs as; both containers of the mail pod run it.
    pub const POSTFIX: &str = concat!("ghcr.io/mailops/continuity-standby-mail:", env!("CARGO_PKG_VERSION"));
    /// The same image as [`POSTFIX`].
    pub const DOVECOT: &str = POSTFIX;
    /// Roundcube behind Apache, as www-data (uid 33) on port 8000, reading the operator's
    /// settings from `/var/roundcube/config/*.php`.
    pub const WEBMAIL: &str = concat!("ghcr.io/mailops/continuity-webmail:", env!("CARGO_PKG_VERSION"));
    /// The operator's image, whose `continuity-agent` binary runs in every mail pod.
    pub const AGENT: &str = concat!("ghcr.io/mailops/continuity-operator:", env!("CARGO_PKG_VERSION"));
}

/// How often the mail containers look for a changed configuration, in seconds. The kubelet
/// itself updates mounted ConfigMaps and Secrets within about a minute.
pub const RELOAD_POLL_SECONDS: u32 = 5;

/// The `binaryData` key of the recipient table (every covered address) in the configuration
/// ConfigMap, which the gateway's journal copies are made from. It is the one table with a
/// line per address, so it is gzipped ([`crate::resources::packed`]): about five times as
/// many addresses fit one object. Postfix's run script unpacks it to [`layout::TABLES`].
pub const RECIPIENTS_KEY: &str = "recipients.gz";

/// The mail pod's gzipped files: their `binaryData` key and their path under
/// [`layout::CONFIG`].
pub const PACKED_FILES: [(&str, &str); 1] = [(RECIPIENTS_KEY, "postfix/recipients.gz")];

/// The mail pod's configuration files: their key in the ConfigMap and their path under
/// [`layout::CONFIG`].
pub const CONFIG_FILES: [(&str, &str); 10] = [
    ("main.cf", "postfix/main.cf"),
    ("master.cf", "postfix/master.cf"),
    ("senders", "postfix/senders"),
    ("journal", "postfix/journal"),
    ("handback", "postfix/handback"),
    ("transport", "postfix/transport"),
    (crate::handback::settings::KEY, crate::handback::settings::PATH),
    ("dovecot.conf", "dovecot/dovecot.conf"),
    ("run-postfix.sh", "run/postfix.sh"),
    ("run-dovecot.sh", "run/dovecot.sh"),
];

/// The key (and file name under [`layout::SECRETS`]) of the password hashes in their Secret.
pub const PASSWD_KEY: &str = "passwd";

/// What the mail pod's configuration is made of.
#[derive(Clone, Debug)]
pub struct MailSettings<'a> {
    /// The protected mail domain.
    pub domain: &'a str,
    /// The standby's host name.
    pub hostname: &'a str,
    /// Where outgoing mail is relayed, if not delivered directly.
    pub relay_host: Option<&'a str>,
    /// Days mail is kept.
    pub retention_days: u32,
    /// The covered addresses, with their emergency password hashes where they have one.
    pub accounts: &'a [Account],
    /// What the hand-back agent does now.
    pub handback: &'a crate::handback::settings::HandBackSettings,
}

/// A mail container's main process, as a shell script.
struct RunScript<'a> {
    /// What it runs, for its messages.
    server: &'a str,
    /// Commands run first (directories on the volume).
    setup: &'a str,
    /// The files whose change asks for a reload (a shell glob or path).
    watched: &'a str,
    /// Runs the server in the foreground.
    start: &'a str,
    /// Stops it (`$server` is its process id).
    stop: &'a str,
    /// Makes it read its configuration again.
    reload: &'a str,
}

/// Starts the server in the background and, until it exits, compares the content of the
/// watched files every [`RELOAD_POLL_SECONDS`]: the kubelet replaces mounted files at once,
/// and a change is followed by a reload. SIGTERM (the kubelet stopping the container) stops
/// the server cleanly.
fn run_script(script: &RunScript<'_>) -> String {
    format!(
        r#"#!/bin/sh
# Runs {server} on the continuity standby, generated by continuity-operator: do not edit.
set -eu
{setup}
fingerprint() {{ cat {watched} | cksum; }}
seen=$(fingerprint)
{start} &
server=$!
trap '{stop}; wait "$server"; exit 0' TERM INT
while kill -0 "$server" 2>/dev/null; do
  sleep {poll} &
  wait $! || true
  now=$(fingerprint)
  if [ "$now" != "$seen" ]; then
    echo "continuity: the configuration changed; reloading {server}"
    {reload} && seen=$now
  fi
done
wait "$server"
"#,
        server = script.server,
        setup = script.setup,
        watched = script.watched,
        start = script.start,
        stop = script.stop,
        reload = script.reload,
        poll = RELOAD_POLL_SECONDS,
    )
}

/// What the configuration ConfigMap holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFiles {
    /// Every file of [`CONFIG_FILES`], by key (its `data`).
    pub text: BTreeMap<String, String>,
    /// Every file of [`PACKED_FILES`], gzipped, by key (its `binaryData`).
    pub packed: BTreeMap<String, ByteString>,
}

/// The ConfigMap's files.
pub fn config_files(settings: &MailSettings<'_>) -> ConfigFiles {
    let addresses: BTreeSet<String> = settings.accounts.iter().map(|a| a.address.clone()).collect();
    let postfix_settings = postfix::Settings {
        domain: settings.domain,
        hostname: settings.hostname,
        relay_host: settings.relay_host,
    };
    let files = [
        postfix::main_cf(&postfix_settings),
        postfix::master_cf(),
        postfix::senders(settings.domain),
        postfix::journal(settings.domain),
        postfix::handback(settings.domain),
        postfix::transport(settings.domain),
        settings.handback.render(),
        dovecot::dovecot_conf(settings.domain, settings.retention_days),
        postfix::run_script(),
        dovecot::run_script(),
    ];
    ConfigFiles {
        text: CONFIG_FILES
            .iter()
            .zip(files)
            .map(|((key, _), content)| ((*key).to_owned(), content))
            .collect(),
        packed: BTreeMap::from([(
            RECIPIENTS_KEY.to_owned(),
            packed::pack(&postfix::recipients(&addresses)),
        )]),
    }
}

/// The password file (the Secret's [`PASSWD_KEY`]).
pub fn passwd_file(settings: &MailSettings<'_>) -> String {
    dovecot::passwd(settings.accounts)
}

/// Where things live in the mail pod, and the ports its services listen on. Tests that run the
/// rendered configuration outside a pod rewrite exactly these.
pub mod layout {
    /// The persistent volume: Postfix's queue and data, Dovecot's mail store and state.
    pub const DATA: &str = "/var/mail-data";
    /// Postfix's tables unpacked from the gzipped files of the configuration, on the volume.
    pub const TABLES: &str = "/var/mail-data/tables";
    /// The rendered configuration (a ConfigMap).
    pub const CONFIG: &str = "/etc/continuity";
    /// The password hashes (a Secret).
    pub const SECRETS: &str = "/etc/continuity-secrets";
    /// Dovecot's runtime directory (an emptyDir).
    pub const RUN: &str = "/run/dovecot";
    /// The unprivileged user Dovecot and the mail store run as (the Dovecot image's).
    pub const MAIL_USER: &str = "vmail";
    /// Its uid and gid.
    pub const MAIL_UID: i64 = 1000;
    /// SMTP from gateways (the Service maps 25 to it).
    pub const SMTP_PORT: u16 = 2525;
    /// Submission for the webmail (the Service maps 587 to it).
    pub const SUBMISSION_PORT: u16 = 5870;
    /// IMAP for the webmail (the Service maps 143 to it).
    pub const IMAP_PORT: u16 = 1143;
    /// LMTP from Postfix to Dovecot, inside the pod only.
    pub const LMTP_PORT: u16 = 2424;
    /// LMTP from Postfix to the hand-back agent, inside the pod only.
    pub const AGENT_LMTP_PORT: u16 = 2426;
    /// The hand-back agent's directory on the volume.
    pub const HANDBACK_DIR: &str = "/var/mail-data/handback";
    /// Dovecot's authentication for Postfix's submission, inside the pod only.
    pub const AUTH_PORT: u16 = 12345;
    /// The mail Service's IMAP port, where the webmail reads mail.
    pub const IMAP_SERVICE_PORT: u16 = 143;
    /// The mail Service's submission port, where the webmail sends mail.
    pub const SUBMISSION_SERVICE_PORT: u16 = 587;
    /// Roundcube's HTTP port (its non-root image's).
    pub const WEBMAIL_PORT: u16 = 8000;
    /// Roundcube's own configuration directory, whose `*.php` files its image includes.
    pub const WEBMAIL_CONFIG: &str = "/var/roundcube/config";
    /// Roundcube's scratch space (an emptyDir).
    pub const WEBMAIL_TEMP: &str = "/tmp/roundcube-temp";
}

/// A covered address and, when it has one, the hash of its emergency password (hashed by the
/// controller before the configuration is built: no plaintext reaches the builders).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub address: String,
    pub password_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_default_images_are_the_operators() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/continuity-operator/values.yaml");
        let text = std::fs::read_to_string(path).expect("values.yaml");
        let values: serde_json::Value = serde_saphyr::from_str(&text).expect("values.yaml parses");
        let chart = &values["standby"]["images"];
        assert_eq!(chart["postfix"].as_str(), Some(images::POSTFIX));
        assert_eq!(chart["dovecot"].as_str(), Some(images::DOVECOT));
        assert_eq!(chart["webmail"].as_str(), Some(images::WEBMAIL));
    }

    #[test]
    fn every_config_file_is_rendered_and_passwords_stay_out_of_it() {
        let hash = passwords::hash("correct horse", &passwords::salt("uid-1", "alice@example.com")).unwrap();
        let accounts = [Account {
            address: "alice@example.com".into(),
            password_hash: Some(hash.clone()),
        }];
        let settings = MailSettings {
            domain: "example.com",
            hostname: "standby.example.com",
            relay_host: None,
            retention_days: 90,
            accounts: &accounts,
            handback: &crate::handback::settings::HandBackSettings::hold_everything(),
        };
        let files = config_files(&settings);
        assert_eq!(files.text.len(), CONFIG_FILES.len());
        assert!(CONFIG_FILES.iter().all(|(key, _)| files.text.contains_key(*key)));
        assert_eq!(files.packed.len(), PACKED_FILES.len());
        let recipients = packed::unpack(&files.packed[RECIPIENTS_KEY]).expect("a packed recipient map");
        assert!(
            recipients.contains("alice@example.com alice@example.com\n"),
            "{recipients}"
        );
        assert!(
            files
                .text
                .values()
                .chain([&recipients])
                .all(|content| !content.contains(&hash)),
            "hashes stay in the Secret"
        );
        assert!(passwd_file(&settings).contains(&format!("alice@example.com:{hash}\n")));
    }
}
