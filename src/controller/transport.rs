//! Keeps the gateway's ConfigMap in step with every domain in scope: the Postfix transport map
//! (routes and journal domains) and the journal copies' `recipient_bcc_maps` table (covered
//! addresses as each standby's recipient table in the ConfigMap cache lists them). It is
//! rebuilt from the caches whenever a domain changes (a burst of changes coalesces into one
//! write) and written, through [`super::apply`], only when its content changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::{info, warn};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::{Context, apply};
use crate::resources::names::ChildNames;
use crate::resources::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::routing::transport;
use crate::standby::RECIPIENTS_KEY;

/// The key of the transport map in the ConfigMap's data.
pub const KEY: &str = "transport";
/// The key of the journal copies' table.
pub const BCC_KEY: &str = "recipient_bcc";
/// Pause after a change before rebuilding, so a burst of flips is one write.
const COALESCE: Duration = Duration::from_millis(200);
/// At most one write this often: when hundreds of primaries fail over one after another, the
/// map (a line per domain) is not rewritten for each of them. Gateways read it through a
/// mounted ConfigMap, which the kubelet refreshes in about a minute anyway.
const MIN_INTERVAL: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_secs(2);

/// Runs until the process stops; does nothing when no map is configured.
pub async fn run(ctx: Arc<Context>) {
    let Some((namespace, name)) = ctx.settings.transport_map.clone() else {
        return std::future::pending().await;
    };
    // What this replica last wrote; `None` means: compare with the server (at start, and at
    // every resync, so a deleted or hand-edited map is repaired).
    let mut written: Option<(String, String)> = None;
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = ctx.routes_changed.notified() => {
                let due = last_write.map_or(COALESCE, |at| (at + MIN_INTERVAL).saturating_duration_since(tokio::time::Instant::now()));
                tokio::time::sleep(due.max(COALESCE)).await;
            }
            () = tokio::time::sleep(ctx.settings.resync) => written = None,
        }
        ctx.wait_until_synced().await;
        let wanted = tables(&ctx);
        if written.is_none() {
            let transport = ctx.reader.config_map_value(&namespace, &name, KEY).await.ok().flatten();
            let bcc = ctx
                .reader
                .config_map_value(&namespace, &name, BCC_KEY)
                .await
                .ok()
                .flatten();
            if transport.as_ref() == Some(&wanted.0) && bcc.as_ref() == Some(&wanted.1) {
                written = Some(wanted);
                continue;
            }
        }
        if written.as_ref() == Some(&wanted) {
            continue;
        }
        match apply::transport_map(&ctx, &map(&namespace, &name, &wanted)).await {
            Ok(()) => {
                last_write = Some(tokio::time::Instant::now());
                info!(configmap = %format!("{namespace}/{name}"), lines = wanted.0.lines().count() - 1, journal_copies = wanted.1.lines().count() - 1, "transport map updated");
                written = Some(wanted);
            }
            Err(error) => {
                warn!(%error, configmap = %format!("{namespace}/{name}"), "cannot write the transport map; retrying");
                tokio::time::sleep(RETRY).await;
                ctx.routes_changed.notify_one();
            }
        }
    }
}

/// The transport map and the journal copies' table, from the caches.
fn tables(ctx: &Context) -> (String, String) {
    let domains = ctx.caches.domains.state();
    let cluster_domain = &ctx.settings.environment.cluster_domain;
    let mut routes = Vec::new();
    let mut copies = Vec::new();
    for domain in &domains {
        let Some(route) = transport::entry(domain) else {
            continue;
        };
        routes.push(route);
        routes.extend(transport::journal_entry(domain, cluster_domain));
        let names = ChildNames::of(&domain.name_any(), &domain.spec);
        let recipients = ctx
            .caches
            .config_maps
            .get(&ObjectRef::new(&names.standby_config).within(&domain.namespace().unwrap_or_default()))
            .and_then(|map| map.data.as_ref()?.get(RECIPIENTS_KEY).cloned())
            .unwrap_or_default();
        copies.extend(transport::journal_copies(
            domain,
            &transport::covered_addresses(&recipients),
        ));
    }
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
        data: Some(BTreeMap::from([
            (KEY.to_owned(), tables.0.clone()),
            (BCC_KEY.to_owned(), tables.1.clone()),
        ])),
        ..ConfigMap::default()
    }
}
