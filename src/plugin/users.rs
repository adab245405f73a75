//! `kubectl continuity users add|remove|list <domain>`: who a domain covers, changed the way
//! a tenant would by hand (ContinuityUsers applied and deleted with the caller's own
//! permissions), with the directory's addresses to check against and suggest from (the
//! coverage ConfigMap's `uncovered` list, see [`crate::resources::coverage`]).

use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use sha2::{Digest, Sha256};

use super::{Domain, PLUGIN_MANAGER};
use crate::api::domain::UserScope;
use crate::api::user::SecretKeySelector;
use crate::api::{ContinuityUser, ContinuityUserSpec, domain::LocalObjectReference};
use crate::coverage::{in_domain, normalize};
use crate::plugin::suggest;

/// The ContinuityUser name for `address`: the address with `@` as `.`, and, where other
/// characters had to be replaced (`+`, `_`, upper case kept apart), a short hash of the
/// address so that two addresses never share a name.
pub fn user_name(address: &str) -> String {
    let plain = address.replace('@', ".");
    let mut name: String = plain
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
    if name != plain {
        let digest = Sha256::digest(address.as_bytes());
        let suffix: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        name.truncate(253 - 9);
        name = format!(
            "{}-{suffix}",
            name.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        );
    }
    name.truncate(253);
    name
}

/// Why an address cannot be added, with what to type instead.
fn unknown(address: &str, domain: &Domain, uncovered: &[String]) -> String {
    let closest = suggest::closest(uncovered.iter().map(String::as_str), address);
    let hint = if closest.is_empty() {
        String::new()
    } else {
        format!("; closest: {}", closest.join(", "))
    };
    format!("{address} is not in the directory of {}{hint}", domain.name)
}

/// The addresses to add, checked: full addresses of the domain, and listed by its directory
/// when it has one. Fails with the closest matches for an unknown one.
pub fn checked(domain: &Domain, typed: &[String]) -> Result<Vec<String>, String> {
    if domain.served_scope() == UserScope::AllUsers {
        return Err(format!(
            "ContinuityDomain {} covers all users of its directory; leave users out with spec.users.exclude",
            domain.name
        ));
    }
    let uncovered = domain.uncovered();
    let mut addresses = Vec::new();
    for address in typed.iter().map(|a| normalize(a)) {
        let known = match &uncovered {
            Some(listed) => listed.contains(&address) || domain.covered().contains(&address),
            None => address.contains('@'),
        };
        if !known {
            return Err(unknown(&address, domain, uncovered.as_deref().unwrap_or_default()));
        }
        if !in_domain(&address, &domain.mail_domain()) {
            return Err(format!(
                "{address} does not belong to {}, the mail domain of {}",
                domain.mail_domain(),
                domain.name
            ));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

/// Applies a ContinuityUser for each address; a password Secret given as `name:key`.
pub async fn add(client: &Client, domain: &Domain, typed: &[String], password: Option<&str>) -> Result<(), String> {
    let emergency_password = password
        .map(|reference| {
            reference
                .split_once(':')
                .map(|(name, key)| SecretKeySelector {
                    name: name.to_owned(),
                    key: key.to_owned(),
                })
                .ok_or_else(|| format!("--password-secret {reference:?}: expected NAME:KEY"))
        })
        .transpose()?;
    let users: Api<ContinuityUser> = Api::namespaced(client.clone(), &domain.namespace);
    for address in checked(domain, typed)? {
        if domain.covered().contains(&address) {
            println!("{address} is already covered by {}", domain.name);
            continue;
        }
        let name = user_name(&address);
        let mut user = ContinuityUser::new(
            &name,
            ContinuityUserSpec {
                domain_ref: LocalObjectReference {
                    name: domain.name.clone(),
                },
                address: address.clone(),
                emergency_password: emergency_password.clone(),
            },
        );
        user.metadata.namespace = Some(domain.namespace.clone());
        users
            .patch(&name, &PatchParams::apply(PLUGIN_MANAGER), &Patch::Apply(&user))
            .await
            .map_err(|e| format!("cannot add {address}: {e}"))?;
        println!("continuityuser/{name} added: {address}");
    }
    Ok(())
}

/// Deletes the domain's ContinuityUsers with these addresses (or names).
pub async fn remove(client: &Client, domain: &Domain, typed: &[String]) -> Result<(), String> {
    let users: Api<ContinuityUser> = Api::namespaced(client.clone(), &domain.namespace);
    let existing = domain.users(client).await?;
    for wanted in typed {
        let address = normalize(wanted);
        let Some(user) = existing
            .iter()
            .find(|u| normalize(&u.spec.address) == address || u.name_any() == *wanted)
        else {
            let known: Vec<&str> = existing.iter().map(|u| u.spec.address.as_str()).collect();
            let closest = suggest::closest(known, wanted);
            return Err(format!(
                "{wanted} is not a ContinuityUser of {}{}",
                domain.name,
                if closest.is_empty() {
                    String::new()
                } else {
                    format!("; closest: {}", closest.join(", "))
                }
            ));
        };
        users
            .delete(&user.name_any(), &DeleteParams::default())
            .await
            .map_err(|e| format!("cannot remove {wanted}: {e}"))?;
        println!("continuityuser/{} removed: {}", user.name_any(), user.spec.address);
    }
    Ok(())
}

/// Prints who the domain covers: its ContinuityUsers with their verdicts (SelectedUsers), or
/// the covered addresses (AllUsers).
pub async fn list(client: &Client, domain: &Domain) -> Result<(), String> {
    if domain.served_scope() == UserScope::AllUsers {
        println!("ADDRESS");
        let covered = domain.covered();
        for address in &covered {
            println!("{address}");
        }
        println!("{} addresses covered from the directory", covered.len());
        return Ok(());
    }
    println!("{:<40} {:<40} {:<8} REASON", "NAME", "ADDRESS", "COVERED");
    for user in domain.users(client).await? {
        let covered = user
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Covered"));
        println!(
            "{:<40} {:<40} {:<8} {}",
            user.name_any(),
            user.spec.address,
            covered.map_or("Unknown", |c| c.status.as_str()),
            covered.map_or("", |c| c.reason.as_str())
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_valid_and_distinct() {
        assert_eq!(user_name("alice@corp.example"), "alice.corp.example");
        let plus = user_name("bob+news@corp.example");
        let dash = user_name("bob-news@corp.example");
        assert_eq!(dash, "bob-news.corp.example");
        assert!(plus.starts_with("bob-news.corp.example-") && plus != dash, "{plus}");
        let odd = user_name("_x_@corp.example");
        assert!(odd.starts_with("x-.corp.example-") || odd.starts_with("x"), "{odd}");
        assert!(odd.chars().next().unwrap().is_ascii_alphanumeric(), "{odd}");
        let long = user_name(&format!("{}@corp.example", "a+".repeat(200)));
        assert!(long.len() <= 253, "{}", long.len());
    }
}
