//! Who the Continuity Service covers (SPEC 4.5), judged from specs alone.
//!
//! `SelectedUsers`: exactly the ContinuityUsers that reference the domain, whose address
//! belongs to it, one per address (the oldest wins). `AllUsers`: every address the directory
//! lists, minus `exclude`. Addresses compare case-insensitively and are kept in lower case,
//! as Postfix looks them up.
//!
//! The scope served follows the spec, but a switch from `SelectedUsers` to `AllUsers` removes
//! the domain's ContinuityUsers (as the manual says), so while the domain has any it is
//! carried out only once the annotation [`CONFIRM_SCOPE_ANNOTATION`] names the new scope
//! ([`scope_course`]); until then the old scope is served.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kube::ResourceExt;

use crate::api::conditions::reasons;
use crate::api::domain::{DomainPhase, UserScope};
use crate::api::{ContinuityDomain, ContinuityUser};

/// The annotation that confirms a switch to `AllUsers` (its value: `AllUsers`).
pub const CONFIRM_SCOPE_ANNOTATION: &str = "continuity.mailops.io/confirm-scope-change";

/// Which scope a domain serves now, and what the switch to it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeCourse {
    /// The spec's scope; nothing to remove.
    Serve(UserScope),
    /// The confirmed switch to `AllUsers`: these ContinuityUsers are removed.
    SwitchConfirmed { remove: Vec<String> },
    /// `SelectedUsers` is still served: the switch to `AllUsers` would remove these.
    AwaitingConfirmation { would_remove: Vec<String> },
}

impl ScopeCourse {
    /// The scope users are covered by now.
    pub fn served(&self) -> UserScope {
        match self {
            ScopeCourse::Serve(scope) => *scope,
            ScopeCourse::SwitchConfirmed { .. } => UserScope::AllUsers,
            ScopeCourse::AwaitingConfirmation { .. } => UserScope::SelectedUsers,
        }
    }
}

/// The scope course of `domain`, whose ContinuityUsers are `users`.
pub fn scope_course(domain: &ContinuityDomain, users: &[&ContinuityUser]) -> ScopeCourse {
    let wanted = domain.spec.users.scope;
    if wanted != UserScope::AllUsers || served_before(domain) != Some(UserScope::SelectedUsers) || users.is_empty() {
        return ScopeCourse::Serve(wanted);
    }
    let mut names: Vec<String> = users.iter().map(|u| u.name_any()).collect();
    names.sort();
    if switch_confirmed(domain) {
        ScopeCourse::SwitchConfirmed { remove: names }
    } else {
        ScopeCourse::AwaitingConfirmation { would_remove: names }
    }
}

/// The scope the domain's status says it served.
pub fn served_before(domain: &ContinuityDomain) -> Option<UserScope> {
    domain.status.as_ref()?.users.as_ref()?.scope
}

fn switch_confirmed(domain: &ContinuityDomain) -> bool {
    domain
        .annotations()
        .get(CONFIRM_SCOPE_ANNOTATION)
        .is_some_and(|v| v == "AllUsers")
}

/// How many users a condition or Event names.
pub const NAMED_USERS: usize = 20;

/// `names`, at most [`NAMED_USERS`] of them, and how many more.
pub fn named(names: &[String]) -> String {
    let mut text = names.iter().take(NAMED_USERS).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > NAMED_USERS {
        text.push_str(&format!(" and {} more", names.len() - NAMED_USERS));
    }
    text
}

/// The scope a domain serves as its users see it: a switch to `AllUsers` that waits for
/// confirmation still serves its ContinuityUsers.
pub fn served_scope(domain: &ContinuityDomain) -> UserScope {
    match (domain.spec.users.scope, served_before(domain)) {
        (UserScope::AllUsers, Some(UserScope::SelectedUsers)) if !switch_confirmed(domain) => UserScope::SelectedUsers,
        (wanted, _) => wanted,
    }
}

/// Whether one ContinuityUser counts, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Covered,
    NotCovered { reason: &'static str, message: String },
}

impl Verdict {
    fn not(reason: &'static str, message: String) -> Self {
        Verdict::NotCovered { reason, message }
    }
}

/// Lower-cased address.
pub fn normalize(address: &str) -> String {
    address.to_ascii_lowercase()
}

/// Whether `address` belongs to `domain` (exactly; a subdomain is another domain).
pub fn in_domain(address: &str, domain: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(_, address_domain)| address_domain.eq_ignore_ascii_case(domain))
}

