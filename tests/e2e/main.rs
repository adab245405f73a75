//! End-to-end scenarios on a real single-node cluster (`hack/cluster.sh`): the operator runs
//! as a pod installed by its chart, the standby's pods run the project's images on a real
//! kubelet, and nothing's status is set by hand. Run by `hack/e2e.sh`, which starts the cluster
//! and names it in `CONTINUITY_TEST_KUBECONFIG`; not part of `cargo test` (it needs root and
//! the cluster), see `test = false` in Cargo.toml.

#[allow(dead_code)]
#[path = "../integration/common.rs"]
mod common;

mod deactivate;
mod flip;
mod handback;
mod mail;
mod node;
mod operator;
mod queue;
mod standby;
mod webmail;
mod world;
