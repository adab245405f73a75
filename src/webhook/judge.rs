//! What the admission webhook decides, as pure functions of the request and the facts fetched
//! for it: the same rules the controller applies (so a cluster without the webhook, or one
//! whose API server dropped the CRD's CEL rules, ends in the same place, as a condition
//! instead of a refusal), said at the moment a user can still fix them.
//!
//! Only what a change introduces is judged: an update that leaves the spec (and the scope
//! confirmation) as it was is always admitted, so objects that were stored before the
//! webhook existed can still be labelled, have finalizers removed and be deleted.

use kube::ResourceExt;

use crate::api::domain::UserScope;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::coverage::{self, CONFIRM_SCOPE_ANNOTATION, ScopeCourse};
use crate::resources::Environment;
use crate::validation::claims::{self, Claim, ClaimOutcome};
use crate::validation::{grants, rules};

/// The longest warning the API server passes on untouched (it asks for at most 120).
pub const WARNING_LENGTH: usize = 120;
/// Warnings per response: a list of users longer than this ends in "and N more".
pub const MAX_WARNINGS: usize = 8;

/// The webhook's answer: refused when `refusals` holds anything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Judgement {
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

impl Judgement {
    pub fn allowed(&self) -> bool {
        self.refusals.is_empty()
    }

    /// The refusal as one message, as `kubectl` prints it.
    pub fn message(&self) -> String {
        self.refusals.join("; ")
    }
}

/// What the webhook knows about a ContinuityDomain's surroundings.
#[derive(Debug)]
pub struct DomainFacts<'a> {
    pub env: &'a Environment,
    /// The claims on the object's mail domain whose namespace may serve it.
    pub claimants: Vec<Claim>,
    /// Whether the object's namespace is granted its mail domain; `None` when the provider
    /// does not grant domains.
    pub granted: Option<bool>,
    /// The domain's ContinuityUsers (fetched only when a scope switch is in play).
    pub users: Vec<ContinuityUser>,
}

/// Whether an update of `old` into `new` changes what the webhook judges on a domain.
pub fn domain_judged(new: &ContinuityDomain, old: Option<&ContinuityDomain>) -> bool {
    let confirmation = |d: &ContinuityDomain| d.annotations().get(CONFIRM_SCOPE_ANNOTATION).cloned();
    new.metadata.deletion_timestamp.is_none()
        && old.is_none_or(|old| old.spec != new.spec || confirmation(old) != confirmation(new))
}

/// Whether the webhook needs the domain's ContinuityUsers: it asks to switch from the
/// `SelectedUsers` it serves to `AllUsers`.
pub fn switches_scope(new: &ContinuityDomain) -> bool {
    new.spec.users.scope == UserScope::AllUsers && coverage::served_before(new) == Some(UserScope::SelectedUsers)
}

/// Judges a ContinuityDomain being created (`old` absent) or updated.
pub fn domain(new: &ContinuityDomain, old: Option<&ContinuityDomain>, facts: &DomainFacts) -> Judgement {
    let mut judgement = Judgement::default();
    if !domain_judged(new, old) {
        return judgement;
    }
    let checked = rules::check(new);
    let primary = checked.as_ref().ok();
    if let Err(violations) = &checked {
        judgement.refusals.extend(violations.iter().map(ToString::to_string));
    }
    judgement.refusals.extend(
        facts
            .env
            .policy
            .violations(&new.spec, primary)
            .iter()
            .map(ToString::to_string),
    );

    let mail_domain = claims::claimed_domain(new);
    let claims_anew = old.is_none_or(|old| claims::claimed_domain(old) != mail_domain);
    if claims_anew {
        if facts.granted == Some(false) {
            judgement.refusals.push(format!(
                "namespace {} may not serve mail domain {mail_domain}: the provider lists the domains a namespace may serve in its annotation {}",
                new.namespace().unwrap_or_default(),
                grants::ANNOTATION
            ));
        }
        if let ClaimOutcome::Lost { winner } = claims::resolve(&Claim::of(new), &facts.claimants) {
            // Another tenant's resource is never named to this one.
            judgement.refusals.push(if Some(&winner.namespace) == new.namespace().as_ref() {
                format!(
                    "mail domain {mail_domain} is already served by ContinuityDomain {} in this namespace",
                    winner.name
                )
            } else {
                format!("mail domain {mail_domain} is already served by a ContinuityDomain in another namespace; ask your provider")
            });
        }
    }

    let users: Vec<&ContinuityUser> = facts.users.iter().collect();
    match coverage::scope_course(new, &users) {
        ScopeCourse::AwaitingConfirmation { would_remove } => judgement.refusals.push(format!(
            "switching users.scope to AllUsers deletes this domain's {} ContinuityUsers ({}); confirm with the annotation {CONFIRM_SCOPE_ANNOTATION}=AllUsers",
            would_remove.len(),
            coverage::named(&would_remove)
        )),
        ScopeCourse::SwitchConfirmed { remove } => judgement.warnings.extend(listing(
            &format!(
                "switching to AllUsers deletes {} ContinuityUsers of {}:",
                remove.len(),
                new.name_any()
            ),
            &remove,
        )),
        ScopeCourse::Serve(_) => {}
    }
    judgement
}

