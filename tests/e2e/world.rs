//! What the scenarios build and read: ContinuityDomains with their users, Postfix pods (from
//! the project's mail image) playing the customers' primaries, the provider's gateways and
//! relays, and what Postfix logged about a message.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};

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

/// A mail server `name` accepting `domain`'s mail into one maildir, logging each delivery: a
/// customer's primary, or a relay's destination.
pub fn mailbox_yaml(name: &str, domain: &str) -> String {
    postfix_yaml(
        name,
        &[
            &format!("myhostname = {name}.e2e.test"),
            "mydestination =",
            &format!("virtual_mailbox_domains = {domain}"),
            "virtual_mailbox_base = /var/mail",
            &format!("virtual_mailbox_maps = static:{name}/"),
            "virtual_uid_maps = static:1000",
            "virtual_gid_maps = static:1000",
        ],
        "chown vmail:vmail /var/mail",
        ("", ""),
    )
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
