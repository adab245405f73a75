//! Reading a large LDAP directory: a real slapd (Debian's) loaded with ENTRIES people of one
//! domain (50,000 by default, every tenth with an alias), read by the operator's own
//! [`continuity_operator::directory::ldap::read`] exactly as a domain's reader does it (paged,
//! 500 per page, bound as a reader), five times.
//!
//!     cargo bench --bench directory [-- ENTRIES]
//!
//! Prints the time slapadd took to load the directory (setup, not a figure of ours); each
//! read's time (median and slowest); the memory one listing takes in the operator (growth of
//! this process's RSS while it holds it, and the bytes of the addresses themselves); the
//! size of the objects that hold it, as the API server counts it against the 1 MiB an object
//! may hold (the values, binaryData decoded: the standby's configuration and the coverage
//! list, both with the addresses gzipped); and the time from a changed entry to its address in
//! a freshly rendered recipient map once the domain's resync comes (read + render: the
//! operator's part; the resync period itself is the domain's setting).

#[allow(dead_code)]
#[path = "../tests/integration/common.rs"]
mod common;
#[allow(dead_code)]
#[path = "../tests/integration/peers.rs"]
mod peers;
#[allow(dead_code)]
#[path = "../tests/integration/slapd.rs"]
mod slapd;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use continuity_operator::api::domain::LdapDirectory;
use continuity_operator::directory::{Bind, Query, addresses_of, ldap};
use continuity_operator::handback::settings::HandBackSettings;
use continuity_operator::health::networks::ProbeNetworks;
use continuity_operator::health::resolver::Resolver;
use continuity_operator::resources::{coverage, packed};
use continuity_operator::standby::{self, Account, ConfigFiles, MailSettings};
use k8s_openapi::ByteString;
use slapd::{READER_DN, READER_PASSWORD, SUFFIX, Slapd, ldif, person};

const DOMAIN: &str = "big.example.com";
const READS: usize = 5;
/// What one object (a ConfigMap, a Secret) may hold in the Kubernetes API.
const OBJECT_LIMIT: usize = 1024 * 1024;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn fits(bytes: usize) -> &'static str {
    if bytes <= OBJECT_LIMIT { "fits" } else { "DOES NOT FIT" }
}

