//! The Secrets emergency passwords come from. The operator watches only the metadata of
//! Secrets (a new resourceVersion says one changed, and the watch event reconciles the domains
//! and users referencing it) and reads the data of the Secrets a reconcile references, once
//! per version: a cluster's Secrets are never all held in memory, and an unchanged one is not
//! read again.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::Result;
use crate::credentials::{SecretData, SecretsRead};

type SecretKey = (String, String);

/// Reads referenced Secrets, remembering each one's data for its current version.
pub struct PasswordSecrets {
    client: Client,
    versions: Store<PartialObjectMeta<Secret>>,
    data: Mutex<HashMap<SecretKey, (String, Arc<SecretData>)>>,
}

impl PasswordSecrets {
    pub fn new(client: Client, versions: Store<PartialObjectMeta<Secret>>) -> Self {
        Self {
            client,
            versions,
            data: Mutex::new(HashMap::new()),
        }
    }

    /// The watched Secrets' metadata.
    pub fn versions(&self) -> &Store<PartialObjectMeta<Secret>> {
        &self.versions
    }

    /// The data of the Secrets `names` in `namespace`, as of their latest watched version.
    pub async fn read(&self, namespace: &str, names: &BTreeSet<String>) -> Result<SecretsRead> {
        let mut read = SecretsRead::new();
        for name in names {
            let key = (namespace.to_owned(), name.clone());
            let Some(version) = self
                .versions
                .get(&ObjectRef::new(name).within(namespace))
                .and_then(|meta| meta.metadata.resource_version.clone())
            else {
                // Not created yet, or not seen yet: its watch event reconciles us again.
                self.forget(namespace, name);
                read.insert(name.clone(), None);
                continue;
            };
            if let Some(data) = self.remembered(&key, &version) {
                read.insert(name.clone(), Some(data));
                continue;
            }
            let secret = Api::<Secret>::namespaced(self.client.clone(), namespace)
                .get_opt(name)
                .await?;
            let data = secret.map(|secret| Arc::new(secret.data.unwrap_or_default()));
            if let Some(data) = &data {
                self.lock().insert(key, (version, data.clone()));
            }
            read.insert(name.clone(), data);
        }
        Ok(read)
    }

    /// Drops what is remembered of a Secret (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn remembered(&self, key: &SecretKey, version: &str) -> Option<Arc<SecretData>> {
        self.lock()
            .get(key)
            .filter(|(remembered, _)| remembered == version)
            .map(|(_, data)| data.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretKey, (String, Arc<SecretData>)>> {
        self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
