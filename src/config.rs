//! Command-line flags of the operator binary (each also settable by environment variable, as
//! the Helm chart does).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use std::sync::Arc;

use ipnet::IpNet;

use crate::health::networks::ProbeNetworks;
use crate::health::widespread::Threshold;
use crate::resources::network_policy::GatewayPeers;
use crate::resources::{Environment, Images};
use crate::standby::images;
use crate::telemetry::logging::LogFormat;
use crate::validation::policy::{DEFAULT_PRIMARY_PORTS, DEFAULT_WEBMAIL_ANNOTATIONS, PortRanges, TenantPolicy};
use crate::{Error, Result};

/// Kubernetes operator for an email Continuity Service.
#[derive(Parser, Debug, Clone)]
#[command(name = "continuity-operator", version, about)]
pub struct Config {
    /// Reconcile resources in this namespace only (default: all namespaces). Claims on mail
    /// domains are still checked against every namespace.
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,

    /// Address of the HTTP endpoint serving /healthz, /readyz and /metrics.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Name of the coordination.k8s.io/v1 Lease used for leader election.
    #[arg(long, env = "LEASE_NAME", default_value = "continuity-operator-leader")]
    pub lease_name: String,

    /// Namespace of the Lease (default: the kubeconfig's namespace).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// This replica's identity in the Lease (default: host name and process id).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,

    /// How long a Lease holds without renewal. A replica that dies is replaced after this plus
    /// up to two jittered retry periods (observing the last renewal, then polling): 12 to 21 s
    /// by default.
    #[arg(long, env = "LEASE_DURATION", default_value = "12s", value_parser = parse_duration)]
    pub lease_duration: Duration,

    /// How long the leader keeps trying to renew before it gives up leading.
    #[arg(long, env = "RENEW_DEADLINE", default_value = "8s", value_parser = parse_duration)]
    pub renew_deadline: Duration,

    /// Interval between attempts to renew the Lease; attempts to acquire it wait up to 2.2
    /// times as long (client-go's jitter), so candidates do not race each other.
    #[arg(long, env = "RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,

    /// Reconciliations run at once, per resource kind.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", default_value_t = 16)]
    pub max_concurrent_reconciles: u16,

    /// Reconcile every resource at least this often, even without a change.
    #[arg(long, env = "RESYNC_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub resync_interval: Duration,

    /// The cluster's DNS domain, used in the names the next-hop Services point at.
    #[arg(long, env = "CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,

    /// Name the health probes introduce themselves with in EHLO (default: this host's name).
    /// Use a name that resolves if primaries check it.
    #[arg(long, env = "PROBE_HELO_NAME")]
    pub probe_helo_name: Option<String>,

    /// Health probes run at once, over all domains.
    #[arg(long, env = "MAX_CONCURRENT_PROBES", default_value_t = 1024)]
    pub max_concurrent_probes: usize,

    /// DNS servers (comma-separated `address` or `address:port`) that resolve primaries' names,
    /// instead of the ones in the pod's `/etc/resolv.conf`.
    #[arg(long, env = "PROBE_NAMESERVERS", value_delimiter = ',')]
    pub probe_nameservers: Vec<String>,

    /// Failovers are held while more than this share (0 to 1) of all probed primaries fail at
    /// once: then the operator's own network is the likely cause, not every customer.
    #[arg(long, env = "WIDESPREAD_FAILURE_SHARE", default_value_t = 0.5)]
    pub widespread_failure_share: f64,

    /// ... counted only once at least this many primaries are probed.
    #[arg(long, env = "WIDESPREAD_FAILURE_MIN_PRIMARIES", default_value_t = 10)]
    pub widespread_failure_min_primaries: usize,

    /// While nothing else changes, `status.primary` shows a probe time at most this old: the
    /// only periodic status write, one per domain per heartbeat. `0s` turns it off (live probe
    /// data is in the metrics either way).
    #[arg(long, env = "STATUS_HEARTBEAT", default_value = "10m", value_parser = parse_duration)]
    pub status_heartbeat: Duration,

    /// Name of the ConfigMap holding the Postfix transport map of every domain; empty for none.
    #[arg(long, env = "TRANSPORT_MAP_NAME", default_value = "continuity-transport")]
    pub transport_map_name: String,

    /// Namespace of the transport map ConfigMap (default: the Lease's namespace; another one
    /// needs RBAC there too).
    #[arg(long, env = "TRANSPORT_MAP_NAMESPACE")]
    pub transport_map_namespace: Option<String>,

    /// Postfix image of the standby mail pods, unless a domain names its own.
    #[arg(long, env = "POSTFIX_IMAGE", default_value = images::POSTFIX)]
    pub postfix_image: String,

