//! What a test does on the node itself, as root beside the kubelet: run a command in a
//! container (`kubectl exec`), and kill a container's processes with SIGKILL.

use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::common::{kubeconfig, wait_for};
use crate::world::pod_ready;

/// Runs `kubectl exec` in `container` of `pod` (kube-rs here has no exec: no websocket
/// feature) and returns what the command printed; its errors go to the test's output.
pub fn exec(namespace: &str, pod: &str, container: &str, command: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(["-n", namespace, "exec", pod, "-c", container, "--"])
        .args(command)
        .output()
        .expect("running kubectl");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The name of the one pod `selector` selects.
pub async fn pod_name(client: &Client, namespace: &str, selector: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("a pod of {selector}"), Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels(selector)).await.ok()?;
        list.items.into_iter().find(pod_ready)?.metadata.name
    })
    .await
}

/// Kills `container` of `pod` with SIGKILL, from the node: the test runs as root on it, and
/// the container's processes are the ones whose cgroup names the container's ID. (A signal
/// sent inside the container would reach its PID 1, which the kernel shields from SIGKILL.)
/// Returns the container's restart count before the kill.
pub async fn kill_container(client: &Client, namespace: &str, pod: &str, container: &str) -> i32 {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let status = pods
        .get(pod)
        .await
        .expect("the pod")
        .status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == container)
        .expect("the container's status");
    let id = status
        .container_id
        .as_deref()
        .and_then(|id| id.split("://").nth(1))
        .expect("a running container's ID")
        .to_owned();
    let pids: Vec<String> = std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|entry| std::fs::read_to_string(entry.path().join("cgroup")).is_ok_and(|cgroup| cgroup.contains(&id)))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!pids.is_empty(), "no process of container {id} on this node");
    let killed = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .status()
        .expect("running kill");
    assert!(killed.success(), "kill -KILL {pids:?}");
    status.restart_count
}
