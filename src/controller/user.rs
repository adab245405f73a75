//! Reconciliation of a ContinuityUser: judge its coverage against its domain and the users
//! adding the same address (from the caches and the users-by-address index: never the
//! whole domain), look up its emergency password, read its domain's standby readiness, and
//! write the status.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::info;

use super::apply::{self, Outcome};
use super::{CACHE_SYNC_RETRY, Context, events};
use crate::api::ContinuityUser;
use crate::api::conditions::{self, types};
use crate::coverage::{self, Verdict};
use crate::credentials;
use crate::status::user::{UserFacts, compute};
use crate::telemetry::metrics::Write;
use crate::{Error, Result};

/// Reconciles one ContinuityUser.
pub async fn reconcile(user: Arc<ContinuityUser>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let namespace = user.namespace().ok_or(Error::MissingField {
        kind: "ContinuityUser",
        field: "metadata.namespace",
    })?;
    let domain_name = &user.spec.domain_ref.name;
    let domain = ctx.caches.domains.get(&ObjectRef::new(domain_name).within(&namespace));
    let address = coverage::normalize(&user.spec.address);
    let siblings = ctx.users_with_address(&namespace, domain_name, &address);
    let siblings: Vec<&ContinuityUser> = siblings.iter().map(AsRef::as_ref).collect();

    let verdict = coverage::judge_user(&user, domain.as_deref(), &siblings);
    // The password is looked up for a covered user only: one that is not covered needs none.
    let password = match (&verdict, domain.as_deref()) {
        (Verdict::Covered, Some(domain)) => {
            let secrets = ctx
                .caches
                .secrets
                .read(&namespace, &credentials::referenced_secrets(domain, [user.as_ref()]))
                .await?;
            credentials::password_for(domain, Some(&user), &address, &secrets).map(drop)
        }
        _ => Ok(()),
    };
    let standby = domain
        .as_deref()
        .and_then(|d| d.status.as_ref())
        .and_then(|s| conditions::find(&s.conditions, types::STANDBY_READY));
    let facts = UserFacts {
        verdict,
        password,
        standby,
    };
    let previous = user.status.clone().unwrap_or_default();
    let status = compute(&user, &facts, &Time(Timestamp::now()));
    let written = apply::status(&ctx, user.as_ref(), (&previous, &status), Write::Status).await?;
    if written == Outcome::Written {
        info!(verdict = ?facts.verdict, "status updated");
        events::publish(
            &ctx.recorder,
            user.as_ref(),
            (&previous.conditions, &status.conditions),
            false,
            &ctx.metrics,
        )
        .await;
    }
    Ok(Action::requeue(ctx.recheck_after(&[written])))
}