    /// Dovecot image of the standby mail pods, unless a domain names its own. It must be
    /// Dovecot 2.3: the rendered configuration is 2.3's.
    #[arg(long, env = "DOVECOT_IMAGE", default_value = images::DOVECOT)]
    pub dovecot_image: String,

    /// Roundcube image of the standby webmail, unless a domain names its own: a non-root
    /// variant listening on port 8000.
    #[arg(long, env = "WEBMAIL_IMAGE", default_value = images::WEBMAIL)]
    pub webmail_image: String,

    /// The operator's own image, whose `continuity-agent` runs beside Postfix and Dovecot in
    /// every mail pod and hands held mail back. Tenants cannot change it.
    #[arg(long, env = "AGENT_IMAGE", default_value = images::AGENT)]
    pub agent_image: String,

    /// Labels (`key=value,...`) of the namespaces whose pods may send SMTP to the standbys:
    /// the provider's inbound gateway. Default: the transport map's namespace. Empty: no
    /// namespace, for a gateway outside the cluster (`--gateway-cidrs` then required).
    #[arg(long, env = "GATEWAY_NAMESPACE_LABELS")]
    pub gateway_namespace_labels: Option<String>,

    /// Labels (`key=value,...`) of the gateway's pods in those namespaces (default: any pod).
    #[arg(long, env = "GATEWAY_POD_LABELS", default_value = "")]
    pub gateway_pod_labels: String,

    /// Address ranges (comma-separated CIDRs) of gateways outside the cluster that may send
    /// SMTP to the standbys.
    #[arg(long, env = "GATEWAY_CIDRS", value_delimiter = ',')]
    pub gateway_cidrs: Vec<String>,

    /// The API server's addresses (comma-separated CIDRs), admitted to the hand-back agents'
    /// tracking endpoint by the mail pods' NetworkPolicy: the operator and `kubectl continuity
    /// messages` reach it through the API server's service proxy. Default: none, so where
    /// NetworkPolicies are enforced tracking works only once this is set.
    #[arg(long, env = "API_SERVER_CIDRS", value_delimiter = ',')]
    pub api_server_cidrs: Vec<String>,

    /// Prefixes (comma-separated) that images a domain names for its own standby must start
    /// with, as `registry.example/mail/`. Default: none, a domain runs the provider's images.
    #[arg(long, env = "ALLOWED_IMAGE_PREFIXES", value_delimiter = ',')]
    pub allowed_image_prefixes: Vec<String>,

    /// The cluster's Service and pod networks (comma-separated CIDRs): primaries may not be in
    /// them, and the prober never connects there. Default: kubeadm's.
    #[arg(
        long,
        env = "CLUSTER_NETWORKS",
        value_delimiter = ',',
        default_value = "10.96.0.0/12,10.244.0.0/16"
    )]
    pub cluster_networks: Vec<String>,

    /// Networks (comma-separated CIDRs) primaries may be in even so: the cluster's, or the
    /// operator's host (127.0.0.0/8, for tests on one machine).
    #[arg(long, env = "ALLOWED_PRIMARY_NETWORKS", value_delimiter = ',')]
    pub allowed_primary_networks: Vec<String>,

    /// Ports and ranges (comma-separated, as `25,587,1024-65535`) primaries may listen on.
    #[arg(long, env = "ALLOWED_PRIMARY_PORTS", default_value = DEFAULT_PRIMARY_PORTS)]
    pub allowed_primary_ports: String,

    /// Annotation keys (comma-separated) a domain may put on its webmail Ingress.
    #[arg(long, env = "ALLOWED_WEBMAIL_ANNOTATIONS", value_delimiter = ',', default_value = DEFAULT_WEBMAIL_ANNOTATIONS)]
    pub allowed_webmail_annotations: Vec<String>,

    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Whether a namespace serves only the mail domains its annotation
    /// `continuity.mailops.io/allowed-domains` grants (`on`), or any (`off`: one tenant only).
    #[arg(long, env = "DOMAIN_GRANTS", value_enum, default_value_t = Switch::On)]
    pub domain_grants: Switch,

    /// Directory holding the admission webhook's serving certificate (`tls.crt`, `tls.key`,
    /// as a mounted `kubernetes.io/tls` Secret; renewed files are picked up). Without it, no
    /// webhook is served.
    #[arg(long, env = "WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<std::path::PathBuf>,

    /// Address the admission webhook listens on (HTTPS).
    #[arg(long, env = "WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
    pub webhook_addr: SocketAddr,
}

