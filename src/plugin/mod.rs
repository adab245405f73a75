//! `kubectl continuity`, the kubectl plugin for tenants and providers: who a domain covers
//! ([`users`]), how its domains stand and the confirmation of a scope switch ([`status`]), the
//! mail its standby holds ([`messages`]), and the completion executable's answers
//! ([`complete`], from [`suggest`]). Everything goes through the API server with the caller's
//! kubeconfig and permissions; nothing talks to the operator directly.

pub mod complete;
pub mod messages;
pub mod status;
pub mod suggest;
pub mod users;

use clap::{Parser, Subcommand};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};

use crate::api::domain::UserScope;
use crate::api::{ContinuityDomain, ContinuityUser};
use crate::coverage;
use crate::handback::tracking;
use crate::resources::coverage::{ADDRESSES_KEY, UNCOVERED_KEY, listed};
use crate::resources::names::ChildNames;

/// The field manager of what the plugin applies (the tenant's, not the operator's).
pub const PLUGIN_MANAGER: &str = "kubectl-continuity";

#[derive(Parser, Debug)]
#[command(name = "kubectl continuity", version, about = "Work with ContinuityDomains")]
pub struct Cli {
    /// The namespace; the kubeconfig context's when omitted.
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Adds, removes or lists the users a domain covers.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// How the domains (or one) stand: phase, route, users, held mail, conditions.
    Status {
        /// One ContinuityDomain; all in the namespace when omitted.
        domain: Option<String>,
    },
    /// Lists the messages the standby held for the primary, newest first.
    Messages {
        /// The ContinuityDomain.
        domain: String,
        /// Only messages in this state.
        #[arg(long, value_parser = ["Deferred", "Delivered", "Failed"])]
        state: Option<String>,
        /// Only messages for this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = tracking::DEFAULT_LIMIT)]
        limit: usize,
        /// `table` or `json`.
        #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Confirms the switch of a domain to AllUsers, which deletes its ContinuityUsers.
    ConfirmScopeChange {
        /// The ContinuityDomain.
        domain: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersAction {
    /// Covers these users (ContinuityUsers); an address the directory does not list is
    /// refused with the closest ones it does.
    Add {
        domain: String,
        #[arg(required = true)]
        addresses: Vec<String>,
        /// The users' emergency password, from a Secret in the namespace, as NAME:KEY.
        #[arg(long)]
        password_secret: Option<String>,
    },
    /// Stops covering these users (by address or ContinuityUser name).
    Remove {
        domain: String,
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Lists who the domain covers.
    List { domain: String },
}

/// A ContinuityDomain as the plugin reads it, with its coverage ConfigMap.
pub struct Domain {
    pub name: String,
    pub namespace: String,
    pub resource: ContinuityDomain,
    pub coverage: Option<ConfigMap>,
}

impl Domain {
    pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<Domain, String> {
        let resource = Api::<ContinuityDomain>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot read ContinuityDomain {namespace}/{name}: {e}"))?
            .ok_or_else(|| format!("ContinuityDomain {namespace}/{name} not found"))?;
        let coverage = Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&ChildNames::of(name, &resource.spec).coverage)
            .await
            .map_err(|e| format!("cannot read the coverage of {namespace}/{name}: {e}"))?;
        Ok(Domain {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            resource,
            coverage,
        })
    }

    pub fn mail_domain(&self) -> String {
        self.resource.spec.domain.clone()
    }

    /// The scope the domain serves now (a switch awaiting confirmation still serves the old).
    pub fn served_scope(&self) -> UserScope {
        coverage::served_scope(&self.resource)
    }

    /// The covered addresses, as last rendered.
    pub fn covered(&self) -> Vec<String> {
        self.coverage
            .as_ref()
            .and_then(|map| listed(map, ADDRESSES_KEY))
            .unwrap_or_default()
    }

    /// The directory's addresses not covered; `None` without a directory read.
    pub fn uncovered(&self) -> Option<Vec<String>> {
        listed(self.coverage.as_ref()?, UNCOVERED_KEY)
    }

    /// The domain's ContinuityUsers, by name.
    pub async fn users(&self, client: &Client) -> Result<Vec<ContinuityUser>, String> {
        let mut users: Vec<ContinuityUser> = Api::<ContinuityUser>::namespaced(client.clone(), &self.namespace)
            .list(&Default::default())
            .await
            .map_err(|e| format!("cannot list ContinuityUsers in {}: {e}", self.namespace))?
            .items
            .into_iter()
            .filter(|u| u.spec.domain_ref.name == self.name)
            .collect();
        users.sort_by_key(ResourceExt::name_any);
        Ok(users)
    }
}

async fn connect(namespace: Option<String>) -> Result<(Client, String), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
    Ok((client, namespace))
}

/// Runs one command line of `kubectl continuity`.
pub async fn run(cli: Cli) -> Result<(), String> {
    let (client, namespace) = connect(cli.namespace).await?;
    match cli.command {
        Command::Users { action } => match action {
            UsersAction::Add {
                domain,
                addresses,
                password_secret,
            } => {
                let domain = Domain::fetch(&client, &namespace, &domain).await?;
                users::add(&client, &domain, &addresses, password_secret.as_deref()).await
            }
            UsersAction::Remove { domain, addresses } => {
                let domain = Domain::fetch(&client, &namespace, &domain).await?;
                users::remove(&client, &domain, &addresses).await
            }
            UsersAction::List { domain } => {
                users::list(&client, &Domain::fetch(&client, &namespace, &domain).await?).await
            }
        },
        Command::Status { domain } => status::show(&client, &namespace, domain.as_deref()).await,
        Command::Messages {
            domain,
            state,
            recipient,
            limit,
            output,
        } => {
            let domain = Domain::fetch(&client, &namespace, &domain).await?;
            let query = messages::Query {
                state,
                recipient,
                limit,
            };
            messages::show(&client, &domain, &query, output == "json").await
        }
        Command::ConfirmScopeChange { domain } => {
            status::confirm_scope_change(&client, &Domain::fetch(&client, &namespace, &domain).await?).await
        }
    }
}

/// Answers one completion request (the words after `__complete`).
pub async fn completions(words: &[String]) -> String {
    let request = complete::parse(words);
    // Completion never prints errors into the shell; it offers nothing.
    let candidates: Vec<String> = candidates(&request).await.unwrap_or_default();
    complete::render(&candidates)
}

async fn candidates(request: &complete::Request) -> Result<Vec<String>, String> {
    let typed = request.typed.as_str();
    let prefixed = |words: &[&str]| {
        words
            .iter()
            .filter(|w| w.starts_with(typed))
            .map(|w| (*w).to_owned())
            .collect()
    };
    if let complete::Slot::Words(words) = &request.slot {
        return Ok(prefixed(words));
    }
    if request.slot == complete::Slot::Nothing {
        return Ok(Vec::new());
    }
    let (client, namespace) = connect(request.namespace.clone()).await?;
    Ok(match &request.slot {
        complete::Slot::Domain => {
            let names: Vec<String> = Api::<ContinuityDomain>::namespaced(client, &namespace)
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect();
            prefixed(&names.iter().map(String::as_str).collect::<Vec<_>>())
        }
        complete::Slot::Uncovered { domain } => {
            let domain = Domain::fetch(&client, &namespace, domain).await?;
            let uncovered = domain.uncovered().unwrap_or_default();
            suggest::completions(uncovered.iter().map(String::as_str), typed)
        }
        complete::Slot::UserAddress { domain } => {
            let domain = Domain::fetch(&client, &namespace, domain).await?;
            let addresses: Vec<String> = domain
                .users(&client)
                .await?
                .into_iter()
                .map(|u| u.spec.address)
                .collect();
            prefixed(&addresses.iter().map(String::as_str).collect::<Vec<_>>())
        }
        complete::Slot::Words(_) | complete::Slot::Nothing => Vec::new(),
    })
}
