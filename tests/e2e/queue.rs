//! Mail that got a 250 survives the mail pod: with Dovecot stopped, a message accepted by the
//! standby's Postfix waits in its queue on the volume; the pod is deleted, the StatefulSet
//! brings it back on the same claim, and the message is delivered and read over IMAP.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::DeleteParams;
use kube::{Api, Client};

use crate::common::{apply_yaml, client, namespace, reach, wait_for};
use crate::mail::{imap_has, send, service};
use crate::node::exec;
use crate::world::{delivery, domain_yaml, logs};

const PASSWORD: &str = "alice-queue-password";
const POD: &str = "queued-standby-mail-0";

/// What the mail pod's Postfix logged of `message_id`: deferred, sent, or nothing yet.
async fn postfix_saw(client: &Client, namespace: &str, message_id: &str) -> Option<&'static str> {
    let log = logs(
        client,
        namespace,
        &format!("statefulset.kubernetes.io/pod-name={POD}"),
        Some("postfix"),
    )
    .await;
    delivery(&log, &format!("message-id=<{message_id}>"))
}

#[tokio::test]
async fn a_queued_message_survives_the_mail_pod_and_is_delivered() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-queue").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    let spec = format!("  primary:\n    host: mx.{mail}\n");
    apply_yaml(
        &client,
        &namespace,
        &domain_yaml("queued", &mail, &spec, &[("alice", PASSWORD)]),
    )
    .await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    reach(&domains, "queued", "StandbyReady", "True", "Provisioned").await;
    let smtp = service(&client, &namespace, "queued-standby-mail", 25).await;
    let imap = service(&client, &namespace, "queued-standby-mail", 143).await;

    // Dovecot stops; a message is accepted meanwhile and waits in Postfix's queue. (Should
    // Dovecot come back before Postfix hands the message over, it is delivered at once: then
    // the next message tries again.)
    let mut attempt = 0;
    let queued = wait_for(
        "a message deferred while Dovecot is stopped",
        Duration::from_secs(180),
        || {
            attempt += 1;
            let (client, namespace, alice) = (&client, &namespace, &alice);
            async move {
                let id = format!("queued-{attempt}-{namespace}@e2e.test");
                exec(
                    namespace,
                    POD,
                    "dovecot",
                    &["doveadm", "-c", "/etc/continuity/dovecot/dovecot.conf", "stop"],
                );
                send(smtp, "sender@e2e.test", alice, &id).await.ok()?;
                for _ in 0..20 {
                    match postfix_saw(client, namespace, &id).await {
                        Some("deferred") => return Some(id),
                        Some(_) => return None,
                        None => tokio::time::sleep(Duration::from_millis(250)).await,
                    }
                }
                None
            }
        },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let old_uid = pods.get(POD).await.expect("the mail pod").metadata.uid;
    pods.delete(POD, &DeleteParams::default())
        .await
        .expect("deleting the mail pod");
    wait_for("the mail pod back, a new one", Duration::from_secs(120), || async {
        let pod = pods.get(POD).await.ok()?;
        (pod.metadata.uid != old_uid
            && pod
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"))
        .then_some(())
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let claim = claims.get("data-queued-standby-mail-0").await.expect("the claim");
    assert_eq!(claim.status.and_then(|s| s.phase).as_deref(), Some("Bound"));
    // Postfix retries deferred mail after its backoff (a minute).
    wait_for(
        &format!("{queued} delivered after the restart"),
        Duration::from_secs(240),
        || async { imap_has(imap, &alice, PASSWORD, &queued).await.ok()?.then_some(()) },
    )
    .await;
}
