//! The Secrets emergency passwords come from. The operator watches only the metadata of
//! Secrets (a new resourceVersion says one changed, and the watch event reconciles the domains
//! and users referencing it) and reads the data of the Secrets a reconcile references, once
//! per version: a cluster's Secrets are never all held in memory, and an unchanged one is not
//! read again. What was read is forgotten when the Secret is deleted, or when no reconcile has
//! asked for it for a while (it is no longer referenced).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};

use crate::Result;
use crate::credentials::{SecretData, SecretsRead};

type SecretKey = (String, String);

/// What is remembered of one Secret.
struct Read {
    version: String,
    data: Arc<SecretData>,
    last_asked: Instant,
}

struct Memory {
    secrets: HashMap<SecretKey, Read>,
    last_sweep: Instant,
}

/// How often unasked Secrets are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Reads referenced Secrets, remembering each one's data for its current version.
pub struct PasswordSecrets {
    client: Client,
    versions: Store<PartialObjectMeta<Secret>>,
    /// How long a Secret no reconcile asks for is remembered: every referenced one is asked
    /// for at least once per resync.
    keep: Duration,
    memory: Mutex<Memory>,
}

impl PasswordSecrets {
    pub fn new(client: Client, versions: Store<PartialObjectMeta<Secret>>, keep: Duration) -> Self {
        Self {
            client,
            versions,
            keep,
            memory: Mutex::new(Memory {
                secrets: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// The watched Secrets' metadata.
    pub fn versions(&self) -> &Store<PartialObjectMeta<Secret>> {
        &self.versions
    }

    /// The data of the Secrets `names` in `namespace`, as of their latest watched version.
    pub async fn read(&self, namespace: &str, names: &BTreeSet<String>) -> Result<SecretsRead> {
        self.sweep();
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
                self.lock().secrets.insert(
                    key,
                    Read {
                        version,
                        data: data.clone(),
                        last_asked: Instant::now(),
                    },
                );
            }
            read.insert(name.clone(), data);
        }
        Ok(read)
    }

    /// Drops what is remembered of a Secret (it was deleted).
    pub fn forget(&self, namespace: &str, name: &str) {
        self.lock().secrets.remove(&(namespace.to_owned(), name.to_owned()));
    }

    fn remembered(&self, key: &SecretKey, version: &str) -> Option<Arc<SecretData>> {
        let mut memory = self.lock();
        let read = memory.secrets.get_mut(key).filter(|read| read.version == version)?;
        read.last_asked = Instant::now();
        Some(read.data.clone())
    }

    /// Forgets the Secrets nobody asked for within `keep`.
    fn sweep(&self) {
        let mut memory = self.lock();
        let now = Instant::now();
        if now.duration_since(memory.last_sweep) < SWEEP_EVERY {
            return;
        }
        memory.last_sweep = now;
        let keep = self.keep;
        memory
            .secrets
            .retain(|_, read| now.duration_since(read.last_asked) < keep);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
