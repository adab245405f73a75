//! Shared test harness: one real control plane for the whole test binary, the CRDs applied
//! once, a fresh namespace per test, and the real operator binary run as a subprocess.
//!
//! `CONTINUITY_TEST_KUBECONFIG` names a running control plane (hack/test.sh starts one for
//! the whole suite); without it the harness starts its own with hack/control-plane.sh, which
//! stops itself when this process exits.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use continuity_operator::resources::coverage;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const TEST_MANAGER: &str = "continuity-tests";

/// Repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Path of the kubeconfig of the test control plane, CRDs installed and Established.
pub fn kubeconfig() -> &'static Path {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        let path = match std::env::var_os("CONTINUITY_TEST_KUBECONFIG") {
            Some(path) => PathBuf::from(path),
            None => start_control_plane(),
        };
        // The CRDs are installed on a runtime of their own: every test has its own runtime,
        // and this runs once for all of them.
        let installer = path.clone();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new()
                .expect("tokio runtime")
                .block_on(async move { install_crds(&client_for(&installer).await).await })
        })
        .join()
        .expect("installing the CRDs");
        path
    })
}

fn start_control_plane() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("control-plane-{}", std::process::id()));
    let status = std::process::Command::new(repo().join("hack/control-plane.sh"))
        .arg("start")
        .arg(&dir)
        .arg("--watch-pid")
        .arg(std::process::id().to_string())
        .status()
        .expect("running hack/control-plane.sh");
    assert!(status.success(), "hack/control-plane.sh start failed");
    dir.join("kubeconfig")
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading the kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(config).expect("client")
}

/// A client for the test control plane, on the calling test's runtime.
pub async fn client() -> Client {
    client_for(kubeconfig()).await
}

/// Installs the CRDs as Helm or a client-side `kubectl apply` would: create, or replace.
/// (Server-side apply is no option on Kubernetes < 1.25: its typed patch refuses the
/// `x-kubernetes-validations` field that create and replace silently drop.)
async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for mut crd in continuity_operator::crd::definitions() {
        let name = crd.name_any();
        match crds.get_opt(&name).await.expect("reading a CRD") {
            None => crds.create(&PostParams::default(), &crd).await.map(drop),
            Some(existing) => {
                crd.metadata.resource_version = existing.resource_version();
                crds.replace(&name, &PostParams::default(), &crd).await.map(drop)
            }
        }
        .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    }
    for crd in continuity_operator::crd::definitions() {
        established(&crds, &crd.name_any()).await;
    }
}

