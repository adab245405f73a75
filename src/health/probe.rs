//! One SMTP health check of a customer's primary server (SPEC 4.2): resolve, connect, read the
//! 220 greeting, EHLO, QUIT; on request also STARTTLS with certificate verification. Every
//! stage runs against one deadline and every failure is classified, so a server that accepts
//! the connection and never speaks costs exactly the timeout and nothing more. The connection
//! is closed after QUIT: a probe never holds a connection open (no NOOP keep-alives).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::ClientConfig;

use super::networks::ProbeNetworks;
use super::resolver::Resolver;
use crate::api::domain::ProbeFailureClass;

/// Longest reply line and most lines accepted; a peer sending more is not speaking SMTP.
const MAX_LINE: usize = 1024;
const MAX_LINES: usize = 64;

/// Where and how long to probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub timeout: Duration,
    /// The addresses the probe may connect to.
    pub networks: Arc<ProbeNetworks>,
}

/// Who probes: the name it introduces itself with in EHLO, and how it resolves primaries.
pub struct ProbeClient {
    pub helo: String,
    pub resolver: Resolver,
}

/// The outcome of one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    Ok,
    Failed(ProbeFailureClass),
}

impl Outcome {
    /// The name used in status and metrics: `Ok` or the failure class.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "Ok",
            Outcome::Failed(class) => class.name(),
        }
    }
}

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub latency: Duration,
    /// What happened, for humans: the greeting, or where and why it failed.
    pub detail: String,
}

pub(crate) struct Failure {
    class: ProbeFailureClass,
    detail: String,
}

impl Failure {
    /// What happened, for humans.
    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }
}

pub(super) fn fail(class: ProbeFailureClass, detail: impl Into<String>) -> Failure {
    Failure {
        class,
        detail: detail.into(),
    }
}

/// Probes `target` as `client`. With `tls`, also upgrades with STARTTLS and verifies the
/// certificate; any TLS problem is a `TLSFailure`.
pub async fn probe(target: &Target, client: &ProbeClient, tls: Option<&Arc<ClientConfig>>) -> Report {
    let started = Instant::now();
    let deadline = started + target.timeout;
    let result = run(target, client, tls, deadline).await;
    let latency = started.elapsed();
    match result {
        Ok(detail) => Report {
            outcome: Outcome::Ok,
            latency,
            detail,
        },
        Err(failure) => Report {
            outcome: Outcome::Failed(failure.class),
            latency,
            detail: failure.detail,
        },
    }
}

