//! The validating admission webhook: every replica (not only the leader) answers the API
//! server's `AdmissionReview`s for ContinuityDomains and ContinuityUsers over TLS, so a
//! mistake is refused when it is written instead of surfacing later as a condition.
//!
//! This module owns the server (TLS from [`certs`], HTTP/1.1 from hyper, routes from axum) and
//! the fetch step: the claims on every mail domain (a watch kept as an index of claims only,
//! not whole objects), a namespace's domain grant, a domain's users, a user's domain. What is
//! decided from those facts is pure and lives in [`judge`].
//!
//! Claims come from a watch, so two resources created for one mail domain within the same
//! instant may both be admitted; the controller then lets the first act and reports the
//! other as a `Conflict`, as it does on clusters without the webhook.
//!
//! The webhook only ever refuses what the controller would refuse to act on, so
//! `failurePolicy: Ignore` (the chart's default) loses no safety while the operator is down:
//! writes are then admitted and the controller reports the same problems as conditions.
//! An error while fetching facts is answered with HTTP 500, which the API server treats
//! according to that policy.

pub mod certs;
pub mod judge;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::api::core::v1::Namespace;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, ConvertAdmissionReviewError};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tracing::{debug, info, warn};

use crate::api::{ContinuityDomain, ContinuityUser};
use crate::controller::index::Index;
use crate::controller::relations::index_claim;
use crate::controller::watches::lean_watch;
use crate::resources::Environment;
use crate::telemetry::Metrics;
use crate::validation::claims::{self, Claim};
use crate::validation::grants;
use crate::{Error, Result};
use judge::{DomainFacts, Judgement};

/// The path the API server posts ContinuityDomain reviews to.
pub const DOMAINS_PATH: &str = "/validate/continuitydomains";
/// The path the API server posts ContinuityUser reviews to.
pub const USERS_PATH: &str = "/validate/continuityusers";

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for the claims index to fill after a start; past it, claims are
/// left to the controller and the answer says so.
const CLAIMS_SYNC_WAIT: Duration = Duration::from_secs(3);

/// What the webhook answers with.
pub struct Webhook {
    client: Client,
    env: Environment,
    /// Whether namespaces must be granted their mail domains (`--domain-grants`).
    domain_grants: bool,
    claims: Index<ContinuityDomain, String, Claim>,
    metrics: Arc<Metrics>,
}

impl Webhook {
    pub fn new(client: Client, env: Environment, domain_grants: bool, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            client,
            env,
            domain_grants,
            claims: Index::new(index_claim),
            metrics,
        })
    }

    /// Keeps the claims index current; runs until the process ends.
    pub async fn watch_claims(self: Arc<Self>) {
        let mut events = std::pin::pin!(lean_watch(
            Api::<ContinuityDomain>::all(self.client.clone()),
            watcher::Config::default()
        ));
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => {
                    self.claims.apply(&event);
                }
                Err(error) => warn!(%error, "webhook: watching ContinuityDomains failed; retrying"),
            }
        }
    }

    async fn domain_facts(&self, new: &ContinuityDomain) -> Result<(DomainFacts<'_>, Option<String>)> {
        let namespace = new.namespace().unwrap_or_default();
        let mail_domain = claims::claimed_domain(new).to_owned();
        let mut note = None;
        let synced = tokio::time::timeout(CLAIMS_SYNC_WAIT, self.claims.wait_until_synced())
            .await
            .is_ok();
        let mut claimants = Vec::new();
        if synced {
            for claim in self.claims.get(&mail_domain) {
                if self.granted(&claim.namespace, &mail_domain).await?.unwrap_or(true) {
                    claimants.push(claim);
                }
            }
        } else {
            note = Some(format!(
                "the webhook has not yet read the claims on {mail_domain}; the operator checks them"
            ));
        }
        let users = if judge::switches_scope(new) {
            Api::<ContinuityUser>::namespaced(self.client.clone(), &namespace)
                .list(&Default::default())
                .await?
                .items
                .into_iter()
                .filter(|u| u.spec.domain_ref.name == new.name_any())
                .collect()
        } else {
            Vec::new()
        };
        let facts = DomainFacts {
            env: &self.env,
            claimants,
            granted: self.granted(&namespace, &mail_domain).await?,
            users,
        };
        Ok((facts, note))
    }

    /// Whether `namespace` is granted `mail_domain`; `None` when the provider grants nothing.
    async fn granted(&self, namespace: &str, mail_domain: &str) -> Result<Option<bool>> {
        if !self.domain_grants {
            return Ok(None);
        }
        let meta = Api::<Namespace>::all(self.client.clone())
            .get_metadata_opt(namespace)
            .await?;
        let annotation = meta.as_ref().and_then(|m| m.annotations().get(grants::ANNOTATION));
        Ok(Some(grants::allows(annotation.map(String::as_str), mail_domain)))
    }

    async fn judge_domain(&self, request: &AdmissionRequest<ContinuityDomain>) -> Result<Judgement> {
        let Some(new) = request.object.as_ref() else {
            return Ok(Judgement::default());
        };
        if !judge::domain_judged(new, request.old_object.as_ref()) {
            return Ok(Judgement::default());
        }
        let (facts, note) = self.domain_facts(new).await?;
        let mut judgement = judge::domain(new, request.old_object.as_ref(), &facts);
        judgement.warnings.extend(note);
        Ok(judgement)
    }

    async fn judge_user(&self, request: &AdmissionRequest<ContinuityUser>) -> Result<Judgement> {
        let Some(new) = request.object.as_ref() else {
            return Ok(Judgement::default());
        };
        let namespace = new.namespace().unwrap_or_default();
        let domain = Api::<ContinuityDomain>::namespaced(self.client.clone(), &namespace)
            .get_opt(&new.spec.domain_ref.name)
            .await?;
        Ok(judge::user(new, request.old_object.as_ref(), domain.as_ref()))
    }
}

