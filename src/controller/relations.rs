//! Which change re-reconciles what, declared as data. [`RELATIONS`] lists, for each kind of
//! change, the index through which it reaches domains and users, and what is then queued;
//! [`fan_out`] interprets it. The watch handlers below keep the indexes current (a handler
//! runs after its cache holds the change, so a queued reconcile reads it) and handle what a
//! relist implies: it may have missed deletions, so everything that depends is queued.

use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use k8s_openapi::api::core::v1::{Namespace, Secret};

use super::context::{Context, backoff_key};
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::coverage::normalize;
use crate::health::{self, scheduler::DomainKey};
use crate::validation::claims::{self, Claim};
use crate::validation::{grants, rules};

/// A Secret, as the indexes of who reads which Secret know it.
pub type SecretKey = ObjectRef<Secret>;
/// An address added to a domain: namespace, domain name, normalized address.
pub type AddressKey = (String, String, String);

/// What changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Domain,
    User,
    Secret,
    /// A ContinuityDomain in any namespace, as a claim on its mail domain.
    Claim,
}

/// How a change reaches the objects it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The changed domain itself.
    Itself,
    /// The users-by-domain index: the domains a user left and joined.
    UsersByDomain,
    /// The users-by-address index: the users adding an address a user added or gave up.
    UsersByAddress,
    /// The domains-by-secret index: the domains whose shared passwords the Secret holds.
    DomainsBySecret,
    /// The users-by-secret index: the users whose own password the Secret holds.
    UsersBySecret,
    /// The domains-by-bind-secret index: the domains whose directory the Secret binds to.
    DomainsByBindSecret,
    /// The claims index: the in-scope domains claiming a mail domain whose claims changed.
    Claims,
}

/// What is queued for each object reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// The domain reached (or the domain of the user reached).
    Domain,
    /// Every user of the domain reached: their verdicts depend on it and on each other.
    UsersOfDomain,
    /// The user reached.
    User,
}

/// One dependency: a change of `source`, through `via`, queues `then`.
#[derive(Clone, Copy, Debug)]
pub struct Relation {
    pub source: Source,
    pub via: Via,
    pub then: &'static [Then],
}

/// Every dependency between watched objects.
pub const RELATIONS: &[Relation] = &[
    Relation {
        source: Source::Domain,
        via: Via::Itself,
        then: &[Then::UsersOfDomain],
    },
    Relation {
        source: Source::User,
        via: Via::UsersByDomain,
        then: &[Then::Domain],
    },
    // Only users of the same address judge each other (the oldest is covered, the others are
    // duplicates): a user's change re-judges them, not the whole domain.
    Relation {
        source: Source::User,
        via: Via::UsersByAddress,
        then: &[Then::User],
    },
    Relation {
        source: Source::Secret,
        via: Via::DomainsBySecret,
        then: &[Then::Domain, Then::UsersOfDomain],
    },
    Relation {
        source: Source::Secret,
        via: Via::DomainsByBindSecret,
        then: &[Then::Domain],
    },
    Relation {
        source: Source::Secret,
        via: Via::UsersBySecret,
        then: &[Then::User, Then::Domain],
    },
    Relation {
        source: Source::Claim,
        via: Via::Claims,
        then: &[Then::Domain],
    },
];

/// What one change touched, as the indexes reported it.
#[derive(Debug, Default)]
pub struct Touched {
    /// Domains (by namespace and name) whose index entries changed, or the domain itself.
    pub domains: Vec<DomainKey>,
    pub secret: Option<SecretKey>,
    /// Addresses whose users changed.
    pub addresses: Vec<AddressKey>,
    /// Mail domains whose claims changed.
    pub mail_domains: Vec<String>,
}

/// An object a change reached: a domain, or a user with its domain.
#[derive(Debug, PartialEq, Eq)]
struct Reached {
    domain: DomainKey,
    user: Option<ObjectRef<ContinuityUser>>,
}

/// Queues what the change of `source`, which touched `touched`, reaches per [`RELATIONS`].
pub fn fan_out(ctx: &Context, source: Source, touched: &Touched) {
    for relation in RELATIONS.iter().filter(|r| r.source == source) {
        for reached in reach(ctx, relation.via, touched) {
            for then in relation.then {
                match then {
                    Then::Domain => ctx.triggers.domain(&reached.domain),
                    Then::UsersOfDomain => {
                        for user in ctx.indexes.users_by_domain.get(&reached.domain) {
                            ctx.triggers.user(user);
                        }
                    }
                    Then::User => {
                        if let Some(user) = &reached.user {
                            ctx.triggers.user(user.clone());
                        }
                    }
                }
            }
        }
    }
}

