//! Keeps the gateway's ConfigMap in step with every domain in scope: the Postfix transport map
//! (routes and journal domains) and the journal copies' `recipient_bcc_maps` table (covered
//! addresses as each standby's recipient table in the ConfigMap cache lists them), both
//! gzipped in `binaryData` ([`crate::resources::packed`]: as text they outgrow one object at
//! a few thousand domains). It is rebuilt from the caches whenever a domain changes (a burst
//! of changes coalesces into one write, at most one a second) and written, through
//! [`super::apply`], only when its content changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::{info, warn};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::{Context, apply};
use crate::resources::cached::Cached;
use crate::resources::names::ChildNames;
use crate::resources::packed;
use crate::resources::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::routing::transport;

/// The `binaryData` key of the transport map.
pub const KEY: &str = "transport.gz";
/// The `binaryData` key of the journal copies' table.
pub const BCC_KEY: &str = "recipient_bcc.gz";
/// Pause after a change before rebuilding, so a burst of flips is one write.
const COALESCE: Duration = Duration::from_millis(200);
/// At most one write this often: when hundreds of primaries fail over one after another, the
/// map (a line per domain) is not rewritten for each of them. Gateways read it through a
/// mounted ConfigMap, which the kubelet refreshes in about a minute anyway.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Runs until the process stops; does nothing when no map is configured.
pub async fn run(ctx: Arc<Context>) {
    let Some((namespace, name)) = ctx.settings.transport_map.clone() else {
        return std::future::pending().await;
    };
    // What this replica last wrote; `None` means: compare with the server (at start, and at
    // every resync, so a deleted or hand-edited map is repaired).
    let mut written: Option<(String, String)> = None;
    let mut last_write: Option<tokio::time::Instant> = None;
    let mut retry = RETRY;
    let mut unpacked = Unpacked::default();
    loop {
        tokio::select! {
            () = ctx.routes_changed.notified() => {
                let due = last_write.map_or(COALESCE, |at| (at + MIN_INTERVAL).saturating_duration_since(tokio::time::Instant::now()));
                tokio::time::sleep(due.max(COALESCE)).await;
            }
            () = tokio::time::sleep(ctx.settings.resync) => written = None,
        }
        ctx.wait_until_synced().await;
        let wanted = tables(&ctx, &mut unpacked);
        if written.is_none() {
            let current = ctx.reader.config_map(&namespace, &name).await.ok().flatten();
            let table = |name| current.as_ref().and_then(|map| packed::table(map, name));
            if table(KEY).as_ref() == Some(&wanted.0) && table(BCC_KEY).as_ref() == Some(&wanted.1) {
                written = Some(wanted);
                continue;
            }
        }
        if written.as_ref() == Some(&wanted) {
            continue;
        }
        let object = map(&namespace, &name, &wanted);
        match apply::transport_map(&ctx, &object).await {
            Ok(()) => {
                last_write = Some(tokio::time::Instant::now());
                retry = RETRY;
                let packed_bytes: usize = object
                    .binary_data
                    .iter()
                    .flat_map(|d| d.values())
                    .map(|v| v.0.len())
                    .sum();
                info!(configmap = %format!("{namespace}/{name}"), lines = wanted.0.lines().count() - 1, journal_copies = wanted.1.lines().count() - 1, packed_bytes, "transport map updated");
                written = Some(wanted);
            }
            Err(error) => {
                warn!(%error, configmap = %format!("{namespace}/{name}"), retry_seconds = retry.as_secs(), "cannot write the transport map; retrying");
                tokio::time::sleep(retry).await;
                // A map the API server refuses (too large) is not sent again every moment.
                retry = (retry * 2).min(MAX_RETRY);
                ctx.routes_changed.notify_one();
            }
        }
    }
}

/// The covered addresses of each standby ConfigMap, unpacked, by the resourceVersion they were
/// unpacked from: a rebuild unpacks only the recipient tables that changed since the last.
#[derive(Default)]
struct Unpacked {
    tables: HashMap<ObjectRef<Cached<ConfigMap>>, Covered>,
}

/// A recipient table's addresses and the resourceVersion of the ConfigMap they came from.
type Covered = (Option<String>, Arc<Vec<String>>);

impl Unpacked {
    /// The addresses `map` lists, unpacked now only if it changed.
    fn covered(&self, key: &ObjectRef<Cached<ConfigMap>>, map: &Cached<ConfigMap>) -> Arc<Vec<String>> {
        match self.tables.get(key) {
            Some((version, covered)) if *version == map.metadata.resource_version => covered.clone(),
            _ => Arc::new(transport::covered_addresses(
                &map.kept.as_ref().and_then(packed::unpack).unwrap_or_default(),
            )),
        }
    }
}

/// The transport map and the journal copies' table, from the caches; `unpacked` is replaced by
/// the recipient tables this build read.
fn tables(ctx: &Context, unpacked: &mut Unpacked) -> (String, String) {
    let domains = ctx.caches.domains.state();
    let cluster_domain = &ctx.settings.environment.cluster_domain;
    let mut routes = Vec::new();
    let mut copies = Vec::new();
    let mut read = Unpacked::default();
    for domain in &domains {
        let Some(route) = transport::entry(domain) else {
            continue;
        };
        routes.push(route);
        routes.extend(transport::journal_entry(domain, cluster_domain));
        if !transport::routed_to_primary(domain) {
            continue;
        }
        let names = ChildNames::of(&domain.name_any(), &domain.spec);
        let key = ObjectRef::new(&names.standby_config).within(&domain.namespace().unwrap_or_default());
        let Some(map) = ctx.caches.config_maps.get(&key) else {
            continue;
        };
        let covered = unpacked.covered(&key, &map);
        copies.extend(transport::journal_copies(domain, &covered));
        read.tables
            .insert(key, (map.metadata.resource_version.clone(), covered));
    }
    *unpacked = read;
    (transport::render(routes), transport::render_bcc(copies))
}

/// The gateway's ConfigMap holding `tables` (transport map, journal copies).
fn map(namespace: &str, name: &str, tables: &(String, String)) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                ("app.kubernetes.io/component".to_owned(), "transport-map".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([
            (KEY.to_owned(), packed::pack(&tables.0)),
            (BCC_KEY.to_owned(), packed::pack(&tables.1)),
        ])),
        ..ConfigMap::default()
    }
}
