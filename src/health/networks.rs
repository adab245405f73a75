//! Which addresses the prober may connect to. A tenant names its primary; without limits the
//! prober would probe whatever that name resolves to: the operator's own host, the cluster's
//! Services and pods. Loopback, link-local, unspecified and multicast addresses and the
//! cluster's networks (`--cluster-networks`) are never probed, unless the provider allows a
//! network (`--allowed-primary-networks`). Every address a name resolves to is checked, at
//! every probe: a name can be made to resolve elsewhere at any time.

use std::net::IpAddr;

use ipnet::IpNet;

/// The provider's networks: forbidden (the cluster's) and allowed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeNetworks {
    /// The cluster's Service and pod networks.
    pub cluster: Vec<IpNet>,
    /// Networks the provider lets primaries be in, whatever else says.
    pub allowed: Vec<IpNet>,
}

impl ProbeNetworks {
    /// Whether the prober may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return true;
        }
        let host_only = match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_multicast(),
            IpAddr::V6(v6) => {
                v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified() || v6.is_multicast()
            }
        };
        !host_only && !self.cluster.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_host_and_the_cluster_are_off_limits_unless_allowed() {
        let networks = ProbeNetworks {
            cluster: nets(&["10.96.0.0/12", "10.244.0.0/16"]),
            allowed: Vec::new(),
        };
        for forbidden in [
            "127.0.0.1",
            "::1",
            "169.254.169.254",
            "fe80::1",
            "0.0.0.0",
            "10.96.0.1",
            "10.244.3.7",
            "::ffff:127.0.0.1",
        ] {
            assert!(!networks.permits(forbidden.parse().unwrap()), "{forbidden}");
        }
        for fine in ["192.0.2.25", "2001:db8::25", "10.1.2.3"] {
            assert!(networks.permits(fine.parse().unwrap()), "{fine}");
        }
        let with_loopback = ProbeNetworks {
            allowed: nets(&["127.0.0.0/8"]),
            ..networks
        };
        assert!(with_loopback.permits("127.0.0.1".parse().unwrap()));
        assert!(!with_loopback.permits("10.96.0.1".parse().unwrap()));
    }
}
