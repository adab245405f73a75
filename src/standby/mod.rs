//! The standby mail system of a domain, as configuration: what Postfix and Dovecot run with
//! (rendered here, pure) and where things live in the mail pod ([`layout`]). The Kubernetes
//! objects that carry it are built in [`crate::resources::standby`].
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

use passwords::PasswordHasher;

/// The images the standby runs unless configured otherwise, and why these.
pub mod images {
    /// Postfix 3.10 from Debian (trixie), in boky/postfix, a widely used and maintained image:
    /// Debian's build of Postfix is the one the tests run the rendered configuration in. Its
    /// own entrypoint is not used.
    pub const POSTFIX: &str = "docker.io/boky/postfix:v5.1.0-debian";
    /// Dovecot's own image, the last 2.3 release: the rendered configuration is Dovecot 2.3's
    /// (2.4 changed the syntax), and the image has the `vmail` user (uid 1000) Dovecot runs as.
    pub const DOVECOT: &str = "docker.io/dovecot/dovecot:2.3.21.1";
    /// Roundcube's own image, its non-root variant: Apache as `www-data` on port 8000.
    pub const WEBMAIL: &str = "docker.io/roundcube/roundcubemail:1.6.15-apache-nonroot";
}

/// How often the mail containers look for a changed configuration, in seconds. The kubelet
/// itself updates mounted ConfigMaps and Secrets within about a minute.
pub const RELOAD_POLL_SECONDS: u32 = 5;

/// The mail pod's configuration files: their key in the ConfigMap and their path under
/// [`layout::CONFIG`].
pub const CONFIG_FILES: [(&str, &str); 7] = [
    ("main.cf", "postfix/main.cf"),
    ("master.cf", "postfix/master.cf"),
    ("recipients", "postfix/recipients"),
    ("dovecot.conf", "dovecot/dovecot.conf"),
    ("users", "dovecot/users"),
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
    /// The ContinuityDomain's uid (salts the password hashes).
    pub domain_uid: &'a str,
    /// The standby's host name.
    pub hostname: &'a str,
    /// Where outgoing mail is relayed, if not delivered directly.
    pub relay_host: Option<&'a str>,
    /// Days mail is kept.
    pub retention_days: u32,
    /// The covered addresses, with their emergency passwords where they have one.
    pub mailboxes: &'a [Mailbox],
}

/// The ConfigMap's data: every file of [`CONFIG_FILES`], by key.
pub fn config_files(settings: &MailSettings<'_>) -> BTreeMap<String, String> {
    let addresses: BTreeSet<String> = settings.mailboxes.iter().map(|m| m.address.clone()).collect();
    let postfix_settings = postfix::Settings {
        domain: settings.domain,
        hostname: settings.hostname,
        relay_host: settings.relay_host,
    };
    let files = [
        postfix::main_cf(&postfix_settings),
        postfix::master_cf(),
        postfix::recipients(&addresses),
        dovecot::dovecot_conf(settings.domain, settings.retention_days),
        dovecot::users(settings.mailboxes),
        postfix::run_script(),
        dovecot::run_script(),
    ];
    CONFIG_FILES
        .iter()
        .zip(files)
        .map(|((key, _), content)| ((*key).to_owned(), content))
        .collect()
}

/// The password file (the Secret's [`PASSWD_KEY`]).
pub fn passwd_file(settings: &MailSettings<'_>, hasher: &PasswordHasher) -> String {
    dovecot::passwd(settings.domain_uid, settings.mailboxes, hasher)
}

/// Where things live in the mail pod, and the ports its services listen on. Tests that run the
/// rendered configuration outside a pod rewrite exactly these.
pub mod layout {
    /// The persistent volume: Postfix's queue and data, Dovecot's mail store and state.
    pub const DATA: &str = "/var/mail-data";
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
    /// Dovecot's authentication for Postfix's submission, inside the pod only.
    pub const AUTH_PORT: u16 = 12345;
    /// Roundcube's HTTP port (its non-root image's).
    pub const WEBMAIL_PORT: u16 = 8000;
    /// Roundcube's own configuration directory, whose `*.php` files its image includes.
    pub const WEBMAIL_CONFIG: &str = "/var/roundcube/config";
    /// Roundcube's scratch space (an emptyDir).
    pub const WEBMAIL_TEMP: &str = "/tmp/roundcube-temp";
}

/// A covered address and, when it has one, its emergency password (plaintext, read from a
/// Secret; only its hash leaves this process).
#[derive(Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub address: String,
    pub password: Option<String>,
}

impl std::fmt::Debug for Mailbox {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("address", &self.address)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charts_default_images_are_the_operators() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/continuity-operator/values.yaml");
        let text = std::fs::read_to_string(path).expect("values.yaml");
        let values: serde_yaml::Value = serde_yaml::from_str(&text).expect("values.yaml parses");
        let chart = &values["standby"]["images"];
        assert_eq!(chart["postfix"].as_str(), Some(images::POSTFIX));
        assert_eq!(chart["dovecot"].as_str(), Some(images::DOVECOT));
        assert_eq!(chart["webmail"].as_str(), Some(images::WEBMAIL));
    }

    #[test]
    fn every_config_file_is_rendered_and_passwords_stay_out_of_it() {
        let mailboxes = [Mailbox {
            address: "alice@example.com".into(),
            password: Some("correct horse".into()),
        }];
        let settings = MailSettings {
            domain: "example.com",
            domain_uid: "uid-1",
            hostname: "standby.example.com",
            relay_host: None,
            retention_days: 90,
            mailboxes: &mailboxes,
        };
        let files = config_files(&settings);
        assert_eq!(files.len(), CONFIG_FILES.len());
        assert!(CONFIG_FILES.iter().all(|(key, _)| files.contains_key(*key)));
        assert!(files.values().all(|content| !content.contains("correct horse")));
        assert!(passwd_file(&settings, &PasswordHasher::default()).contains("alice@example.com:{SHA512-CRYPT}"));
        assert!(
            !format!("{:?}", mailboxes[0]).contains("correct horse"),
            "Debug redacts it"
        );
    }
}
