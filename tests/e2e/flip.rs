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
use continuity_operator::handback::ledger::State;
use continuity_operator::handback::tracking::MessageList;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::DeleteParams;
use kube::{Api, Client};

use crate::common::{apply_yaml, client, namespace, unique, wait_for};
use crate::mail::{imap_has, rcpt_code, send, service};
use crate::world::{
    agent, delivery, domain_yaml, gateway_yaml, journal_copy, logs, mailbox_yaml, pods_gone, route_to, scale,
    sent_count,
};

const OPERATOR_NAMESPACE: &str = "continuity-system";
const PASSWORD: &str = "alice-flip-password";

/// Whether the primary's log shows `message_id` delivered to its maildir.
async fn delivered_at_primary(client: &Client, namespace: &str, message_id: &str) -> bool {
    let log = logs(client, namespace, "app=primary", None).await;
    delivery(&log, &format!("message-id=<{message_id}>")) == Some("sent")
}

#[tokio::test]
async fn mail_follows_the_flip_to_the_standby_and_back() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-flip").await;
    let mail = format!("{namespace}.example.test");
    let alice = format!("alice@{mail}");
    apply_yaml(&client, &namespace, &mailbox_yaml("primary", &mail, None)).await;
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
    let journaled = journal_copy(gateways[0], imap, &alice, PASSWORD, &namespace).await;

    // The primary dies; messages sent at once land in the standby once the route flipped.
    // (Sent once its pod is gone: a terminating primary still accepts mail, and keeps it.)
    scale(&client, &namespace, "primary", 0).await;
    let died = Instant::now();
    pods_gone(&client, &namespace, "app=primary").await;
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
    route_to(&domains, "flip", RouteTarget::Standby).await;
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
    scale(&client, &namespace, "primary", 1).await;
    route_to(&domains, "flip", RouteTarget::Primary).await;
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
    // At least the relaying gateway's message was held (the map-following one may not have
    // been, see below), and nothing is left pending.
    let settled = wait_for("the hand-back counted in status", Duration::from_secs(120), || async {
        let status = domains.get("flip").await.ok()?.status?;
        let messages = status.messages.clone()?;
        (messages.pending == 0 && messages.delivered >= 1 && status.phase == Some(DomainPhase::Armed))
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
    let tracked: MessageList = agent(&client, &namespace, "flip", "/messages")
        .await
        .expect("the agent's tracking through the service proxy");
    let tracked_as = |id: &str| {
        let id = format!("<{id}>");
        tracked
            .items
            .iter()
            .find(|m| m.message_id.as_ref() == Some(&id))
            .map(|m| m.state)
    };
    // The relaying gateway's message waited in its queue for the flipped next hop: the
    // standby held it. The map-following gateway's may have gone the other way: accepted
    // before the gateway's copy of the map changed, it was journaled to the archive (so
    // readable at once) and waited in the gateway's queue, for the primary. Then the agent
    // never held it; either way the primary has it once (above).
    let [by_map_message, by_dns_message] = [&during[0], &during[1]];
    assert_eq!(
        tracked_as(by_dns_message),
        Some(State::Delivered),
        "{by_dns_message} tracked: {tracked:?}"
    );
    assert!(
        matches!(tracked_as(by_map_message), None | Some(State::Delivered)),
        "{by_map_message} tracked: {tracked:?}"
    );
    assert_eq!(
        tracked_as(&journaled),
        None,
        "the journal copy is never held for the primary: {tracked:?}"
    );
    println!("figure: hand-back after the failback: {settled:?}");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    for gateway in [&by_map, &by_dns] {
        let _ = deployments.delete(gateway, &DeleteParams::default()).await;
    }
}