/// Judges a ContinuityUser being created or updated, whose domain (in its namespace) is
/// `domain` if it exists.
pub fn user(new: &ContinuityUser, old: Option<&ContinuityUser>, domain: Option<&ContinuityDomain>) -> Judgement {
    let mut judgement = Judgement::default();
    if new.metadata.deletion_timestamp.is_some() || old.is_some_and(|old| old.spec == new.spec) {
        return judgement;
    }
    let address = &new.spec.address;
    let Some(domain) = domain else {
        judgement.warnings.push(clipped(&format!(
            "ContinuityDomain {} does not exist in this namespace: {address} is not covered until it does",
            new.spec.domain_ref.name
        )));
        return judgement;
    };
    if !coverage::in_domain(address, &domain.spec.domain) {
        judgement.refusals.push(format!(
            "{address} does not belong to {}, the mail domain of ContinuityDomain {}",
            domain.spec.domain,
            domain.name_any()
        ));
    } else if coverage::served_scope(domain) == UserScope::AllUsers {
        judgement.warnings.push(clipped(&format!(
            "ContinuityDomain {} covers all users of its directory: this ContinuityUser has no effect",
            domain.name_any()
        )));
    }
    judgement
}

/// `heading` and `names`, packed into warnings of at most [`WARNING_LENGTH`] characters,
/// at most [`MAX_WARNINGS`] of them.
pub fn listing(heading: &str, names: &[String]) -> Vec<String> {
    let mut lines = vec![clipped(heading)];
    let mut line = String::new();
    for (shown, name) in names.iter().enumerate() {
        let piece = if line.is_empty() {
            name.clone()
        } else {
            format!(", {name}")
        };
        if line.chars().count() + piece.chars().count() <= WARNING_LENGTH {
            line.push_str(&piece);
            continue;
        }
        let full = std::mem::replace(&mut line, name.clone());
        if full.is_empty() {
            continue;
        }
        lines.push(clipped(&full));
        if lines.len() + 1 == MAX_WARNINGS {
            lines.push(format!("and {} more", names.len() - shown));
            return lines;
        }
    }
    if !line.is_empty() {
        lines.push(clipped(&line));
    }
    lines
}

