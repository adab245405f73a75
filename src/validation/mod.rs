//! The first stage of a domain's reconcile: from the resource as written (hostile input) to
//! either a [`ValidatedDomain`] that the builders take and cannot fail on, or the reason the
//! domain may not act ([`Idle`]). What validation checks lives in [`rules`] (the CRD's CEL
//! rules evaluated in code, and what the schema cannot say), [`policy`] (what the provider
//! lets tenants set) and [`claims`] (which resource owns a mail domain).

pub mod claims;
pub mod grants;
pub mod policy;
pub mod rules;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use crate::api::{ContinuityDomain, ContinuityDomainSpec};
use crate::host::Host;
use crate::resources::names::ChildNames;
use crate::resources::{Environment, Images};
use crate::{Error, Result};
use claims::{Claim, ClaimOutcome};
use rules::Violation;

/// A domain that may act, with everything the builders need resolved.
#[derive(Clone, Debug)]
pub struct ValidatedDomain<'a> {
    pub name: String,
    pub namespace: String,
    pub spec: &'a ContinuityDomainSpec,
    /// The controller ownerReference every child carries.
    pub owner: OwnerReference,
    /// `spec.primary.host`, parsed.
    pub primary: Host,
    pub names: ChildNames,
    /// The standby's images: the domain's own where it names them, else the operator's.
    pub images: Images,
    pub env: &'a Environment,
}

impl ValidatedDomain<'_> {
    /// The cluster DNS name of the domain's Service `service`.
    pub fn service_host(&self, service: &str) -> String {
        format!("{service}.{}.svc.{}", self.namespace, self.env.cluster_domain)
    }

    /// The cluster DNS name of the standby mail Service.
    pub fn standby_host(&self) -> String {
        self.service_host(&self.names.standby_mail)
    }
}

/// Why a domain may not act. It then builds nothing and changes nothing: what it built
/// before stays in place (SPEC 4.9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Idle {
    /// `spec.suspend` is set.
    Suspended,
    /// The spec breaks rules the API server may have let through.
    Invalid(Vec<Violation>),
    /// The provider did not grant the namespace its mail domain (see [`grants`]).
    NotGranted,
    /// Another resource claimed the mail domain first.
    ClaimLost { winner: Claim },
}

/// What validation concluded.
#[derive(Debug)]
pub enum Standing<'a> {
    Acts(Box<ValidatedDomain<'a>>),
    Idle(Idle),
}

/// The outcome of validation: the claim's verdict (reported whatever the standing) and
/// whether the domain acts.
#[derive(Debug)]
pub struct Validation<'a> {
    pub claim: ClaimOutcome,
    pub standing: Standing<'a>,
}

/// Validates `domain`, whose namespace is `granted` its mail domain or not, against the rules
/// and the other (granted) `claimants` of its mail domain. Fails only when metadata the API
/// server always sets (namespace, uid) is missing.
pub fn validate<'a>(
    domain: &'a ContinuityDomain,
    granted: bool,
    claimants: &[Claim],
    env: &'a Environment,
) -> Result<Validation<'a>> {
    let claim = claims::resolve(&Claim::of(domain), claimants);
    let standing = if domain.spec.suspend {
        Standing::Idle(Idle::Suspended)
    } else {
        let checked = rules::check(domain);
        let disallowed = env.policy.violations(&domain.spec, checked.as_ref().ok());
        match (checked, &claim) {
            (Err(mut violations), _) => {
                violations.extend(disallowed);
                Standing::Idle(Idle::Invalid(violations))
            }
            (Ok(_), _) if !disallowed.is_empty() => Standing::Idle(Idle::Invalid(disallowed)),
            (Ok(_), _) if !granted => Standing::Idle(Idle::NotGranted),
            (Ok(_), ClaimOutcome::Lost { winner }) => Standing::Idle(Idle::ClaimLost { winner: winner.clone() }),
            (Ok(primary), ClaimOutcome::Accepted) => Standing::Acts(Box::new(acting(domain, primary, env)?)),
        }
    };
    Ok(Validation { claim, standing })
}