/// Binds `addr` and serves the webhook over TLS until the process ends. Returns the bound
/// address (useful with port 0) and the serving future.
pub async fn bind(
    addr: SocketAddr,
    tls: Arc<ServerConfig>,
    webhook: Arc<Webhook>,
) -> Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Http { addr, source })?;
    let acceptor = TlsAcceptor::from(tls);
    let app = Router::new()
        .route(DOMAINS_PATH, post(review_domain))
        .route(USERS_PATH, post(review_user))
        .with_state(webhook);
    let serve = async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    warn!(%error, "webhook: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => return debug!(%peer, %error, "webhook: TLS handshake failed"),
                    Err(_) => return debug!(%peer, "webhook: TLS handshake timed out"),
                };
                if let Err(error) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, %error, "webhook: connection ended with an error");
                }
            });
        }
    };
    info!(addr = %bound, "serving the admission webhook");
    Ok((bound, serve))
}

async fn review_domain(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    const KIND: &str = "ContinuityDomain";
    match parse::<ContinuityDomain>(&body) {
        Ok(request) => answer(&webhook, KIND, &request, webhook.judge_domain(&request).await),
        Err(error) => unreadable(&webhook, KIND, &error),
    }
}

async fn review_user(State(webhook): State<Arc<Webhook>>, body: Bytes) -> Response {
    const KIND: &str = "ContinuityUser";
    match parse::<ContinuityUser>(&body) {
        Ok(request) => answer(&webhook, KIND, &request, webhook.judge_user(&request).await),
        Err(error) => unreadable(&webhook, KIND, &error),
    }
}

/// The request in a review, or why there is none.
fn parse<K: Resource + DeserializeOwned>(body: &[u8]) -> std::result::Result<AdmissionRequest<K>, String> {
    serde_json::from_slice::<AdmissionReview<K>>(body)
        .map_err(|e| e.to_string())
        .and_then(|review| {
            review
                .try_into()
                .map_err(|e: ConvertAdmissionReviewError| e.to_string())
        })
}

/// The answer to a review that holds no readable request.
fn unreadable(webhook: &Webhook, kind: &'static str, error: &str) -> Response {
    webhook.metrics.admitted(kind, "error");
    let refusal = AdmissionResponse::invalid(format!("unreadable AdmissionReview: {error}"));
    axum::Json(refusal.into_review()).into_response()
}

/// The answer to `request`, judged as `outcome`.
fn answer<K: Resource>(
    webhook: &Webhook,
    kind: &'static str,
    request: &AdmissionRequest<K>,
    outcome: Result<Judgement>,
) -> Response {
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let judgement = match outcome {
        Ok(judgement) => judgement,
        Err(error) => {
            webhook.metrics.admitted(kind, "error");
            warn!(kind, namespace, name = %request.name, %error, "webhook: could not judge the request");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response();
        }
    };
    let mut response = AdmissionResponse::from(request);
    let result = match (judgement.allowed(), judgement.warnings.is_empty()) {
        (false, _) => "denied",
        (true, false) => "warned",
        (true, true) => "allowed",
    };
    webhook.metrics.admitted(kind, result);
    if !judgement.allowed() {
        info!(kind, namespace, name = %request.name, reason = %judgement.message(), "admission denied");
        response = response.deny(judgement.message());
        // What the API server answers a spec it rejects itself with: 422 Invalid.
        response.result.code = StatusCode::UNPROCESSABLE_ENTITY.as_u16();
        response.result.reason = "Invalid".into();
    }
    if !judgement.warnings.is_empty() {
        response.warnings = Some(judgement.warnings);
    }
    axum::Json(response.into_review()).into_response()
}
