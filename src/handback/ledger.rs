//! The hand-back ledger on the mail volume: every message held for the primary, one entry per
//! recipient, and what became of it. Hand-written because its whole point is the order of
//! writes and fsyncs, which no embedded database states as plainly.
//!
//! On disk, under the agent's directory:
//! - `spool/<sha256>`: each message's bytes, named by their hash (written to `spool/.tmp-*`,
//!   fsynced, renamed, directory fsynced), removed once every entry naming it is delivered;
//! - `ledger.jsonl`: an append-only log, one JSON record per line, each fsynced before the
//!   caller acts on it: `held` (seq, hash, Message-ID, envelope sender and recipient, time),
//!   an `attempt` before each try at the primary, then at most one of `delivered` (the
//!   primary's 250 reply) or `failed` (its 5xx reply). An attempt with nothing after it when
//!   the log is replayed was interrupted: the primary may or may not have the message (SMTP
//!   cannot tell, RFC 1047), so the entry is sent again and marked `interrupted`.
//!
//! Replaying the log rebuilds the state. A last line without its newline is a write the
//! process died in (nothing was acknowledged for it) and is cut off; any other unreadable line
//! stops the agent rather than guess. The crash argument, step by step, is in
//! `docs/handback.md`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What became of a held message, in the manual's words.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Held for the primary.
    Deferred,
    /// Accepted by the primary.
    Delivered,
    /// Refused by the primary for good (its reply is kept).
    Failed,
}

/// One message for one recipient.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// SHA-256 of the message's bytes, hex.
    pub hash: String,
    /// The envelope sender (empty for a bounce).
    pub sender: String,
    /// The envelope recipient: the covered user.
    pub recipient: String,
    pub received_at: Timestamp,
    pub state: State,
    /// When it was delivered or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_at: Option<Timestamp>,
    /// The primary's reply that settled it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Tries at the primary so far.
    #[serde(default)]
    pub attempts: u32,
    /// Tries the agent died in (between starting to send and recording the answer): the
    /// primary may already have had the message once per such try.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interrupted: u32,
    /// An attempt is recorded and not answered yet.
    #[serde(skip)]
    in_flight: bool,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A line of `ledger.jsonl`.
#[derive(Serialize, Deserialize, Debug)]
#[serde(tag = "op", rename_all = "camelCase")]
enum Record {
    #[serde(rename_all = "camelCase")]
    Held {
        seq: u64,
        hash: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message_id: Option<String>,
        from: String,
        to: String,
        at: Timestamp,
    },
    Attempt {
        seq: u64,
        at: Timestamp,
    },
    /// The primary answered 4xx: the entry stays pending.
    Deferred {
        seq: u64,
        at: Timestamp,
        reply: String,
    },
    Delivered {
        seq: u64,
        at: Timestamp,
        reply: String,
    },
    Failed {
        seq: u64,
        at: Timestamp,
        reply: String,
    },
}

/// Counts over the whole ledger.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Every entry ever held.
    pub held: u64,
    pub delivered: u64,
    pub pending: u64,
    pub failed: u64,
    /// When the oldest pending entry was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<Timestamp>,
}

/// The ledger, open.
pub struct Ledger {
    dir: PathBuf,
    log: File,
    entries: BTreeMap<u64, Entry>,
    /// (hash, recipient in lower case) -> seq: the same bytes for the same recipient are one
    /// entry, so Postfix repeating a delivery the agent died before acknowledging adds none.
    keys: HashMap<(String, String), u64>,
    /// Entries not yet delivered, per hash: the spool file stays while any remains.
    unsettled_per_hash: HashMap<String, u32>,
}

const LOG: &str = "ledger.jsonl";
const SPOOL: &str = "spool";

