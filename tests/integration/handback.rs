//! Hold and hand back with the real things: the standby's rendered configuration in Debian's
//! Postfix and Dovecot with the `continuity-agent` binary beside them (as in the mail pod),
//! and a real Postfix as the customer's primary. The agent is told where to deliver by its
//! settings file, as the kubelet updates it from the ConfigMap; the primary's refusals come
//! from its own `check_recipient_access` table, not from a mock.

use std::collections::BTreeMap;
use std::time::Duration;

use continuity_operator::handback::addresses;
use continuity_operator::handback::settings::{Destination, HandBackSettings};
use continuity_operator::handback::tracking::Summary;
use continuity_operator::standby::{self, Account, MailSettings, passwords};

use crate::common::wait_for;
use crate::mailstack::{Files, MailStack, deliver, wait_for_subject};
use crate::postfix::{Postfix, Role};

const PASSWORD: &str = "correct horse";

fn files(handback: &HandBackSettings) -> Files {
    let hash = passwords::hash(PASSWORD, &passwords::salt("uid-1", "alice@example.com")).expect("hashing");
    let accounts = [
        Account {
            address: "alice@example.com".into(),
            password_hash: Some(hash),
        },
        Account {
            address: "bob@example.com".into(),
            password_hash: None,
        },
    ];
    let settings = MailSettings {
        domain: "example.com",
        hostname: "standby.example.com",
        relay_host: None,
        retention_days: 90,
        accounts: &accounts,
        handback,
    };
    Files {
        config: standby::config_files(&settings),
        passwd: standby::passwd_file(&settings),
    }
}

fn holding() -> HandBackSettings {
    HandBackSettings {
        deliver_to: None,
        messages_per_second: 200,
        retry_seconds: 1,
        helo_name: "standby.example.com".into(),
    }
}

fn delivering_to(primary: &Postfix, messages_per_second: u32) -> HandBackSettings {
    HandBackSettings {
        deliver_to: Some(Destination {
            host: "127.0.0.1".into(),
            port: primary.port,
        }),
        messages_per_second,
        ..holding()
    }
}

async fn stack(handback: &HandBackSettings) -> MailStack {
    let stack = MailStack::start(&files(handback)).await;
    // The rendered file names the primary by the address the test gives; the stack rewrites
    // loopback addresses to its own, so the file is written again as is.
    stack.set_handback(handback);
    stack
}

async fn summary_where(stack: &MailStack, what: &str, check: impl Fn(&Summary) -> bool) -> Summary {
    wait_for(what, Duration::from_secs(90), || async {
        stack.handback_summary().await.filter(|s| check(s))
    })
    .await
}

/// How often each subject arrived at the primary.
fn subjects_at(primary: &Postfix) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for message in primary.delivered() {
        let subject = message
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_owned();
        *counts.entry(subject).or_default() += 1;
    }
    counts
}

fn send(stack: &MailStack, to: &str, subject: &str) {
    let (code, transcript) = deliver(stack.smtp, to, subject);
    assert_eq!(code, 250, "{transcript}");
}

