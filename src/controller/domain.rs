//! Reconciliation of a ContinuityDomain, stage by stage: fetch (its users, the claims on its
//! mail domain, its primary's health, the Secrets holding its emergency passwords and its
//! standby's workloads, from caches and through [`super::secrets`]) -> validate
//! ([`crate::validation`]) -> plan ([`crate::plan`]) -> apply ([`super::apply`]) -> status
//! ([`crate::status::domain`], computed once from what was applied) -> Events.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use tracing::{info, warn};

use super::apply::{self, Applied, Outcome};
use super::{CACHE_SYNC_RETRY, Context, directory, events, fetch};
use crate::api::domain::RouteTarget;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::coverage;
use crate::plan::{self, Course, Inputs};
use crate::resources::names::ChildNames;
use crate::routing::decision::{Decision, Flip};
use crate::status::domain::{
    Acted, Refused, Report, Reported, Route, compute, force_delete, is_heartbeat, message_counts,
};
use crate::status::primary::whole_seconds;
use crate::status::standby::Observed;
use crate::telemetry::metrics::Write;
use crate::validation::claims::{self, Claim, ClaimOutcome};
use crate::validation::{self, Standing};
use crate::{Error, Result};

/// How often the hand-back agent is asked again while held mail waits.
const HANDBACK_RECHECK: Duration = Duration::from_secs(10);

