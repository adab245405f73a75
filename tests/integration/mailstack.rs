//! The standby's rendered configuration, run in Debian's real Postfix and Dovecot on loopback,
//! started by the rendered run scripts exactly as the mail pod's containers start them, with
//! the containers' privileges and the pod's file ownership: Postfix's script as root with
//! only the pod's five capabilities, Dovecot's as the unprivileged mail user with none, the
//! volume and the password file belonging to the mail group (fsGroup).
//!
//! What this does not cover: the images' own builds (Debian 13's Postfix 3.10 in the Postfix
//! image, Dovecot 2.3.21 in Dovecot's) are not run here, Debian 12's Postfix 3.7 and Dovecot
//! 2.3.19 are.
//!
//! The files are taken as the operator stored them (ConfigMap and Secret); only what belongs
//! to the pod rather than to the configuration is rewritten, token by token: the directories
//! of [`layout`], and the pod's own address: each stack listens on the pod's very ports on a
//! loopback address of its own (127.a.b.c), so parallel stacks never compete for a port and
//! no port is reserved ahead. The mail user is `vmail`, as in the Dovecot image; hack/test.sh
//! creates it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use continuity_operator::handback::settings::{self, HandBackSettings};
use continuity_operator::handback::tracking::{MessageList, Summary};
use continuity_operator::resources::packed;
use continuity_operator::standby::{CONFIG_FILES, ConfigFiles, PACKED_FILES, PASSWD_KEY, RECIPIENTS_KEY, layout};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;

use crate::common::{Scene, own_loopback_address, unique, wait_for};

/// The Postfix container's capabilities (see the mail StatefulSet's builder).
const POSTFIX_CAPABILITIES: &str = "-all,+chown,+dac_override,+fowner,+setgid,+setuid";

/// A running standby mail system: Postfix and Dovecot with the rendered configuration.
pub struct MailStack {
    dir: PathBuf,
    /// The stack's own loopback address, where the pod's address would be.
    address: Ipv4Addr,
    pub smtp: SocketAddr,
    pub submission: SocketAddr,
    pub imap: SocketAddr,
    postfix: Option<Child>,
    dovecot: Option<Child>,
    agent: Option<Child>,
    /// The hand-back agent's tracking endpoint, once it has said where (it binds port 0).
    pub agent_http: Option<SocketAddr>,
}

/// The mail pod's files as the operator stored them: the ConfigMap's data and binaryData by
/// key, and the Secret's password file.
pub struct Files {
    pub config: ConfigFiles,
    pub passwd: String,
}

fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn checked(program: &str, args: &[&str]) {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

impl MailStack {
    pub async fn start(files: &Files) -> MailStack {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(unique("mailstack"));
        let address = own_loopback_address();
        let mut stack = MailStack {
            dir,
            address,
            smtp: (address, layout::SMTP_PORT).into(),
            submission: (address, layout::SUBMISSION_PORT).into(),
            imap: (address, layout::IMAP_PORT).into(),
            postfix: None,
            dovecot: None,
            agent: None,
            agent_http: None,
        };
        for sub in ["config", "secrets", "data", "run"] {
            std::fs::create_dir_all(stack.dir.join(sub)).expect("mail stack directories");
        }
        // As in the pod: fsGroup gives the volume and the runtime directory to the mail group,
        // group-writable with the setgid bit; root (Postfix's script) owns them.
        let group = format!("root:{}", layout::MAIL_USER);
        checked(
            "chown",
            &[&group, &stack.path("data"), &stack.path("run"), &stack.path("secrets")],
        );
        checked(
            "chmod",
            &["2775", &stack.path("data"), &stack.path("run"), &stack.path("secrets")],
        );
        stack.update(files);
        stack.start_dovecot().await;
        stack.start_agent().await;
        stack.start_postfix().await;
        stack
    }

    fn path(&self, sub: &str) -> String {
        self.dir.join(sub).display().to_string()
    }

    /// Writes new files, as the kubelet updates mounted ConfigMaps and Secrets.
    pub fn update(&self, files: &Files) {
        let address = self.address.to_string();
        let rewrite = |text: &str| -> String {
            // Longest first: /etc/continuity-secrets before /etc/continuity.
            let text = text
                .replace(layout::SECRETS, &self.path("secrets"))
                .replace(layout::CONFIG, &self.path("config"))
                .replace(layout::DATA, &self.path("data"))
                .replace(layout::RUN, &self.path("run"));
            // The pod's addresses: every interface (its own), and loopback between its
            // containers; here both are the stack's own loopback address.
            let text = replace_whole(&text, "127.0.0.1", &address, |c| c.is_ascii_digit() || c == '.');
            // Postfix only listens on interfaces it finds configured, but binds any address a
            // master.cf service names.
            let text = [layout::SMTP_PORT, layout::SUBMISSION_PORT]
                .iter()
                .fold(text, |text, port| {
                    text.replace(&format!("\n{port} inet "), &format!("\n{address}:{port} inet "))
                });
            text.replace("listen = *", &format!("listen = {address}"))
        };
        for (key, path) in CONFIG_FILES {
            let content = files
                .config
                .text
                .get(key)
                .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));
            write_atomically(&self.dir.join("config").join(path), rewrite(content).as_bytes());
        }
        // Gzipped tables hold addresses only: nothing to rewrite.
        for (key, path) in PACKED_FILES {
            let content = files
                .config
                .packed
                .get(key)
                .unwrap_or_else(|| panic!("the ConfigMap has no {key}"));
            write_atomically(&self.dir.join("config").join(path), &content.0);
        }
        // As the Secret volume shows it: the mail group may read it, nobody else (mode 0440).
        let passwd = self.dir.join("secrets").join(PASSWD_KEY);
        write_atomically(&passwd, files.passwd.as_bytes());
        let passwd = passwd.display().to_string();
        checked("chown", &[&format!("root:{}", layout::MAIL_USER), &passwd]);
        checked("chmod", &["0440", &passwd]);
    }

    fn spawn(&self, name: &str, command: &mut Command) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))
            .expect("log file");
        command
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"))
    }

    pub async fn start_postfix(&mut self) {
        let script = self.path("config/run/postfix.sh");
        let child = self.spawn(
            "postfix",
            Command::new("setpriv").args([
                "--bounding-set",
                POSTFIX_CAPABILITIES,
                "--inh-caps=-all",
                "--no-new-privs",
                "sh",
                &script,
            ]),
        );
        self.postfix = Some(child);
        wait_listening(self.smtp, || self.log("postfix")).await;
        wait_listening(self.submission, || self.log("postfix")).await;
    }

    pub async fn start_dovecot(&mut self) {
        let script = self.path("config/run/dovecot.sh");
        let child = self.spawn("dovecot", as_mail_user("sh").arg(&script));
        self.dovecot = Some(child);
        wait_listening(self.imap, || self.log("dovecot")).await;
    }

    /// Starts the hand-back agent as its container does (the mail user, no capabilities), with
    /// the pod's flags but its tracking endpoint on port 0.
    pub async fn start_agent(&mut self) {
        let log_before = self.log("agent").len();
        let child = self.spawn(
            "agent",
            as_mail_user(env!("CARGO_BIN_EXE_continuity-agent")).args([
                &format!("--data-dir={}/handback", self.path("data")),
                &format!("--settings={}/{}", self.path("config"), settings::PATH),
                &format!("--lmtp-addr={}:{}", self.address, layout::AGENT_LMTP_PORT),
                &format!("--http-addr={}:0", self.address),
                "--log-format=json",
            ]),
        );
        self.agent = Some(child);
        let http = wait_for("the agent to listen", Duration::from_secs(20), || async {
            let log = self.log("agent");
            let line = log[log_before..].lines().find(|l| l.contains("agent listening"))?;
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            line["http"].as_str()?.parse::<SocketAddr>().ok()
        })
        .await;
        self.agent_http = Some(http);
    }

    /// Kills the agent with SIGKILL: no chance to finish anything.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Tells the agent what to do, as the kubelet updates its file in the ConfigMap.
    pub fn set_handback(&self, settings: &HandBackSettings) {
        write_atomically(
            &self.dir.join("config").join(settings::PATH),
            settings.render().as_bytes(),
        );
    }

    /// The agent's `/summary`.
    pub async fn handback_summary(&self) -> Option<Summary> {
        serde_json::from_str(&self.agent_get("/summary").await?).ok()
    }

    /// The agent's `/messages?<query>`.
    pub async fn handback_messages(&self, query: &str) -> Option<MessageList> {
        serde_json::from_str(&self.agent_get(&format!("/messages?{query}")).await?).ok()
    }

    async fn agent_get(&self, path: &str) -> Option<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.agent_http?).await.ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
    }

    /// Stops Postfix as the kubelet stops its container: SIGTERM to the script.
    pub fn stop_postfix(&mut self) {
        terminate(self.postfix.take());
    }

    pub fn stop_dovecot(&mut self) {
        terminate(self.dovecot.take());
    }

    /// A container's output (`postfix` or `dovecot`), for failure messages.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    /// How many messages wait in Postfix's queue (on the volume).
    pub fn queued(&self) -> usize {
        ["deferred", "active", "incoming"]
            .iter()
            .map(|queue| count_files(&self.dir.join("data/queue").join(queue)))
            .sum()
    }

    /// Asks Postfix to retry its queue now.
    pub fn flush(&self) {
        checked("postfix", &["-c", &self.path("config/postfix"), "flush"]);
    }
}