async fn run(
    target: &Target,
    client: &ProbeClient,
    tls: Option<&Arc<ClientConfig>>,
    deadline: Instant,
) -> Result<String, Failure> {
    let helo = client.helo.as_str();
    let tcp = connect(target, &client.resolver, deadline).await?;
    let mut session = BufReader::new(tcp);
    let greeting = read_reply(&mut session, deadline, "the greeting").await?;
    match greeting.code {
        220 => {}
        400..=499 => {
            return Err(fail(
                ProbeFailureClass::Greeting4xx,
                format!("greeting: {}", greeting.text()),
            ));
        }
        500..=599 => {
            return Err(fail(
                ProbeFailureClass::Greeting5xx,
                format!("greeting: {}", greeting.text()),
            ));
        }
        _ => {
            return Err(fail(
                ProbeFailureClass::ProtocolError,
                format!("unexpected greeting: {}", greeting.text()),
            ));
        }
    }
    let extensions = match ehlo(&mut session, helo, deadline).await? {
        Ok(extensions) => extensions,
        // A server that refuses our EHLO on policy greeted correctly and is alive; only the
        // certificate check, which needs EHLO to learn of STARTTLS, cannot go on.
        Err(refusal) if tls.is_none() => {
            quit(&mut session, deadline).await;
            return Ok(format!("{} (EHLO refused: {refusal})", greeting.text()));
        }
        Err(refusal) => return Err(fail(ProbeFailureClass::TlsFailure, format!("EHLO refused: {refusal}"))),
    };
    let Some(tls) = tls else {
        quit(&mut session, deadline).await;
        return Ok(greeting.text());
    };

    if !extensions.iter().any(|line| line.eq_ignore_ascii_case("STARTTLS")) {
        return Err(fail(
            ProbeFailureClass::TlsFailure,
            "the server does not offer STARTTLS",
        ));
    }
    command(&mut session, "STARTTLS", deadline).await?;
    let reply = read_reply(&mut session, deadline, "the STARTTLS reply").await?;
    if reply.code != 220 {
        return Err(fail(
            ProbeFailureClass::TlsFailure,
            format!("STARTTLS refused: {}", reply.text()),
        ));
    }
    // Anything buffered before the handshake was sent in the clear after STARTTLS: an
    // injection attempt or a broken server, never something to carry into the TLS session.
    if !session.buffer().is_empty() {
        return Err(fail(
            ProbeFailureClass::TlsFailure,
            "plaintext after the STARTTLS reply, before the handshake",
        ));
    }
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|e| fail(ProbeFailureClass::TlsFailure, format!("{}: {e}", target.host)))?;
    let handshake = TlsConnector::from(tls.clone()).connect(server_name, session.into_inner());
    let tls_stream = match timeout_at(deadline, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return Err(fail(ProbeFailureClass::TlsFailure, format!("TLS handshake: {error}"))),
        Err(_) => return Err(fail(ProbeFailureClass::Timeout, "timed out in the TLS handshake")),
    };
    let mut secured = BufReader::new(tls_stream);
    if let Err(refusal) = ehlo(&mut secured, helo, deadline).await? {
        return Err(fail(
            ProbeFailureClass::TlsFailure,
            format!("EHLO over TLS refused: {refusal}"),
        ));
    }
    quit(&mut secured, deadline).await;
    Ok(format!("{} (STARTTLS, certificate verified)", greeting.text()))
}

/// A TCP connection to `target`, by `deadline`, only to addresses its networks permit: for
/// the probes, and for anything else the operator reaches at a tenant's word (their LDAP
/// directory).
pub(crate) async fn connect(target: &Target, resolver: &Resolver, deadline: Instant) -> Result<TcpStream, Failure> {
    let addresses: Vec<IpAddr> = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => resolver.resolve(&target.host, deadline).await?,
    };
    // One forbidden address is enough to refuse: which one a connection would reach is the
    // name's owner's to choose.
    if !addresses.iter().all(|ip| target.networks.permits(*ip)) {
        return Err(fail(
            ProbeFailureClass::AddressNotAllowed,
            format!(
                "{} resolves to an address the provider does not let the prober reach (the operator's host or the cluster's networks)",
                target.host
            ),
        ));
    }
    // Each address gets its share of the time left, so one that swallows packets (an AAAA
    // record without an IPv6 route) cannot use up the whole deadline.
    let mut errors = Vec::new();
    let mut all_timed_out = true;
    for (tried, ip) in addresses.iter().enumerate() {
        let address = SocketAddr::new(*ip, target.port);
        let now = Instant::now();
        let share = deadline.saturating_duration_since(now) / u32::try_from(addresses.len() - tried).unwrap_or(1);
        match timeout_at(now + share, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                // Small request/response exchanges: no Nagle delay.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => {
                all_timed_out = false;
                errors.push(format!("{address}: {error}"));
            }
            Err(_) => errors.push(format!("timed out connecting to {address}")),
        }
    }
    let class = if all_timed_out {
        ProbeFailureClass::Timeout
    } else {
        ProbeFailureClass::Refused
    };
    Err(fail(class, errors.join("; ")))
}

/// A parsed SMTP reply.
struct Reply {
    code: u16,
    lines: Vec<String>,
}

impl Reply {
    fn text(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or_default()
        )
    }
}

