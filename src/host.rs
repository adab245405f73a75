//! The primary's host as the spec gives it, parsed once (by validation): a DNS name, or an IP
//! address that the operator fronts with a Service of its own (see `resources::next_hop`).

use std::fmt;
use std::net::IpAddr;

/// A DNS name or an IP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// The address, when the host is given as one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}
