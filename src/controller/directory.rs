//! A domain's LDAP directory as its reconcile sees it: the domain's reader registered with
//! its query and bind credentials (the bind Secret read through [`super::secrets`]), started
//! after a restart from the addresses the domain's coverage ConfigMap lists, and what is
//! known of it now. The reconcile never waits for the directory.

use std::collections::BTreeSet;
use std::time::Duration;

use super::Context;
use crate::Result;
use crate::api::ContinuityDomain;
use crate::api::domain::LdapDirectory;
use crate::directory::sync::Registration;
use crate::directory::{Bind, Observed, Query};
use crate::health::scheduler::DomainKey;
use crate::resources::coverage;
use crate::resources::names::ChildNames;
use crate::validation::ValidatedDomain;

/// Keys of the bind Secret.
pub const BIND_DN_KEY: &str = "bindDN";
pub const BIND_PASSWORD_KEY: &str = "password";

/// The directory of `domain`, acting; `None` (and no reader) unless it lists its users from
/// LDAP.
pub async fn observe(
    ctx: &Context,
    domain: &ContinuityDomain,
    validated: &ValidatedDomain<'_>,
    key: &DomainKey,
) -> Result<Option<Observed>> {
    let ldap = domain.spec.users.directory.as_ref().and_then(|d| d.ldap.as_ref());
    // Validation has checked the query; a spec it let through always makes one.
    let Some((spec, query)) = ldap.and_then(|spec| Some((spec, Query::of(spec).ok()?))) else {
        ctx.directories.deregister(key);
        return Ok(None);
    };
    let (bind, bind_problem) = match bind(ctx, &key.0, spec).await? {
        Ok(bind) => (bind, None),
        Err(problem) => (None, Some(problem)),
    };
    // With an unusable bind Secret, the reader goes on as it was (or never starts): what it
    // listed stays until the Secret is fixed.
    if bind_problem.is_none() {
        ctx.directories.register(
            key,
            Registration {
                query: query.clone(),
                bind,
                period: Duration::from_secs(spec.resync_period_seconds.into()),
                domain: validated.spec.domain.clone(),
                networks: validated.env.policy.primary_networks.clone(),
            },
        );
        if ctx.directories.knowledge(key).is_some_and(|k| k.listing.is_none())
            && let Some(addresses) = covered_before(ctx, &key.0, &validated.names).await
        {
            ctx.directories.seed(key, addresses);
        }
    }
    Ok(Some(Observed {
        server: query.server(),
        knowledge: ctx.directories.knowledge(key).unwrap_or_default(),
        bind_problem,
    }))
}

/// The bind credentials `spec` names (`None`: an anonymous bind), or why they cannot be read.
async fn bind(ctx: &Context, namespace: &str, spec: &LdapDirectory) -> Result<Result<Option<Bind>, String>> {
    let Some(reference) = &spec.bind_secret_ref else {
        return Ok(Ok(None));
    };
    let name = &reference.name;
    let read = ctx
        .caches
        .secrets
        .read(namespace, &BTreeSet::from([name.clone()]))
        .await?;
    let Some(Some(data)) = read.get(name) else {
        return Ok(Err(format!("the bind Secret {name} does not exist")));
    };
    let value = |key: &str| {
        let bytes = data
            .get(key)
            .ok_or(format!("the bind Secret {name} has no key {key}"))?;
        let text = std::str::from_utf8(&bytes.0)
            .map_err(|_| format!("the key {key} of the bind Secret {name} is not UTF-8"))?;
        Ok::<_, String>(text.strip_suffix('\n').unwrap_or(text).to_owned())
    };
    Ok((|| {
        Ok(Some(Bind {
            dn: value(BIND_DN_KEY)?,
            password: value(BIND_PASSWORD_KEY)?,
        }))
    })())
}

/// The addresses the domain's coverage ConfigMap lists, as this operator (or the one before
/// it) last rendered them.
async fn covered_before(ctx: &Context, namespace: &str, names: &ChildNames) -> Option<BTreeSet<String>> {
    // Read from the API server, once per domain after a restart: the cache keeps ConfigMaps
    // as a digest of their data (see `crate::resources::cached`).
    let map = ctx.reader.config_map(namespace, &names.coverage).await.ok().flatten()?;
    let listing = coverage::listed(&map, coverage::ADDRESSES_KEY)?;
    Some(listing.into_iter().collect())
}
