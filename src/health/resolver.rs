//! Host name lookups for the probes, with `hickory-resolver`: asynchronous, so a lookup that
//! outlasts a probe's deadline is simply dropped; caching by the records' TTLs; and, unlike
//! the system resolver (whose errors are strings), telling a name that does not exist
//! (NXDOMAIN, or no address record) from a resolver that failed. The first is the customer's
//! DNS saying their server is gone (`NameNotFound`); the second is usually the operator's own
//! network (`DNSFailure`), which by default does not count towards failover.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError, NoRecords};
use hickory_resolver::proto::op::ResponseCode;
use tokio::time::{Instant, timeout_at};

use super::probe::{Failure, fail};
use crate::api::domain::ProbeFailureClass;

/// Resolves primaries' names; one for every probe of this operator.
pub struct Resolver {
    /// Why there is no resolver: every lookup fails with this, until the configuration is fixed.
    inner: Result<TokioResolver, String>,
}

impl Resolver {
    /// The system's configuration: `/etc/resolv.conf` (servers, search domains, `ndots`) and
    /// `/etc/hosts`, as the operator's pod has them.
    pub fn system() -> Self {
        let inner = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|error| format!("the system's resolver configuration cannot be used: {error}"));
        Resolver { inner }
    }

    /// Asks `servers` (UDP and TCP), and nobody else; `/etc/hosts` still answers first.
    pub fn with_servers(servers: &[SocketAddr]) -> Self {
        let name_servers = servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        let config = ResolverConfig::from_name_servers(name_servers);
        let inner = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .build()
            .map_err(|error| format!("the resolver cannot be built: {error}"));
        Resolver { inner }
    }

    /// The addresses of `host`, by `deadline`.
    pub(super) async fn resolve(&self, host: &str, deadline: Instant) -> Result<Vec<IpAddr>, Failure> {
        let resolver = self
            .inner
            .as_ref()
            .map_err(|why| fail(ProbeFailureClass::DnsFailure, why.clone()))?;
        match timeout_at(deadline, resolver.lookup_ip(host)).await {
            Err(_) => Err(fail(
                ProbeFailureClass::DnsFailure,
                format!("looking up {host} timed out"),
            )),
            Ok(Ok(found)) => {
                let addresses: Vec<IpAddr> = found.iter().collect();
                if addresses.is_empty() {
                    Err(fail(ProbeFailureClass::NameNotFound, format!("{host} has no address")))
                } else {
                    Ok(addresses)
                }
            }
            Ok(Err(error)) => Err(classify(host, &error)),
        }
    }
}

/// An authoritative "no such name" or "no address" is the customer's DNS speaking; anything
/// else (SERVFAIL, REFUSED, no answer, no route to the resolver) says nothing about them.
fn classify(host: &str, error: &NetError) -> Failure {
    match error {
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NXDomain,
            ..
        })) => fail(
            ProbeFailureClass::NameNotFound,
            format!("{host} does not exist (NXDOMAIN)"),
        ),
        NetError::Dns(DnsError::NoRecordsFound(NoRecords {
            response_code: ResponseCode::NoError,
            ..
        })) => fail(ProbeFailureClass::NameNotFound, format!("{host} has no address record")),
        other => fail(
            ProbeFailureClass::DnsFailure,
            format!("looking up {host} failed: {other}"),
        ),
    }
}