fn corrupt(line: usize, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{LOG} line {line} is unreadable ({detail}); the agent stops rather than guess"),
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The value of the first `Message-ID` header, unfolded, if the header block has one.
pub fn message_id(message: &[u8]) -> Option<String> {
    let head_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| message.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(message.len());
    let head = String::from_utf8_lossy(&message[..head_end]);
    let mut lines = head.lines().peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("message-id") {
            let mut value = value.trim().to_owned();
            while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
                value.push_str(next.trim());
            }
            return (!value.is_empty()).then_some(value);
        }
    }
    None
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir` and replays its log.
    pub fn open(dir: &Path) -> io::Result<Ledger> {
        fs::create_dir_all(dir.join(SPOOL))?;
        let path = dir.join(LOG);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        // A last line without its newline is a write the process died in: cut it off.
        let complete = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut ledger = Ledger {
            dir: dir.to_owned(),
            log: OpenOptions::new().create(true).append(true).open(&path)?,
            entries: BTreeMap::new(),
            keys: HashMap::new(),
            unsettled_per_hash: HashMap::new(),
        };
        if complete < text.len() {
            ledger.log.set_len(complete as u64)?;
            ledger.log.sync_all()?;
        }
        for (number, line) in text[..complete].split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let record: Record = serde_json::from_slice(line).map_err(|e| corrupt(number + 1, e))?;
            ledger.replay(record).map_err(|e| corrupt(number + 1, e))?;
        }
        for entry in ledger.entries.values_mut().filter(|e| e.in_flight) {
            entry.in_flight = false;
            entry.interrupted += 1;
        }
        // Spool files of a hold the process died in before its record was written.
        for file in fs::read_dir(dir.join(SPOOL))? {
            let file = file?;
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                fs::remove_file(file.path())?;
            }
        }
        Ok(ledger)
    }

    fn replay(&mut self, record: Record) -> Result<(), String> {
        match record {
            Record::Held {
                seq,
                hash,
                message_id,
                from,
                to,
                at,
            } => {
                self.keys.insert((hash.clone(), to.to_lowercase()), seq);
                *self.unsettled_per_hash.entry(hash.clone()).or_default() += 1;
                self.entries.insert(
                    seq,
                    Entry {
                        seq,
                        message_id,
                        hash,
                        sender: from,
                        recipient: to,
                        received_at: at,
                        state: State::Deferred,
                        settled_at: None,
                        reply: None,
                        attempts: 0,
                        interrupted: 0,
                        in_flight: false,
                    },
                );
                Ok(())
            }
            Record::Attempt { seq, .. } => {
                let entry = self
                    .entries
                    .get_mut(&seq)
                    .ok_or(format!("entry {seq} was never held"))?;
                entry.attempts += 1;
                entry.in_flight = true;
                Ok(())
            }
            Record::Deferred { seq, reply, .. } => {
                let entry = self
                    .entries
                    .get_mut(&seq)
                    .ok_or(format!("entry {seq} was never held"))?;
                entry.in_flight = false;
                entry.reply = Some(reply);
                Ok(())
            }
            Record::Delivered { seq, at, reply } => self.mark(seq, State::Delivered, at, reply),
            Record::Failed { seq, at, reply } => self.mark(seq, State::Failed, at, reply),
        }
    }

    fn mark(&mut self, seq: u64, state: State, at: Timestamp, reply: String) -> Result<(), String> {
        let entry = self
            .entries
            .get_mut(&seq)
            .ok_or(format!("entry {seq} was never held"))?;
        if entry.state != State::Deferred {
            return Err(format!("entry {seq} is settled twice"));
        }
        entry.state = state;
        entry.in_flight = false;
        entry.settled_at = Some(at);
        entry.reply = Some(reply);
        Ok(())
    }

    fn append(&mut self, record: &Record) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        self.log.write_all(&line)?;
        self.log.sync_data()
    }

    fn spool_path(&self, hash: &str) -> PathBuf {
        self.dir.join(SPOOL).join(hash)
    }

    /// Holds `message` for `recipient`: its bytes and then its entry are on disk when this
    /// returns. Returns the entry's seq, and whether it is new (false: the same bytes were
    /// already held for this recipient).
    pub fn hold(&mut self, message: &[u8], sender: &str, recipient: &str, now: Timestamp) -> io::Result<(u64, bool)> {
        let hash = format!("{:x}", Sha256::digest(message));
        if let Some(seq) = self.keys.get(&(hash.clone(), recipient.to_lowercase())) {
            return Ok((*seq, false));
        }
        let path = self.spool_path(&hash);
        if !path.exists() {
            let spool = self.dir.join(SPOOL);
            let temporary = spool.join(format!(".tmp-{hash}"));
            let mut file = File::create(&temporary)?;
            file.write_all(message)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)?;
            sync_dir(&spool)?;
        }
        let seq = self.entries.keys().next_back().map_or(1, |last| last + 1);
        let record = Record::Held {
            seq,
            hash,
            message_id: message_id(message),
            from: sender.to_owned(),
            to: recipient.to_owned(),
            at: now,
        };
        self.append(&record)?;
        self.replay(record).map_err(io::Error::other)?;
        Ok((seq, true))
    }

    /// Records that entry `seq` is about to be sent to the primary (before its first byte).
    pub fn attempt(&mut self, seq: u64, now: Timestamp) -> io::Result<()> {
        let record = Record::Attempt { seq, at: now };
        self.append(&record)?;
        self.replay(record).map_err(io::Error::other)
    }

    /// Records the primary's answer for entry `seq`: `Delivered` after its 250, `Failed`
    /// after a 5xx, `Deferred` (still pending, the reply kept) after a 4xx. The spool file goes once nothing unsettled names it.
    pub fn settle(&mut self, seq: u64, state: State, reply: &str, now: Timestamp) -> io::Result<()> {
        let reply = reply.to_owned();
        let record = match state {
            State::Delivered => Record::Delivered { seq, at: now, reply },
            State::Failed => Record::Failed { seq, at: now, reply },
            State::Deferred => Record::Deferred { seq, at: now, reply },
        };
        self.append(&record)?;
        self.replay(record).map_err(io::Error::other)?;
        if state == State::Delivered {
            let hash = self.entries.get(&seq).map(|e| e.hash.clone()).unwrap_or_default();
            let left = self.unsettled_per_hash.get_mut(&hash).map(|n| {
                *n = n.saturating_sub(1);
                *n
            });
            if left == Some(0) {
                self.unsettled_per_hash.remove(&hash);
                match fs::remove_file(self.spool_path(&hash)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// The bytes of a held message.
    pub fn message(&self, entry: &Entry) -> io::Result<Vec<u8>> {
        fs::read(self.spool_path(&entry.hash))
    }

    /// An entry by seq.
    pub fn entry(&self, seq: u64) -> Option<&Entry> {
        self.entries.get(&seq)
    }

    /// Pending entries, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.state == State::Deferred)
    }

    /// Pending entries from `seq` on, oldest first.
    pub fn pending_from(&self, seq: u64) -> impl Iterator<Item = &Entry> {
        self.entries
            .range(seq..)
            .map(|(_, e)| e)
            .filter(|e| e.state == State::Deferred)
    }

    /// Every entry, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Counts over the ledger.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts {
            held: self.entries.len() as u64,
            ..Counts::default()
        };
        for entry in self.entries.values() {
            match entry.state {
                State::Deferred => {
                    counts.pending += 1;
                    counts.oldest_pending = Some(
                        counts
                            .oldest_pending
                            .map_or(entry.received_at, |t| t.min(entry.received_at)),
                    );
                }
                State::Delivered => counts.delivered += 1,
                State::Failed => counts.failed += 1,
            }
        }
        counts
    }
}

/// Runs `write` on the shared ledger off the async runtime's threads (its fsyncs block).
pub async fn blocking<T, F>(ledger: &std::sync::Arc<std::sync::Mutex<Ledger>>, write: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Ledger) -> io::Result<T> + Send + 'static,
{
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || match ledger.lock() {
        Ok(mut ledger) => write(&mut ledger),
        Err(_) => Err(io::Error::other("the ledger's lock is poisoned")),
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ledger-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const MESSAGE: &[u8] =
        b"Received: from gw (queue id ABC)\r\nMessage-ID:\r\n <one@example.net>\r\nSubject: hi\r\n\r\nbody\r\n";

    #[test]
    fn the_message_id_is_read_from_the_headers_only() {
        assert_eq!(message_id(MESSAGE).as_deref(), Some("<one@example.net>"));
        assert_eq!(message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n"), None);
    }

    #[test]
    fn a_held_message_survives_a_reopen_and_is_held_once_per_recipient() {
        let dir = dir("reopen");
        let now = Timestamp::UNIX_EPOCH;
        let mut ledger = Ledger::open(&dir).unwrap();
        let (alice, new) = ledger.hold(MESSAGE, "s@example.net", "alice@example.com", now).unwrap();
        assert!(new);
        let (bob, _) = ledger.hold(MESSAGE, "s@example.net", "bob@example.com", now).unwrap();
        assert_eq!(
            ledger.hold(MESSAGE, "s@example.net", "ALICE@example.com", now).unwrap(),
            (alice, false)
        );
        drop(ledger);

        let mut ledger = Ledger::open(&dir).unwrap();
        assert_eq!(ledger.counts().pending, 2);
        assert_eq!(
            ledger.entry(alice).unwrap().message_id.as_deref(),
            Some("<one@example.net>")
        );
        assert_eq!(ledger.message(ledger.entry(bob).unwrap()).unwrap(), MESSAGE);
        ledger.attempt(alice, now).unwrap();
        ledger.attempt(bob, now).unwrap();
        ledger.settle(alice, State::Delivered, "250 2.0.0 Ok", now).unwrap();
        assert!(
            ledger.message(ledger.entry(bob).unwrap()).is_ok(),
            "bob still needs the bytes"
        );
        ledger
            .settle(bob, State::Failed, "550 5.1.1 unknown user", now)
            .unwrap();
        assert!(
            ledger.message(ledger.entry(bob).unwrap()).is_ok(),
            "a failed message is kept"
        );
        drop(ledger);

        let ledger = Ledger::open(&dir).unwrap();
        let counts = ledger.counts();
        assert_eq!(
            (counts.held, counts.delivered, counts.failed, counts.pending),
            (2, 1, 1, 0)
        );
        assert_eq!(ledger.entry(alice).unwrap().attempts, 1);
        assert_eq!(ledger.entry(alice).unwrap().interrupted, 0, "answered");
        assert_eq!(
            ledger.entry(bob).unwrap().reply.as_deref(),
            Some("550 5.1.1 unknown user")
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_anything_else_unreadable_stops() {
        let dir = dir("torn");
        let mut ledger = Ledger::open(&dir).unwrap();
        let (seq, _) = ledger
            .hold(MESSAGE, "", "alice@example.com", Timestamp::UNIX_EPOCH)
            .unwrap();
        drop(ledger);
        let log = dir.join(LOG);
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(br#"{"op":"delivered","seq":1,"at":"#).unwrap();
        drop(file);
        let mut ledger = Ledger::open(&dir).unwrap();
        assert_eq!(
            ledger.entry(seq).unwrap().state,
            State::Deferred,
            "the torn record never happened"
        );
        ledger
            .settle(seq, State::Delivered, "250 ok", Timestamp::UNIX_EPOCH)
            .unwrap();
        drop(ledger);
        assert_eq!(Ledger::open(&dir).unwrap().counts().delivered, 1);

        fs::write(&log, "garbage\n").unwrap();
        let error = Ledger::open(&dir).err().expect("a corrupt ledger is refused");
        assert!(error.to_string().contains("line 1 is unreadable"), "{error}");
    }

    #[test]
    fn an_attempt_the_agent_died_in_is_marked_interrupted_and_stays_pending() {
        let dir = dir("interrupted");
        let mut ledger = Ledger::open(&dir).unwrap();
        let (seq, _) = ledger
            .hold(MESSAGE, "", "alice@example.com", Timestamp::UNIX_EPOCH)
            .unwrap();
        ledger.attempt(seq, Timestamp::UNIX_EPOCH).unwrap();
        drop(ledger);
        let ledger = Ledger::open(&dir).unwrap();
        let entry = ledger.entry(seq).unwrap();
        assert_eq!(
            (entry.state, entry.attempts, entry.interrupted),
            (State::Deferred, 1, 1)
        );
        assert_eq!(ledger.pending().count(), 1, "sent again");
    }

    #[test]
    fn counts_name_the_oldest_pending_message() {
        let dir = dir("counts");
        let mut ledger = Ledger::open(&dir).unwrap();
        let early = Timestamp::from_second(100).unwrap();
        ledger.hold(b"one", "", "a@example.com", early).unwrap();
        let (second, _) = ledger
            .hold(b"two", "", "a@example.com", Timestamp::from_second(200).unwrap())
            .unwrap();
        ledger.settle(1, State::Delivered, "250", early).unwrap();
        let counts = ledger.counts();
        assert_eq!(counts.oldest_pending, Some(Timestamp::from_second(200).unwrap()));
        assert_eq!(ledger.pending().map(|e| e.seq).collect::<Vec<_>>(), vec![second]);
    }
}
