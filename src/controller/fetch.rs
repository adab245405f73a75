//! The controller's reads that do not come from a cache: objects outside what it watches
//! (the transport map ConfigMap, read to compare before the first write). The Secrets holding
//! emergency passwords are read through [`super::secrets`].

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};

use crate::Result;

/// The API client for reads.
pub struct Reader {
    client: Client,
}

impl Reader {
    pub fn new(client: Client) -> Self {
        Reader { client }
    }

    /// The value under `key` in the ConfigMap `namespace/name`; `None` if either is missing.
    pub async fn config_map_value(&self, namespace: &str, name: &str, key: &str) -> Result<Option<String>> {
        let map = Api::<ConfigMap>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await?;
        Ok(map.and_then(|map| map.data?.remove(key)))
    }
}