/// `text`, cut to [`WARNING_LENGTH`] characters.
fn clipped(text: &str) -> String {
    if text.chars().count() <= WARNING_LENGTH {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(WARNING_LENGTH - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::UsersStatus;
    use crate::testing::{environment, fixture};
    use k8s_openapi::jiff::Timestamp;

    fn facts(env: &Environment) -> DomainFacts<'_> {
        DomainFacts {
            env,
            claimants: Vec::new(),
            granted: None,
            users: Vec::new(),
        }
    }

    fn user_named(name: &str) -> ContinuityUser {
        let mut user: ContinuityUser = fixture("user-alice.yaml");
        user.metadata.name = Some(name.into());
        user.spec.address = format!("{name}@example.com");
        user
    }

    /// A domain with a directory, serving SelectedUsers, asked to switch to AllUsers.
    fn switching() -> (ContinuityDomain, ContinuityDomain) {
        let mut old: ContinuityDomain = fixture("domain-full.yaml");
        old.spec.users.scope = UserScope::SelectedUsers;
        old.status = Some(crate::api::ContinuityDomainStatus {
            users: Some(UsersStatus {
                scope: Some(UserScope::SelectedUsers),
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut new = old.clone();
        new.spec.users.scope = UserScope::AllUsers;
        (old, new)
    }

    #[test]
    fn a_valid_domain_is_admitted_without_warnings() {
        let env = environment();
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        assert_eq!(super::domain(&domain, None, &facts(&env)), Judgement::default());
    }

    #[test]
    fn every_rule_the_controller_applies_refuses_a_new_domain() {
        let env = environment();
        let domain: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let judgement = super::domain(&domain, None, &facts(&env));
        assert!(!judgement.allowed());
        let expected = rules::check(&domain).unwrap_err();
        assert_eq!(judgement.message(), rules::describe(&expected));

        // Provider policy: an image the provider did not allow.
        let mut imaged: ContinuityDomain = fixture("domain-minimal.yaml");
        imaged.spec.standby.mail.postfix_image = Some("evil.example/postfix:1".into());
        let mut env = environment();
        env.policy.image_prefixes = vec!["registry.provider.example/".into()];
        let judgement = super::domain(&imaged, None, &facts(&env));
        assert!(
            judgement.message().contains("spec.standby.mail.postfixImage"),
            "{judgement:?}"
        );
    }

    #[test]
    fn an_update_that_leaves_the_spec_alone_is_admitted_even_if_invalid() {
        let env = environment();
        let invalid: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let mut relabelled = invalid.clone();
        relabelled.labels_mut().insert("team".into(), "mail".into());
        assert!(super::domain(&relabelled, Some(&invalid), &facts(&env)).allowed());
        let mut deleting = invalid.clone();
        deleting.spec.primary.port = 1;
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
        assert!(super::domain(&deleting, Some(&invalid), &facts(&env)).allowed());
    }

    #[test]
    fn a_mail_domain_served_elsewhere_is_refused_without_naming_the_other_tenant() {
        let env = environment();
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut earlier = Claim::of(&domain);
        earlier.created = Some(Timestamp::from_second(0).unwrap());
        earlier.namespace = "tenant-secret".into();
        earlier.name = "theirs".into();
        let mut facts = facts(&env);
        facts.claimants = vec![earlier.clone(), Claim::of(&domain)];
        let message = super::domain(&domain, None, &facts).message();
        assert!(message.contains("another namespace"), "{message}");
        assert!(
            !message.contains("tenant-secret") && !message.contains("theirs"),
            "{message}"
        );

        facts.claimants[0].namespace = "tenant-a".into();
        let message = super::domain(&domain, None, &facts).message();
        assert!(
            message.contains("ContinuityDomain theirs in this namespace"),
            "{message}"
        );

        // The resource that already lost keeps being editable in other respects.
        let mut edited = domain.clone();
        edited.spec.primary.port = 587;
        assert!(super::domain(&edited, Some(&domain), &facts).allowed());
    }

    #[test]
    fn an_ungranted_mail_domain_is_refused_where_the_provider_grants_domains() {
        let env = environment();
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut facts = facts(&env);
        facts.granted = Some(false);
        let message = super::domain(&domain, None, &facts).message();
        assert!(
            message.contains("may not serve mail domain example.com") && message.contains(grants::ANNOTATION),
            "{message}"
        );
        facts.granted = Some(true);
        assert!(super::domain(&domain, None, &facts).allowed());
    }

    #[test]
    fn an_unconfirmed_scope_switch_is_refused_naming_the_users_it_would_delete() {
        let env = environment();
        let (old, new) = switching();
        assert!(switches_scope(&new));
        assert!(!switches_scope(&old));
        let mut facts = facts(&env);
        facts.users = vec![user_named("alice"), user_named("bob")];
        let message = super::domain(&new, Some(&old), &facts).message();
        assert!(
            message.contains("deletes this domain's 2 ContinuityUsers (alice, bob)")
                && message.contains("continuity.mailops.io/confirm-scope-change=AllUsers"),
            "{message}"
        );

        // Without users there is nothing to delete, hence nothing to confirm.
        facts.users.clear();
        assert!(super::domain(&new, Some(&old), &facts).allowed());
    }

    #[test]
    fn a_confirmed_switch_warns_with_every_user_in_short_lines() {
        let env = environment();
        let (old, mut new) = switching();
        new.annotations_mut()
            .insert(CONFIRM_SCOPE_ANNOTATION.into(), "AllUsers".into());
        let mut facts = facts(&env);
        facts.users = (0..30).map(|i| user_named(&format!("user-{i:02}"))).collect();
        let judgement = super::domain(&new, Some(&old), &facts);
        assert!(judgement.allowed(), "{judgement:?}");
        assert_eq!(
            judgement.warnings[0],
            "switching to AllUsers deletes 30 ContinuityUsers of corp:"
        );
        assert!(judgement.warnings.iter().all(|w| w.chars().count() <= WARNING_LENGTH));
        let listed = judgement.warnings[1..].join(", ");
        for i in 0..30 {
            assert!(
                listed.contains(&format!("user-{i:02}")),
                "user-{i:02} missing: {listed}"
            );
        }
    }

    #[test]
    fn long_lists_end_in_a_count_and_long_names_are_clipped() {
        let names: Vec<String> = (0..500).map(|i| format!("someone-with-a-long-name-{i:03}")).collect();
        let lines = listing("heading", &names);
        assert_eq!(lines.len(), MAX_WARNINGS);
        assert!(lines.iter().all(|w| w.chars().count() <= WARNING_LENGTH), "{lines:?}");
        let shown: usize = lines[1..].iter().map(|l| l.matches("someone").count()).sum();
        assert_eq!(lines.last().unwrap(), &format!("and {} more", 500 - shown));
        let long = listing(&"h".repeat(300), &["n".repeat(300)]);
        assert!(long.iter().all(|w| w.chars().count() == WARNING_LENGTH), "{long:?}");
    }

    #[test]
    fn a_user_outside_its_domain_is_refused_and_a_dangling_one_warned() {
        let domain: ContinuityDomain = fixture("domain-minimal.yaml");
        let mut user = user_named("alice");
        assert_eq!(super::user(&user, None, Some(&domain)), Judgement::default());
        user.spec.address = "alice@example.net".into();
        let judgement = super::user(&user, None, Some(&domain));
        assert_eq!(
            judgement.message(),
            "alice@example.net does not belong to example.com, the mail domain of ContinuityDomain example-com"
        );
        let judgement = super::user(&user, None, None);
        assert!(judgement.allowed());
        assert!(judgement.warnings[0].contains("does not exist"), "{judgement:?}");

        // Unchanged: admitted, whatever it says.
        assert!(super::user(&user, Some(&user.clone()), Some(&domain)).allowed());
    }
}
