//! The webmail as a user meets it: headless Chromium (Debian's) logs in to the standby's
//! Roundcube through its Service with the emergency password, opens a message, and replies;
//! the reply leaves through the domain's relay (a Postfix pod) and arrives there.

use std::process::Command;
use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use kube::Api;

use crate::common::{apply_yaml, client, namespace, reach, wait_for};
use crate::mail::{imap_has, send, service};
use crate::world::{delivery, domain_yaml, logs, mailbox_yaml};

const PASSWORD: &str = "alice-webmail-password";

#[tokio::test]
async fn a_user_reads_and_replies_in_the_webmail_through_the_relay() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-web").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    // The relay the standby sends through: it takes e2e.test's mail.
    apply_yaml(&client, &namespace, &mailbox_yaml("relay", "e2e.test", None)).await;
    let spec = format!(
        "  primary:\n    host: mx.{mail}\n  standby:\n    mail:\n      relayHost: \"[relay.{namespace}.svc.cluster.local]:25\"\n"
    );
    apply_yaml(
        &client,
        &namespace,
        &domain_yaml("web", &mail, &spec, &[("alice", PASSWORD)]),
    )
    .await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    reach(&domains, "web", "StandbyReady", "True", "Provisioned").await;

    let subject_id = format!("web-{namespace}@e2e.test");
    let smtp = service(&client, &namespace, "web-standby-mail", 25).await;
    let imap = service(&client, &namespace, "web-standby-mail", 143).await;
    // Ready pods are behind their Service once kube-proxy has caught up: until then, retry.
    wait_for("the standby taking the mail", Duration::from_secs(60), || async {
        send(smtp, "sender@e2e.test", &alice, &subject_id).await.ok()
    })
    .await;
    wait_for("the message in alice's mailbox", Duration::from_secs(120), || async {
        imap_has(imap, &alice, PASSWORD, &subject_id).await.ok()?.then_some(())
    })
    .await;

    let webmail = service(&client, &namespace, "web-webmail", 80).await;
    wait_for("the webmail Service answering", Duration::from_secs(60), || async {
        tokio::net::TcpStream::connect(webmail).await.ok()
    })
    .await;
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
        let log = logs(&client, &namespace, "app=relay", None).await;
        (delivery(&log, &format!("from=<{alice}>")) == Some("sent")).then_some(())
    })
    .await;
}