impl Config {
    /// Rejects timing combinations under which leader election cannot work.
    pub fn check(&self) -> Result<()> {
        if self.renew_deadline >= self.lease_duration {
            return Err(Error::Config(format!(
                "--renew-deadline ({:?}) must be shorter than --lease-duration ({:?})",
                self.renew_deadline, self.lease_duration
            )));
        }
        if self.retry_period >= self.renew_deadline {
            return Err(Error::Config(format!(
                "--retry-period ({:?}) must be shorter than --renew-deadline ({:?})",
                self.retry_period, self.renew_deadline
            )));
        }
        if self.retry_period.is_zero() || self.resync_interval.is_zero() {
            return Err(Error::Config(
                "--retry-period and --resync-interval must be longer than zero".into(),
            ));
        }
        // Shorter would turn the status heartbeat into a write per probe.
        if !self.status_heartbeat.is_zero() && self.status_heartbeat < Duration::from_secs(60) {
            return Err(Error::Config(
                "--status-heartbeat must be 0s (off) or at least 60s".into(),
            ));
        }
        if self.max_concurrent_probes == 0 {
            return Err(Error::Config("--max-concurrent-probes must be at least 1".into()));
        }
        if !(self.widespread_failure_share > 0.0 && self.widespread_failure_share <= 1.0) {
            return Err(Error::Config(
                "--widespread-failure-share must be above 0 and at most 1 (1: never hold failovers)".into(),
            ));
        }
        self.nameservers()?;
        self.primary_ports()?;
        if self.max_concurrent_reconciles == 0 {
            return Err(Error::Config("--max-concurrent-reconciles must be at least 1".into()));
        }
        if let Some(labels) = &self.gateway_namespace_labels
            && parse_labels("--gateway-namespace-labels", labels)?.is_empty()
            && non_empty(&self.gateway_cidrs).is_empty()
        {
            return Err(Error::Config(
                "--gateway-namespace-labels is empty and there are no --gateway-cidrs: no gateway could deliver to a standby".into(),
            ));
        }
        parse_labels("--gateway-pod-labels", &self.gateway_pod_labels)?;
        networks("--gateway-cidrs", &self.gateway_cidrs)?;
        networks("--api-server-cidrs", &self.api_server_cidrs)?;
        networks("--cluster-networks", &self.cluster_networks)?;
        networks("--allowed-primary-networks", &self.allowed_primary_networks)?;
        Ok(())
    }

    /// The DNS servers of `--probe-nameservers` (port 53 unless given); empty for the system's.
    pub fn nameservers(&self) -> Result<Vec<SocketAddr>> {
        non_empty(&self.probe_nameservers)
            .iter()
            .map(|text| {
                text.parse::<SocketAddr>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| {
                        Error::Config(format!(
                            "--probe-nameservers: {text:?} is not an address like 192.0.2.53 or [2001:db8::53]:5353"
                        ))
                    })
            })
            .collect()
    }

    fn primary_ports(&self) -> Result<PortRanges> {
        self.allowed_primary_ports
            .parse()
            .map_err(|why| Error::Config(format!("--allowed-primary-ports: {why}")))
    }

    /// When failures count as widespread.
    pub fn widespread_threshold(&self) -> Threshold {
        Threshold {
            share: self.widespread_failure_share,
            min_primaries: self.widespread_failure_min_primaries,
        }
    }

    /// What the children's builders need from this configuration. `gateway_namespace` is
    /// where the gateway runs unless `--gateway-namespace-labels` says otherwise.
    pub fn environment(&self, gateway_namespace: &str) -> Result<Environment> {
        let namespace_labels = match &self.gateway_namespace_labels {
            Some(labels) => parse_labels("--gateway-namespace-labels", labels)?,
            None => BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), gateway_namespace.to_owned())]),
        };
        Ok(Environment {
            cluster_domain: self.cluster_domain.clone(),
            images: Images {
                postfix: self.postfix_image.clone(),
                dovecot: self.dovecot_image.clone(),
                webmail: self.webmail_image.clone(),
                agent: self.agent_image.clone(),
            },
            gateway: GatewayPeers {
                namespace_labels,
                pod_labels: parse_labels("--gateway-pod-labels", &self.gateway_pod_labels)?,
                cidrs: self.gateway_cidrs.clone(),
                api_server_cidrs: non_empty(&self.api_server_cidrs),
            },
            policy: TenantPolicy {
                image_prefixes: non_empty(&self.allowed_image_prefixes),
                webmail_annotations: non_empty(&self.allowed_webmail_annotations),
                primary_networks: Arc::new(ProbeNetworks {
                    cluster: networks("--cluster-networks", &self.cluster_networks)?,
                    allowed: networks("--allowed-primary-networks", &self.allowed_primary_networks)?,
                }),
                primary_ports: self.primary_ports()?,
            },
        })
    }
}

