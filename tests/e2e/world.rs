//! What the scenarios build and read: ContinuityDomains with their users, Postfix pods (from
//! the project's mail image) playing the customers' primaries, the provider's gateways and
//! relays, how a domain's route and its agent's ledger read, and what Postfix logged about a
//! message.

use std::net::SocketAddr;
use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::RouteTarget;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

use crate::common::wait_for;
use crate::mail::{imap_has, send};

/// The project's mail image, which has Postfix.
pub const MAIL_IMAGE: &str = "ghcr.io/mailops/continuity-standby-mail:0.1.0";

/// Whether `pod` runs and is Ready.
pub fn pod_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// ContinuityDomain `name` for `mail`, its spec beyond the domain in `spec` (YAML indented
/// by two), and a ContinuityUser with an emergency-password Secret for each (local part,
/// password) of `users`.
pub fn domain_yaml(name: &str, mail: &str, spec: &str, users: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: continuity.mailops.io/v1alpha1\nkind: ContinuityDomain\nmetadata:\n  name: {name}\nspec:\n  domain: {mail}\n{spec}"
    );
    for (user, password) in users {
        yaml.push_str(&format!(
            r#"---
apiVersion: v1
kind: Secret
metadata:
  name: {user}-emergency
stringData:
  password: {password}
---
apiVersion: continuity.mailops.io/v1alpha1
kind: ContinuityUser
metadata:
  name: {user}
spec:
  domainRef:
    name: {name}
  address: {user}@{mail}
  emergencyPassword:
    name: {user}-emergency
    key: password
"#
        ));
    }
    yaml
}

/// A Postfix Deployment and its Service `name` on port 25; `main_cf` are its settings, `setup`
/// shell lines run before Postfix starts; `volumes` is YAML for the pod's volumes and mounts.
pub fn postfix_yaml(name: &str, main_cf: &[&str], setup: &str, volumes: (&str, &str)) -> String {
    let settings: Vec<String> = main_cf.iter().map(|line| format!("'{line}'")).collect();
    let (pod_volumes, mounts) = volumes;
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: postfix
        image: {MAIL_IMAGE}
        imagePullPolicy: Never
        command:
        - /bin/sh
        - -c
        - |
          printf '%s\n' {settings} \
            'compatibility_level = 3.6' 'inet_protocols = ipv4' 'maillog_file = /dev/stdout' >/etc/postfix/main.cf
          postconf -F '*/*/chroot = n'
          {setup}
          exec postfix start-fg
        ports:
        - containerPort: 25
{mounts}{pod_volumes}---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports:
  - port: 25
    protocol: TCP
"#,
        settings = settings.join(" "),
    )
}

/// Shell lines that copy the Postfix lookup tables `tables` from the ConfigMap mounted at
/// `dir` (as `<table>.gz` when `gzipped`) to /etc/postfix and compile them: before Postfix
/// starts, then whenever the kubelet updates the mounted files (as the README tells a
/// provider to do with the gateway's).
fn synced_tables(dir: &str, tables: &[&str], gzipped: bool) -> String {
    let read = if gzipped {
        format!("gzip -dc {dir}/$t.gz")
    } else {
        format!("cat {dir}/$t")
    };
    format!(
        "sync() {{ for t in {tables}; do {read} > /etc/postfix/$t.new && \
         {{ cmp -s /etc/postfix/$t.new /etc/postfix/$t && rm /etc/postfix/$t.new || \
         {{ mv /etc/postfix/$t.new /etc/postfix/$t; postmap /etc/postfix/$t; }}; }}; done; }}; sync; \
         (while sleep 1; do sync; done) &",
        tables = tables.join(" ")
    )
}

/// The pod volume and container mount (YAML) of ConfigMap `config_map` at `dir`.
fn config_map_volume(config_map: &str, dir: &str) -> (String, String) {
    (
        format!("      volumes:\n      - name: tables\n        configMap:\n          name: {config_map}\n"),
        format!("        volumeMounts:\n        - name: tables\n          mountPath: {dir}\n"),
    )
}

