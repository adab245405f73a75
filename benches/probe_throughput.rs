//! Probe throughput: plaintext SMTP health checks per CPU-second, against local SMTP listeners
//! for hundreds of domains probed concurrently (SPEC 5: >= 10k probes/s on two cores, that is
//! >= 5k per CPU-second).
//!
//!     cargo bench --bench probe_throughput [-- DOMAINS SECONDS]
//!
//! Two figures: the probe alone (each domain probed back to back), and the operator's whole
//! probing path (the scheduler with its per-domain periods, the concurrency bound, the result
//! counting and the metrics) with every domain due every 10 ms. Every probe connects, reads the
//! 220 greeting, sends EHLO, reads the 250 reply, sends QUIT, reads 221 and closes. The
//! listeners run in a child process (this binary with `--serve`), so the CPU time counted is
//! the prober's alone.
//!
//! Then the same exchange from a peer, against the same listeners in the same run: Prometheus's
//! `blackbox_exporter` (Debian's `prometheus-blackbox-exporter`, installed by
//! `hack/blackbox.sh` when missing) with a `tcp` module whose `query_response` expects `^220`,
//! sends `EHLO bench.test`, expects the last line of the reply (`^250 `), sends `QUIT` and
//! expects `^221`. It is driven as Prometheus drives it, `GET /probe?module=..&target=..` over
//! kept-alive HTTP connections, with as many probes in flight as the probe-alone run (one per
//! domain, each cycling over the listeners) for as long. Its figure is probes per CPU-second
//! of the exporter's process (from /proc), so it includes the exporter's HTTP serving and
//! metrics encoding, which is how it runs; the HTTP driver runs in this process and is not
//! counted. The ratio of our figures to it is printed for both of ours. When the exporter
//! cannot be installed or started, a line says the peer was skipped and why.

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/peers.rs"]
mod peers;