/// Parses `key=value,key=value` (empty: no labels).
fn parse_labels(flag: &str, text: &str) -> Result<BTreeMap<String, String>> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.trim().to_owned())),
            _ => Err(Error::Config(format!("{flag}: {pair:?} is not key=value"))),
        })
        .collect()
}

/// Checks an `address/prefix` range.
/// The CIDRs of a comma-separated flag (empty entries ignored).
fn networks(flag: &str, list: &[String]) -> Result<Vec<IpNet>> {
    non_empty(list)
        .iter()
        .map(|text| {
            text.parse()
                .map_err(|_| Error::Config(format!("{flag}: {text:?} is not a CIDR like 192.0.2.0/24")))
        })
        .collect()
}

/// A feature flag's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// The entries of a comma-separated flag, without empty ones (`--flag=` means none).
fn non_empty(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses a Go-style duration (`500ms`, `15s`, `1m30s`, `1.5h`), as Kubernetes components'
/// flags take them; negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|error| format!("{text:?} is not a duration like 15s, 1m30s or 500ms: {error}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?}: a duration cannot be negative"));
    }
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("2d").is_err());
    }

    #[test]
    fn defaults_are_consistent_and_bad_timings_are_refused() {
        let config = Config::parse_from(["continuity-operator"]);
        assert!(config.check().is_ok());
        let bad = Config::parse_from(["continuity-operator", "--renew-deadline", "20s"]);
        assert!(bad.check().unwrap_err().to_string().contains("--renew-deadline"));
        let busy = Config::parse_from(["continuity-operator", "--resync-interval", "0s"]);
        assert!(busy.check().unwrap_err().to_string().contains("longer than zero"));
        let chatty = Config::parse_from(["continuity-operator", "--status-heartbeat", "1s"]);
        assert!(chatty.check().unwrap_err().to_string().contains("at least 60s"));
        let off = Config::parse_from(["continuity-operator", "--status-heartbeat", "0s"]);
        assert!(off.check().is_ok(), "0s turns the heartbeat off");
        let never = Config::parse_from(["continuity-operator", "--widespread-failure-share", "0"]);
        assert!(never.check().unwrap_err().to_string().contains("above 0"));
        let servers = Config::parse_from([
            "continuity-operator",
            "--probe-nameservers",
            "192.0.2.53,[2001:db8::53]:5353",
        ]);
        assert_eq!(
            servers.nameservers().unwrap(),
            vec!["192.0.2.53:53".parse().unwrap(), "[2001:db8::53]:5353".parse().unwrap()]
        );
        let typo = Config::parse_from(["continuity-operator", "--probe-nameservers", "dns.example"]);
        assert!(typo.check().unwrap_err().to_string().contains("--probe-nameservers"));
    }

    #[test]
    fn the_gateway_defaults_to_a_namespace_and_bad_selectors_are_refused() {
        let config = Config::parse_from(["continuity-operator"]);
        let environment = config.environment("mail-gateway").unwrap();
        assert_eq!(
            environment.gateway.namespace_labels,
            BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), "mail-gateway".to_owned())])
        );
        assert!(environment.gateway.pod_labels.is_empty() && environment.gateway.cidrs.is_empty());
        assert_eq!(environment.images.dovecot, images::DOVECOT);

        let custom = Config::parse_from([
            "continuity-operator",
            "--gateway-namespace-labels",
            "team=mail, tier=edge",
            "--gateway-pod-labels",
            "app=postfix",
            "--gateway-cidrs",
            "192.0.2.0/24,2001:db8::/32",
        ]);
        assert!(custom.check().is_ok());
        let gateway = custom.environment("ignored").unwrap().gateway;
        assert_eq!(gateway.namespace_labels.len(), 2);
        assert_eq!(gateway.cidrs.len(), 2);

        let nowhere = Config::parse_from(["continuity-operator", "--gateway-namespace-labels", ""]);
        assert!(
            nowhere
                .check()
                .unwrap_err()
                .to_string()
                .contains("no gateway could deliver")
        );
        let outside = Config::parse_from([
            "continuity-operator",
            "--gateway-namespace-labels=",
            "--gateway-cidrs=192.0.2.0/24",
        ]);
        assert!(outside.check().is_ok());
        assert!(
            outside
                .environment("ignored")
                .unwrap()
                .gateway
                .namespace_labels
                .is_empty()
        );
        let bad = Config::parse_from(["continuity-operator", "--gateway-pod-labels", "app"]);
        assert!(bad.check().unwrap_err().to_string().contains("not key=value"));
        let bad = Config::parse_from(["continuity-operator", "--gateway-cidrs", "192.0.2.0/33"]);
        assert!(bad.check().unwrap_err().to_string().contains("not a CIDR"));
    }
}