async fn read_reply<S: AsyncRead + Unpin>(
    session: &mut BufReader<S>,
    deadline: Instant,
    waiting_for: &str,
) -> Result<Reply, Failure> {
    let mut lines = Vec::new();
    let mut code = None;
    let mut buffer = Vec::with_capacity(128);
    loop {
        buffer.clear();
        let read = timeout_at(deadline, read_line(session, &mut buffer)).await;
        let line = match read {
            Err(_) => {
                return Err(fail(
                    ProbeFailureClass::Timeout,
                    format!("timed out waiting for {waiting_for}"),
                ));
            }
            Ok(Err(error)) => {
                return Err(fail(
                    ProbeFailureClass::Refused,
                    format!("reading {waiting_for}: {error}"),
                ));
            }
            Ok(Ok(0)) => {
                return Err(fail(
                    ProbeFailureClass::ProtocolError,
                    format!("connection closed before {waiting_for}"),
                ));
            }
            Ok(Ok(_)) => String::from_utf8_lossy(&buffer).trim_end().to_owned(),
        };
        // What a peer that does not speak SMTP sent is never repeated: status would show a
        // tenant the banner (and host names) of whatever service the primary's address names.
        let parsed = parse_reply_line(&line).ok_or_else(|| {
            fail(
                ProbeFailureClass::ProtocolError,
                format!("the answer to {waiting_for} is not SMTP"),
            )
        })?;
        if code.is_some_and(|c| c != parsed.0) {
            return Err(fail(
                ProbeFailureClass::ProtocolError,
                format!("mixed reply codes in {waiting_for}"),
            ));
        }
        code = Some(parsed.0);
        lines.push(parsed.2.to_owned());
        if parsed.1 {
            return Ok(Reply { code: parsed.0, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(fail(
                ProbeFailureClass::ProtocolError,
                format!("{waiting_for} is too long"),
            ));
        }
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes; a longer one is an error.
async fn read_line<S: AsyncRead + Unpin>(session: &mut BufReader<S>, buffer: &mut Vec<u8>) -> std::io::Result<usize> {
    let read = (&mut *session).take(MAX_LINE as u64).read_until(b'\n', buffer).await?;
    if read == MAX_LINE && buffer.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "reply line too long",
        ));
    }
    Ok(read)
}

/// Splits `250-SIZE 1000` into (250, is last line, `SIZE 1000`). `None` when it is not an
/// SMTP reply line.
fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) || !(b'2'..=b'5').contains(&bytes[0]) {
        return None;
    }
    let code = line[..3].parse().ok()?;
    match bytes.get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut BufReader<S>,
    line: &str,
    deadline: Instant,
) -> Result<(), Failure> {
    let bytes = format!("{line}\r\n");
    match timeout_at(deadline, session.get_mut().write_all(bytes.as_bytes())).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(fail(ProbeFailureClass::Refused, format!("sending {line}: {error}"))),
        Err(_) => Err(fail(ProbeFailureClass::Timeout, format!("timed out sending {line}"))),
    }
}

/// Sends EHLO; returns the announced extensions (the reply lines after the first), or the
/// refusal when the server answers with anything but 250.
async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    session: &mut BufReader<S>,
    helo: &str,
    deadline: Instant,
) -> Result<Result<Vec<String>, String>, Failure> {
    command(session, &format!("EHLO {helo}"), deadline).await?;
    let reply = read_reply(session, deadline, "the EHLO reply").await?;
    if reply.code != 250 {
        return Ok(Err(reply.text()));
    }
    Ok(Ok(reply.lines.into_iter().skip(1).collect()))
}

/// Says goodbye politely; the server's answer does not change the outcome.
async fn quit<S: AsyncRead + AsyncWrite + Unpin>(session: &mut BufReader<S>, deadline: Instant) {
    if command(session, "QUIT", deadline).await.is_ok() {
        let _ = read_reply(session, deadline, "the QUIT reply").await;
    }
    let _ = timeout_at(deadline, session.get_mut().shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_lines_parse_and_garbage_does_not() {
        assert_eq!(
            parse_reply_line("220 mx.example.com ESMTP"),
            Some((220, true, "mx.example.com ESMTP"))
        );
        assert_eq!(parse_reply_line("250-STARTTLS"), Some((250, false, "STARTTLS")));
        assert_eq!(parse_reply_line("221"), Some((221, true, "")));
        assert_eq!(parse_reply_line("HTTP/1.1 400 Bad Request"), None);
        assert_eq!(parse_reply_line("999 no such code"), None);
        assert_eq!(parse_reply_line("22"), None);
        assert_eq!(parse_reply_line("220x"), None);
    }
}
