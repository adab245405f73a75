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

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/peers.rs"]
mod peers;

use std::io::{BufRead, BufReader as StdBufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
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
