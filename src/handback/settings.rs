//! What the operator tells a domain's agent, as a file in the mail pod's ConfigMap
//! (`agent/handback.json`): where held mail goes now, and how fast. The kubelet updates the
//! mounted file when the route flips; the agent reads it again every few seconds. Going
//! through the ConfigMap keeps the agent without any access to the Kubernetes API.

use serde::{Deserialize, Serialize};

/// The key of the file in the mail pod's ConfigMap.
pub const KEY: &str = "handback.json";
/// Its path under the configuration directory.
pub const PATH: &str = "agent/handback.json";

/// Where and how the agent hands held mail back.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HandBackSettings {
    /// The primary, while the domain's route points at it (or the domain is being deleted);
    /// `None` while mail is routed to the standby: then everything is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_to: Option<Destination>,
    /// At most this many messages per second go to the primary.
    pub messages_per_second: u32,
    /// The first wait after the primary answers 4xx (or cannot be reached); it doubles with
    /// every further attempt, up to 16 times this.
    pub retry_seconds: u32,
    /// The name the agent greets the primary with.
    pub helo_name: String,
}

/// An SMTP server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]:{}", self.host, self.port)
    }
}

impl HandBackSettings {
    /// Everything held: what the agent assumes until it has read its file.
    pub fn hold_everything() -> Self {
        HandBackSettings {
            deliver_to: None,
            messages_per_second: 1,
            retry_seconds: 60,
            helo_name: "localhost".into(),
        }
    }

    /// The file's content.
    pub fn render(&self) -> String {
        // Serializing this plain struct cannot fail; an empty file would hold everything.
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}