/// A mail server `name` accepting `domain`'s mail into one maildir, logging each delivery: a
/// customer's primary, or a relay's destination. With `access`, its recipients are checked
/// against the key `access` of that ConfigMap (a Postfix access table: `address 451 …`), so
/// a test refuses mail the way a real server does, and changes its mind by updating the map.
pub fn mailbox_yaml(name: &str, domain: &str, access: Option<&str>) -> String {
    let mut settings = vec![
        format!("myhostname = {name}.e2e.test"),
        "mydestination =".to_owned(),
        format!("virtual_mailbox_domains = {domain}"),
        "virtual_mailbox_base = /var/mail".to_owned(),
        format!("virtual_mailbox_maps = static:{name}/"),
        "virtual_uid_maps = static:1000".to_owned(),
        "virtual_gid_maps = static:1000".to_owned(),
    ];
    let mut setup = "chown vmail:vmail /var/mail".to_owned();
    let mut volumes = (String::new(), String::new());
    if let Some(config_map) = access {
        settings.push("smtpd_recipient_restrictions = check_recipient_access hash:/etc/postfix/access".to_owned());
        setup.push_str("; ");
        setup.push_str(&synced_tables("/etc/continuity-access", &["access"], false));
        volumes = config_map_volume(config_map, "/etc/continuity-access");
    }
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    postfix_yaml(name, &settings, &setup, (&volumes.0, &volumes.1))
}

/// A ConfigMap `name` holding a Postfix access table (key `access`) of (address, reply).
pub fn access_yaml(name: &str, refusals: &[(&str, &str)]) -> String {
    let mut table = String::new();
    for (address, reply) in refusals {
        table.push_str(&format!("    {address} {reply}\n"));
    }
    // An empty table is still a table: postmap needs the file.
    if table.is_empty() {
        table.push_str("    # nobody is refused\n");
    }
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  access: |\n{table}")
}

/// A provider's gateway `name` relaying `mail` from anyone: by the operator's transport map
/// and journal table (mounted from its ConfigMap, compiled again whenever the kubelet
/// updates the files), or to `relay`.
pub fn gateway_yaml(name: &str, mail: &str, relay: Option<&str>) -> String {
    let mut settings = vec![
        format!("myhostname = {name}.e2e.test"),
        "mydestination =".to_owned(),
        "mynetworks = 0.0.0.0/0".to_owned(),
        format!("relay_domains = {mail}"),
        "smtpd_relay_restrictions = permit_mynetworks, reject".to_owned(),
        // Deferred mail is retried within seconds, as a gateway tuned for failover would.
        "queue_run_delay = 2s".to_owned(),
        "minimal_backoff_time = 2s".to_owned(),
        "maximal_backoff_time = 4s".to_owned(),
        "smtp_connect_timeout = 3s".to_owned(),
    ];
    let (setup, volumes) = match relay {
        Some(relay) => {
            settings.push(format!("relayhost = [{relay}]:25"));
            (String::new(), (String::new(), String::new()))
        }
        None => {
            settings.push("transport_maps = hash:/etc/postfix/transport".to_owned());
            settings.push("recipient_bcc_maps = hash:/etc/postfix/recipient_bcc".to_owned());
            let dir = "/etc/continuity-transport";
            (
                synced_tables(dir, &["transport", "recipient_bcc"], true),
                config_map_volume("continuity-transport", dir),
            )
        }
    };
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    postfix_yaml(name, &settings, &setup, (&volumes.0, &volumes.1))
}

/// Scales Deployment `name` to `replicas`.
pub async fn scale(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scaling a Deployment");
}