/// Judges every ContinuityUser that references `domain`, which may act (valid, its claim
/// accepted) or not. Among users adding the same address, the oldest (then the first by name)
/// counts and the others are duplicates.
pub fn judge_selected<'a>(
    domain: &ContinuityDomain,
    domain_acts: bool,
    users: &[&'a ContinuityUser],
) -> Vec<(&'a ContinuityUser, Verdict)> {
    let mut ordered: Vec<&ContinuityUser> = users.to_vec();
    ordered.sort_by(|a, b| {
        (a.metadata.creation_timestamp.as_ref().map(|t| t.0), a.name_any())
            .cmp(&(b.metadata.creation_timestamp.as_ref().map(|t| t.0), b.name_any()))
    });
    let mut first_by_address: BTreeMap<String, String> = BTreeMap::new();
    ordered
        .into_iter()
        .map(|user| {
            let verdict = judge_one(domain, domain_acts, user, &mut first_by_address);
            (user, verdict)
        })
        .collect()
}

fn judge_one(
    domain: &ContinuityDomain,
    domain_acts: bool,
    user: &ContinuityUser,
    first_by_address: &mut BTreeMap<String, String>,
) -> Verdict {
    let domain_name = &domain.spec.domain;
    let address = &user.spec.address;
    if !in_domain(address, domain_name) {
        return Verdict::not(
            reasons::ADDRESS_NOT_IN_DOMAIN,
            format!(
                "{address} does not belong to {domain_name}, the domain of ContinuityDomain {}",
                domain.name_any()
            ),
        );
    }
    if served_scope(domain) == UserScope::AllUsers {
        return Verdict::not(
            reasons::DOMAIN_SCOPE_IS_ALL_USERS,
            format!(
                "ContinuityDomain {} covers all users of its directory, so single users do not apply; {address} is covered if the directory lists it and it is not excluded",
                domain.name_any()
            ),
        );
    }
    if !domain_acts {
        return Verdict::not(
            reasons::DOMAIN_NOT_ACTING,
            format!(
                "ContinuityDomain {} cannot act (invalid, or its domain is claimed elsewhere); see its Ready condition",
                domain.name_any()
            ),
        );
    }
    let key = normalize(address);
    match first_by_address.get(&key) {
        Some(first) => Verdict::not(
            reasons::DUPLICATE_ADDRESS,
            format!(
                "ContinuityUser {first} already adds {key} to ContinuityDomain {}",
                domain.name_any()
            ),
        ),
        None => {
            first_by_address.insert(key, user.name_any());
            Verdict::Covered
        }
    }
}

/// The verdict for a user whose domain may not exist, judged as the domain's controller last
/// published it: a domain in phase `Error` does not act. (A suspended domain still serves its
/// users; only the operator pauses.)
pub fn judge_user(user: &ContinuityUser, domain: Option<&ContinuityDomain>, siblings: &[&ContinuityUser]) -> Verdict {
    let Some(domain) = domain else {
        return Verdict::not(
            reasons::DOMAIN_NOT_FOUND,
            format!(
                "ContinuityDomain {} does not exist in this namespace",
                user.spec.domain_ref.name
            ),
        );
    };
    let acts = domain.status.as_ref().and_then(|s| s.phase) != Some(DomainPhase::Error);
    judge_selected(domain, acts, siblings)
        .into_iter()
        .find(|(u, _)| u.name_any() == user.name_any())
        .map_or_else(
            || judge_selected(domain, acts, &[user]).remove(0).1,
            |(_, verdict)| verdict,
        )
}

/// Who a domain that acts covers, judged once per reconcile.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coverage<'a> {
    /// The covered addresses; `None` while they are unknown (a directory not read yet).
    pub addresses: Option<BTreeSet<String>>,
    /// The ContinuityUser through which each address is covered (SelectedUsers: exactly one
    /// per address; AllUsers: none, the addresses come from the directory).
    pub through: HashMap<String, &'a ContinuityUser>,
}