impl Drop for MailStack {
    fn drop(&mut self) {
        self.stop_postfix();
        self.stop_dovecot();
        terminate(self.agent.take());
    }
}

/// `program` run as the mail user with no capabilities, as Dovecot's and the agent's
/// containers run; fsGroup gives the mail group again, as a supplementary group.
fn as_mail_user(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        &format!("--reuid={}", layout::MAIL_USER),
        &format!("--regid={}", layout::MAIL_USER),
        &format!("--groups={}", layout::MAIL_USER),
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        program,
    ]);
    command
}

fn terminate(child: Option<Child>) {
    let Some(mut child) = child else { return };
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    for _ in 0..100 {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Replaces a file at once (write then rename), as the kubelet swaps a volume's files, so a
/// reader never sees half of it.
fn write_atomically(path: &Path, content: &[u8]) {
    let parent = path.parent().expect("a directory");
    std::fs::create_dir_all(parent).expect("config directory");
    let temporary = parent.join(format!(
        ".{}.new",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    std::fs::write(&temporary, content).expect("writing a config file");
    std::fs::rename(&temporary, path).expect("replacing a config file");
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 })
                .sum()
        })
        .unwrap_or(0)
}

async fn wait_listening(address: SocketAddr, log: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(address).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on {address} after 20 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn replace_whole(text: &str, from: &str, to: &str, joins: fn(char) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().last();
        let after = rest[at + from.len()..].chars().next();
        out.push_str(&rest[..at]);
        out.push_str(if before.is_some_and(joins) || after.is_some_and(joins) {
            from
        } else {
            to
        });
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// One SMTP transaction with swaks (a real client): the reply code to RCPT TO (0 when the
/// session ended before it), and swaks' transcript.
pub fn deliver(server: SocketAddr, to: &str, subject: &str) -> (u16, String) {
    let output = run(
        "swaks",
        &[
            "--server",
            &server.to_string(),
            "--from",
            "sender@example.org",
            "--to",
            to,
            "--header",
            &format!("Subject: {subject}"),
            "--body",
            "continuity standby test",
        ],
    );
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    (rcpt_reply(&transcript), transcript)
}

/// The reply code that follows swaks' `-> RCPT TO:` line.
fn rcpt_reply(transcript: &str) -> u16 {
    transcript
        .lines()
        .skip_while(|l| !l.contains("-> RCPT TO:"))
        .nth(1)
        .and_then(|l| {
            l.trim_start_matches(|c: char| !c.is_ascii_digit())
                .get(..3)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// One authenticated submission, as the webmail sends: the reply code to RCPT TO (where
/// Postfix answers the sender and client checks), and swaks' transcript. `login` is `None`
/// for a client that does not authenticate.
pub fn submit(server: SocketAddr, login: Option<(&str, &str)>, from: &str, to: &str, subject: &str) -> (u16, String) {
    let mut args = vec![
        "--server".to_owned(),
        server.to_string(),
        "--from".into(),
        from.into(),
        "--to".into(),
        to.into(),
        "--header".into(),
        format!("Subject: {subject}"),
        "--body".into(),
        "sent from the continuity webmail".into(),
    ];
    if let Some((user, password)) = login {
        args.extend(["--auth".into(), "PLAIN".into(), "--auth-user".into(), user.into()]);
        args.extend(["--auth-password".into(), password.into()]);
    }
    let output = Command::new("swaks").args(&args).output().expect("running swaks");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    (rcpt_reply(&transcript), transcript)
}

/// Logs in over IMAP (Python's imaplib, a real client) and returns the subjects in INBOX, or
/// the server's refusal.
pub fn imap_subjects(server: SocketAddr, user: &str, password: &str) -> Result<Vec<String>, String> {
    let script = r#"
import email, imaplib, sys
host, port = sys.argv[1].rsplit(":", 1)
m = imaplib.IMAP4(host, int(port))
try:
    m.login(sys.argv[2], sys.argv[3])
except imaplib.IMAP4.error as e:
    print("LOGIN FAILED:", e)
    sys.exit(3)
m.select("INBOX")
_, ids = m.search(None, "ALL")
for i in ids[0].split():
    _, data = m.fetch(i, "(RFC822)")
    print(email.message_from_bytes(data[0][1])["Subject"])
m.logout()
"#;
    let output = Command::new("python3")
        .args(["-c", script, &server.to_string(), user, password])
        .output()
        .expect("running python3");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(text.lines().map(str::to_owned).collect())
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr)))
    }
}

/// Waits until `user` sees a message with `subject` over IMAP.
pub async fn wait_for_subject(server: SocketAddr, user: &str, password: &str, subject: &str) {
    wait_for(
        &format!("{subject:?} in the INBOX of {user}"),
        Duration::from_secs(20),
        || async move {
            imap_subjects(server, user, password)
                .ok()
                .filter(|subjects| subjects.iter().any(|s| s == subject))
                .map(drop)
        },
    )
    .await;
}

/// The mail pod's files as the operator stored them for `domain` (its standby's ConfigMap
/// and passwords Secret) in the scene's namespace, once `ready` holds for them.
pub async fn rendered(scene: &Scene, domain: &str, what: &str, ready: impl Fn(&Files) -> bool) -> Files {
    let (maps, secrets): (Api<ConfigMap>, Api<Secret>) = (scene.api(), scene.api());
    let ready = &ready;
    wait_for(what, Duration::from_secs(30), || async {
        let map = maps.get_opt(&format!("{domain}-standby-config")).await.ok().flatten()?;
        let config = ConfigFiles {
            text: map.data?,
            packed: map.binary_data?,
        };
        let passwd = secrets
            .get_opt(&format!("{domain}-standby-passwords"))
            .await
            .ok()
            .flatten()?
            .data?
            .remove("passwd")?;
        let files = Files {
            config,
            passwd: String::from_utf8(passwd.0).ok()?,
        };
        ready(&files).then_some(files)
    })
    .await
}

/// The recipient map among the rendered files, unpacked.
pub fn recipients(files: &Files) -> String {
    let table = files.config.packed.get(RECIPIENTS_KEY);
    table.and_then(packed::unpack).unwrap_or_default()
}
