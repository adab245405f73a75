//! Mail through the flip, end to end: a customer's primary (a Postfix pod), and the provider's
//! gateways in the operator's namespace (Postfix pods: one following the operator's transport
//! map, mounted from its ConfigMap; one relaying to the domain's next-hop Service name through
//! the cluster DNS). Mail sent to the gateways lands in the primary; the primary stops, the
//! route flips, and the next messages land in the standby's Dovecot, read over IMAP with the
//! emergency password; an uncovered address is deferred with a 4xx; the primary comes back and
//! the route returns to it, and the mail the standby held is handed back to it, once each.
//! While the primary serves, the map-following gateway also sends journal copies (its
//! `recipient_bcc_maps` from the same ConfigMap) that fill the standby's archive.

use std::time::{Duration, Instant};

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::{DomainPhase, RouteTarget};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};

use crate::common::{apply_yaml, client, namespace, unique, wait_for};
use crate::mail::{imap_has, rcpt_code, send, service};
use crate::world::{delivery, domain_yaml, logs, mailbox_yaml, postfix_yaml, sent_count};

const OPERATOR_NAMESPACE: &str = "continuity-system";
const PASSWORD: &str = "alice-flip-password";

/// A gateway relaying `mail` from anyone: by the operator's transport map (mounted from its
/// ConfigMap, compiled again whenever the kubelet updates the file), or to `relay`.
fn gateway_yaml(name: &str, mail: &str, relay: Option<&str>) -> String {
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
            (String::new(), ("", ""))
        }
        None => {
            settings.push("transport_maps = hash:/etc/postfix/transport".to_owned());
            settings.push("recipient_bcc_maps = hash:/etc/postfix/recipient_bcc".to_owned());
            // Both tables, as the README tells a provider: copied and compiled on every change.
            let setup =
                "sync() { for t in transport recipient_bcc; do cmp -s /etc/continuity-transport/$t /etc/postfix/$t || \
                { cp /etc/continuity-transport/$t /etc/postfix/$t; postmap /etc/postfix/$t; }; done; }; sync; \
                (while sleep 1; do sync; done) &"
                    .to_owned();
            (
                setup,
                (
                    "      volumes:\n      - name: transport\n        configMap:\n          name: continuity-transport\n",
                    "        volumeMounts:\n        - name: transport\n          mountPath: /etc/continuity-transport\n",
                ),
            )
        }
    };
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    postfix_yaml(name, &settings, &setup, volumes)
}

/// Whether the primary's log shows `message_id` delivered to its maildir.
async fn delivered_at_primary(client: &Client, namespace: &str, message_id: &str) -> bool {
    let log = logs(client, namespace, "app=primary", None).await;
    delivery(&log, &format!("message-id=<{message_id}>")) == Some("sent")
}

async fn route(domains: &Api<ContinuityDomain>, target: RouteTarget) {
    wait_for(
        &format!("the route to {target:?}"),
        Duration::from_secs(120),
        || async {
            let domain = domains.get("flip").await.ok()?;
            (domain.status?.routing?.target == target).then_some(())
        },
    )
    .await;
}

async fn scale_primary(client: &Client, namespace: &str, replicas: i32) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({ "spec": { "replicas": replicas } });
    deployments
        .patch("primary", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scaling the primary");
}

