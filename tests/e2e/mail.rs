//! Just enough SMTP and IMAP to send a message and find it again, from the test process to a
//! Service's cluster address (the node routes Service addresses through kube-proxy).

use std::net::SocketAddr;

use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::common::wait_for;

type Session = BufReader<TcpStream>;

/// Reads one SMTP reply (all its lines); returns its code and text.
async fn reply(session: &mut Session) -> Result<(u16, String), String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if session.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("connection closed after {text:?}"));
        }
        text.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            let code = line
                .get(..3)
                .and_then(|c| c.parse().ok())
                .ok_or(format!("not SMTP: {line:?}"))?;
            return Ok((code, text));
        }
    }
}

async fn command(session: &mut Session, line: &str) -> Result<(u16, String), String> {
    session
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    reply(session).await
}

async fn expect(session: &mut Session, line: &str, wanted: u16) -> Result<(), String> {
    match command(session, line).await? {
        (code, _) if code == wanted => Ok(()),
        (_, text) => Err(format!("{line}: {text}")),
    }
}

async fn open(server: SocketAddr) -> Result<Session, String> {
    let mut session = BufReader::new(TcpStream::connect(server).await.map_err(|e| e.to_string())?);
    let (code, text) = reply(&mut session).await?;
    if code != 220 {
        return Err(format!("greeting: {text}"));
    }
    expect(&mut session, "EHLO e2e.test", 250).await?;
    Ok(session)
}

/// Sends a message with `message_id` from `sender` to `recipient` through `server`; Ok once it
/// answered 250 to the data.
pub async fn send(server: SocketAddr, sender: &str, recipient: &str, message_id: &str) -> Result<(), String> {
    send_message(server, sender, recipient, message_id, "Sent by the end-to-end suite.").await
}

/// As `send`, with `body` (lines of text, none starting with a dot) for the message's body.
pub async fn send_message(
    server: SocketAddr,
    sender: &str,
    recipient: &str,
    message_id: &str,
    body: &str,
) -> Result<(), String> {
    let mut session = open(server).await?;
    expect(&mut session, &format!("MAIL FROM:<{sender}>"), 250).await?;
    expect(&mut session, &format!("RCPT TO:<{recipient}>"), 250).await?;
    expect(&mut session, "DATA", 354).await?;
    let message = format!(
        "From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: continuity e2e\r\nMessage-ID: <{message_id}>\r\n\r\n{body}\r\n."
    );
    expect(&mut session, &message, 250).await?;
    let _ = command(&mut session, "QUIT").await;
    Ok(())
}

/// The reply code `server` gives to `RCPT TO:<recipient>`.
pub async fn rcpt_code(server: SocketAddr, recipient: &str) -> Result<u16, String> {
    let mut session = open(server).await?;
    expect(&mut session, "MAIL FROM:<probe@e2e.test>", 250).await?;
    let (code, _) = command(&mut session, &format!("RCPT TO:<{recipient}>")).await?;
    let _ = command(&mut session, "QUIT").await;
    Ok(code)
}

/// Sends one tagged IMAP command; returns every line up to its tagged reply, if that is OK.
async fn imap(session: &mut Session, tag: &str, line: &str) -> Result<String, String> {
    session
        .get_mut()
        .write_all(format!("{tag} {line}\r\n").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    loop {
        let mut reply = String::new();
        if session.read_line(&mut reply).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("IMAP closed after {text:?}"));
        }
        text.push_str(&reply);
        if let Some(status) = reply.strip_prefix(&format!("{tag} ")) {
            return if status.starts_with("OK") { Ok(text) } else { Err(text) };
        }
    }
}

/// Logs in to the IMAP `server` as `user` with `password` and runs `commands` in order;
/// returns what each answered, up to its tagged OK, or the first failure.
pub async fn imap_session(
    server: SocketAddr,
    user: &str,
    password: &str,
    commands: &[&str],
) -> Result<Vec<String>, String> {
    let mut session = BufReader::new(TcpStream::connect(server).await.map_err(|e| e.to_string())?);
    let mut greeting = String::new();
    session.read_line(&mut greeting).await.map_err(|e| e.to_string())?;
    imap(&mut session, "a0", &format!("LOGIN \"{user}\" \"{password}\"")).await?;
    let mut answers = Vec::new();
    for (n, command) in commands.iter().enumerate() {
        answers.push(imap(&mut session, &format!("a{}", n + 1), command).await?);
    }
    let _ = imap(&mut session, "z", "LOGOUT").await;
    Ok(answers)
}

/// The message numbers an IMAP `SEARCH` answered.
pub fn search_hits(answer: &str) -> Vec<u32> {
    answer
        .lines()
        .filter_map(|line| line.strip_prefix("* SEARCH"))
        .flat_map(|hits| hits.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect()
}

/// Whether `user`'s INBOX at the IMAP `server` holds a message with `message_id`, logging in
/// with `password`.
pub async fn imap_has(server: SocketAddr, user: &str, password: &str, message_id: &str) -> Result<bool, String> {
    let search = format!("SEARCH HEADER Message-ID \"{message_id}\"");
    let answers = imap_session(server, user, password, &["SELECT INBOX", &search]).await?;
    Ok(answers.last().is_some_and(|found| !search_hits(found).is_empty()))
}

/// The cluster address of Service `name`, at `port`.
pub async fn service(client: &Client, namespace: &str, name: &str, port: u16) -> SocketAddr {
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let ip = wait_for(&format!("Service {name}"), Duration::from_secs(30), || async {
        services.get(name).await.ok()?.spec?.cluster_ip
    })
    .await;
    SocketAddr::new(ip.parse().expect("a cluster IP"), port)
}
