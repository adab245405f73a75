//! The webmail as a user meets it: headless Chromium (Debian's) logs in to the standby's
//! Roundcube through its Service with the emergency password, opens a message, and replies;
//! the reply leaves through the domain's relay (a Postfix pod) and arrives there.

use std::process::Command;
use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client};

use crate::common::{apply_yaml, client, namespace, reach, wait_for};
use crate::flip::postfix_yaml;
use crate::mail::{imap_has, send, service};

const PASSWORD: &str = "alice-webmail-password";

fn domain_yaml(namespace: &str, mail: &str) -> String {
    format!(
        r#"apiVersion: continuity.mailops.io/v1alpha1
kind: ContinuityDomain
metadata:
  name: web
spec:
  domain: {mail}
  primary:
    host: mx.{mail}
  standby:
    mail:
      relayHost: "[relay.{namespace}.svc.cluster.local]:25"
---
apiVersion: v1
kind: Secret
metadata:
  name: alice-emergency
stringData:
  password: {PASSWORD}
---
apiVersion: continuity.mailops.io/v1alpha1
kind: ContinuityUser
metadata:
  name: alice
spec:
  domainRef:
    name: web
  address: alice@{mail}
  emergencyPassword:
    name: alice-emergency
    key: password
"#
    )
}

/// The relay the standby sends through: accepts mail for e2e.test into a maildir.
fn relay_yaml() -> String {
    postfix_yaml(
        "relay",
        &[
            "myhostname = relay.e2e.test",
            "mydestination =",
            "mynetworks = 0.0.0.0/0",
            "virtual_mailbox_domains = e2e.test",
            "virtual_mailbox_base = /var/mail",
            "virtual_mailbox_maps = static:relay/",
            "virtual_uid_maps = static:1000",
            "virtual_gid_maps = static:1000",
        ],
        "chown vmail:vmail /var/mail",
        ("", ""),
    )
}

/// Whether the relay's log shows mail from `sender` delivered to its maildir.
async fn relay_delivered_from(client: &Client, namespace: &str, sender: &str) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels("app=relay")).await else {
        return false;
    };
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        let Ok(log) = pods.logs(&name, &LogParams::default()).await else {
            continue;
        };
        let queue_ids: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(&format!("from=<{sender}>")))
            .filter_map(|line| line.split(": ").nth(1))
            .collect();
        if log
            .lines()
            .any(|line| line.contains("status=sent") && queue_ids.iter().any(|id| line.contains(&format!("{id}: to="))))
        {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn a_user_reads_and_replies_in_the_webmail_through_the_relay() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-web").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    apply_yaml(&client, &namespace, &relay_yaml()).await;
    apply_yaml(&client, &namespace, &domain_yaml(&namespace, &mail)).await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    reach(&domains, "web", "StandbyReady", "True", "Provisioned").await;

    let subject_id = format!("web-{namespace}@e2e.test");
    let smtp = service(&client, &namespace, "web-standby-mail", 25).await;
    let imap = service(&client, &namespace, "web-standby-mail", 143).await;
    send(smtp, "sender@e2e.test", &alice, &subject_id)
        .await
        .expect("the standby takes the mail");
    wait_for("the message in alice's mailbox", Duration::from_secs(120), || async {
        imap_has(imap, &alice, PASSWORD, &subject_id).await.ok()?.then_some(())
    })
    .await;

    let webmail = service(&client, &namespace, "web-webmail", 80).await;
    let screenshots =
        std::env::var("CONTINUITY_E2E_ARTIFACTS").unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let output = Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/webmail.cjs"))
        .args([
            &format!("http://{webmail}/"),
            &alice,
            PASSWORD,
            "continuity e2e",
            &screenshots,
        ])
        .output()
        .expect("running node (NODE_PATH must name playwright-core, as hack/e2e.sh sets it)");
    assert!(
        output.status.success(),
        "the browser session failed (screenshots in {screenshots}): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    wait_for("the reply delivered by the relay", Duration::from_secs(120), || async {
        relay_delivered_from(&client, &namespace, &alice).await.then_some(())
    })
    .await;
}
