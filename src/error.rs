//! The operator's one error type, and how each error is retried: permanent errors wait for the
//! object to change, transient ones back off.

use std::net::SocketAddr;

/// Everything that can go wrong in the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request to the Kubernetes API failed.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// An object from the API lacks a field every such object has.
    #[error("{kind} object has no {field}")]
    MissingField { kind: &'static str, field: &'static str },

    /// An object could not be serialized for an API request.
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// The leader lease could not be held; another replica may act now.
    #[error("leader election on Lease {lease}: {reason}")]
    LeaderElection { lease: String, reason: String },

    /// The leader election's own thread could not be started.
    #[error("cannot start the leader election thread: {0}")]
    Runtime(#[source] std::io::Error),

    /// The HTTP endpoint (health, metrics) could not be served.
    #[error("cannot serve HTTP on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },

    /// The operator was started with settings it cannot use.
    #[error("configuration: {0}")]
    Config(String),

    /// A child's name is taken by an object this domain does not control: it is never written
    /// or deleted.
    #[error(
        "{child} exists and is not controlled by this ContinuityDomain; it is left alone: delete it, or give this domain's child another name"
    )]
    NotOwned { child: String },

    /// The hand-back agent cannot use its ledger or its sockets.
    #[error("hand-back agent: {what}: {source}")]
    HandBack {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A password could not be hashed (never the password itself, only what went wrong).
    #[error("cannot hash an emergency password: {0}")]
    PasswordHash(String),
}

/// Result with the operator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether retrying without a change to the object is pointless. The API server rejecting
    /// what we send (400, 422) or an object without name or namespace will not heal by itself;
    /// network failures, conflicts, throttling, server errors and missing permissions (an
    /// administrator may fix RBAC) are retried with backoff.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Kube(kube::Error::Api(status)) => matches!(status.code, 400 | 422),
            Error::Kube(_) => false,
            Error::MissingField { .. }
            | Error::Serialize { .. }
            | Error::Config(_)
            | Error::PasswordHash(_)
            | Error::NotOwned { .. } => true,
            Error::LeaderElection { .. } | Error::Runtime(_) | Error::Http { .. } | Error::HandBack { .. } => false,
        }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) => match status.code {
                400 => "bad_request",
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                422 => "invalid",
                429 => "throttled",
                500..=599 => "server_error",
                _ => "api_other",
            },
            Error::Kube(_) => "transport",
            Error::MissingField { .. } => "missing_field",
            Error::NotOwned { .. } => "not_owned",
            Error::Serialize { .. } => "serialize",
            Error::LeaderElection { .. } | Error::Runtime(_) => "leader_election",
            Error::Http { .. } => "http",
            Error::HandBack { .. } => "handback",
            Error::Config(_) => "config",
            Error::PasswordHash(_) => "password_hash",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api_error(code: u16) -> Error {
        Error::Kube(kube::Error::Api(Box::new(Status::failure("x", "y").with_code(code))))
    }

    #[test]
    fn rejected_requests_are_permanent_and_the_rest_transient() {
        assert!(api_error(422).is_permanent());
        assert!(api_error(400).is_permanent());
        for code in [403, 404, 409, 429, 500, 503] {
            assert!(!api_error(code).is_permanent(), "{code}");
        }
        assert!(
            Error::MissingField {
                kind: "ContinuityDomain",
                field: "namespace"
            }
            .is_permanent()
        );
    }

    #[test]
    fn metric_labels_are_bounded() {
        assert_eq!(api_error(409).metric_label(), "conflict");
        assert_eq!(api_error(418).metric_label(), "api_other");
    }
}