/// Waits until domain `name` routes to `target`.
pub async fn route_to(domains: &Api<ContinuityDomain>, name: &str, target: RouteTarget) {
    wait_for(
        &format!("the route of {name} to {target:?}"),
        Duration::from_secs(120),
        || async {
            let domain = domains.get(name).await.ok()?;
            (domain.status?.routing?.target == target).then_some(())
        },
    )
    .await;
}

/// Waits until no pod of `selector` is left (a stopped server no longer takes mail). A pod
/// with a ConfigMap volume has been seen to take over a minute to go on this kubelet.
pub async fn pods_gone(client: &Client, namespace: &str, selector: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    wait_for(
        &format!("the pods of {selector} gone"),
        Duration::from_secs(180),
        || async {
            let list = pods.list(&ListParams::default().labels(selector)).await.ok()?;
            list.items.is_empty().then_some(())
        },
    )
    .await;
}

/// `path` (`/summary`, `/messages?…`) of domain `domain`'s agent, read the way the operator
/// and `kubectl continuity` read it: through the API server's service proxy.
pub async fn agent<T: DeserializeOwned>(client: &Client, namespace: &str, domain: &str, path: &str) -> Option<T> {
    let path = format!("/api/v1/namespaces/{namespace}/services/{domain}-standby-mail:agent/proxy{path}");
    let request = http::Request::get(&path).body(Vec::new()).ok()?;
    let text = client.request_text(request).await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Sends messages through `gateway` to `user` until one's journal copy is in `user`'s
/// archive on the standby (read over IMAP at `imap`): the gateway learns of the user when the
/// kubelet updates its copy of the operator's ConfigMap. Returns that message's Message-ID.
pub async fn journal_copy(gateway: SocketAddr, imap: SocketAddr, user: &str, password: &str, tag: &str) -> String {
    let mut attempt = 0;
    wait_for(
        "a journal copy in the standby's archive",
        Duration::from_secs(180),
        || {
            attempt += 1;
            let id = format!("journal-{attempt}-{tag}@e2e.test");
            async move {
                send(gateway, "sender@e2e.test", user, &id).await.ok()?;
                for _ in 0..20 {
                    if imap_has(imap, user, password, &id).await.unwrap_or(false) {
                        return Some(id);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None
            }
        },
    )
    .await
}

/// The logs of the pods `selector` selects (of `container`, when given), one after the other.
pub async fn logs(client: &Client, namespace: &str, selector: &str, container: Option<&str>) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let params = LogParams {
        container: container.map(str::to_owned),
        ..LogParams::default()
    };
    let mut text = String::new();
    for pod in pods
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        if let Ok(log) = pods.logs(&pod.metadata.name.unwrap_or_default(), &params).await {
            text.push_str(&log);
        }
    }
    text
}

/// How many times Postfix's `log` shows a message holding `marker` delivered (`status=sent`).
pub fn sent_count(log: &str, marker: &str) -> usize {
    let queue_ids: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| line.split(": ").nth(1))
        .collect();
    log.lines()
        .filter(|line| line.contains("status=sent"))
        .filter(|line| queue_ids.iter().any(|id| line.contains(&format!("{id}: to="))))
        .count()
}

/// How Postfix's `log` says the messages whose lines hold `marker` (`message-id=<…>`,
/// `from=<…>`) went: `Some("sent")` once one was delivered, else `Some("deferred")` once one
/// was deferred, else `None`.
pub fn delivery(log: &str, marker: &str) -> Option<&'static str> {
    let queue_ids: Vec<&str> = log
        .lines()
        .filter(|line| line.contains(marker))
        .filter_map(|line| line.split(": ").nth(1))
        .collect();
    let outcomes: Vec<&str> = log
        .lines()
        .filter(|line| queue_ids.iter().any(|id| line.contains(&format!("{id}: to="))))
        .collect();
    if outcomes.iter().any(|line| line.contains("status=sent")) {
        Some("sent")
    } else if outcomes.iter().any(|line| line.contains("status=deferred")) {
        Some("deferred")
    } else {
        None
    }
}