fn seconds(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

async fn listing(query: &Query, bind: &Bind, networks: &Arc<ProbeNetworks>, resolver: &Resolver) -> BTreeSet<String> {
    let values = ldap::read(query, Some(bind), networks, resolver)
        .await
        .unwrap_or_else(|e| panic!("reading the directory: {e}"));
    addresses_of(values, DOMAIN)
}

/// The recipient map the standby would get for `addresses` (no passwords).
fn recipient_map(addresses: &BTreeSet<String>) -> String {
    let files = standby_config(addresses);
    files
        .packed
        .get(standby::RECIPIENTS_KEY)
        .and_then(packed::unpack)
        .unwrap_or_default()
}

/// The bytes of a ConfigMap holding `data` and `binary_data` that the API server's 1 MiB
/// bound counts: every value, binary ones decoded (keys and base64 aside).
fn counted_bytes(data: &BTreeMap<String, String>, binary_data: &BTreeMap<String, ByteString>) -> usize {
    data.values().map(String::len).sum::<usize>() + binary_data.values().map(|v| v.0.len()).sum::<usize>()
}

/// Every file of the standby's configuration ConfigMap for `addresses` (no passwords).
fn standby_config(addresses: &BTreeSet<String>) -> ConfigFiles {
    let accounts: Vec<Account> = addresses
        .iter()
        .map(|address| Account {
            address: address.clone(),
            password_hash: None,
        })
        .collect();
    let handback = HandBackSettings {
        deliver_to: None,
        messages_per_second: 20,
        retry_seconds: 60,
        helo_name: format!("standby.{DOMAIN}"),
    };
    let settings = MailSettings {
        domain: DOMAIN,
        hostname: &format!("standby.{DOMAIN}"),
        relay_host: None,
        retention_days: 90,
        accounts: &accounts,
        handback: &handback,
    };
    standby::config_files(&settings)
}

#[tokio::main]
async fn main() {
    let entries: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(50_000);
    let mut people = String::with_capacity(entries * 300);
    for i in 0..entries {
        let alias = format!("alias{i}@{DOMAIN}");
        let aliases: &[&str] = if i % 10 == 0 { &[&alias] } else { &[] };
        people.push_str(&person(
            &format!("user{i:06}"),
            &format!("user{i:06}@{DOMAIN}"),
            aliases,
        ));
    }
    let loading = Instant::now();
    let slapd = Slapd::start(&ldif(&people)).await;
    println!(
        "directory: entries            {entries} (slapadd and start: {})",
        seconds(loading.elapsed())
    );

    let spec = LdapDirectory {
        url: slapd.url(false),
        bind_secret_ref: None,
        base_dn: format!("ou=people,{SUFFIX}"),
        filter: "(objectClass=inetOrgPerson)".into(),
        mail_attribute: "mail".into(),
        alias_attribute: Some("mailLocalAddress".into()),
        tls: None,
        page_size: 500,
        resync_period_seconds: 300,
        timeout_seconds: 600,
    };
    let query = Query::of(&spec).expect("a valid query");
    let bind = Bind {
        dn: READER_DN.into(),
        password: READER_PASSWORD.into(),
    };
    let networks = Arc::new(ProbeNetworks {
        cluster: Vec::new(),
        allowed: vec!["127.0.0.0/8".parse().expect("a network")],
    });
    let resolver = Resolver::system();

    let before = rss_kib();
    let mut times = Vec::new();
    let mut held = BTreeSet::new();
    for _ in 0..READS {
        let started = Instant::now();
        held = listing(&query, &bind, &networks, &resolver).await;
        times.push(started.elapsed());
    }
    let grown = rss_kib().saturating_sub(before);
    let expected = entries + entries.div_ceil(10);
    assert_eq!(held.len(), expected, "every address and alias of the domain");
    times.sort();
    println!(
        "directory: read (paged, 500)   median {}, slowest {} ({READS} reads; {} addresses each)",
        seconds(times[READS / 2]),
        seconds(times[READS - 1]),
        held.len()
    );
    let text_bytes: usize = held.iter().map(String::len).sum();
    println!(
        "directory: listing in memory   RSS +{:.1} MiB while held ({} bytes of addresses: {:.0} bytes per address in RSS)",
        grown as f64 / 1024.0,
        text_bytes,
        (grown * 1024) as f64 / held.len() as f64
    );
    let map = recipient_map(&held);
    let files = standby_config(&held);
    let whole = counted_bytes(&files.text, &files.packed);
    let empty = standby_config(&BTreeSet::new());
    let fixed = counted_bytes(&empty.text, &empty.packed);
    let per_address = (whole - fixed) as f64 / held.len() as f64;
    println!(
        "directory: standby ConfigMap   {:.2} MiB counted against 1 MiB, the recipient map ({:.2} MiB as text) gzipped: {per_address:.1} bytes per address ({}; about {:.0} addresses fit in 1 MiB)",
        mib(whole),
        mib(map.len()),
        fits(whole),
        (OBJECT_LIMIT - fixed) as f64 / per_address
    );
    let list: String = held.iter().map(|a| format!("{a}\n")).collect();
    let coverage = counted_bytes(
        &BTreeMap::from([("domain".to_owned(), DOMAIN.to_owned())]),
        &BTreeMap::from([(coverage::ADDRESSES_KEY.to_owned(), packed::pack(&list))]),
    );
    println!(
        "directory: coverage ConfigMap  {:.2} MiB counted against 1 MiB, the list ({:.2} MiB as text) gzipped ({})",
        mib(coverage),
        mib(list.len()),
        fits(coverage)
    );

    // A changed entry: added to the running directory, then what the operator does at the
    // domain's next resync.
    slapd.add(&person("newcomer", &format!("newcomer@{DOMAIN}"), &[])).await;
    let started = Instant::now();
    let after = listing(&query, &bind, &networks, &resolver).await;
    let rendered = recipient_map(&after);
    let took = started.elapsed();
    assert!(
        rendered.contains(&format!("newcomer@{DOMAIN}")),
        "the newcomer in the map"
    );
    println!(
        "directory: changed entry       in the rendered recipient map {} after the resync tick (read + render; the tick comes every resyncPeriodSeconds)",
        seconds(took)
    );
}