use std::io::{BufRead, BufReader as StdBufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use continuity_operator::health::probe::{self, Outcome, Target};
use continuity_operator::health::scheduler::Prober;
use continuity_operator::health::widespread::Threshold;
use continuity_operator::telemetry::Metrics;

use common::probe_registration;
use peers::{Behavior, Peer};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let count = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(300);
        return serve(count);
    }
    let domains: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(300);
    let seconds: u64 = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10);

    let exe = std::env::current_exe().expect("own path");
    let mut child = Command::new(exe)
        .args(["--serve", &domains.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the listeners");
    let ports: Vec<u16> = StdBufReader::new(child.stdout.take().expect("listener ports"))
        .lines()
        .take(domains)
        .map(|line| line.expect("a port").parse().expect("a port number"))
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (probes, failures, mut latencies, wall, cpu) = runtime.block_on(run(&ports, Duration::from_secs(seconds)));
    let (scheduled, scheduled_ok, scheduled_wall, scheduled_cpu) =
        runtime.block_on(run_scheduled(&ports, Duration::from_secs(seconds)));
    let peer = run_peer(&runtime, &ports, Duration::from_secs(seconds));
    let _ = child.kill();
    let _ = child.wait();

    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    println!("probe throughput: {domains} domains probed concurrently, {seconds} s each run");
    println!("  the probe alone (back to back per domain):");
    println!("    probes            {probes} ({failures} failed)");
    println!(
        "    wall time         {:.2} s -> {:.0} probes/s",
        wall.as_secs_f64(),
        probes as f64 / wall.as_secs_f64()
    );
    println!(
        "    CPU time          {:.2} s -> {:.0} probes per CPU-second (target >= 5000)",
        cpu,
        probes as f64 / cpu
    );
    println!(
        "    probe latency     p50 {:?}  p99 {:?}",
        percentile(0.50),
        percentile(0.99)
    );
    println!("  through the scheduler (every domain due every 10 ms, at most 1024 probes at once):");
    println!(
        "    probes            {scheduled} ({} failed)",
        scheduled - scheduled_ok
    );
    println!(
        "    wall time         {:.2} s -> {:.0} probes/s",
        scheduled_wall.as_secs_f64(),
        scheduled as f64 / scheduled_wall.as_secs_f64()
    );
    println!(
        "    CPU time          {:.2} s -> {:.0} probes per CPU-second (target >= 5000)",
        scheduled_cpu,
        scheduled as f64 / scheduled_cpu
    );
    match peer {
        Ok(peer) => {
            let per_cpu = peer.probes as f64 / peer.cpu;
            println!(
                "peer: blackbox_exporter {} tcp query_response: {} probes in {:.2} s, {:.0} probes per CPU-second (failures {})",
                peer.version,
                peer.probes,
                peer.wall.as_secs_f64(),
                per_cpu,
                peer.failures
            );
            println!(
                "  blackbox_exporter CPU time {:.2} s, {:.0} probes/s, {} in flight (the HTTP driver's own {:.2} CPU-s, in this process, not counted)",
                peer.cpu,
                peer.probes as f64 / peer.wall.as_secs_f64(),
                ports.len(),
                peer.driver_cpu
            );
            println!(
                "ratio: continuity probes per CPU-second / blackbox_exporter = {:.2} (the probe alone), {:.2} (through the scheduler)",
                probes as f64 / cpu / per_cpu,
                scheduled as f64 / scheduled_cpu / per_cpu
            );
        }
        Err(why) => println!("peer: blackbox_exporter skipped: {why}"),
    }
}

/// Registers every port with the operator's scheduler, due every 10 ms; returns (probes, of
/// which Ok, wall time, CPU seconds), counted from the operator's own metrics.
async fn run_scheduled(ports: &[u16], duration: Duration) -> (u64, u64, Duration, f64) {
    let metrics = Arc::new(Metrics::default());
    let (prober, probing) = Prober::new(
        common::probe_client("bench.test"),
        1024,
        Threshold::default(),
        metrics.clone(),
        |_| {},
    );
    let probing = tokio::spawn(probing);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    for (i, &port) in ports.iter().enumerate() {
        prober.register(&("bench".into(), format!("d{i}")), probe_registration(port, 10, 2000));
    }
    tokio::time::sleep(duration).await;
    let text = metrics.encode();
    let (wall, cpu) = (started.elapsed(), cpu_seconds() - cpu_before);
    probing.abort();
    let count = |series: &str| -> u64 {
        text.lines()
            .filter(|line| line.starts_with(series))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    (
        count("continuity_probes_total{"),
        count("continuity_probes_total{result=\"Ok\"}"),
        wall,
        cpu,
    )
}

/// Probes every port back to back until `duration` is over; returns (probes, failures,
/// latencies, wall time, CPU seconds of this process).
async fn run(ports: &[u16], duration: Duration) -> (u64, u64, Vec<Duration>, Duration, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let workers: Vec<_> = ports
        .iter()
        .map(|&port| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let target = Target {
                    host: "127.0.0.1".into(),
                    port,
                    timeout: Duration::from_secs(2),
                    networks: common::loopback_allowed(),
                };
                let client = common::probe_client("bench.test");
                let (mut probes, mut failures, mut latencies) = (0u64, 0u64, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let report = probe::probe(&target, &client, None).await;
                    probes += 1;
                    if report.outcome != Outcome::Ok {
                        failures += 1;
                    }
                    latencies.push(report.latency);
                }
                (probes, failures, latencies)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut probes, mut failures, mut latencies) = (0, 0, Vec::new());
    for worker in workers {
        let (p, f, l) = worker.await.expect("worker");
        probes += p;
        failures += f;
        latencies.extend(l);
    }
    (
        probes,
        failures,
        latencies,
        started.elapsed(),
        cpu_seconds() - cpu_before,
    )
}

/// User plus system CPU time of this process (all threads), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    process_cpu_seconds("self")
}

/// User plus system CPU time of process `pid` ("self" or a number), all threads.
fn process_cpu_seconds(pid: &str) -> f64 {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The peer's module: the same exchange as our probe, with the same HELO name and timeout.
/// `expect` reads lines until one matches, so `^250 ` passes over the `250-` lines of the reply.
const BLACKBOX_CONFIG: &str = r#"modules:
  smtp_banner:
    prober: tcp
    timeout: 2s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220"
        - send: "EHLO bench.test"
        - expect: "^250 "
        - send: "QUIT"
        - expect: "^221"
"#;

/// What the peer did: its version, probes (of which failed), wall time, CPU seconds of the
/// exporter's process, and CPU seconds this process spent driving it.
struct PeerRun {
    version: String,
    probes: u64,
    failures: u64,
    wall: Duration,
    cpu: f64,
    driver_cpu: f64,
}

/// A running blackbox_exporter and its configuration folder; both go when dropped.
struct Exporter {
    child: Child,
    dir: PathBuf,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs blackbox_exporter's probe of every port for `duration`; Err says why it could not.
fn run_peer(runtime: &tokio::runtime::Runtime, ports: &[u16], duration: Duration) -> Result<PeerRun, String> {
    // Installs Debian's package when the binary is missing; prints the binary's path.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/hack/blackbox.sh");
    let installed = Command::new(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {script}: {e}"))?;
    let log = String::from_utf8_lossy(&installed.stderr);
    eprint!("{log}");
    if !installed.status.success() {
        let last = log.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(format!("hack/blackbox.sh failed ({}): {last}", installed.status));
    }
    // The path is the last line (apt may have said something before it).
    let printed = String::from_utf8_lossy(&installed.stdout);
    let binary = printed
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_owned();

    let version = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("running {binary} --version: {e}"))?;
    let version = [version.stdout, version.stderr].concat();
    let version = String::from_utf8_lossy(&version)
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)
        .unwrap_or("(unknown version)")
        .to_owned();

    let dir = std::env::temp_dir().join(format!("continuity-bench-blackbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let config = dir.join("blackbox.yml");
    std::fs::write(&config, BLACKBOX_CONFIG).map_err(|e| format!("writing {}: {e}", config.display()))?;
    // Port 0: the exporter logs the address it bound (`msg="Listening on" address=...`).
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut exporter = Exporter {
        child: child.map_err(|e| format!("starting {binary}: {e}"))?,
        dir,
    };
    let stderr = exporter.child.stderr.take().expect("the exporter's log");
    let (found, listening) = std::sync::mpsc::channel();
    // Reads the log to its end (so that the exporter never blocks on a full pipe); sends the
    // address, or the log so far when the exporter stops first.
    std::thread::spawn(move || {
        let (mut reporter, mut seen) = (Some(found), Vec::new());
        for line in StdBufReader::new(stderr).lines().map_while(Result::ok) {
            let Some(sender) = reporter.as_ref() else { continue };
            let address = line
                .contains("msg=\"Listening on\"")
                .then(|| line.split_whitespace().find_map(|field| field.strip_prefix("address=")))
                .flatten()
                .and_then(|a| a.trim_matches('"').parse::<SocketAddr>().ok());
            match address {
                Some(address) => {
                    let _ = sender.send(Ok(address));
                    reporter = None;
                }
                None if seen.len() < 20 => seen.push(line),
                None => {}
            }
        }
        if let Some(sender) = reporter {
            let _ = sender.send(Err(seen.join(" | ")));
        }
    });
    let address = match listening.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(address)) => address,
        Ok(Err(log)) => return Err(format!("{binary} stopped before listening: {log}")),
        Err(_) => return Err(format!("{binary} did not report a listening address within 10 s")),
    };
    let pid = exporter.child.id().to_string();
    let (probes, failures, wall, cpu, driver_cpu) = runtime.block_on(run_blackbox(address, &pid, ports, duration));
    drop(exporter);
    Ok(PeerRun {
        version,
        probes,
        failures,
        wall,
        cpu,
        driver_cpu,
    })
}

/// Asks the exporter at `exporter` to probe the ports, as many requests in flight as there are
/// ports, each worker cycling over all of them, until `duration` is over; returns (probes,
/// failures, wall time, CPU seconds of the exporter's process `pid`, CPU seconds of this
/// process). A probe fails unless the answer says `probe_success 1`.
async fn run_blackbox(
    exporter: SocketAddr,
    pid: &str,
    ports: &[u16],
    duration: Duration,
) -> (u64, u64, Duration, f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let ports: Arc<[u16]> = ports.into();
    let (cpu_before, driver_before) = (process_cpu_seconds(pid), cpu_seconds());
    let started = Instant::now();
    let workers: Vec<_> = (0..ports.len())
        .map(|worker| {
            let (stop, ports) = (stop.clone(), ports.clone());
            tokio::spawn(async move {
                let (mut probes, mut failures) = (0u64, 0u64);
                let mut connection = None;
                let mut body = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let port = ports[(worker + probes as usize) % ports.len()];
                    let path = format!("/probe?module=smtp_banner&target=127.0.0.1:{port}");
                    probes += 1;
                    let answered = match connection.as_mut() {
                        Some(connection) => http_get(connection, &path, &mut body).await,
                        None => match TcpStream::connect(exporter).await {
                            Ok(stream) => {
                                let _ = stream.set_nodelay(true);
                                let connection = connection.insert(BufReader::new(stream));
                                http_get(connection, &path, &mut body).await
                            }
                            Err(e) => Err(e),
                        },
                    };
                    let succeeded = answered.is_ok()
                        && std::str::from_utf8(&body).is_ok_and(|text| text.contains("\nprobe_success 1\n"));
                    if !succeeded {
                        failures += 1;
                    }
                    if answered.is_err() {
                        connection = None;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                (probes, failures)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let (mut probes, mut failures) = (0, 0);
    for worker in workers {
        let (p, f) = worker.await.expect("worker");
        probes += p;
        failures += f;
    }
    (
        probes,
        failures,
        started.elapsed(),
        process_cpu_seconds(pid) - cpu_before,
        cpu_seconds() - driver_before,
    )
}

/// One HTTP/1.1 GET on a kept-alive connection; the body (by Content-Length or chunked) goes
/// to `body`. An error leaves the connection unusable. (Written out because the project's
/// hyper has no client feature; the exporter's answers are small and plain.)
async fn http_get(connection: &mut BufReader<TcpStream>, path: &str, body: &mut Vec<u8>) -> std::io::Result<()> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    body.clear();
    connection
        .get_mut()
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await?;
    let mut line = String::new();
    if connection.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    if line.split_whitespace().nth(1) != Some("200") {
        return Err(invalid(line.trim_end()));
    }
    let (mut length, mut chunked) = (None, false);
    loop {
        line.clear();
        if connection.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().map_err(|_| invalid("Content-Length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    if chunked {
        loop {
            line.clear();
            connection.read_line(&mut line).await?;
            let size = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).map_err(|_| invalid("chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    line.clear();
                    if connection.read_line(&mut line).await? == 0 || line.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            let start = body.len();
            body.resize(start + size, 0);
            connection.read_exact(&mut body[start..]).await?;
            line.clear();
            connection.read_line(&mut line).await?;
        }
    }
    let length = length.ok_or_else(|| invalid("neither Content-Length nor chunked"))?;
    body.resize(length, 0);
    connection.read_exact(body).await?;
    Ok(())
}

/// The listener side: `count` scripted SMTP servers on 127.0.0.1, ports printed on stdout.
fn serve(count: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut peers = Vec::with_capacity(count);
        for _ in 0..count {
            let peer = Peer::start(Behavior::Smtp(None)).await;
            println!("{}", peer.port);
            peers.push(peer);
        }
        std::future::pending::<()>().await;
    });
}