fn reach(ctx: &Context, via: Via, touched: &Touched) -> Vec<Reached> {
    let domain = |domain: DomainKey| Reached { domain, user: None };
    let indexes = &ctx.indexes;
    match (via, &touched.secret) {
        (Via::Itself | Via::UsersByDomain, _) => touched.domains.iter().cloned().map(domain).collect(),
        (Via::DomainsBySecret | Via::DomainsByBindSecret, Some(secret)) => {
            let index = match via {
                Via::DomainsBySecret => &indexes.domains_by_secret,
                _ => &indexes.domains_by_bind_secret,
            };
            index
                .get(secret)
                .into_iter()
                .map(|d| domain((d.namespace.unwrap_or_default(), d.name)))
                .collect()
        }
        (Via::UsersBySecret, Some(secret)) => indexes
            .users_by_secret
            .get(secret)
            .into_iter()
            .filter_map(|user| {
                let cached = ctx.caches.users.get(&user)?;
                Some(Reached {
                    domain: (cached.namespace()?, cached.spec.domain_ref.name.clone()),
                    user: Some(user),
                })
            })
            .collect(),
        (Via::DomainsBySecret | Via::DomainsByBindSecret | Via::UsersBySecret, None) => Vec::new(),
        (Via::UsersByAddress, _) => touched
            .addresses
            .iter()
            .flat_map(|key| {
                let domain = (key.0.clone(), key.1.clone());
                indexes.users_by_address.get(key).into_iter().map(move |user| Reached {
                    domain: domain.clone(),
                    user: Some(user),
                })
            })
            .collect(),
        (Via::Claims, _) => touched
            .mail_domains
            .iter()
            .flat_map(|mail_domain| indexes.claims.get(mail_domain))
            .filter(|claim| ctx.in_scope(&claim.namespace))
            .map(|claim| domain((claim.namespace, claim.name)))
            .collect(),
    }
}

/// The users-by-domain index's key and entry for a user.
pub fn index_user(user: &ContinuityUser) -> Option<(DomainKey, ObjectRef<ContinuityUser>)> {
    Some((
        (user.namespace()?, user.spec.domain_ref.name.clone()),
        ObjectRef::from_obj(user),
    ))
}

/// The users-by-address index's key and entry for a user.
pub fn index_address(user: &ContinuityUser) -> Option<(AddressKey, ObjectRef<ContinuityUser>)> {
    Some((
        (
            user.namespace()?,
            user.spec.domain_ref.name.clone(),
            normalize(&user.spec.address),
        ),
        ObjectRef::from_obj(user),
    ))
}

/// The grants index's key (the namespace) and entry (its grant annotation) for a namespace.
pub fn index_grant(namespace: &PartialObjectMeta<Namespace>) -> Option<(String, String)> {
    let grant = namespace.metadata.annotations.as_ref()?.get(grants::ANNOTATION)?;
    Some((namespace.name_any(), grant.clone()))
}

/// The claims index's key (the mail domain) and entry for a domain. A domain whose name
/// cannot name its children claims nothing: it will never serve the mail domain.
pub fn index_claim(domain: &ContinuityDomain) -> Option<(String, Claim)> {
    if rules::name_violation(&domain.name_any()).is_some() {
        return None;
    }
    Some((claims::claimed_domain(domain).to_owned(), Claim::of(domain)))
}

/// The domains-by-secret index's key and entry for a domain.
pub fn index_domain_secret(domain: &ContinuityDomain) -> Option<(SecretKey, ObjectRef<ContinuityDomain>)> {
    let secret = &domain.spec.emergency_passwords.as_ref()?.secret_ref.name;
    Some((
        ObjectRef::new(secret).within(&domain.namespace()?),
        ObjectRef::from_obj(domain),
    ))
}

/// The domains-by-bind-secret index's key and entry for a domain.
pub fn index_bind_secret(domain: &ContinuityDomain) -> Option<(SecretKey, ObjectRef<ContinuityDomain>)> {
    let ldap = domain.spec.users.directory.as_ref()?.ldap.as_ref()?;
    Some((
        ObjectRef::new(&ldap.bind_secret_ref.as_ref()?.name).within(&domain.namespace()?),
        ObjectRef::from_obj(domain),
    ))
}

/// The users-by-secret index's key and entry for a user.
pub fn index_user_secret(user: &ContinuityUser) -> Option<(SecretKey, ObjectRef<ContinuityUser>)> {
    let secret = &user.spec.emergency_password.as_ref()?.name;
    Some((
        ObjectRef::new(secret).within(&user.namespace()?),
        ObjectRef::from_obj(user),
    ))
}

fn domain_key(domain: &ContinuityDomain) -> DomainKey {
    (domain.namespace().unwrap_or_default(), domain.name_any())
}

