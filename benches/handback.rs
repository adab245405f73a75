//! Hand-back throughput: MESSAGES held messages (10,000 by default) handed back by the
//! `continuity-agent` binary to a real local Postfix playing the primary (SPEC 4.7; goal: all
//! 10,000 within 2 minutes on 2 cores).
//!
//!     cargo bench --bench handback [-- MESSAGES]
//!
//! The ledger is filled first, in-process, through the agent's own [`Ledger`] (each hold is
//! fsynced, as in the pod); then the agent starts with the primary as its destination and a
//! rate limit above what it can reach, and the clock runs until `/summary` shows nothing
//! pending. Prints messages per second, per CPU-second of the agent (from /proc), and the
//! exactly-once check: every subject exactly once in the primary's mailbox.

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/postfix.rs"]
mod postfix;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use continuity_operator::handback::ledger::Ledger;
use continuity_operator::handback::settings::{Destination, HandBackSettings};
use continuity_operator::handback::tracking::Summary;
use postfix::{Postfix, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Clock ticks per second of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

async fn summary(http: SocketAddr) -> Option<Summary> {
    let mut stream = tokio::net::TcpStream::connect(http).await.ok()?;
    stream
        .write_all(b"GET /summary HTTP/1.0\r\nHost: agent\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    serde_json::from_str(response.split_once("\r\n\r\n")?.1).ok()
}

#[tokio::main]
async fn main() {
    let messages: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(common::unique("bench-handback"));
    std::fs::create_dir_all(&dir).expect("bench directory");
    let primary = Postfix::start("bench-primary", Role::Mailbox { domain: "example.com" }).await;

    let fill = Instant::now();
    {
        let mut ledger = Ledger::open(&dir.join("ledger")).expect("ledger");
        for i in 0..messages {
            let message = format!(
                "Message-ID: <bench-{i}@example.org>\r\nFrom: sender@example.org\r\nTo: user{n}@example.com\r\nSubject: bench-{i}\r\n\r\nheld during the outage\r\n",
                n = i % 50
            );
            ledger
                .hold(
                    message.as_bytes(),
                    "sender@example.org",
                    &format!("user{}@example.com", i % 50),
                    jiff::Timestamp::now(),
                )
                .expect("holding");
        }
    }
    let fill = fill.elapsed();

    let settings = HandBackSettings {
        deliver_to: Some(Destination {
            host: "127.0.0.1".into(),
            port: primary.port,
        }),
        messages_per_second: 1000,
        retry_seconds: 1,
        helo_name: "bench.example.com".into(),
    };
    let settings_file = dir.join("handback.json");
    std::fs::write(&settings_file, settings.render()).expect("settings");
    let log = dir.join("agent.log");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_continuity-agent"))
        .arg(format!("--data-dir={}", dir.join("ledger").display()))
        .arg(format!("--settings={}", settings_file.display()))
        .args([
            "--lmtp-addr=127.0.0.1:0",
            "--http-addr=127.0.0.1:0",
            "--log-format=json",
        ])
        .env("RUST_LOG", "warn,continuity_operator::handback=info")
        .stderr(std::fs::File::create(&log).expect("log"))
        .stdout(Stdio::null())
        .spawn()
        .expect("starting continuity-agent");
    let started = Instant::now();
    let http: SocketAddr = common::wait_for("the agent to listen", Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&log).ok()?;
        let line = text.lines().find(|l| l.contains("agent listening"))?;
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        line["http"].as_str()?.parse().ok()
    })
    .await;
    let done = common::wait_for("nothing pending", Duration::from_secs(900), || async {
        summary(http).await.filter(|s| s.counts.pending == 0)
    })
    .await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds(agent.id());
    let _ = agent.kill();
    let _ = agent.wait();

    let arrived = common::wait_for(
        "the primary to file every message",
        Duration::from_secs(600),
        || async {
            let delivered = primary.delivered();
            (delivered.len() >= messages).then_some(delivered)
        },
    )
    .await;
    let mut subjects: BTreeMap<String, usize> = BTreeMap::new();
    for message in &arrived {
        let subject = message
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default();
        *subjects.entry(subject.to_owned()).or_default() += 1;
    }
    let exactly_once = subjects.len() == messages && subjects.values().all(|n| *n == 1);

    let seconds = elapsed.as_secs_f64();
    println!("handback: messages            {messages}");
    println!(
        "handback: ledger fill         {:.1} s ({:.0} holds/s, each fsynced)",
        fill.as_secs_f64(),
        messages as f64 / fill.as_secs_f64()
    );
    println!("handback: handed back in      {seconds:.1} s (goal: 10,000 in <= 120 s)");
    println!("handback: messages per second {:.0}", messages as f64 / seconds);
    println!(
        "handback: agent CPU           {cpu:.2} s ({:.0} messages per CPU-second)",
        messages as f64 / cpu.max(0.01)
    );
    println!(
        "handback: delivered/failed    {}/{}",
        done.counts.delivered, done.counts.failed
    );
    println!(
        "handback: exactly once        {} ({} distinct subjects, {} messages at the primary)",
        if exactly_once { "yes" } else { "NO" },
        subjects.len(),
        arrived.len()
    );
    assert!(exactly_once, "the primary did not get every message exactly once");
}