fn acting<'a>(domain: &'a ContinuityDomain, primary: Host, env: &'a Environment) -> Result<ValidatedDomain<'a>> {
    let missing = |field| Error::MissingField {
        kind: "ContinuityDomain",
        field,
    };
    let name = domain.name_any();
    let standby = &domain.spec.standby;
    Ok(ValidatedDomain {
        namespace: domain.namespace().ok_or_else(|| missing("metadata.namespace"))?,
        owner: domain
            .controller_owner_ref(&())
            .ok_or_else(|| missing("metadata.uid"))?,
        spec: &domain.spec,
        primary,
        names: ChildNames::of(&name, &domain.spec),
        images: Images {
            postfix: standby
                .mail
                .postfix_image
                .clone()
                .unwrap_or_else(|| env.images.postfix.clone()),
            dovecot: standby
                .mail
                .dovecot_image
                .clone()
                .unwrap_or_else(|| env.images.dovecot.clone()),
            webmail: standby
                .webmail
                .image
                .clone()
                .unwrap_or_else(|| env.images.webmail.clone()),
            agent: env.images.agent.clone(),
        },
        name,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{environment, fixture};
    use k8s_openapi::jiff::Timestamp;

    fn standing<'a>(domain: &'a ContinuityDomain, claimants: &[Claim], env: &'a Environment) -> Standing<'a> {
        validate(domain, true, claimants, env).unwrap().standing
    }

    #[test]
    fn a_valid_domain_acts_with_its_primary_parsed_and_its_images_resolved() {
        let env = environment();
        let domain: ContinuityDomain = fixture("domain-static.yaml"); // 192.0.2.25:2525
        let Standing::Acts(validated) = standing(&domain, &[Claim::of(&domain)], &env) else {
            panic!("the domain should act");
        };
        assert_eq!(validated.primary, Host::Ip("192.0.2.25".parse().unwrap()));
        assert_eq!(validated.owner.uid, domain.metadata.uid.clone().unwrap());
        assert_eq!(
            (validated.namespace.as_str(), validated.name.as_str()),
            ("tenant-a", "example-com")
        );
        assert_eq!(validated.images, env.images, "the fixture names no images of its own");
        assert_eq!(
            validated.standby_host(),
            "example-com-standby-mail.tenant-a.svc.cluster.local"
        );
    }

    #[test]
    fn suspension_comes_first_then_the_spec_then_the_claim() {
        let env = environment();
        let mut domain: ContinuityDomain = fixture("domain-timeout-over-period.yaml");
        let mut earlier = Claim::of(&domain);
        earlier.namespace = "tenant-0".into();
        earlier.created = Some(Timestamp::from_second(0).unwrap());
        let claimants = [earlier.clone(), Claim::of(&domain)];
        assert!(matches!(standing(&domain, &claimants, &env), Standing::Idle(Idle::Invalid(v)) if !v.is_empty()));
        domain.spec.suspend = true;
        assert!(matches!(
            standing(&domain, &claimants, &env),
            Standing::Idle(Idle::Suspended)
        ));

        let valid: ContinuityDomain = fixture("domain-minimal.yaml");
        assert!(matches!(
            validate(&valid, false, &[Claim::of(&valid)], &env).unwrap().standing,
            Standing::Idle(Idle::NotGranted)
        ));
        let validation = validate(&valid, true, &claimants, &env).unwrap();
        assert_eq!(
            validation.claim,
            ClaimOutcome::Lost {
                winner: earlier.clone()
            }
        );
        assert!(matches!(validation.standing, Standing::Idle(Idle::ClaimLost { winner }) if winner == earlier));
    }

    #[test]
    fn missing_metadata_is_an_error_not_a_domain_without_owner() {
        let env = environment();
        let mut domain: ContinuityDomain = fixture("domain-minimal.yaml");
        domain.metadata.uid = None;
        assert!(validate(&domain, true, &[], &env).is_err());
    }
}
