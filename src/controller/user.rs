//! Reconciliation of a ContinuityUser: judge its coverage against its domain and siblings
//! (all from the caches) and write the status.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tokio::time::Instant;
use tracing::info;

use super::{CACHE_SYNC_RETRY, Context, apply, events};
use crate::api::ContinuityUser;
use crate::coverage;
use crate::status::user::compute;
use crate::{Error, Result};

/// Reconciles one ContinuityUser.
pub async fn reconcile(user: Arc<ContinuityUser>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let started = Instant::now();
    let namespace = user.namespace().ok_or(Error::MissingField {
        kind: "ContinuityUser",
        field: "metadata.namespace",
    })?;
    let domain_name = &user.spec.domain_ref.name;
    let domain = ctx
        .domains
        .get(&ObjectRef::new(domain_name).within(&namespace));
    let siblings = ctx.users_of(&namespace, domain_name);
    let siblings: Vec<&ContinuityUser> = siblings.iter().map(AsRef::as_ref).collect();

    let verdict = coverage::judge_user(&user, domain.as_deref(), &siblings);
    let status = compute(&user, &verdict, &Time(Timestamp::now()));
    let previous = user.status.clone().unwrap_or_default();
    if previous != status {
        let api: Api<ContinuityUser> = Api::namespaced(ctx.client.clone(), &namespace);
        apply::status(&api, user.as_ref(), &status, &ctx.metrics).await?;
        info!(user = %format!("{namespace}/{}", user.name_any()), ?verdict, "status updated");
        events::publish(
            &ctx.recorder,
            user.as_ref(),
            &previous.conditions,
            &status.conditions,
            &ctx.metrics,
        )
        .await;
    }
    ctx.metrics.reconciled("ContinuityUser", started.elapsed());
    Ok(Action::requeue(ctx.settings.resync))
}