impl Context {
    /// A ContinuityDomain in scope changed.
    pub fn domain_changed(&self, event: &Event<ContinuityDomain>) {
        self.indexes.domains_by_secret.apply(event);
        self.indexes.domains_by_bind_secret.apply(event);
        if let Event::Apply(domain) | Event::InitApply(domain) = event
            && let Some(registration) = health::resumed(
                domain,
                self.settings.status_heartbeat,
                &self.settings.environment.policy.primary_networks,
            )
        {
            self.prober.register(&domain_key(domain), registration);
        }
        match event {
            Event::Apply(domain) | Event::InitApply(domain) => {
                self.metrics.domains.update(&domain_key(domain), domain.status.as_ref());
            }
            Event::Delete(domain) => self.metrics.domains.remove(&domain_key(domain)),
            _ => {}
        }
        match event {
            Event::Apply(domain) | Event::Delete(domain) | Event::InitApply(domain) => {
                let touched = Touched {
                    domains: vec![domain_key(domain)],
                    ..Touched::default()
                };
                fan_out(self, Source::Domain, &touched);
            }
            Event::InitDone => {
                for user in self.caches.users.state() {
                    self.triggers.user(ObjectRef::from_obj(user.as_ref()));
                }
                // A relist may have missed deletions: stop probing domains that are gone.
                let present: Vec<DomainKey> = self.caches.domains.state().iter().map(|d| domain_key(d)).collect();
                self.prober.retain(&present);
                self.directories.retain(&present);
                self.metrics.domains.retain(&present);
            }
            Event::Init => {}
        }
        if let Event::Delete(domain) = event {
            self.reset_backoff(&backoff_key(domain));
            self.prober.deregister(&domain_key(domain));
            self.directories.deregister(&domain_key(domain));
        }
        if !matches!(event, Event::Init | Event::InitApply(_)) {
            self.routes_changed.notify_one();
        }
    }

    /// A ContinuityUser in scope changed.
    pub fn user_changed(&self, event: &Event<ContinuityUser>) {
        self.indexes.users_by_secret.apply(event);
        let addresses = self.indexes.users_by_address.apply(event);
        let mut domains = self.indexes.users_by_domain.apply(event);
        // An address change leaves the user under the same key, but changes the domain's list.
        if let Event::Apply(user) | Event::Delete(user) = event
            && let Some((key, _)) = index_user(user)
            && !domains.contains(&key)
        {
            domains.push(key);
        }
        let touched = Touched {
            domains,
            addresses,
            ..Touched::default()
        };
        fan_out(self, Source::User, &touched);
        if let Event::Delete(user) = event {
            self.reset_backoff(&backoff_key(user));
        }
    }

    /// The metadata of a Secret in scope changed.
    pub fn secret_changed(&self, event: &Event<PartialObjectMeta<Secret>>) {
        let secret = match event {
            Event::Apply(secret) | Event::Delete(secret) => secret,
            Event::InitDone => {
                for domain in self.caches.domains.state() {
                    self.triggers.domain(&domain_key(&domain));
                }
                for user in self.caches.users.state() {
                    self.triggers.user(ObjectRef::from_obj(user.as_ref()));
                }
                return;
            }
            Event::Init | Event::InitApply(_) => return,
        };
        let namespace = secret.namespace().unwrap_or_default();
        let key = SecretKey::new(&secret.name_any()).within(&namespace);
        if let Event::Delete(_) = event {
            self.caches.secrets.forget(&namespace, &key.name);
        }
        let touched = Touched {
            secret: Some(key),
            ..Touched::default()
        };
        fan_out(self, Source::Secret, &touched);
    }

    /// A namespace's metadata changed. Only when its grant did is every domain in scope judged
    /// again, not only the namespace's own: a claim losing its grant lets another namespace's
    /// claimant win. (Grants change rarely, by the provider's hand; namespaces change often.)
    pub fn namespace_changed(&self, event: &Event<PartialObjectMeta<Namespace>>) {
        if self.indexes.grants.apply(event).is_empty() {
            return;
        }
        for domain in self.caches.domains.state() {
            self.triggers.domain(&domain_key(&domain));
        }
    }

    /// A ContinuityDomain in any namespace changed, as a claim.
    pub fn claims_changed(&self, event: &Event<ContinuityDomain>) {
        let touched = Touched {
            mail_domains: self.indexes.claims.apply(event),
            ..Touched::default()
        };
        fan_out(self, Source::Claim, &touched);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_source_reaches_something_and_every_via_belongs_to_its_source() {
        for source in [Source::Domain, Source::User, Source::Secret, Source::Claim] {
            assert!(
                RELATIONS.iter().any(|r| r.source == source),
                "{source:?} reaches nothing"
            );
        }
        for relation in RELATIONS {
            let fits = match relation.via {
                Via::Itself => relation.source == Source::Domain,
                Via::UsersByDomain | Via::UsersByAddress => relation.source == Source::User,
                Via::DomainsBySecret | Via::DomainsByBindSecret | Via::UsersBySecret => {
                    relation.source == Source::Secret
                }
                Via::Claims => relation.source == Source::Claim,
            };
            assert!(fits, "{relation:?}: the change does not feed that index");
            assert!(!relation.then.is_empty(), "{relation:?} queues nothing");
        }
    }
}
