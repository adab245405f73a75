//! The controller's reads that do not come from a cache: objects outside what it watches
//! (the transport map ConfigMap, read to compare before the first write), and the covered
//! users' credentials (the Secrets holding emergency passwords, read through
//! [`super::secrets`], and their hashes), and the hand-back agent's summary (through the API
//! server's service proxy, as `kubectl continuity` reaches it).

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client, ResourceExt};

use super::Context;
use tracing::debug;

use crate::api::ContinuityDomain;
use crate::coverage::Coverage;
use crate::credentials::{self, Credentials, Mailbox};
use crate::handback::tracking::{self, Summary};
use crate::standby::Account;
use crate::standby::passwords::{self, PasswordHasher};
use crate::{Error, Result};

/// The API client for reads.
pub struct Reader {
    client: Client,
}

impl Reader {
    pub fn new(client: Client) -> Self {
        Reader { client }
    }

    /// The ConfigMap `namespace/name`, from the API server (not a cache, which may hold only
    /// a digest of its data).
    pub async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>> {
        Ok(Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?)
    }

    /// The `/summary` of the hand-back agent behind the mail Service `namespace/service`;
    /// `None` when it cannot be reached or answers nonsense (the pod is starting, or gone).
    pub async fn handback_summary(&self, namespace: &str, service: &str) -> Option<Summary> {
        let path = format!(
            "/api/v1/namespaces/{namespace}/services/{service}:{}/proxy/summary",
            tracking::PORT_NAME
        );
        let request = http::Request::get(&path).body(Vec::new()).ok()?;
        let answer = tokio::time::timeout(AGENT_TIMEOUT, self.client.request_text(request)).await;
        match answer {
            Ok(Ok(text)) => serde_json::from_str(&text).ok(),
            Ok(Err(error)) => {
                debug!(%namespace, %service, %error, "the hand-back agent did not answer");
                None
            }
            Err(_) => None,
        }
    }
}

/// How long the agent may take to answer.
const AGENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The credentials of a domain that acts, covering `coverage`: its users' passwords read from
/// their Secrets and hashed, off the async runtime's threads (a hash takes about a
/// millisecond; thousands are new after a restart), recent hashes from the bounded memo.
/// `None` while the covered addresses are unknown.
pub async fn credentials(
    ctx: &Context,
    domain: &ContinuityDomain,
    owner_uid: &str,
    coverage: &Coverage<'_>,
) -> Result<Option<Credentials>> {
    let Some(addresses) = &coverage.addresses else {
        return Ok(None);
    };
    let namespace = domain.namespace().ok_or(Error::MissingField {
        kind: "ContinuityDomain",
        field: "metadata.namespace",
    })?;
    let referenced = credentials::referenced_secrets(domain, coverage.through.values().copied());
    let secrets = ctx.caches.secrets.read(&namespace, &referenced).await?;
    let (mailboxes, missing) = credentials::mailboxes(domain, addresses, &coverage.through, &secrets);
    Ok(Some(Credentials::new(
        hashed(&ctx.hasher, owner_uid, mailboxes).await?,
        missing,
    )))
}

/// `mailboxes` with their passwords hashed, salted per address of the domain `owner_uid`.
async fn hashed(hasher: &PasswordHasher, owner_uid: &str, mailboxes: Vec<Mailbox>) -> Result<Vec<Account>> {
    let mut accounts = Vec::with_capacity(mailboxes.len());
    let mut unknown = Vec::new();
    for mailbox in mailboxes {
        let password_hash = mailbox.password.and_then(|password| {
            let salt = passwords::salt(owner_uid, &mailbox.address);
            let key = passwords::memo_key(&password, &salt);
            let known = hasher.recall(&key);
            if known.is_none() {
                unknown.push((accounts.len(), key, password, salt));
            }
            known
        });
        accounts.push(Account {
            address: mailbox.address,
            password_hash,
        });
    }
    if unknown.is_empty() {
        return Ok(accounts);
    }
    let computed = tokio::task::spawn_blocking(move || {
        unknown
            .into_iter()
            .map(|(index, key, password, salt)| Ok((index, key, passwords::hash(&password, &salt)?)))
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(|error| Error::PasswordHash(format!("the hashing task ended: {error}")))??;
    for (index, key, hash) in computed {
        hasher.remember(key, hash.clone());
        accounts[index].password_hash = Some(hash);
    }
    Ok(accounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_are_hashed_once_and_remembered() {
        let hasher = PasswordHasher::default();
        let mailboxes = vec![
            Mailbox {
                address: "alice@example.com".into(),
                password: Some("correct horse".into()),
            },
            Mailbox {
                address: "bob@example.com".into(),
                password: None,
            },
        ];
        let accounts = hashed(&hasher, "uid-1", mailboxes.clone()).await.unwrap();
        let expected = passwords::hash("correct horse", &passwords::salt("uid-1", "alice@example.com")).unwrap();
        assert_eq!(accounts[0].password_hash.as_deref(), Some(expected.as_str()));
        assert_eq!(accounts[1].password_hash, None);
        assert_eq!(hasher.len(), 1);
        assert_eq!(hashed(&hasher, "uid-1", mailboxes).await.unwrap(), accounts);
        assert_eq!(hasher.len(), 1, "the second time from the memo");
    }
}
