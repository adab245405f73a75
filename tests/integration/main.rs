//! Integration tests against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager), with the operator binary running as a subprocess.

mod chart;
mod chart_options;
mod common;
mod crds;
mod directory;
mod dns;
mod domains;
mod failover;
mod gitops;
mod handback;
mod health;
mod leader_election;
mod mailstack;
mod observability;
mod own_faults;
mod peers;
mod plugin;
/// The one Pod Security checker, shared with the unit tests of the builders.
#[path = "../../src/testing/pod_security.rs"]
mod pod_security;
mod postfix;
mod probing;
mod quiet;
mod slapd;
mod standby;
mod tenancy;
mod users;
mod webhook;