/// Judges the coverage of `domain`, acting, serving `scope`, whose ContinuityUsers are `users`
/// and whose LDAP directory (if it has one) last listed `ldap_listing`.
pub fn resolve<'a>(
    domain: &ContinuityDomain,
    scope: UserScope,
    users: &[&'a ContinuityUser],
    ldap_listing: Option<&BTreeSet<String>>,
) -> Coverage<'a> {
    match scope {
        UserScope::SelectedUsers => {
            let through: HashMap<String, &ContinuityUser> = judge_selected(domain, true, users)
                .into_iter()
                .filter(|(_, verdict)| *verdict == Verdict::Covered)
                .map(|(user, _)| (normalize(&user.spec.address), user))
                .collect();
            Coverage {
                addresses: Some(through.keys().cloned().collect()),
                through,
            }
        }
        UserScope::AllUsers => Coverage {
            addresses: directory_listing(domain, ldap_listing),
            through: HashMap::new(),
        },
    }
}

/// The addresses an `AllUsers` domain's directory lists (its static list, or what its LDAP
/// directory last listed), minus `exclude`.
fn directory_listing(domain: &ContinuityDomain, ldap_listing: Option<&BTreeSet<String>>) -> Option<BTreeSet<String>> {
    let directory = domain.spec.users.directory.as_ref()?;
    let listed: Vec<&String> = match (&directory.static_list, &directory.ldap) {
        (Some(list), _) => list.addresses.iter().collect(),
        (None, Some(_)) => ldap_listing?.iter().collect(),
        (None, None) => return None,
    };
    let excluded: BTreeSet<String> = domain.spec.users.exclude.iter().map(|a| normalize(a)).collect();
    Some(
        listed
            .into_iter()
            .map(|a| normalize(a))
            .filter(|a| !excluded.contains(a) && in_domain(a, &domain.spec.domain))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::fixture;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn user(name: &str, address: &str, created: i64) -> ContinuityUser {
        let mut u: ContinuityUser = fixture("user-alice.yaml");
        u.metadata.name = Some(name.into());
        u.spec.address = address.into();
        u.metadata.creation_timestamp = Some(Time(Timestamp::from_second(created).unwrap()));
        u
    }

    fn reason(v: &Verdict) -> &'static str {
        match v {
            Verdict::Covered => reasons::COVERED,
            Verdict::NotCovered { reason, .. } => reason,
        }
    }

    #[test]
    fn selected_users_are_covered_once_per_address() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let alice = user("alice", "alice@example.com", 10);
        let alice_again = user("alice-2", "Alice@Example.com", 20);
        let bob = user("bob", "bob@example.com", 30);
        let stranger = user("eve", "eve@example.org", 40);
        let users = [&bob, &alice_again, &stranger, &alice];

        let verdicts: Vec<(String, &str)> = judge_selected(&domain, true, &users)
            .iter()
            .map(|(u, v)| (u.name_any(), reason(v)))
            .collect();
        assert_eq!(
            verdicts,
            vec![
                ("alice".into(), reasons::COVERED),
                ("alice-2".into(), reasons::DUPLICATE_ADDRESS),
                ("bob".into(), reasons::COVERED),
                ("eve".into(), reasons::ADDRESS_NOT_IN_DOMAIN),
            ]
        );
        let coverage = resolve(&domain, domain.spec.users.scope, &users, None);
        assert_eq!(
            coverage.addresses.unwrap().into_iter().collect::<Vec<_>>(),
            vec!["alice@example.com", "bob@example.com"]
        );
        assert_eq!(coverage.through["alice@example.com"].name_any(), "alice", "the oldest");
    }

    #[test]
    fn users_report_why_they_are_not_covered() {
        let alice = user("alice", "alice@example.com", 10);
        assert_eq!(reason(&judge_user(&alice, None, &[])), reasons::DOMAIN_NOT_FOUND);

        let all_users: ContinuityDomain = fixture("domain-static.yaml");
        assert_eq!(
            reason(&judge_user(&alice, Some(&all_users), &[&alice])),
            reasons::DOMAIN_SCOPE_IS_ALL_USERS
        );

        let mut conflicted: ContinuityDomain = fixture("domain-minimal.yaml");
        conflicted.status = Some(crate::api::ContinuityDomainStatus {
            phase: Some(DomainPhase::Error),
            ..Default::default()
        });
        assert_eq!(
            reason(&judge_user(&alice, Some(&conflicted), &[&alice])),
            reasons::DOMAIN_NOT_ACTING
        );

        let selected: ContinuityDomain = fixture("domain-minimal.yaml");
        let outsider = user("o", "o@sub.example.com", 1);
        assert_eq!(
            reason(&judge_user(&outsider, Some(&selected), &[&outsider])),
            reasons::ADDRESS_NOT_IN_DOMAIN
        );
        // A user not yet in the index is judged on its own.
        assert_eq!(judge_user(&alice, Some(&selected), &[]), Verdict::Covered);
    }

    #[test]
    fn all_users_from_a_static_directory_minus_excluded() {
        let domain: ContinuityDomain = fixture("domain-static.yaml");
        let coverage = resolve(&domain, domain.spec.users.scope, &[], None);
        assert!(coverage.through.is_empty(), "no ContinuityUser is involved");
        assert_eq!(
            coverage.addresses.unwrap().into_iter().collect::<Vec<_>>(),
            vec!["alice@example.com", "carol@example.com"],
            "bob is excluded, Carol is lower-cased"
        );
    }

    #[test]
    fn an_unread_directory_is_unknown_not_empty() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        assert_eq!(resolve(&domain, domain.spec.users.scope, &[], None).addresses, None);
    }

    #[test]
    fn all_users_from_an_ldap_listing_minus_excluded() {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        let listed: BTreeSet<String> = ["Alice@corp.example.net", "noreply@corp.example.net", "eve@example.org"]
            .map(String::from)
            .into();
        let coverage = resolve(&domain, domain.spec.users.scope, &[], Some(&listed));
        assert_eq!(
            coverage.addresses.unwrap().into_iter().collect::<Vec<_>>(),
            vec!["alice@corp.example.net"],
            "noreply is excluded, another domain's address does not count"
        );
    }

    #[test]
    fn switching_to_all_users_waits_for_confirmation_while_users_would_be_removed() {
        let mut domain: ContinuityDomain = fixture("domain-static.yaml");
        let alice = user("alice", "alice@example.com", 10);
        let bob = user("bob", "bob@example.com", 20);
        let users = [&bob, &alice];
        // A domain never served before takes its spec's scope.
        assert_eq!(scope_course(&domain, &users), ScopeCourse::Serve(UserScope::AllUsers));

        domain.status = Some(crate::api::ContinuityDomainStatus {
            users: Some(crate::api::domain::UsersStatus {
                scope: Some(UserScope::SelectedUsers),
                ..Default::default()
            }),
            ..Default::default()
        });
        let waiting = scope_course(&domain, &users);
        assert_eq!(
            waiting,
            ScopeCourse::AwaitingConfirmation {
                would_remove: vec!["alice".into(), "bob".into()]
            }
        );
        assert_eq!(waiting.served(), UserScope::SelectedUsers);
        assert_eq!(served_scope(&domain), UserScope::SelectedUsers);
        assert_eq!(
            judge_user(&alice, Some(&domain), &users),
            Verdict::Covered,
            "still served"
        );
        // Without users there is nothing to confirm.
        assert_eq!(scope_course(&domain, &[]), ScopeCourse::Serve(UserScope::AllUsers));

        let confirm = |domain: &mut ContinuityDomain, scope: &str| {
            domain
                .annotations_mut()
                .insert(CONFIRM_SCOPE_ANNOTATION.into(), scope.into());
        };
        confirm(&mut domain, "SelectedUsers");
        assert!(
            matches!(scope_course(&domain, &users), ScopeCourse::AwaitingConfirmation { .. }),
            "names another scope"
        );
        confirm(&mut domain, "AllUsers");
        let confirmed = scope_course(&domain, &users);
        assert_eq!(
            confirmed,
            ScopeCourse::SwitchConfirmed {
                remove: vec!["alice".into(), "bob".into()]
            }
        );
        assert_eq!(confirmed.served(), UserScope::AllUsers);
        assert_eq!(served_scope(&domain), UserScope::AllUsers);
    }

    #[test]
    fn at_most_twenty_users_are_named() {
        let names: Vec<String> = (0..25).map(|i| format!("u{i}")).collect();
        let text = named(&names);
        assert!(text.starts_with("u0, u1, "), "{text}");
        assert!(text.ends_with("u19 and 5 more"), "{text}");
        assert_eq!(named(&names[..2]), "u0, u1");
    }

    #[test]
    fn domain_membership_is_exact() {
        assert!(in_domain("a@Example.COM", "example.com"));
        assert!(!in_domain("a@sub.example.com", "example.com"));
        assert!(!in_domain("a@example.com.evil", "example.com"));
        assert!(!in_domain("no-at-sign", "example.com"));
    }
}
