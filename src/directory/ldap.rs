//! One read of a domain's LDAP directory with `ldap3` (over rustls, our TLS stack): connect to
//! an address the provider lets the operator reach (resolved and checked exactly as a
//! primary's, [`crate::health::probe::connect`]), secure the connection (LDAPS or StartTLS,
//! the certificate checked against the Web PKI roots and the domain's CA bundle), bind, and
//! search in pages (RFC 2696), all within the read's timeout. The directory is the tenant's:
//! its answers are hostile input, so a read is bounded in entries and runs in its own task (a
//! malformed entry makes `ldap3` panic; that ends the read, not the operator). Errors name
//! the step that failed and never the bind password.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry, StdStream};
use tokio::time::{Instant, timeout_at};

use crate::api::domain::{LdapDirectory, LdapTlsMode};
use crate::health::networks::ProbeNetworks;
use crate::health::probe::{self, Target};
use crate::health::resolver::Resolver;

/// Most entries one read accepts: a directory listing more is refused rather than held.
pub const MAX_ENTRIES: usize = 500_000;

/// A directory's settings, checked: what a read needs, nothing left to parse.
#[derive(Clone)]
pub struct Query {
    /// What it was made from: equal specs make equal queries.
    spec: LdapDirectory,
    url: String,
    host: String,
    port: u16,
    /// StartTLS or LDAPS; `None` for plain LDAP.
    tls: Option<LdapTlsMode>,
    ca_bundle: Option<String>,
    base_dn: String,
    filter: String,
    mail_attribute: String,
    alias_attribute: Option<String>,
    page_size: i32,
    timeout: Duration,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.url, self.base_dn, self.filter)
    }
}

impl PartialEq for Query {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

impl Query {
    /// Checks `spec`; the message says what is wrong with it.
    pub fn of(spec: &LdapDirectory) -> Result<Query, String> {
        let url = url::Url::parse(&spec.url).map_err(|e| format!("users.directory.ldap.url: {e}"))?;
        let ldaps = match url.scheme() {
            "ldap" => false,
            "ldaps" => true,
            other => return Err(format!("users.directory.ldap.url: unknown scheme {other}")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("users.directory.ldap.url names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let mode = spec
            .tls
            .as_ref()
            .map_or(if ldaps { LdapTlsMode::Ldaps } else { LdapTlsMode::None }, |t| t.mode);
        if (mode == LdapTlsMode::Ldaps) != ldaps {
            return Err(
                "users.directory.ldap.tls.mode LDAPS goes with an ldaps:// URL, None and StartTLS with ldap://".into(),
            );
        }
        let ca_bundle = spec.tls.as_ref().and_then(|t| t.ca_bundle.clone());
        if let Some(bundle) = &ca_bundle {
            crate::tls::verifying(Some(bundle)).map_err(|e| format!("users.directory.ldap.tls.{e}"))?;
        }
        let tls = (mode != LdapTlsMode::None).then_some(mode);
        Ok(Query {
            spec: spec.clone(),
            port: url.port().unwrap_or(if ldaps { 636 } else { 389 }),
            url: format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default()),
            host,
            tls,
            ca_bundle,
            base_dn: spec.base_dn.clone(),
            filter: spec.filter.clone(),
            mail_attribute: spec.mail_attribute.clone(),
            alias_attribute: spec.alias_attribute.clone(),
            page_size: i32::try_from(spec.page_size).unwrap_or(i32::MAX),
            timeout: Duration::from_secs(spec.timeout_seconds.into()),
        })
    }

    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The bind DN and password, from the domain's bind Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Bind {
    pub dn: String,
    pub password: String,
}

impl fmt::Debug for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bind {{ dn: {:?}, password: <redacted> }}", self.dn)
    }
}

/// Where a read failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Resolving, connecting, TLS.
    Connect,
    Bind,
    Search,
}

impl Step {
    /// The name metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Step::Connect => "Connect",
            Step::Bind => "Bind",
            Step::Search => "Search",
        }
    }
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    pub step: Step,
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn failed(step: Step, message: impl Into<String>) -> ReadError {
    ReadError {
        step,
        message: message.into(),
    }
}

/// Every value of the mail (and alias) attribute of the entries `query` selects, as the
/// directory gives them.
pub async fn read(
    query: &Query,
    bind: Option<&Bind>,
    networks: &Arc<ProbeNetworks>,
    resolver: &Resolver,
) -> Result<Vec<String>, ReadError> {
    let deadline = Instant::now() + query.timeout;
    let target = Target {
        host: query.host.clone(),
        port: query.port,
        timeout: query.timeout,
        networks: networks.clone(),
    };
    let stream = probe::connect(&target, resolver, deadline)
        .await
        .map_err(|failure| {
            failed(
                Step::Connect,
                format!("connecting to {}: {}", query.server(), failure.detail()),
            )
        })?
        .into_std()
        .map_err(|e| failed(Step::Connect, e.to_string()))?;
    let (query, bind) = (query.clone(), bind.cloned());
    let server = query.server();
    // Its own task: ldap3 panics on an entry it cannot parse. Aborted at the deadline, so a
    // directory that trickles its answer cannot keep reads piling up.
    let mut session = tokio::spawn(async move { search(&query, bind.as_ref(), stream).await });
    match timeout_at(deadline, &mut session).await {
        Err(_) => {
            session.abort();
            Err(failed(
                Step::Connect,
                format!("{server} did not answer within the timeout"),
            ))
        }
        Ok(Err(_)) => Err(failed(
            Step::Search,
            format!("{server} sent an entry that could not be parsed"),
        )),
        Ok(Ok(result)) => result,
    }
}

