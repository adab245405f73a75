//! Where a domain's mail goes: the failover/failback decision ([`decision`]) and the Postfix
//! transport map listing every domain's current next hop ([`transport`]). The per-domain
//! next-hop Service is built in [`crate::resources::next_hop`].

pub mod decision;
pub mod transport;
