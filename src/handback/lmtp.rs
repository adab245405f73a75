//! The agent's LMTP server: where the standby's Postfix delivers the hand-back copy of every
//! message it accepted for a covered user (see [`super::addresses`]). Each recipient is
//! answered 250 only once the message and its envelope are in the [`Ledger`]; until then
//! Postfix keeps the message in its own queue, on the same volume, and retries. Hand-written:
//! the few LMTP verbs Postfix uses are less code than adapting an SMTP server crate, and the
//! reply for each recipient after `DATA` is LMTP's own.

use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::addresses;
use super::ledger::{self, Ledger};

/// Larger messages are refused (Postfix's own default limit is 10 MB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Longer command lines are refused (RFC 5321 allows 512).
const MAX_LINE: usize = 4096;

/// Serves LMTP on `listener` until the process ends; `arrived` is notified after each
/// message is held.
pub async fn serve(listener: TcpListener, ledger: Arc<Mutex<Ledger>>, arrived: Arc<Notify>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (ledger, arrived) = (ledger.clone(), arrived.clone());
                tokio::spawn(async move {
                    let (read, write) = stream.into_split();
                    if let Err(error) = session(read, write, ledger, arrived).await {
                        debug!(%peer, %error, "LMTP session ended");
                    }
                });
            }
            Err(error) => warn!(%error, "cannot accept an LMTP connection"),
        }
    }
}

/// The address inside `<...>` of a `MAIL FROM:` or `RCPT TO:` argument.
fn path(argument: &str) -> Option<String> {
    let start = argument.find('<')?;
    let end = start + argument[start..].find('>')?;
    Some(argument[start + 1..end].to_owned())
}

async fn reply<W: AsyncWrite + Unpin>(out: &mut W, text: &str) -> std::io::Result<()> {
    out.write_all(text.as_bytes()).await?;
    out.write_all(b"\r\n").await?;
    out.flush().await
}

/// One LMTP session (RFC 2033), generic over the stream so tests can drive it.
pub async fn session<R, W>(read: R, mut out: W, ledger: Arc<Mutex<Ledger>>, arrived: Arc<Notify>) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut input = BufReader::new(read);
    reply(&mut out, "220 continuity hand-back agent LMTP").await?;
    let mut sender: Option<String> = None;
    let mut recipients: Vec<String> = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if (&mut input).take(MAX_LINE as u64).read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        let (verb, argument) = text.split_once([' ', ':']).unwrap_or((text, ""));
        match verb.to_ascii_uppercase().as_str() {
            "LHLO" => {
                reply(
                    &mut out,
                    "250-continuity hand-back agent\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES",
                )
                .await?
            }
            "MAIL" => match path(argument) {
                Some(address) => {
                    sender = Some(address);
                    recipients.clear();
                    reply(&mut out, "250 2.1.0 Ok").await?;
                }
                None => reply(&mut out, "501 5.5.4 MAIL FROM:<address> expected").await?,
            },
            "RCPT" => match (path(argument), &sender) {
                (_, None) => reply(&mut out, "503 5.5.1 MAIL first").await?,
                (Some(address), Some(_)) if addresses::from_handback(&address).is_some() => {
                    recipients.push(address);
                    reply(&mut out, "250 2.1.5 Ok").await?;
                }
                (Some(address), Some(_)) => {
                    reply(&mut out, &format!("550 5.1.1 <{address}> is not a hand-back address")).await?
                }
                (None, Some(_)) => reply(&mut out, "501 5.5.4 RCPT TO:<address> expected").await?,
            },
            "DATA" if recipients.is_empty() => reply(&mut out, "503 5.5.1 no valid recipients").await?,
            "DATA" => {
                reply(&mut out, "354 End data with <CR><LF>.<CR><LF>").await?;
                let message = read_data(&mut input).await?;
                let from = sender.take().unwrap_or_default();
                for recipient in std::mem::take(&mut recipients) {
                    let answer = match message.as_ref() {
                        None => "552 5.3.4 message too big".to_owned(),
                        Some(bytes) => hold(&ledger, bytes, &from, &recipient).await,
                    };
                    reply(&mut out, &answer).await?;
                }
                arrived.notify_one();
            }
            "RSET" => {
                sender = None;
                recipients.clear();
                reply(&mut out, "250 2.0.0 Ok").await?;
            }
            "NOOP" => reply(&mut out, "250 2.0.0 Ok").await?,
            "QUIT" => return reply(&mut out, "221 2.0.0 Bye").await,
            _ => reply(&mut out, "502 5.5.2 command not recognised").await?,
        }
    }
}

/// The message up to the lone dot, dot-unstuffed; `None` if it exceeds
/// [`MAX_MESSAGE_BYTES`] (read to the end anyway, so the session stays in step).
async fn read_data<R: AsyncRead + Unpin>(input: &mut BufReader<R>) -> std::io::Result<Option<Vec<u8>>> {
    let mut message = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == b".\r\n" || line == b".\n" {
            return Ok((!too_big).then_some(message));
        }
        let content = line.strip_prefix(b".").unwrap_or(&line);
        if message.len() + content.len() > MAX_MESSAGE_BYTES {
            too_big = true;
            message.clear();
        } else if !too_big {
            message.extend_from_slice(content);
        }
    }
}

async fn hold(ledger: &Arc<Mutex<Ledger>>, message: &[u8], sender: &str, recipient: &str) -> String {
    let Some(user) = addresses::from_handback(recipient).map(str::to_owned) else {
        return format!("550 5.1.1 <{recipient}> is not a hand-back address");
    };
    let (message, from, target) = (message.to_vec(), sender.to_owned(), user.clone());
    let held = ledger::blocking(ledger, move |ledger| {
        ledger.hold(&message, &from, &target, Timestamp::now())
    })
    .await;
    match held {
        Ok((seq, true)) => {
            info!(seq, recipient = %user, "held for the primary");
            format!("250 2.0.0 <{user}> held for the primary as #{seq}")
        }
        Ok((seq, false)) => format!("250 2.0.0 <{user}> already held as #{seq}"),
        Err(error) => {
            warn!(%error, "cannot write the ledger; Postfix will retry");
            "451 4.3.0 cannot write the hand-back ledger".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_recipient_is_answered_once_its_message_is_held() {
        let dir = std::env::temp_dir().join(format!("lmtp-session-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ledger = Arc::new(Mutex::new(Ledger::open(&dir).unwrap()));
        let alice = addresses::handback("alice@example.com");
        let script = format!(
            "LHLO mx\r\nMAIL FROM:<s@example.net> BODY=8BITMIME\r\nRCPT TO:<{alice}>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n"
        );
        let mut out = Vec::new();
        session(script.as_bytes(), &mut out, ledger.clone(), Arc::new(Notify::new()))
            .await
            .unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("550 5.1.1 <bob@example.com> is not a hand-back address"),
            "{out}"
        );
        assert!(
            out.contains("250 2.0.0 <alice@example.com> held for the primary as #1"),
            "{out}"
        );
        let ledger = ledger.lock().unwrap();
        let entry = ledger.entry(1).unwrap();
        assert_eq!(
            (entry.sender.as_str(), entry.recipient.as_str()),
            ("s@example.net", "alice@example.com")
        );
        assert_eq!(
            ledger.message(entry).unwrap(),
            b"Subject: x\r\n\r\n.dot\r\n",
            "dot-unstuffed"
        );
    }
}