#[tokio::test]
async fn held_mail_reaches_the_primary_once_refusals_fail_deferrals_retry_and_journal_copies_stay() {
    let primary = Postfix::start("primary", Role::Mailbox { domain: "example.com" }).await;
    let stack = stack(&holding()).await;

    // The archive: a journal copy is filed for its user and never held for the primary.
    send(&stack, &addresses::journal("alice@example.com"), "journal-1");
    wait_for_subject(stack.imap, "alice@example.com", PASSWORD, "journal-1").await;
    // A journal address whose user is not covered is deferred, never filed.
    let (code, transcript) = deliver(stack.smtp, &addresses::journal("mallory@example.com"), "journal-x");
    assert_eq!(code, 450, "{transcript}");

    // An outage: mail for both users is accepted, filed, and held.
    for i in 0..30 {
        let to = if i % 2 == 0 {
            "alice@example.com"
        } else {
            "bob@example.com"
        };
        send(&stack, to, &format!("held-{i}"));
    }
    wait_for_subject(stack.imap, "alice@example.com", PASSWORD, "held-28").await;
    let held = summary_where(&stack, "30 messages held", |s| s.counts.held == 30).await;
    assert_eq!((held.counts.pending, held.counts.delivered), (30, 0), "{held:?}");
    assert_eq!(held.delivering_to, None);
    assert!(
        primary.delivered().is_empty(),
        "nothing goes while routing points at the standby"
    );

    // Failback to a primary that refuses bob for good and defers everyone else for a while.
    primary.set_recipient_access("bob@example.com 550 5.1.1 no such user\nexample.com 451 4.3.0 try again later\n");
    stack.set_handback(&delivering_to(&primary, 200));
    let refused = summary_where(&stack, "bob's 15 messages failed", |s| s.counts.failed == 15).await;
    assert_eq!(refused.counts.delivered, 0, "deferred, not delivered: {refused:?}");
    assert!(refused.delivering_to.is_some());
    primary.set_recipient_access("bob@example.com 550 5.1.1 no such user\n");
    let done = summary_where(&stack, "nothing pending", |s| s.counts.pending == 0).await;
    assert_eq!((done.counts.delivered, done.counts.failed), (15, 15), "{done:?}");

    // Exactly once at the primary; the journal copy never.
    let expected: BTreeMap<String, usize> = (0..30).step_by(2).map(|i| (format!("held-{i}"), 1)).collect();
    assert_eq!(subjects_at(&primary), expected, "{}", stack.log("agent"));

    // Tracking names each failure with the primary's reply.
    let failed = stack.handback_messages("state=Failed").await.expect("/messages");
    assert_eq!(failed.total, 15);
    assert!(
        failed
            .items
            .iter()
            .all(|m| m.recipient == "bob@example.com" && m.reply.as_deref().is_some_and(|r| r.contains("550"))),
        "{failed:?}"
    );
    let alice = stack
        .handback_messages("state=Delivered&recipient=alice@example.com")
        .await
        .expect("/messages");
    assert_eq!(alice.total, 15);
    assert!(
        alice
            .items
            .iter()
            .all(|m| m.message_id.is_some() && m.settled_at.is_some())
    );
}

#[tokio::test]
async fn an_agent_killed_mid_hand_back_loses_nothing_and_repeats_only_the_send_it_interrupted() {
    let primary = Postfix::start("primary", Role::Mailbox { domain: "example.com" }).await;
    let mut stack = stack(&holding()).await;
    const MESSAGES: usize = 120;
    for i in 0..MESSAGES {
        send(&stack, "alice@example.com", &format!("m-{i}"));
    }
    summary_where(&stack, "every message held", |s| s.counts.held == MESSAGES as u64).await;

    stack.set_handback(&delivering_to(&primary, 40));
    summary_where(&stack, "a third handed back", |s| {
        s.counts.delivered >= (MESSAGES / 3) as u64
    })
    .await;
    stack.kill_agent();
    stack.start_agent().await;
    let done = summary_where(&stack, "nothing pending after the restart", |s| s.counts.pending == 0).await;
    assert_eq!(done.counts.delivered, MESSAGES as u64, "{done:?}");

    // No gap: every message arrived. A second copy is possible only of a message whose send
    // the kill interrupted (SMTP cannot say whether the primary kept it, RFC 1047): at most
    // one, and the ledger names it.
    let arrived = wait_for("the primary to file every message", Duration::from_secs(30), || async {
        let arrived = subjects_at(&primary);
        (arrived.len() >= MESSAGES).then_some(arrived)
    })
    .await;
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("m-{i}")).collect();
    assert_eq!(
        arrived.keys().cloned().collect::<std::collections::BTreeSet<_>>(),
        expected.iter().cloned().collect()
    );
    let interrupted: Vec<_> = stack
        .handback_messages("state=Delivered")
        .await
        .expect("/messages")
        .items
        .into_iter()
        .filter(|m| m.interrupted > 0)
        .collect();
    assert!(
        interrupted.len() <= 1,
        "one kill interrupts one send at most: {interrupted:?}"
    );
    let twice: Vec<&String> = arrived.iter().filter(|(_, n)| **n > 1).map(|(s, _)| s).collect();
    assert!(
        twice.len() <= interrupted.len(),
        "repeated without an interrupted send: {twice:?}"
    );
    assert!(arrived.values().all(|n| *n <= 2), "{arrived:?}");
}
