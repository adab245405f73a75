//! A domain's standby on real pods: the mail StatefulSet (with its claim bound to a hostPath
//! volume), the webmail Deployment and their Services come up from the project's images, and
//! the domain reaches `Armed` by itself, with a primary that really answers SMTP.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::DomainPhase;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::common::{apply_yaml, client, namespace, wait_for};

/// The mail image the chart uses by default, which has Postfix.
const MAIL_IMAGE: &str = "ghcr.io/mailops/continuity-standby-mail:0.1.0";

/// A customer's primary: Postfix answering SMTP on port 25 behind the Service `primary`.
fn primary_yaml() -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: primary
spec:
  selector:
    matchLabels: {{app: primary}}
  template:
    metadata:
      labels: {{app: primary}}
    spec:
      containers:
      - name: postfix
        image: {MAIL_IMAGE}
        imagePullPolicy: Never
        command:
        - /bin/sh
        - -c
        - |
          printf '%s\n' 'compatibility_level = 3.6' 'myhostname = primary.example.test' 'mydestination =' \
            'inet_protocols = ipv4' 'maillog_file = /dev/stdout' 'smtpd_banner = $myhostname ESMTP' >/etc/postfix/main.cf
          exec postfix start-fg
        ports:
        - containerPort: 25
---
apiVersion: v1
kind: Service
metadata:
  name: primary
spec:
  selector: {{app: primary}}
  ports:
  - port: 25
    protocol: TCP
"#
    )
}

fn domain_yaml(namespace: &str, mail: &str) -> String {
    let mut yaml = format!(
        r#"apiVersion: continuity.mailops.io/v1alpha1
kind: ContinuityDomain
metadata:
  name: armed
spec:
  domain: {mail}
  primary:
    host: primary.{namespace}.svc.cluster.local
    port: 25
  healthCheck:
    periodSeconds: 5
"#
    );
    for user in ["alice", "bob"] {
        yaml.push_str(&format!(
            r#"---
apiVersion: v1
kind: Secret
metadata:
  name: {user}-emergency
stringData:
  password: {user}-e2e-password
---
apiVersion: continuity.mailops.io/v1alpha1
kind: ContinuityUser
metadata:
  name: {user}
spec:
  domainRef:
    name: armed
  address: {user}@{mail}
  emergencyPassword:
    name: {user}-emergency
    key: password
"#
        ));
    }
    yaml
}

fn running(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test]
async fn a_domain_with_two_users_comes_up_armed_on_real_pods() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-armed").await;
    let mail = "armed.example.test";
    apply_yaml(&client, &namespace, &primary_yaml()).await;
    apply_yaml(&client, &namespace, &domain_yaml(&namespace, mail)).await;

    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    let armed = wait_for(
        "the domain Armed, its primary probed Ok",
        Duration::from_secs(300),
        || async {
            let domain = domains.get("armed").await.ok()?;
            let status = domain.status.as_ref()?;
            (status.phase == Some(DomainPhase::Armed) && status.primary.as_ref()?.result == "Ok").then_some(domain)
        },
    )
    .await;
    let status = armed.status.expect("status");
    let primary = status.primary.as_ref().map(|p| p.result.as_str());
    assert_eq!(primary, Some("Ok"), "the primary answers SMTP: {:?}", status.primary);
    let users = status.users.expect("users in status");
    assert_eq!(users.covered, 2);
    assert_eq!(users.without_emergency_password, 0);

    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    for component in ["standby-mail", "webmail"] {
        let list = pods
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/component={component}")))
            .await
            .expect("listing pods");
        assert!(list.items.iter().any(running), "a {component} pod runs and is ready");
    }
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, &namespace);
    let claim = claims
        .get("data-armed-standby-mail-0")
        .await
        .expect("the mail volume's claim");
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
}
