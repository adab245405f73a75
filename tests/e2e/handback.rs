//! Held mail handed back at volume, on the real node: the primary (a Postfix pod) stops, 200
//! messages for three covered users reach the standby through the provider's gateway, the
//! user moves, reads and deletes some of them in the webmail's mailbox over IMAP; the primary
//! comes back and the standby's agent hands every one back, while the test kills the agent
//! with SIGKILL halfway, the primary answers one user 451 until the test lifts it, and
//! refuses another with 550. The primary's maildir is read at the end: every deliverable
//! message exactly once (Message-ID and body hash compared), none of the refused user's,
//! none of the journal copies the archive got while the primary served.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::{DomainPhase, RouteTarget};
use continuity_operator::handback::ledger::State;
use continuity_operator::handback::tracking::{MessageList, Summary};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use kube::{Api, Client};
use sha2::{Digest, Sha256};

use crate::common::{apply_yaml, client, namespace, unique, wait_for};
use crate::mail::{imap_session, search_hits, send_message, service};
use crate::node::{exec, kill_container, pod_name};
use crate::world::{
    access_yaml, agent, domain_yaml, gateway_yaml, journal_copy, mailbox_yaml, pods_gone, route_to, scale,
};

const OPERATOR_NAMESPACE: &str = "continuity-system";
const DOMAIN: &str = "held";
const MESSAGES: usize = 200;
/// Messages 0..190 are alice's, 190..195 bob's (451 for a while), 195..200 dave's (550).
const ALICE: usize = 190;
const BOB: usize = 195;
const PASSWORD: &str = "alice-handback-password";
const END: &str = "--continuity-e2e-end--";

/// A message the test sends.
struct Sent {
    recipient: String,
    id: String,
    body: String,
}

/// The SHA-256 of a message body, line ends and trailing white space aside (Postfix files
/// with LF what arrived with CRLF).
fn body_hash(body: &str) -> String {
    let normalized = body.replace("\r\n", "\n");
    format!("{:x}", Sha256::digest(normalized.trim_end().as_bytes()))
}

/// The messages in the primary's maildir: Message-ID -> the body hash of each copy.
fn primary_maildir(namespace: &str, pod: &str) -> BTreeMap<String, Vec<String>> {
    let script = format!(
        "for f in /var/mail/primary/new/* /var/mail/primary/cur/*; do [ -f \"$f\" ] && cat \"$f\" && echo {END}; done; true"
    );
    let dump = exec(namespace, pod, "postfix", &["sh", "-c", &script]);
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for message in dump.split(&format!("{END}\n")).filter(|m| !m.trim().is_empty()) {
        let (headers, body) = message.split_once("\n\n").unwrap_or((message, ""));
        let id = headers
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("message-id").then(|| value.trim().to_owned())
            })
            .unwrap_or_else(|| panic!("a message without Message-ID at the primary:\n{message}"));
        found.entry(id).or_default().push(body_hash(body));
    }
    found
}

async fn summary_where(client: &Client, namespace: &str, what: &str, check: impl Fn(&Summary) -> bool) -> Summary {
    wait_for(what, Duration::from_secs(240), || async {
        agent::<Summary>(client, namespace, DOMAIN, "/summary")
            .await
            .filter(|s| check(s))
    })
    .await
}

async fn tracked(client: &Client, namespace: &str, query: &str) -> Option<MessageList> {
    agent(client, namespace, DOMAIN, &format!("/messages?{query}")).await
}