/// Reconciles one ContinuityDomain.
pub async fn reconcile(domain: Arc<ContinuityDomain>, ctx: Arc<Context>) -> Result<Action> {
    if !ctx.synced() {
        return Ok(Action::requeue(CACHE_SYNC_RETRY));
    }
    let missing = |field| Error::MissingField {
        kind: "ContinuityDomain",
        field,
    };
    let namespace = domain.namespace().ok_or(missing("metadata.namespace"))?;
    let uid = domain.uid().ok_or(missing("metadata.uid"))?;
    // Right after a status write the cache may still hold the one before; deciding from that
    // would repeat a flip.
    let domain = match ctx.last_domain_status.get(&uid) {
        Some(written) if domain.status.as_ref() != Some(&written) => Arc::new(ContinuityDomain {
            status: Some(written),
            ..(*domain).clone()
        }),
        _ => domain,
    };
    let key = (namespace.clone(), domain.name_any());

    // Fetch from the caches.
    let users = ctx.users_of(&namespace, &key.1);
    let users: Vec<&ContinuityUser> = users.iter().map(AsRef::as_ref).collect();
    let mail_domain = claims::claimed_domain(&domain).to_owned();
    let granted = ctx.granted(&namespace, &mail_domain);
    // Only claims the provider granted count: an ungranted claimant blocks nobody.
    let claimants: Vec<Claim> = ctx
        .indexes
        .claims
        .get(&mail_domain)
        .into_iter()
        .filter(|claim| ctx.granted(&claim.namespace, &mail_domain))
        .collect();
    let health = ctx.prober.health(&key);
    let names = ChildNames::of(&key.1, &domain.spec);
    let mail_set = ctx
        .caches
        .stateful_sets
        .get(&ObjectRef::new(&names.standby_mail).within(&namespace));
    let webmail_deployment = ctx
        .caches
        .deployments
        .get(&ObjectRef::new(&names.webmail).within(&namespace));
    let ingress = ctx
        .caches
        .ingresses
        .get(&ObjectRef::new(&names.webmail).within(&namespace));
    let now = whole_seconds(Timestamp::now());

    // Validate; for a domain that acts, judge its coverage once and fetch its credentials.
    let validation = validation::validate(&domain, granted, &claimants, &ctx.settings.environment)?;
    if let ClaimOutcome::Lost { winner } = &validation.claim {
        // Status does not name the winner to the tenant; the provider's log does.
        info!(%mail_domain, %winner, "mail domain claimed by an earlier ContinuityDomain");
    }
    let scope = coverage::scope_course(&domain, &users);
    let (credentials, directory) = match &validation.standing {
        Standing::Acts(validated) => {
            let directory = directory::observe(&ctx, &domain, validated, &key).await?;
            let listing = directory.as_ref().and_then(|d| d.listing());
            let coverage = coverage::resolve(&domain, scope.served(), &users, listing);
            let credentials = fetch::credentials(&ctx, &domain, &validated.owner.uid, &coverage).await?;
            (credentials, directory)
        }
        Standing::Idle(_) => {
            ctx.directories.deregister(&key);
            (None, None)
        }
    };

    // Plan.
    let plan = plan::plan(
        &domain,
        validation,
        &Inputs {
            health: health.as_ref(),
            credentials: credentials.as_ref(),
            directory: directory.as_ref().and_then(|d| d.listing()),
            observed: Observed {
                mail: mail_set.as_deref(),
                webmail: webmail_deployment.as_deref(),
                ingress: ingress.as_deref(),
            },
            heartbeat: ctx.settings.status_heartbeat,
            widespread: ctx.prober.widespread_failure(),
            now,
        },
    )?;

    // Apply. If the API server refuses the routing object the route has not changed, and
    // status keeps the one it shows. Transient failures retry the whole reconcile.
    let (course, applied) = match plan.course {
        Course::Idle(idle) => {
            ctx.prober.deregister(&key);
            (Reported::Idle(idle), Applied::default())
        }
        Course::Acts(acting) => {
            ctx.prober.register(&key, acting.probe.clone());
            let applied = apply::desired(&ctx, &acting.desired, &namespace, &uid).await?;
            // The confirmed switch to AllUsers: the standby now serves the directory's users,
            // and the ContinuityUsers go.
            if let coverage::ScopeCourse::SwitchConfirmed { remove } = &scope {
                apply::remove_users(&ctx, &namespace, remove).await?;
                info!(removed = remove.len(), "scope switched to AllUsers");
                events::publish_scope_change(&ctx.recorder, &domain, remove, &ctx.metrics).await;
            }
            for refusal in &applied.refused {
                warn!(child = %refusal.child, error = %refusal.error, "the API server refused a child");
            }
            let acting = *acting;
            let previous = domain.status.as_ref();
            let ask_agent = acting.standby.ready
                && (acting.decision.target == RouteTarget::Standby
                    || previous
                        .and_then(|s| s.routing.as_ref())
                        .is_some_and(|r| r.target == RouteTarget::Standby)
                    || previous
                        .and_then(|s| s.messages.as_ref())
                        .is_some_and(|m| m.pending > 0)
                    || domain.metadata.deletion_timestamp.is_some());
            let handback = match ask_agent {
                true => ctx
                    .reader
                    .handback_summary(&namespace, &names.standby_mail)
                    .await
                    .map(|summary| Box::new(message_counts(&summary))),
                false => None,
            };
            let acted = Acted {
                handback,
                directory: directory.map(Box::new),
                scope: Box::new(scope.clone()),
                route: (!applied.routing_refused).then_some(Route {
                    decision: acting.decision,
                    next_hop: acting.next_hop,
                }),
                covered: acting.covered,
                without_password: acting.without_password,
                password_problems: acting.password_problems,
                standby: acting.standby,
                refused: applied.refused.first().map(|refusal| Refused {
                    conflict: matches!(refusal.error, Error::NotOwned { .. }),
                    message: refusal.error.to_string(),
                }),
            };
            (Reported::Acted(acted), applied)
        }
    };
    let report = Report {
        claim: plan.claim,
        health,
        course,
    };

    // Status, computed once from what was applied, then Events.
    let previous = domain.status.clone().unwrap_or_default();
    let status = compute(&domain, &report, &Time(now), ctx.settings.status_heartbeat);
    let write = if is_heartbeat(&previous, &status) {
        Write::Heartbeat
    } else {
        Write::Status
    };
    let written = apply::status(&ctx, domain.as_ref(), (&previous, &status), write).await?;
    if written == Outcome::Written {
        ctx.last_domain_status.record(uid, status.clone());
        info!(phase = ?status.phase, "status updated");
        let flip = report.route().filter(|route| route.decision.flip.is_some());
        events::publish(
            &ctx.recorder,
            domain.as_ref(),
            (&previous.conditions, &status.conditions),
            flip.is_some(),
            &ctx.metrics,
        )
        .await;
        if let Some(route) = flip {
            announce_flip(
                &ctx,
                &domain,
                previous.routing.as_ref().map(|r| r.since.0),
                &route.decision,
            )
            .await;
        }
    }
    // Mail the standby holds for the primary is state outside Kubernetes: while any waits the
    // domain keeps a finalizer, so deleting it waits for the hand-back (or the force-delete
    // annotation); the status names how many in `Deactivating`.
    let pending = status.messages.as_ref().map_or(0, |m| m.pending);
    let deleting = domain.metadata.deletion_timestamp.is_some();
    let keep = pending > 0 && !force_delete(&domain);
    let has = domain.finalizers().iter().any(|f| f == apply::HANDBACK_FINALIZER);
    // A finalizer cannot be added once deletion started; it can always be removed.
    if keep != has && (has || !deleting) {
        apply::handback_finalizer(&ctx, &domain, keep).await?;
        info!(pending, keep, "hand-back finalizer updated");
    }
    let mut outcomes = applied.outcomes;
    outcomes.push(written);
    if let Some(refusal) = applied.refused.into_iter().next() {
        return Err(refusal.error);
    }
    // A pending failback is decided again when its hold time is over, if that comes first.
    let recheck = report.route().and_then(|route| route.decision.recheck_in);
    // Held mail on its way back is counted again soon.
    let recheck = if pending > 0 || deleting {
        Some(recheck.unwrap_or(HANDBACK_RECHECK).min(HANDBACK_RECHECK))
    } else {
        recheck
    };
    let after = ctx.recheck_after(&outcomes).min(recheck.unwrap_or(Duration::MAX));
    Ok(Action::requeue(after.max(Duration::from_millis(100))))
}

/// Event, log and metrics for a flip, once its status is written.
async fn announce_flip(
    ctx: &Context,
    domain: &ContinuityDomain,
    previous_since: Option<Timestamp>,
    decision: &Decision,
) {
    let Some(flip) = decision.flip else {
        return;
    };
    // How long continuity lasted, once it ends.
    let ended = match flip {
        Flip::ToStandby => None,
        Flip::ToPrimary => {
            previous_since.and_then(|since| Duration::try_from(decision.since.duration_since(since)).ok())
        }
    };
    info!(?flip, reason = decision.reason, "routing flipped");
    ctx.metrics.flipped(flip, ended);
    events::publish_flip(&ctx.recorder, domain, decision, &ctx.metrics).await;
}
