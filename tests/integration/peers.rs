//! Scripted SMTP peers for the faults a real Postfix cannot show on demand: a server that
//! accepts and never speaks, greets 421 or 554, speaks something else, breaks the TLS
//! handshake, or presents a certificate from a private CA. (Real servers are used wherever
//! they can be: Postfix plays every healthy or stopped primary.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// What a peer does with each connection.
#[derive(Clone)]
pub enum Behavior {
    /// Accepts and never says anything.
    Silent,
    /// Greets with this line and waits.
    Greets(&'static str),
    /// Answers like a web server, then hangs up.
    Garbage,
    /// A well-behaved SMTP server; with a TLS configuration it offers STARTTLS.
    Smtp(Option<Arc<ServerConfig>>),
    /// Offers STARTTLS, accepts it, then sends no TLS at all.
    BrokenTls,
    /// Greets every n-th connection with `421` and hangs up; serves the others as
    /// [`Behavior::Smtp`] (a primary flapping below any failure threshold above 1).
    Flapping(usize),
}

/// A listening peer on 127.0.0.1; it stops listening when dropped (connections are then
/// refused), and [`Peer::go_silent`] makes it accept and never speak.
pub struct Peer {
    pub port: u16,
    silent: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    pub async fn start(behavior: Behavior) -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding a peer");
        let port = listener
            .local_addr()
            .map(|a: SocketAddr| a.port())
            .expect("peer address");
        let silent = Arc::new(AtomicBool::new(false));
        let silenced = silent.clone();
        let task = tokio::spawn(async move {
            let mut accepted = 0usize;
            while let Ok((stream, _)) = listener.accept().await {
                accepted += 1;
                let behavior = match &behavior {
                    _ if silenced.load(Ordering::Relaxed) => Behavior::Silent,
                    Behavior::Flapping(every) if accepted.is_multiple_of(*every) => Behavior::Flapping(*every),
                    Behavior::Flapping(_) => Behavior::Smtp(None),
                    other => other.clone(),
                };
                tokio::spawn(async move {
                    let _ = serve(stream, behavior).await;
                });
            }
        });
        Peer { port, silent, task }
    }

    /// From now on, accepts connections and says nothing (a hung server).
    pub fn go_silent(&self) {
        self.set_silent(true);
    }

    /// Hangs (`true`) or serves as started (`false`) from the next connection on.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::Relaxed);
    }
}

async fn serve(mut stream: tokio::net::TcpStream, behavior: Behavior) -> std::io::Result<()> {
    // Replies follow requests: no Nagle delay (as Postfix does).
    let _ = stream.set_nodelay(true);
    match behavior {
        Behavior::Silent => {
            std::future::pending::<()>().await;
            Ok(())
        }
        Behavior::Greets(line) => {
            stream.write_all(format!("{line}\r\n").as_bytes()).await?;
            std::future::pending::<()>().await;
            Ok(())
        }
        Behavior::Garbage => {
            stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await?;
            stream.shutdown().await
        }
        Behavior::Smtp(tls) => {
            let mut session = BufReader::new(stream);
            session.get_mut().write_all(b"220 peer.test ESMTP\r\n").await?;
            if !converse(&mut session, tls.is_some()).await? {
                return Ok(());
            }
            let Some(tls) = tls else { return Ok(()) };
            let secured = TlsAcceptor::from(tls).accept(session.into_inner()).await?;
            converse(&mut BufReader::new(secured), false).await.map(drop)
        }
        Behavior::Flapping(_) => {
            stream.write_all(b"421 peer.test too busy, try again later\r\n").await?;
            stream.shutdown().await
        }
        Behavior::BrokenTls => {
            let mut session = BufReader::new(stream);
            session.get_mut().write_all(b"220 peer.test ESMTP\r\n").await?;
            if converse(&mut session, true).await? {
                // Wait for the client's hello, so that the handshake itself fails.
                let mut hello = [0u8; 16];
                let _ = session.get_mut().read(&mut hello).await?;
                session
                    .get_mut()
                    .write_all(b"this is not a TLS server hello\r\n")
                    .await?;
            }
            Ok(())
        }
    }
}

/// Answers EHLO and QUIT; returns true when the client asked for STARTTLS (and it was offered).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut BufReader<S>,
    offer_tls: bool,
) -> std::io::Result<bool> {
    let mut line = String::new();
    loop {
        line.clear();
        if session.read_line(&mut line).await? == 0 {
            return Ok(false);
        }
        let command = line.trim_end().to_ascii_uppercase();
        if command.starts_with("EHLO") {
            let tls = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            session
                .get_mut()
                .write_all(format!("250-peer.test\r\n{tls}250 8BITMIME\r\n").as_bytes())
                .await?;
        } else if command == "STARTTLS" && offer_tls {
            session.get_mut().write_all(b"220 2.0.0 Ready to start TLS\r\n").await?;
            return Ok(true);
        } else if command == "QUIT" {
            session.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(false);
        } else {
            session.get_mut().write_all(b"502 5.5.2 not here\r\n").await?;
        }
    }
}

/// A private CA and a server certificate it issued for localhost and an IP address.
pub struct PrivateCa {
    pub ca_pem: String,
    /// The server's certificate chain and key, PEM, for servers that read files.
    pub chain_pem: String,
    pub key_pem: String,
    pub server: Arc<ServerConfig>,
}

impl PrivateCa {
    /// A certificate for 127.0.0.1.
    pub fn new() -> PrivateCa {
        Self::issuing_for([127, 0, 0, 1].into())
    }

    /// A certificate for `ip`.
    pub fn issuing_for(ip: std::net::IpAddr) -> PrivateCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        let mut leaf_params = CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
        leaf_params.subject_alt_names.push(SanType::IpAddress(ip));
        let leaf_key = KeyPair::generate().expect("server key");
        let leaf = leaf_params.signed_by(&leaf_key, &ca).expect("server certificate");
        let chain = vec![CertificateDer::from(leaf.der().to_vec()), ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server TLS configuration");
        PrivateCa {
            ca_pem: ca.pem(),
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            key_pem: leaf_key.serialize_pem(),
            server: Arc::new(server),
        }
    }
}
