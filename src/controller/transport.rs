//! Keeps the Postfix transport map ConfigMap in step with the routes of every domain in scope.
//! It is rebuilt from the domain cache whenever a domain changes (a burst of changes coalesces
//! into one write) and written, through [`super::apply`], only when its content changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tracing::{info, warn};

use super::{Context, apply};
use crate::resources::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::routing::transport;

/// The key of the map in the ConfigMap's data.
pub const KEY: &str = "transport";
/// Pause after a change before rebuilding, so a burst of flips is one write.
const COALESCE: Duration = Duration::from_millis(200);
const RETRY: Duration = Duration::from_secs(2);

/// Runs until the process stops; does nothing when no map is configured.
pub async fn run(ctx: Arc<Context>) {
    let Some((namespace, name)) = ctx.settings.transport_map.clone() else {
        return std::future::pending().await;
    };
    // What this replica last wrote; `None` means: compare with the server (at start, and at
    // every resync, so a deleted or hand-edited map is repaired).
    let mut written: Option<String> = None;
    loop {
        tokio::select! {
            () = ctx.routes_changed.notified() => tokio::time::sleep(COALESCE).await,
            () = tokio::time::sleep(ctx.settings.resync) => written = None,
        }
        ctx.wait_until_synced().await;
        let entries = ctx
            .caches
            .domains
            .state()
            .iter()
            .filter_map(|domain| transport::entry(domain))
            .collect();
        let text = transport::render(entries);
        if written.is_none() {
            let current = ctx.reader.config_map_value(&namespace, &name, KEY).await.ok().flatten();
            if current.as_deref() == Some(text.as_str()) {
                written = Some(text);
                continue;
            }
        }
        if written.as_deref() == Some(text.as_str()) {
            continue;
        }
        match apply::transport_map(&ctx, &map(&namespace, &name, &text)).await {
            Ok(()) => {
                info!(configmap = %format!("{namespace}/{name}"), domains = text.lines().count() - 1, "transport map updated");
                written = Some(text);
            }
            Err(error) => {
                warn!(%error, configmap = %format!("{namespace}/{name}"), "cannot write the transport map; retrying");
                tokio::time::sleep(RETRY).await;
                ctx.routes_changed.notify_one();
            }
        }
    }
}

/// The transport map ConfigMap holding `text`.
fn map(namespace: &str, name: &str, text: &str) -> ConfigMap {
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
        data: Some(BTreeMap::from([(KEY.to_owned(), text.to_owned())])),
        ..ConfigMap::default()
    }
}