#[tokio::test]
async fn two_hundred_held_messages_reach_the_primary_once_each() {
    let client = client().await;
    let namespace = namespace(&client, "e2e-handback").await;
    let mail = format!("{namespace}.example.test");
    let [alice, bob, dave] = ["alice", "bob", "dave"].map(|user| format!("{user}@{mail}"));
    let busy = "451 4.2.1 bob's mailbox is busy";
    apply_yaml(
        &client,
        &namespace,
        &access_yaml("primary-access", &[(&bob, busy), (&dave, "550 5.1.1 dave has left")]),
    )
    .await;
    apply_yaml(
        &client,
        &namespace,
        &mailbox_yaml("primary", &mail, Some("primary-access")),
    )
    .await;
    let spec = format!(
        "  primary:\n    host: primary.{namespace}.svc.cluster.local\n    port: 25\n  healthCheck:\n    periodSeconds: 2\n    timeoutSeconds: 1\n    failureThreshold: 2\n    successThreshold: 2\n    minFlipIntervalSeconds: 10\n  handBack:\n    messagesPerSecond: 10\n    retrySeconds: 2\n"
    );
    let users = [
        ("alice", PASSWORD),
        ("bob", "bob-handback-password"),
        ("dave", "dave-handback-password"),
    ];
    apply_yaml(&client, &namespace, &domain_yaml(DOMAIN, &mail, &spec, &users)).await;
    let gateway_name = unique("gw-handback");
    apply_yaml(&client, OPERATOR_NAMESPACE, &gateway_yaml(&gateway_name, &mail, None)).await;
    let gateway = service(&client, OPERATOR_NAMESPACE, &gateway_name, 25).await;
    let imap = service(&client, &namespace, &format!("{DOMAIN}-standby-mail"), 143).await;
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    wait_for("the domain Armed", Duration::from_secs(300), || async {
        let status = domains.get(DOMAIN).await.ok()?.status?;
        (status.phase == Some(DomainPhase::Armed)).then_some(())
    })
    .await;
    let journaled = format!("<{}>", journal_copy(gateway, imap, &alice, PASSWORD, &namespace).await);

    // The outage: once the gateway's copy of the map names the standby (and no longer
    // journals alice's mail), 200 messages through it.
    scale(&client, &namespace, "primary", 0).await;
    pods_gone(&client, &namespace, "app=primary").await;
    route_to(&domains, DOMAIN, RouteTarget::Standby).await;
    let gateway_pod = pod_name(&client, OPERATOR_NAMESPACE, &format!("app={gateway_name}")).await;
    let lookup = format!(
        "postmap -q {mail} hash:/etc/postfix/transport; postmap -q {alice} hash:/etc/postfix/recipient_bcc; true"
    );
    wait_for(
        "the gateway routing to the standby",
        Duration::from_secs(180),
        || async {
            let answer = exec(OPERATOR_NAMESPACE, &gateway_pod, "postfix", &["sh", "-c", &lookup]);
            (answer.contains("standby-mail") && !answer.contains("journal")).then_some(())
        },
    )
    .await;
    let sent: Vec<Sent> = (0..MESSAGES)
        .map(|i| {
            let recipient = match i {
                i if i < ALICE => alice.clone(),
                i if i < BOB => bob.clone(),
                _ => dave.clone(),
            };
            Sent {
                id: format!("held-{i}-{namespace}@e2e.test"),
                body: format!("Message {i} of {MESSAGES} for {recipient}, held while the primary is down."),
                recipient,
            }
        })
        .collect();
    for message in &sent {
        send_message(
            gateway,
            "sender@e2e.test",
            &message.recipient,
            &message.id,
            &message.body,
        )
        .await
        .unwrap_or_else(|e| panic!("the gateway takes {}: {e}", message.id));
    }
    summary_where(&client, &namespace, "all 200 held by the agent", |s| {
        s.counts.held == MESSAGES as u64
    })
    .await;

    // alice files 40 in a folder of her own, reads 20, deletes 30 from her inbox and 10 from
    // the folder: none of that changes what the primary gets.
    wait_for("alice's mail in her inbox", Duration::from_secs(120), || async {
        let search = format!("SEARCH HEADER Message-ID \"-{namespace}@e2e.test\" HEADER Message-ID \"held-\"");
        let answers = imap_session(imap, &alice, PASSWORD, &["SELECT INBOX", &search])
            .await
            .ok()?;
        (search_hits(answers.last()?).len() == ALICE).then_some(())
    })
    .await;
    let answers = imap_session(
        imap,
        &alice,
        PASSWORD,
        &[
            "CREATE Projects",
            "SELECT INBOX",
            "SEARCH ALL",
            "MOVE 1:40 Projects",
            "STORE 1:20 +FLAGS.SILENT (\\Seen)",
            "STORE 21:50 +FLAGS.SILENT (\\Deleted)",
            "EXPUNGE",
            "SEARCH ALL",
            "SELECT Projects",
            "STORE 1:10 +FLAGS.SILENT (\\Deleted)",
            "EXPUNGE",
            "SEARCH ALL",
        ],
    )
    .await
    .expect("moving and deleting over IMAP");
    let inbox = search_hits(&answers[2]).len();
    assert_eq!(
        search_hits(&answers[7]).len(),
        inbox - 70,
        "the inbox after the moves and deletions"
    );
    assert_eq!(search_hits(&answers[11]).len(), 30, "the folder after its deletions");

    // The primary comes back: the hand-back starts; the agent is killed in the middle of it.
    scale(&client, &namespace, "primary", 1).await;
    route_to(&domains, DOMAIN, RouteTarget::Primary).await;
    let started = Instant::now();
    let before_kill = summary_where(&client, &namespace, "the hand-back under way", |s| {
        s.counts.delivered >= 30
    })
    .await;
    let mail_pod = format!("{DOMAIN}-standby-mail-0");
    let restarts = kill_container(&client, &namespace, &mail_pod, "agent").await;
    assert!(
        before_kill.counts.delivered < ALICE as u64,
        "the agent was killed in the middle of the hand-back: {before_kill:?}"
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    wait_for("the agent restarted", Duration::from_secs(120), || async {
        let pod = pods.get(&mail_pod).await.ok()?;
        let agent = pod
            .status?
            .container_statuses?
            .into_iter()
            .find(|c| c.name == "agent")?;
        (agent.restart_count > restarts && agent.ready).then_some(())
    })
    .await;

    // bob's primary mailbox stays busy: his messages are retried, the phase stays FailingBack.
    let bob_waits = format!("recipient={bob}");
    wait_for("bob's messages retried after 451", Duration::from_secs(180), || async {
        let list = tracked(&client, &namespace, &bob_waits).await?;
        (list.total == BOB - ALICE
            && list.items.iter().all(|m| {
                m.state == State::Deferred && m.attempts >= 2 && m.reply.as_deref().is_some_and(|r| r.contains("451"))
            }))
        .then_some(())
    })
    .await;
    wait_for(
        "the phase FailingBack while bob's mail waits",
        Duration::from_secs(60),
        || async {
            let status = domains.get(DOMAIN).await.ok()?.status?;
            (status.phase == Some(DomainPhase::FailingBack) && status.messages?.pending > 0).then_some(())
        },
    )
    .await;
    apply_yaml(
        &client,
        &namespace,
        &access_yaml("primary-access", &[(&dave, "550 5.1.1 dave has left")]),
    )
    .await;
    let done = summary_where(&client, &namespace, "nothing pending", |s| s.counts.pending == 0).await;
    println!(
        "figure: {} messages handed back, {} failed, {:.1}s after the failback (10 per second, one SIGKILL, 451 until the primary's map changed)",
        done.counts.delivered,
        done.counts.failed,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(done.counts.delivered, BOB as u64, "{done:?}");
    assert_eq!(done.counts.failed, (MESSAGES - BOB) as u64, "{done:?}");

    // dave's are Failed with the primary's reply; the domain is Armed again, status counts it.
    let failed = tracked(&client, &namespace, &format!("recipient={dave}&state=Failed"))
        .await
        .expect("dave's messages");
    assert_eq!(failed.total, MESSAGES - BOB, "{failed:?}");
    assert!(
        failed
            .items
            .iter()
            .all(|m| m.reply.as_deref().is_some_and(|r| r.contains("550"))),
        "{failed:?}"
    );
    let settled = wait_for("the domain Armed, counted", Duration::from_secs(120), || async {
        let status = domains.get(DOMAIN).await.ok()?.status?;
        let messages = status.messages?;
        (status.phase == Some(DomainPhase::Armed)
            && messages.pending == 0
            && messages.delivered == BOB as u64
            && messages.failed == (MESSAGES - BOB) as u64)
            .then_some(messages)
    })
    .await;
    println!("figure: status after the hand-back: {settled:?}");

    // At the primary: each deliverable message once, whole; a second copy only of a send the
    // kill interrupted (SMTP cannot tell whether the primary kept it, RFC 1047), named so in
    // the ledger; nothing of dave's; no journal copy.
    let delivered = tracked(&client, &namespace, &format!("state=Delivered&limit={MESSAGES}"))
        .await
        .expect("the delivered entries");
    let interrupted: Vec<&str> = delivered
        .items
        .iter()
        .filter(|m| m.interrupted > 0)
        .filter_map(|m| m.message_id.as_deref())
        .collect();
    assert!(
        interrupted.len() <= 1,
        "one kill interrupts one send at most: {interrupted:?}"
    );
    let primary = pod_name(&client, &namespace, "app=primary").await;
    let arrived = wait_for("the primary to file every message", Duration::from_secs(60), || async {
        let arrived = primary_maildir(&namespace, &primary);
        (sent[..BOB].iter().all(|m| arrived.contains_key(&format!("<{}>", m.id)))).then_some(arrived)
    })
    .await;
    for message in &sent {
        let id = format!("<{}>", message.id);
        let copies = arrived.get(&id).map(Vec::as_slice).unwrap_or_default();
        if message.recipient == dave {
            assert!(copies.is_empty(), "{id} was refused, yet arrived");
            continue;
        }
        let allowed = if interrupted.contains(&id.as_str()) { 2 } else { 1 };
        assert!(
            (1..=allowed).contains(&copies.len()),
            "{id} at the primary {} times",
            copies.len()
        );
        assert!(
            copies.iter().all(|hash| *hash == body_hash(&message.body)),
            "{id} arrived altered"
        );
    }
    assert!(!arrived.contains_key(&journaled), "the journal copy was handed back");
    assert_eq!(
        arrived.len(),
        BOB,
        "only the handed-back messages: {:?}",
        arrived.keys().collect::<Vec<_>>()
    );
    println!(
        "figure: at the primary {} of {BOB} messages, {} repeated after the kill",
        arrived.len(),
        arrived.values().filter(|copies| copies.len() > 1).count()
    );

    let deployments: Api<Deployment> = Api::namespaced(client, OPERATOR_NAMESPACE);
    let _ = deployments.delete(&gateway_name, &DeleteParams::default()).await;
}
