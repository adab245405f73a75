//! `kubectl continuity status [<domain>]` (a table of the namespace's domains, or one
//! domain's conditions) and `kubectl continuity confirm-scope-change <domain>`.

use kube::api::{Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

use super::{Domain, PLUGIN_MANAGER};
use crate::api::ContinuityDomain;
use crate::api::domain::UserScope;
use crate::coverage::{self, CONFIRM_SCOPE_ANNOTATION};

/// One row of the status table.
pub fn row(domain: &ContinuityDomain) -> String {
    let status = domain.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let route = status
        .routing
        .as_ref()
        .map_or("-".to_owned(), |r| format!("{:?}", r.target));
    let phase = status.phase.map_or("-".to_owned(), |p| format!("{p:?}"));
    let covered = status.users.as_ref().map_or(0, |u| u.covered);
    let pending = status.messages.as_ref().map_or(0, |m| m.pending);
    format!(
        "{:<30} {:<30} {:<12} {:<8} {:<8} {:<8} {}",
        domain.name_any(),
        domain.spec.domain,
        phase,
        route,
        covered,
        pending,
        ready.map_or("-".to_owned(), |c| format!("{} {}", c.status, c.reason))
    )
}

/// The table's heading.
pub const HEADING: &str =
    "NAME                           DOMAIN                         PHASE        ROUTE    COVERED  PENDING  READY";

/// Prints the namespace's domains, or one domain with its conditions.
pub async fn show(client: &Client, namespace: &str, name: Option<&str>) -> Result<(), String> {
    let Some(name) = name else {
        let mut domains = Api::<ContinuityDomain>::namespaced(client.clone(), namespace)
            .list(&Default::default())
            .await
            .map_err(|e| format!("cannot list ContinuityDomains in {namespace}: {e}"))?
            .items;
        domains.sort_by_key(ResourceExt::name_any);
        println!("{HEADING}");
        for domain in &domains {
            println!("{}", row(domain));
        }
        return Ok(());
    };
    let domain = Domain::fetch(client, namespace, name).await?;
    println!("{HEADING}\n{}\n", row(&domain.resource));
    println!("{:<28} {:<8} {:<32} MESSAGE", "CONDITION", "STATUS", "REASON");
    for c in domain.resource.status.iter().flat_map(|s| s.conditions.iter()) {
        println!("{:<28} {:<8} {:<32} {}", c.type_, c.status, c.reason, c.message);
    }
    Ok(())
}

/// What confirming the switch of `domain` would delete; an error when there is no switch to
/// confirm.
pub fn switch_to_confirm(domain: &Domain, users: &[String]) -> Result<(), String> {
    if domain.resource.spec.users.scope != UserScope::AllUsers {
        return Err(format!(
            "{} asks for scope {:?}: set spec.users.scope to AllUsers first",
            domain.name, domain.resource.spec.users.scope
        ));
    }
    if coverage::served_before(&domain.resource) != Some(UserScope::SelectedUsers) || users.is_empty() {
        return Err(format!(
            "{} has no switch to AllUsers awaiting confirmation",
            domain.name
        ));
    }
    Ok(())
}

/// Confirms a switch to AllUsers: annotates the domain, naming the users it deletes.
pub async fn confirm_scope_change(client: &Client, domain: &Domain) -> Result<(), String> {
    let users: Vec<String> = domain.users(client).await?.iter().map(ResourceExt::name_any).collect();
    switch_to_confirm(domain, &users)?;
    let patch = serde_json::json!({
        "apiVersion": "continuity.mailops.io/v1alpha1",
        "kind": "ContinuityDomain",
        "metadata": { "annotations": { CONFIRM_SCOPE_ANNOTATION: "AllUsers" } }
    });
    Api::<ContinuityDomain>::namespaced(client.clone(), &domain.namespace)
        .patch(&domain.name, &PatchParams::apply(PLUGIN_MANAGER), &Patch::Apply(&patch))
        .await
        .map_err(|e| format!("cannot confirm the switch of {}: {e}", domain.name))?;
    println!(
        "confirmed: {} switches to AllUsers; the operator deletes its {} ContinuityUsers: {}",
        domain.name,
        users.len(),
        coverage::named(&users)
    );
    Ok(())
}