/// Waits until the API server serves the CRD `name`.
pub async fn established(crds: &Api<CustomResourceDefinition>, name: &str) {
    wait_for(&format!("CRD {name} Established"), Duration::from_secs(30), || async {
        let crd = crds.get(name).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

/// Runs `command` with `stdin` as its standard input; returns (success, stdout, stderr).
pub fn run_with_input(command: &mut std::process::Command, stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .unwrap_or_else(|e| panic!("writing to {command:?}: {e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls `check` until it yields a value; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the API server's clock has passed the second of `object`'s creation, so the
/// next object created is younger (creation timestamps have a resolution of one second).
/// The clock is read from throwaway ConfigMaps the server stamps.
pub async fn created_after<K: Resource>(client: &Client, object: &K) {
    let namespace = object.meta().namespace.clone().expect("a namespaced object");
    let created = object.meta().creation_timestamp.clone().expect("a created object").0;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    wait_for(
        "the API server's clock to pass a second",
        Duration::from_secs(10),
        || async {
            let probe = ConfigMap {
                metadata: kube::api::ObjectMeta {
                    generate_name: Some("clock-".into()),
                    ..Default::default()
                },
                ..Default::default()
            };
            let stamped = maps.create(&PostParams::default(), &probe).await.ok()?;
            let _ = maps.delete(&stamped.name_any(), &Default::default()).await;
            (stamped.metadata.creation_timestamp?.0 > created).then_some(())
        },
    )
    .await;
}

/// A unique name: tests run in parallel against one API server.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// The mail domains every test namespace is granted: those [`mail_domain`] makes.
pub const TEST_GRANTS: &str = "*.example.test";

/// Creates a fresh namespace, granted the test mail domains ([`TEST_GRANTS`]).
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(std::collections::BTreeMap::from([(
                "continuity.mailops.io/allowed-domains".to_owned(),
                TEST_GRANTS.to_owned(),
            )])),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("creating a namespace");
    name
}

/// Applies every object of a (multi-document) YAML text into `namespace`.
pub async fn apply_yaml(client: &Client, namespace: &str, yaml: &str) -> Vec<DynamicObject> {
    let mut applied = Vec::new();
    let documents: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(yaml).expect("valid YAML");
    for value in documents {
        if value.is_null() {
            continue;
        }
        let mut object: DynamicObject = serde_json::from_value(value).expect("a Kubernetes object");
        object.metadata.namespace = Some(namespace.to_owned());
        let types = object.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("group, version and kind");
        let (resource, _) = pinned_kind(client, &gvk).await.expect("a known kind");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        let name = object.name_any();
        applied.push(
            api.patch(&name, &PatchParams::apply(TEST_MANAGER).force(), &Patch::Apply(&object))
                .await
                .unwrap_or_else(|e| panic!("applying {} {name}: {e}", gvk.kind)),
        );
    }
    applied
}

/// A ContinuityDomain for `mail_domain` with a SelectedUsers scope, as YAML.
pub fn domain_yaml(name: &str, mail_domain: &str) -> String {
    format!(
        "apiVersion: continuity.mailops.io/v1alpha1\nkind: ContinuityDomain\nmetadata:\n  name: {name}\nspec:\n  domain: {mail_domain}\n  primary:\n    host: mx.{mail_domain}\n"
    )
}

/// A domain whose primary is `localhost:port` (a DNS name, so the next-hop Service can name
/// it; Services cannot route to loopback addresses), probed every second: three failures fail
/// over, two successes and five seconds since the last flip fail back.
pub fn probed_domain(name: &str, mail: &str, port: u16, extra: &str) -> String {
    probed_domain_at(name, mail, "localhost", port, extra)
}

/// As [`probed_domain`], with the primary at `host:port`.
pub fn probed_domain_at(name: &str, mail: &str, host: &str, port: u16, extra: &str) -> String {
    format!(
        "{}  healthCheck:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    failureThreshold: 3\n    successThreshold: 2\n    minFlipIntervalSeconds: 5\n{extra}",
        domain_yaml(name, mail).replace(&format!("host: mx.{mail}"), &format!("host: {host}\n    port: {port}"))
    )
}

/// The Events in the scene's namespace with `reason`.
pub async fn events_with_reason(scene: &Scene, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let events: Api<k8s_openapi::api::events::v1::Event> = scene.api();
    let list = events.list(&ListParams::default()).await.expect("listing Events");
    list.items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect()
}

/// A ContinuityUser, as YAML.
pub fn user_yaml(name: &str, domain: &str, address: &str) -> String {
    format!(
        "apiVersion: continuity.mailops.io/v1alpha1\nkind: ContinuityUser\nmetadata:\n  name: {name}\nspec:\n  domainRef:\n    name: {domain}\n  address: {address}\n"
    )
}

/// Sets the namespace's granted mail domains, as a provider does.
pub async fn grant(client: &Client, namespace: &str, domains: &str) {
    let patch = serde_json::json!({
        "metadata": { "annotations": { "continuity.mailops.io/allowed-domains": domains } }
    });
    Api::<Namespace>::all(client.clone())
        .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotating the namespace");
}

/// A mail domain no other test uses (claims are cluster-wide).
pub fn mail_domain(label: &str) -> String {
    format!("{}.example.test", unique(label))
}

/// Finds a condition's (status, reason, message).
pub fn condition(conditions: &[Condition], type_: &str) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The resources whose status holds conditions.
pub trait Conditioned: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug {
    fn conditions(&self) -> Option<&[Condition]>;
}

impl Conditioned for ContinuityDomain {
    fn conditions(&self) -> Option<&[Condition]> {
        self.status.as_ref().map(|s| s.conditions.as_slice())
    }
}

impl Conditioned for ContinuityUser {
    fn conditions(&self) -> Option<&[Condition]> {
        self.status.as_ref().map(|s| s.conditions.as_slice())
    }
}

/// Waits until the object's condition `type_` has `status` and `reason`; returns the object.
pub async fn reach<K: Conditioned>(api: &Api<K>, name: &str, type_: &str, status: &str, reason: &str) -> K {
    let what = format!("{} {name}: {type_}={status} ({reason})", K::kind(&()));
    wait_for(&what, Duration::from_secs(30), || async {
        let object = api.get(name).await.ok()?;
        let (s, r, _) = condition(object.conditions()?, type_)?;
        (s == status && r == reason).then_some(object)
    })
    .await
}

/// Waits until domain `name` holds its switch to AllUsers for confirmation; returns it.
pub async fn awaiting_scope_confirmation(domains: &Api<ContinuityDomain>, name: &str) -> ContinuityDomain {
    let confirmation = "ScopeChangeNeedsConfirmation";
    reach(domains, name, confirmation, "True", confirmation).await
}

/// A test namespace with its own operator, and a mail domain no other test uses.
pub struct Scene {
    pub client: Client,
    pub namespace: String,
    pub operator: Operator,
    pub mail: String,
}

impl Scene {
    pub async fn new(label: &str) -> Scene {
        Self::with_flags(label, &[]).await
    }

    /// A scene whose operator runs with these more flags.
    pub async fn with_flags(label: &str, flags: &[&str]) -> Scene {
        let client = client().await;
        let namespace = namespace(&client, label).await;
        let mut options = OperatorOptions::scoped(&namespace);
        options.args.extend(flags.iter().map(|f| (*f).to_owned()));
        let operator = Operator::start(options);
        Scene {
            client,
            namespace,
            operator,
            mail: mail_domain(label),
        }
    }

    /// An Api for `K` in the scene's namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies YAML objects in the scene's namespace.
    pub async fn apply(&self, yaml: &str) {
        apply_yaml(&self.client, &self.namespace, yaml).await;
    }

    /// A SelectedUsers ContinuityDomain `domain` for the scene's mail domain, with one user
    /// `local@<mail domain>`.
    pub async fn domain_with_user(&self, domain: &str, local: &str) {
        self.apply(&domain_yaml(domain, &self.mail)).await;
        self.apply(&user_yaml(local, domain, &format!("{local}@{}", self.mail)))
            .await;
    }

    /// Waits until `<domain>-coverage` lists exactly `addresses`; returns it.
    pub async fn coverage_lists(&self, domain: &str, addresses: &[String]) -> ConfigMap {
        let maps: Api<ConfigMap> = self.api();
        let name = format!("{domain}-coverage");
        wait_for(
            &format!("{name} to list {addresses:?}"),
            Duration::from_secs(30),
            || async {
                let map = maps.get_opt(&name).await.ok().flatten()?;
                (coverage::listed(&map, coverage::ADDRESSES_KEY)?.as_slice() == addresses).then_some(map)
            },
        )
        .await
    }
}

/// Marks the pods of `component` Running and Ready (or not), as their kubelet would.
pub async fn set_pods_ready(scene: &Scene, component: &str, ready: bool) -> usize {
    let pods: Api<Pod> = scene.api();
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
    let list = wait_for(&format!("the {component} pods"), Duration::from_secs(30), || async {
        let list = pods.list(&selector).await.ok()?;
        (!list.items.is_empty()).then_some(list)
    })
    .await;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    for pod in &list.items {
        let patch = serde_json::json!({
            "status": {
                "phase": "Running",
                "conditions": [
                    { "type": "Ready", "status": status, "lastTransitionTime": now },
                    { "type": "ContainersReady", "status": status, "lastTransitionTime": now },
                ],
            }
        });
        pods.patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("setting the pod's status");
    }
    list.items.len()
}

/// Makes the standby of every domain in the scene ready, as the kubelet would by reporting
/// its pods ready, and waits until `domain` shows it: only then may it fail over.
pub async fn standby_ready(scene: &Scene, domain: &str) {
    let domains = scene.api::<ContinuityDomain>();
    // Marked again until `domain` shows it: its pods may not exist yet when another
    // domain's do.
    wait_for(
        &format!("ContinuityDomain {domain}: StandbyReady=True (Provisioned)"),
        Duration::from_secs(30),
        || async {
            set_pods_ready(scene, "standby-mail", true).await;
            set_pods_ready(scene, "webmail", true).await;
            let shown = domains.get(domain).await.ok()?;
            let (status, reason, _) = condition(shown.conditions()?, "StandbyReady")?;
            (status == "True" && reason == "Provisioned").then_some(())
        },
    )
    .await;
}

/// A running operator process.
pub struct Operator {
    child: tokio::process::Child,
    /// Where it serves HTTP, once its log says (it binds port 0).
    http: OnceLock<std::net::SocketAddr>,
    pub identity: String,
    pub log: PathBuf,
}

/// Options for [`Operator::start`].
pub struct OperatorOptions<'a> {
    pub namespace: &'a str,
    pub lease_name: String,
    pub identity: String,
    pub kubeconfig: PathBuf,
    pub lease_namespace: Option<String>,
    /// More flags.
    pub args: Vec<String>,
    /// `RUST_LOG`.
    pub log_filter: String,
}

impl<'a> OperatorOptions<'a> {
    /// The operator reconciling `namespace` only, its Lease in that namespace.
    pub fn scoped(namespace: &'a str) -> Self {
        Self {
            namespace,
            lease_name: format!("leader-{namespace}"),
            identity: unique("operator"),
            kubeconfig: kubeconfig().to_owned(),
            lease_namespace: None,
            // Every test primary and peer listens on this machine's loopback, on a port the
            // kernel picked.
            args: vec![
                // `localhost` resolves to ::1 as well (hickory answers it itself, RFC 6761).
                "--allowed-primary-networks=127.0.0.0/8,::1/128".to_owned(),
                "--allowed-primary-ports=1-65535".to_owned(),
            ],
            log_filter: "info,continuity_operator=debug".to_owned(),
        }
    }
}

/// The TCP ports process `pid` listens on, in the order of its file descriptors: for a
/// server told to listen on port 0, the ports the kernel gave it. Read from /proc (the tests
/// run as root, so every process's descriptors are readable).
pub fn listening_ports(pid: u32) -> Vec<u16> {
    let mut inodes: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let fd = entry.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            let inode = target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned();
            Some((fd, inode))
        })
        .collect();
    inodes.sort();
    let table: Vec<(String, u16)> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // st 0A is LISTEN; local_address is ADDRESS:PORT in hex.
                    if fields.get(3) != Some(&"0A") {
                        return None;
                    }
                    let port = u16::from_str_radix(fields.get(1)?.rsplit(':').next()?, 16).ok()?;
                    Some(((*fields.get(9)?).to_owned(), port))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    inodes
        .iter()
        .filter_map(|(_, inode)| table.iter().find(|(i, _)| i == inode).map(|(_, port)| *port))
        .collect()
}

impl Operator {
    /// Starts the operator binary; it is killed when dropped.
    pub fn start(options: OperatorOptions<'_>) -> Operator {
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.log", options.identity));
        let log_file = std::fs::File::create(&log).expect("operator log file");
        let lease_namespace = options.lease_namespace.unwrap_or_else(|| options.namespace.to_owned());
        // An empty namespace: every namespace.
        let scope = match options.namespace {
            "" => Vec::new(),
            namespace => vec!["--namespace", namespace],
        };
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_continuity-operator"))
            .args(scope)
            .args(["--lease-namespace", &lease_namespace])
            .args(["--lease-name", &options.lease_name])
            .args(["--identity", &options.identity])
            .args(["--http-addr", "127.0.0.1:0"])
            .args(&options.args)
            .env("KUBECONFIG", &options.kubeconfig)
            .env("RUST_LOG", &options.log_filter)
            .env_remove("WATCH_NAMESPACE")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator binary");
        Operator {
            child,
            http: OnceLock::new(),
            identity: options.identity,
            log,
        }
    }

    /// The address the operator serves HTTP on, from the line its log reports it in.
    pub async fn http(&self) -> std::net::SocketAddr {
        if let Some(addr) = self.http.get() {
            return *addr;
        }
        let addr = self.logged_address("serving /healthz").await;
        *self.http.get_or_init(|| addr)
    }

    /// The address the operator serves its admission webhook on (HTTPS), from its log.
    pub async fn webhook(&self) -> std::net::SocketAddr {
        self.logged_address("serving the admission webhook").await
    }

    /// The `addr=` of the first log line containing `marker` (servers bind port 0 and say
    /// where they listen).
    async fn logged_address(&self, marker: &str) -> std::net::SocketAddr {
        wait_for(
            &format!("the operator to log {marker:?} with its address"),
            Duration::from_secs(30),
            || async {
                let log = self.log_text();
                let line = log.lines().find(|l| l.contains(marker))?;
                // JSON logs (`--log-format json`) carry it as a field.
                if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
                    return json["addr"].as_str()?.parse().ok();
                }
                let plain = strip_ansi(line);
                plain.split_once("addr=")?.1.split_whitespace().next()?.parse().ok()
            },
        )
        .await
    }

    /// GET `path` on the operator's HTTP endpoint: (status code, body).
    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = tokio::net::TcpStream::connect(self.http().await).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    }

    /// The operator's /metrics page. Panics when the operator does not answer, so that a
    /// dead process never reads as "no reconciles".
    pub async fn metrics(&self) -> String {
        match self.get("/metrics").await {
            Some((200, body)) => body,
            other => panic!(
                "/metrics of {} did not answer: {other:?}\n{}",
                self.identity,
                self.log_text()
            ),
        }
    }

    /// The value of one series (`name{labels}` exactly as exposed); 0 when the series was
    /// never set (a family without series is not exposed at all).
    pub async fn metric(&self, series: &str) -> f64 {
        let body = self.metrics().await;
        body.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// The sum of every series of a metric family.
    pub async fn metric_sum(&self, family: &str) -> f64 {
        metric_sum(&self.metrics().await, family)
    }

    /// Waits until `count` more successful probes have run.
    pub async fn probes_pass(&self, count: f64) {
        let ok = r#"continuity_probes_total{result="Ok"}"#;
        let seen = self.metric(ok).await;
        wait_for(&format!("{count} more probes"), Duration::from_secs(30), || async {
            (self.metric(ok).await >= seen + count).then_some(())
        })
        .await;
    }

    /// Probes of a domain probed every second that outlast the operator's memory of its
    /// recent writes (5 s), during which a repeated write is held back rather than sent.
    pub const PAST_THE_MEMO: f64 = 6.0;

    /// Waits until [`Self::PAST_THE_MEMO`] successful probes pass without an API write: what
    /// the operator had started to write is written, and it remembers none of it.
    pub async fn settled(&self) {
        wait_for("the operator to settle", Duration::from_secs(90), || async {
            let writes = self.metric_sum("continuity_api_writes_total").await;
            self.probes_pass(Self::PAST_THE_MEMO).await;
            (self.metric_sum("continuity_api_writes_total").await == writes).then_some(())
        })
        .await;
    }

    /// The operator's process id (the scale benchmark reads its CPU time and memory).
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// Sends SIGKILL: the process dies without releasing its Lease.
    pub async fn kill(&mut self) {
        self.child.kill().await.expect("killing the operator");
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("operator still running");
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "sending SIGTERM");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the operator exits within 20 s of SIGTERM")
            .expect("waiting for the operator")
    }

    /// The operator's log so far, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The networks a prober in these tests may reach: this machine's loopback, where every test
/// server listens (the operator's default refuses it).
pub fn loopback_allowed() -> std::sync::Arc<continuity_operator::health::networks::ProbeNetworks> {
    std::sync::Arc::new(continuity_operator::health::networks::ProbeNetworks {
        cluster: Vec::new(),
        allowed: vec![
            "127.0.0.0/8".parse().expect("a CIDR"),
            "::1/128".parse().expect("a CIDR"),
        ],
    })
}

/// A prober's client introducing itself as `helo`, resolving names as this machine does.
pub fn probe_client(helo: &str) -> continuity_operator::health::probe::ProbeClient {
    continuity_operator::health::probe::ProbeClient {
        helo: helo.to_owned(),
        resolver: continuity_operator::health::resolver::Resolver::system(),
    }
}

/// How to probe 127.0.0.1:`port` every `period_ms`, counting every failure class.
pub fn probe_registration(
    port: u16,
    period_ms: u64,
    timeout_ms: u64,
) -> continuity_operator::health::scheduler::Registration {
    use continuity_operator::api::domain::ProbeFailureClass;
    continuity_operator::health::scheduler::Registration {
        target: continuity_operator::health::probe::Target {
            host: "127.0.0.1".into(),
            port,
            timeout: Duration::from_millis(timeout_ms),
            networks: loopback_allowed(),
        },
        period: Duration::from_millis(period_ms),
        fast_retry: None,
        policy: continuity_operator::health::tracker::Policy {
            failure_threshold: 3,
            success_threshold: 3,
            failure_classes: ProbeFailureClass::ALL.to_vec(),
            heartbeat: Duration::from_secs(60),
        },
        tls: None,
    }
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// Sums every series of `family` in a Prometheus text exposition.
pub fn metric_sum(body: &str, family: &str) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A loopback address (127.a.b.c, never in 127.0.0.0/16) that no other server of any test
/// process uses at the same time: from this process's id and a counter. For servers that
/// cannot listen on port 0 and report the port (slapd), or that need an address of their own.
pub fn own_loopback_address() -> std::net::Ipv4Addr {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let [a, b] = [1 + (pid % 254), (pid / 254) % 256].map(|x| u8::try_from(x).unwrap_or(1));
    let c = u8::try_from(2 + n % 250).unwrap_or(2);
    std::net::Ipv4Addr::new(127, a, b, c)
}

/// The test control plane's audit log (hack/control-plane.sh writes one next to the
/// kubeconfig), read from a mark onwards: the operator's writes counted from outside it.
pub struct AuditLog {
    path: PathBuf,
    from: u64,
}

impl AuditLog {
    /// From now on.
    pub fn mark() -> AuditLog {
        let path = kubeconfig()
            .parent()
            .expect("the kubeconfig's directory")
            .join("logs/audit.log");
        let from = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditLog { path, from }
    }

    /// The operator's write requests in `namespace` (all namespaces: `None`) since the mark
    /// (its Lease aside), counted by resource (`services`, `continuitydomains/status`, ...)
    /// and verb.
    pub fn operator_writes(&self, namespace: Option<&str>) -> std::collections::BTreeMap<String, usize> {
        use std::io::{Read, Seek};
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.path) {
            let _ = file.seek(std::io::SeekFrom::Start(self.from));
            let _ = file.read_to_string(&mut text);
        }
        let mut counts = std::collections::BTreeMap::new();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let object = &event["objectRef"];
            let operator = event["userAgent"]
                .as_str()
                .is_some_and(|agent| agent.starts_with("continuity-operator/"));
            let elsewhere = namespace.is_some_and(|namespace| object["namespace"].as_str() != Some(namespace));
            if !operator || elsewhere || object["resource"] == "leases" {
                continue;
            }
            let resource = match object["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", object["resource"].as_str().unwrap_or("?")),
                None => object["resource"].as_str().unwrap_or("?").to_owned(),
            };
            let verb = event["verb"].as_str().unwrap_or("?");
            *counts.entry(format!("{resource} {verb}")).or_insert(0) += 1;
        }
        counts
    }
}

/// A kubeconfig that authenticates as the ServiceAccount, with a token from the TokenRequest API.
pub async fn service_account_kubeconfig(client: &Client, account: (&str, &str)) -> PathBuf {
    let (namespace, name) = account;
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .expect("a ServiceAccount token")
        .status
        .expect("token status")
        .token;
    let mut config = Kubeconfig::read_from(kubeconfig()).expect("kubeconfig");
    for user in &mut config.auth_infos {
        if let Some(auth) = user.auth_info.as_mut() {
            auth.token = Some(token.clone().into());
        }
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{}.kubeconfig", unique(name)));
    std::fs::write(&path, serde_saphyr::to_string(&config).expect("kubeconfig YAML")).expect("writing the kubeconfig");
    path
}