#[tokio::test]
async fn mail_follows_the_flip_to_the_standby_and_back() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-flip").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    apply_yaml(&client, &namespace, &mailbox_yaml("primary", &mail)).await;
    let spec = format!(
        "  primary:\n    host: primary.{namespace}.svc.cluster.local\n    port: 25\n  healthCheck:\n    periodSeconds: 2\n    timeoutSeconds: 1\n    failureThreshold: 2\n    successThreshold: 2\n    minFlipIntervalSeconds: 10\n"
    );
    apply_yaml(
        &client,
        &namespace,
        &domain_yaml("flip", &mail, &spec, &[("alice", PASSWORD)]),
    )
    .await;
    let by_map = unique("gw-map");
    let by_dns = unique("gw-dns");
    let next_hop = format!("flip-next-hop.{namespace}.svc.cluster.local");
    apply_yaml(&client, OPERATOR_NAMESPACE, &gateway_yaml(&by_map, &mail, None)).await;
    apply_yaml(
        &client,
        OPERATOR_NAMESPACE,
        &gateway_yaml(&by_dns, &mail, Some(&next_hop)),
    )
    .await;
    let gateways = [
        service(&client, OPERATOR_NAMESPACE, &by_map, 25).await,
        service(&client, OPERATOR_NAMESPACE, &by_dns, 25).await,
    ];

    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    wait_for("the domain Armed", Duration::from_secs(300), || async {
        let status = domains.get("flip").await.ok()?.status?;
        (status.phase == Some(continuity_operator::api::domain::DomainPhase::Armed)).then_some(())
    })
    .await;

    // Before: through either gateway, mail lands in the primary.
    for (i, gateway) in gateways.iter().enumerate() {
        let id = format!("before-{i}-{namespace}@e2e.test");
        wait_for("a gateway taking mail", Duration::from_secs(120), || async {
            send(*gateway, "sender@e2e.test", &alice, &id).await.ok()
        })
        .await;
        wait_for(&format!("{id} at the primary"), Duration::from_secs(120), || async {
            delivered_at_primary(&client, &namespace, &id).await.then_some(())
        })
        .await;
    }

    // The archive: while the primary serves, a journal copy of alice's mail reaches the standby
    // (sent again until one does: the gateway learns of alice when the kubelet updates its
    // copy of the ConfigMap).
    let imap = service(&client, &namespace, "flip-standby-mail", 143).await;
    let mut attempt = 0;
    let journaled = wait_for(
        "a journal copy in the standby's archive",
        Duration::from_secs(180),
        || {
            attempt += 1;
            let id = format!("journal-{attempt}-{namespace}@e2e.test");
            let (alice, gateway) = (&alice, gateways[0]);
            async move {
                send(gateway, "sender@e2e.test", alice, &id).await.ok()?;
                for _ in 0..20 {
                    if imap_has(imap, alice, PASSWORD, &id).await.unwrap_or(false) {
                        return Some(id);
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None
            }
        },
    )
    .await;

    // The primary dies; messages sent at once land in the standby once the route flipped.
    // (Sent once its pod is gone: a terminating primary still accepts mail, and keeps it.)
    scale_primary(&client, &namespace, 0).await;
    let died = Instant::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    wait_for("the primary pod gone", Duration::from_secs(60), || async {
        let list = pods.list(&ListParams::default().labels("app=primary")).await.ok()?;
        list.items.is_empty().then_some(())
    })
    .await;
    println!(
        "figure: the primary's pod gone {:.1}s after it was stopped",
        died.elapsed().as_secs_f64()
    );
    let during: Vec<String> = (0..2).map(|i| format!("during-{i}-{namespace}@e2e.test")).collect();
    for (gateway, id) in gateways.iter().zip(&during) {
        send(*gateway, "sender@e2e.test", &alice, id)
            .await
            .expect("the gateway queues the mail");
    }
    route(&domains, RouteTarget::Standby).await;
    println!(
        "figure: the route flipped {:.1}s after the primary was stopped",
        died.elapsed().as_secs_f64()
    );
    for id in &during {
        wait_for(
            &format!("{id} in the standby's mailbox"),
            Duration::from_secs(180),
            || async { imap_has(imap, &alice, PASSWORD, id).await.ok()?.then_some(()) },
        )
        .await;
        println!(
            "figure: {id} readable on the standby {:.1}s after the primary was stopped",
            died.elapsed().as_secs_f64()
        );
    }
    let smtp = service(&client, &namespace, "flip-standby-mail", 25).await;
    let uncovered = wait_for("the standby answering", Duration::from_secs(60), || async {
        rcpt_code(smtp, &format!("carol@{mail}")).await.ok()
    })
    .await;
    assert!(
        (400..500).contains(&uncovered),
        "an uncovered address is deferred: {uncovered}"
    );

    // The primary comes back: the route returns, and so does the mail. A message sent while
    // the gateways still learn of it may reach the standby (held mail, as during the outage):
    // a new one is sent until one lands in the primary.
    scale_primary(&client, &namespace, 1).await;
    route(&domains, RouteTarget::Primary).await;
    let mut attempt = 0;
    wait_for(
        "mail sent after the failback at the primary",
        Duration::from_secs(120),
        || {
            attempt += 1;
            let id = format!("after-{attempt}-{namespace}@e2e.test");
            let (client, namespace, alice, gateway) = (&client, &namespace, &alice, gateways[1]);
            async move {
                send(gateway, "sender@e2e.test", alice, &id).await.ok()?;
                for _ in 0..20 {
                    if delivered_at_primary(client, namespace, &id).await {
                        return Some(());
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None
            }
        },
    )
    .await;

    // What the standby held reaches the primary, once each; the journal copy never comes
    // back (the primary has it once, from the gateway); status counts it.
    for id in &during {
        wait_for(
            &format!("{id} handed back to the primary"),
            Duration::from_secs(180),
            || async { delivered_at_primary(&client, &namespace, id).await.then_some(()) },
        )
        .await;
    }
    let settled = wait_for("the hand-back counted in status", Duration::from_secs(120), || async {
        let status = domains.get("flip").await.ok()?.status?;
        let messages = status.messages.clone()?;
        (messages.pending == 0 && messages.delivered >= 2 && status.phase == Some(DomainPhase::Armed))
            .then_some(messages)
    })
    .await;
    // (The log is the restarted primary pod's: it got only what was handed back.)
    let log = logs(&client, &namespace, "app=primary", None).await;
    for id in &during {
        assert_eq!(
            sent_count(&log, &format!("message-id=<{id}>")),
            1,
            "{id} at the primary:\n{log}"
        );
    }
    let path = format!("/api/v1/namespaces/{namespace}/services/flip-standby-mail:agent/proxy/messages");
    let tracked = client
        .request_text(http::Request::get(&path).body(Vec::new()).expect("request"))
        .await
        .expect("the agent's tracking through the service proxy");
    let delivered: continuity_operator::handback::tracking::MessageList =
        serde_json::from_str(&tracked).expect("the agent's message list");
    for id in &during {
        let entry = delivered
            .items
            .iter()
            .find(|m| m.message_id.as_deref() == Some(&format!("<{id}>")));
        assert!(
            entry.is_some_and(|m| m.state == continuity_operator::handback::ledger::State::Delivered),
            "{id} tracked as delivered: {tracked}"
        );
    }
    assert!(
        !tracked.contains(&journaled),
        "the journal copy is never held for the primary: {tracked}"
    );
    println!("figure: hand-back after the failback: {settled:?}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for gateway in [&by_map, &by_dns] {
        let _ = deployments.delete(gateway, &DeleteParams::default()).await;
    }
}