async fn search(query: &Query, bind: Option<&Bind>, stream: std::net::TcpStream) -> Result<Vec<String>, ReadError> {
    let server = query.server();
    let mut settings = LdapConnSettings::new().set_std_stream(StdStream::Tcp(stream));
    if let Some(mode) = query.tls {
        // Built per read (every resync period), not per reconcile.
        let config = crate::tls::verifying(query.ca_bundle.as_deref())
            .map_err(|e| failed(Step::Connect, format!("the TLS configuration for {server}: {e}")))?;
        settings = settings.set_config(config).set_starttls(mode == LdapTlsMode::StartTls);
    }
    let (connection, mut ldap) = LdapConnAsync::with_settings(settings, &query.url).await.map_err(|e| {
        failed(
            Step::Connect,
            format!("securing the connection to {server}: {}", describe(&e)),
        )
    })?;
    ldap3::drive!(connection);
    if let Some(bind) = bind {
        ldap.simple_bind(&bind.dn, &bind.password)
            .await
            .and_then(|result| result.success())
            .map_err(|e| {
                failed(
                    Step::Bind,
                    format!("binding to {server} as {} failed: {}", bind.dn, describe(&e)),
                )
            })?;
    }
    let mut attributes = vec![query.mail_attribute.clone()];
    attributes.extend(query.alias_attribute.clone());
    let adapters: Vec<Box<dyn Adapter<_, _>>> = vec![
        Box::new(EntriesOnly::new()),
        Box::new(PagedResults::new(query.page_size)),
    ];
    let searching = |e: LdapError| {
        failed(
            Step::Search,
            format!("searching {server} under {}: {}", query.base_dn, describe(&e)),
        )
    };
    let mut stream = ldap
        .streaming_search_with(adapters, &query.base_dn, Scope::Subtree, &query.filter, attributes)
        .await
        .map_err(searching)?;
    let mut values = Vec::new();
    let mut entries = 0usize;
    while let Some(entry) = stream.next().await.map_err(searching)? {
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(failed(
                Step::Search,
                format!("{server} lists more than {MAX_ENTRIES} entries under {}", query.base_dn),
            ));
        }
        let entry = SearchEntry::construct(entry);
        for (name, found) in entry.attrs {
            let wanted = name.eq_ignore_ascii_case(&query.mail_attribute)
                || query
                    .alias_attribute
                    .as_ref()
                    .is_some_and(|a| name.eq_ignore_ascii_case(a));
            if wanted {
                values.extend(found);
            }
        }
    }
    stream.finish().await.success().map_err(searching)?;
    let _ = ldap.unbind().await;
    Ok(values)
}

/// An ldap3 error for a person: an LDAP result by its code's name (RFC 4511), else the error.
fn describe(error: &LdapError) -> String {
    let LdapError::LdapResult { result } = error else {
        return error.to_string();
    };
    let name = match result.rc {
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        8 => "strongerAuthRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        _ => "",
    };
    let text = if result.text.is_empty() {
        String::new()
    } else {
        format!(": {}", result.text)
    };
    format!("{name} ({}){text}", result.rc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::domain::{ContinuityDomain, LdapTls};
    use crate::testing::fixture;

    fn spec() -> LdapDirectory {
        let domain: ContinuityDomain = fixture("domain-full.yaml");
        domain.spec.users.directory.unwrap().ldap.unwrap()
    }

    #[test]
    fn the_port_and_the_tls_follow_the_scheme() {
        let mut ldap = spec();
        ldap.url = "ldaps://dir.example.net".into();
        let query = Query::of(&ldap).unwrap();
        assert_eq!(
            (query.server(), query.tls),
            ("dir.example.net:636".into(), Some(LdapTlsMode::Ldaps))
        );

        ldap.url = "ldap://[2001:db8::1]".into();
        ldap.tls = None;
        let query = Query::of(&ldap).unwrap();
        assert_eq!((query.server(), query.tls), ("2001:db8::1:389".into(), None));

        ldap.tls = Some(LdapTls {
            mode: LdapTlsMode::StartTls,
            ca_bundle: None,
        });
        assert_eq!(Query::of(&ldap).unwrap().tls, Some(LdapTlsMode::StartTls));
    }

    #[test]
    fn a_mode_against_the_scheme_or_a_bundle_without_certificates_is_refused() {
        let mut ldap = spec();
        ldap.url = "ldap://dir.example.net:389".into();
        assert!(
            Query::of(&ldap)
                .unwrap_err()
                .contains("LDAPS goes with an ldaps:// URL")
        );
        ldap.tls = Some(LdapTls {
            mode: LdapTlsMode::StartTls,
            ca_bundle: Some("not a certificate".into()),
        });
        assert!(Query::of(&ldap).unwrap_err().contains("caBundle holds no certificate"));
    }

    #[test]
    fn the_bind_password_is_never_printed() {
        let bind = Bind {
            dn: "cn=reader".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{bind:?}").contains("hunter2"));
    }
}
