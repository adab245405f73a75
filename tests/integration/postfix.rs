//! Real Postfix instances (Debian's `postfix`), each with its own configuration, queue and
//! mail directories under target/tmp, listening on a loopback port the kernel picks (port 0 in
//! master.cf, read back from /proc; a restart listens on the same port again): a customer's primary
//! or the standby side (both deliver the domain's mail to a maildir), or a provider's gateway
//! (relays the domain's mail as its transport map says).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{listening_ports, unique, wait_for};

/// What an instance does with the domain's mail.
pub enum Role<'a> {
    /// Delivers it into its own maildir.
    Mailbox { domain: &'a str },
    /// Relays it to the next hop its transport map names.
    Gateway { domain: &'a str },
}

pub struct Postfix {
    dir: PathBuf,
    /// 0 until the first start has bound it.
    pub port: u16,
    running: bool,
}

fn postfix(config: &Path, action: &str) -> std::process::Output {
    Command::new("postfix")
        .arg("-c")
        .arg(config)
        .arg(action)
        .output()
        .unwrap_or_else(|e| panic!("running postfix {action} (is Debian's postfix installed?): {e}"))
}

impl Postfix {
    /// Configures and starts an instance; returns once it accepts connections.
    pub async fn start(name: &str, role: Role<'_>) -> Postfix {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique(&format!("postfix-{name}")));
        for sub in ["etc", "queue", "data", "mail"] {
            std::fs::create_dir_all(dir.join(sub)).expect("Postfix directories");
        }
        let d = dir.display();
        let role_config = match role {
            Role::Mailbox { domain } => format!(
                "virtual_mailbox_domains = {domain}\nvirtual_mailbox_base = {d}/mail\nvirtual_mailbox_maps = static:inbox/\nvirtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n"
            ),
            Role::Gateway { domain } => format!(
                "relay_domains = {domain}\ntransport_maps = hash:{d}/etc/transport\nsmtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n\
                 queue_run_delay = 1s\nminimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nsmtp_connect_timeout = 2s\n\
                 smtp_host_lookup = native\n"
            ),
        };
        let main_cf = format!(
            "compatibility_level = 3.6\nqueue_directory = {d}/queue\ndata_directory = {d}/data\nmail_owner = postfix\nsetgid_group = postdrop\n\
             inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmyhostname = {name}.test\nmydestination =\nmynetworks = 127.0.0.0/8\n\
             smtpd_banner = $myhostname ESMTP\nmaillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\nsmtputf8_enable = no\n{role_config}"
        );
        std::fs::write(dir.join("etc/main.cf"), main_cf).expect("main.cf");
        // Debian's master.cf, with smtpd on a port the kernel picks and no chroot (the
        // instance lives in a plain directory).
        let master = std::fs::read_to_string("/etc/postfix/master.cf").expect("/etc/postfix/master.cf");
        let master: String = master
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if line.starts_with("smtp ") && fields.get(1) == Some(&"inet") {
                    "127.0.0.1:0 inet n - n - - smtpd\n".to_owned()
                } else if !line.starts_with('#') && !line.starts_with(' ') && fields.len() >= 8 && fields[4] == "y" {
                    let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
                    fields[4] = "n".into();
                    format!("{}\n", fields.join(" "))
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(dir.join("etc/master.cf"), master).expect("master.cf");
        if matches!(role, Role::Gateway { .. }) {
            std::fs::write(dir.join("etc/transport"), "").expect("transport");
            run_checked(
                "postmap",
                &["-c", &format!("{d}/etc"), &format!("hash:{d}/etc/transport")],
            );
        }
        chown(&dir.join("data"), "postfix");
        chown(&dir.join("mail"), "nobody");
        let mut instance = Postfix {
            dir,
            port: 0,
            running: false,
        };
        instance.resume().await;
        instance
    }

    fn config(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Starts the (stopped) instance again; returns once it accepts connections.
    pub async fn resume(&mut self) {
        let output = postfix(&self.config(), "start");
        assert!(
            output.status.success(),
            "postfix start failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        self.running = true;
        if self.port == 0 {
            let pid_file = self.dir.join("queue/pid/master.pid");
            self.port = wait_for("Postfix to listen", Duration::from_secs(20), || async {
                let pid = std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()?;
                listening_ports(pid).first().copied()
            })
            .await;
            // A restart listens where this one does, as a real server restarting would.
            let master_cf = self.config().join("master.cf");
            let master = std::fs::read_to_string(&master_cf).expect("master.cf");
            let pinned = master.replace("127.0.0.1:0 inet", &format!("127.0.0.1:{} inet", self.port));
            std::fs::write(master_cf, pinned).expect("master.cf");
        }
        let port = self.port;
        wait_for(
            &format!("Postfix on port {port}"),
            Duration::from_secs(20),
            || async move { tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop) },
        )
        .await;
    }

    /// Stops the instance: its port refuses connections afterwards.
    pub fn stop(&mut self) {
        if self.running {
            postfix(&self.config(), "stop");
            self.running = false;
        }
    }

    /// The messages delivered to the maildir so far.
    pub fn delivered(&self) -> Vec<String> {
        let new = self.dir.join("mail/inbox/new");
        let mut messages: Vec<String> = std::fs::read_dir(new)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        messages.sort();
        messages
    }

    /// A gateway's new transport map, compiled and picked up.
    pub fn set_transport_map(&self, text: &str) {
        let d = self.dir.display();
        std::fs::write(self.dir.join("etc/transport"), text).expect("writing the transport map");
        run_checked(
            "postmap",
            &["-c", &format!("{d}/etc"), &format!("hash:{d}/etc/transport")],
        );
        let output = postfix(&self.config(), "reload");
        assert!(
            output.status.success(),
            "postfix reload: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Answers RCPT TO as `access` says (a `check_recipient_access` table: `address` or
    /// `domain`, then a reply such as `451 4.3.0 try later`), from now on.
    pub fn set_recipient_access(&self, access: &str) {
        let d = self.dir.display();
        std::fs::write(self.dir.join("etc/access"), access).expect("writing the access table");
        let main_cf = self.config().join("main.cf");
        let mut main = std::fs::read_to_string(&main_cf).expect("main.cf");
        let line = format!("smtpd_recipient_restrictions = check_recipient_access texthash:{d}/etc/access\n");
        if !main.contains(&line) {
            main.push_str(&line);
            std::fs::write(&main_cf, main).expect("main.cf");
        }
        let output = postfix(&self.config(), "reload");
        assert!(
            output.status.success(),
            "postfix reload: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The instance's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run_checked(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn chown(path: &Path, user: &str) {
    run_checked("chown", &[user, &path.display().to_string()]);
}

/// Sends one message with swaks (a real SMTP client) through `port`; returns swaks' output.
pub fn send_mail(port: u16, to: &str, subject: &str) -> String {
    let output = Command::new("swaks")
        .args([
            "--server",
            &format!("127.0.0.1:{port}"),
            "--to",
            to,
            "--from",
            "sender@example.org",
        ])
        .args([
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "continuity test message",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running swaks (is Debian's swaks installed?): {e}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "swaks failed:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    text
}
