//! A real OpenLDAP server (Debian's `slapd`) for the directory tests: its own configuration
//! (the core, cosine, inetorgperson and misc schemas, one mdb database), an LDIF loaded with
//! `slapadd` before it starts, plain LDAP on port 389 and LDAPS on 636 (StartTLS on 389) with
//! a certificate from a private CA. slapd cannot listen on port 0 (it takes 0 for its default
//! port), so each server gets an address of its own on the loopback network, 127.a.b.c (as the
//! mail stacks do), and the standard ports there: no port is reserved and released.
//!
//! Anonymous clients may only bind; `cn=reader` may read everything but passwords.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::{own_loopback_address, wait_for};
use crate::peers::PrivateCa;

pub const SUFFIX: &str = "dc=example,dc=com";
pub const READER_DN: &str = "cn=reader,dc=example,dc=com";
pub const READER_PASSWORD: &str = "reader-secret-1729";

/// A running slapd.
pub struct Slapd {
    pub ip: IpAddr,
    pub ca: PrivateCa,
    dir: PathBuf,
    child: Option<Child>,
}

/// LDIF for the suffix, the reader, `ou=people` and `entries` (already LDIF, each ending
/// with an empty line).
pub fn ldif(entries: &str) -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
         dn: {READER_DN}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: reader\nuserPassword: {READER_PASSWORD}\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n{entries}"
    )
}

/// An inetOrgPerson `uid` under `ou=people` with `mail` and, if any, `aliases` (as
/// `mailLocalAddress`).
pub fn person(uid: &str, mail: &str, aliases: &[&str]) -> String {
    let mut entry = format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nobjectClass: inetLocalMailRecipient\nuid: {uid}\ncn: {uid}\nsn: {uid}\nmail: {mail}\n"
    );
    for alias in aliases {
        entry.push_str(&format!("mailLocalAddress: {alias}\n"));
    }
    entry.push('\n');
    entry
}

impl Slapd {
    /// Starts slapd serving `ldif`.
    pub async fn start(ldif: &str) -> Slapd {
        let ip = IpAddr::V4(own_loopback_address());
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("slapd-{ip}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("db")).expect("slapd's directory");
        let ca = PrivateCa::issuing_for(ip);
        std::fs::write(dir.join("ca.pem"), &ca.ca_pem).expect("CA file");
        std::fs::write(dir.join("cert.pem"), &ca.chain_pem).expect("certificate file");
        std::fs::write(dir.join("key.pem"), &ca.key_pem).expect("key file");
        let d = dir.display();
        let config = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/misc.schema\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             pidfile {d}/slapd.pid\n\
             TLSCACertificateFile {d}/ca.pem\n\
             TLSCertificateFile {d}/cert.pem\n\
             TLSCertificateKeyFile {d}/key.pem\n\
             sizelimit unlimited\n\
             database mdb\n\
             maxsize 104857600\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"cn=admin,{SUFFIX}\"\n\
             rootpw admin-secret\n\
             directory {d}/db\n\
             access to attrs=userPassword by anonymous auth by * none\n\
             access to * by dn.exact=\"{READER_DN}\" read by * none\n"
        );
        std::fs::write(dir.join("slapd.conf"), config).expect("slapd.conf");
        std::fs::write(dir.join("data.ldif"), ldif).expect("the LDIF");
        let loaded = Command::new("slapadd")
            .args(["-q", "-f"])
            .arg(dir.join("slapd.conf"))
            .arg("-l")
            .arg(dir.join("data.ldif"))
            .output()
            .await
            .expect("running slapadd (Debian's slapd package)");
        assert!(
            loaded.status.success(),
            "slapadd: {}",
            String::from_utf8_lossy(&loaded.stderr)
        );
        let mut slapd = Slapd {
            ip,
            ca,
            dir,
            child: None,
        };
        slapd.resume().await;
        slapd
    }

    /// `ldap://` (port 389) or `ldaps://` (636) URL of the server.
    pub fn url(&self, ldaps: bool) -> String {
        if ldaps {
            format!("ldaps://{}:636", self.ip)
        } else {
            format!("ldap://{}:389", self.ip)
        }
    }

    /// Adds `entries` (LDIF) to the running server, as its administrator.
    pub async fn add(&self, entries: &str) {
        let mut child = Command::new("ldapadd")
            .args([
                "-x",
                "-H",
                &self.url(false),
                "-D",
                &format!("cn=admin,{SUFFIX}"),
                "-w",
                "admin-secret",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running ldapadd (Debian's ldap-utils)");
        let mut stdin = child.stdin.take().expect("ldapadd's input");
        tokio::io::AsyncWriteExt::write_all(&mut stdin, entries.as_bytes())
            .await
            .expect("writing to ldapadd");
        drop(stdin);
        let output = child.wait_with_output().await.expect("ldapadd");
        assert!(
            output.status.success(),
            "ldapadd: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Freezes (`STOP`) or thaws (`CONT`) the server: connections are accepted by the kernel
    /// and never answered, as by a hung directory.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().and_then(Child::id).expect("slapd running");
        let sent = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{signal} {pid}");
    }

    /// Stops the server, as a crashed or unreachable directory.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same address and data.
    pub async fn resume(&mut self) {
        let listen = format!("ldap://{0}:389/ ldaps://{0}:636/", self.ip);
        let child = Command::new("slapd")
            .args(["-d", "0", "-f"])
            .arg(self.dir.join("slapd.conf"))
            .args(["-h", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting slapd");
        self.child = Some(child);
        let address = SocketAddr::new(self.ip, 389);
        wait_for("slapd listening", Duration::from_secs(30), || async {
            tokio::net::TcpStream::connect(address).await.ok().map(|_| ())
        })
        .await;
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
