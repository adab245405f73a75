//! `AllUsers` domains whose users come from a real OpenLDAP directory ([`crate::slapd`]):
//! coverage is the directory's addresses of the domain (aliases too) minus `exclude`, and a
//! real Postfix running the rendered configuration accepts exactly those; a directory that
//! stops answering keeps coverage (also across an operator restart) and says so once; a
//! changed entry reaches the recipient map; LDAPS and StartTLS with a private CA; a hung
//! directory costs a read its timeout; a refused bind is reported without the password.

use std::time::Duration;

use continuity_operator::api::ContinuityDomain;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;

use crate::common::*;
use crate::mailstack::{MailStack, deliver, recipients, rendered, wait_for_subject};
use crate::slapd::{READER_DN, READER_PASSWORD, SUFFIX, Slapd, ldif, person};

const PEOPLE: usize = 300;

fn bind_secret_yaml(password: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ldap-bind\nstringData:\n  bindDN: \"{READER_DN}\"\n  password: \"{password}\"\n"
    )
}

/// An `AllUsers` domain `d` reading `url`; `ldap_extra` is more of `users.directory.ldap`
/// (YAML indented by eight).
fn directory_domain(mail: &str, url: &str, ldap_extra: &str, exclude: &[&str]) -> String {
    let exclude: String = exclude.iter().map(|a| format!("\n    - {a}")).collect();
    format!(
        "{}  users:\n    scope: AllUsers\n    directory:\n      ldap:\n        url: {url}\n        bindSecretRef:\n          name: ldap-bind\n        baseDN: ou=people,{SUFFIX}\n        aliasAttribute: mailLocalAddress\n        resyncPeriodSeconds: 10\n        timeoutSeconds: 5\n{ldap_extra}    exclude:{}\n",
        domain_yaml("d", mail),
        if exclude.is_empty() { " []".to_owned() } else { exclude }
    )
}

/// `PEOPLE` people of `mail` (`u000@…`), the first with an alias of the domain and one of
/// another, `bob+news@…` and `o'brien@…`, and ten people of another domain.
fn directory_of(mail: &str) -> String {
    let mut entries = String::new();
    for i in 0..PEOPLE {
        let uid = format!("u{i:03}");
        let aliases: Vec<String> = match i {
            0 => vec![format!("first@{mail}"), "u000@elsewhere.example.org".into()],
            _ => vec![],
        };
        let aliases: Vec<&str> = aliases.iter().map(String::as_str).collect();
        entries.push_str(&person(&uid, &format!("{uid}@{mail}"), &aliases));
    }
    entries.push_str(&person("bobnews", &format!("bob+news@{mail}"), &[]));
    entries.push_str(&person("obrien", &format!("o'brien@{mail}"), &[]));
    for i in 0..10 {
        entries.push_str(&person(&format!("o{i}"), &format!("o{i}@elsewhere.example.org"), &[]));
    }
    ldif(&entries)
}

async fn directory_condition(domains: &Api<ContinuityDomain>) -> Option<(String, String, String)> {
    let domain = domains.get("d").await.ok()?;
    condition(&domain.status?.conditions, "DirectoryReachable")
}

/// Waits for `DirectoryReachable` with `status` and `reason` whose message holds `part`.
async fn directory_says(domains: &Api<ContinuityDomain>, status: &str, reason: &str, part: &str) -> String {
    wait_for(
        &format!("DirectoryReachable={status} ({reason}) saying {part:?}"),
        Duration::from_secs(60),
        || async {
            let (s, r, message) = directory_condition(domains).await?;
            (s == status && r == reason && message.contains(part)).then_some(message)
        },
    )
    .await
}

#[tokio::test]
async fn an_ldap_directory_decides_who_is_covered_and_a_failing_one_shrinks_nothing() {
    let mut scene = Scene::new("ldap").await;
    let mail = scene.mail.clone();
    let mut slapd = Slapd::start(&directory_of(&mail)).await;
    scene.apply(&bind_secret_yaml(READER_PASSWORD)).await;
    // Emergency passwords for three of them, in the domain's shared Secret, keyed by local
    // part (`bob+news` and `o'brien` encoded as the README says).
    scene
        .apply("apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared\nstringData:\n  u000: u000-emergency\n  bobX2Bnews: bob-emergency\n  oX27brien: obrien-emergency\n")
        .await;
    let excluded = format!("u002@{mail}");
    let passwords = "  emergencyPasswords:\n    secretRef:\n      name: shared\n";
    scene
        .apply(&(directory_domain(&mail, &slapd.url(false), "", &[&excluded]) + passwords))
        .await;

    // Coverage: every address of the domain the directory lists, the alias too, minus the
    // excluded one; nobody of the other domain.
    let mut expected: Vec<String> = (0..PEOPLE).map(|i| format!("u{i:03}@{mail}")).collect();
    expected.push(format!("first@{mail}"));
    expected.push(format!("bob+news@{mail}"));
    expected.push(format!("o'brien@{mail}"));
    expected.retain(|a| *a != excluded);
    expected.sort();
    scene.coverage_lists("d", &expected).await;
    let domains: Api<ContinuityDomain> = scene.api();
    directory_says(&domains, "True", "DirectoryRead", &slapd.ip.to_string()).await;
    // Everyone else has no emergency password: counted, the first 50 named.
    let users = domains
        .get("d")
        .await
        .expect("the domain")
        .status
        .and_then(|s| s.users)
        .expect("users in status");
    assert_eq!(users.covered, expected.len() as u32);
    assert_eq!(users.without_emergency_password, expected.len() as u32 - 3);
    assert_eq!(users.without_emergency_password_addresses.len(), 50);

    // The rendered recipient map in a real Postfix accepts exactly those.
    let files = rendered(&scene, "d", "the directory's users in the recipient map", |f| {
        recipients(f).contains(&format!("first@{mail}"))
    })
    .await;
    let stack = MailStack::start(&files).await;
    // The directory users with a password log in to the mailbox (real Dovecot).
    for (user, password) in [
        (format!("u000@{mail}"), "u000-emergency"),
        (format!("bob+news@{mail}"), "bob-emergency"),
        (format!("o'brien@{mail}"), "obrien-emergency"),
    ] {
        let (code, transcript) = deliver(stack.smtp, &user, "for a directory user");
        assert_eq!(code, 250, "{transcript}");
        wait_for_subject(stack.imap, &user, password, "for a directory user").await;
    }
    for (address, wanted) in [
        (format!("u000@{mail}"), 250),
        (format!("first@{mail}"), 250),
        (format!("u299@{mail}"), 250),
        (excluded.clone(), 450),
        (format!("nobody@{mail}"), 450),
    ] {
        let (code, transcript) = deliver(stack.smtp, &address, "from the directory");
        assert_eq!(code, wanted, "{address}: {transcript}");
    }
    let (code, transcript) = deliver(stack.smtp, "o1@elsewhere.example.org", "another domain");
    assert!((500..600).contains(&code), "{transcript}");
    drop(stack);

    // The directory stops: coverage stays, the condition says why.
    slapd.stop().await;
    let message = directory_says(
        &domains,
        "False",
        "DirectoryUnreachable",
        "coverage stays as the directory last listed it",
    )
    .await;
    assert!(
        message.contains(&format!("({} addresses covered)", expected.len())),
        "{message}"
    );
    scene.coverage_lists("d", &expected).await;

    // A restarted operator, the directory still down: coverage stays, and so does status.
    // (Two failed reads by the new operator: the first one's reconcile is done by then.)
    let before_restart = domains.get("d").await.expect("the domain");
    scene.operator.kill().await;
    scene.operator = Operator::start(OperatorOptions::scoped(&scene.namespace));
    wait_for(
        "two failed reads after the restart",
        Duration::from_secs(60),
        || async {
            let failed = scene
                .operator
                .metric("continuity_directory_reads_total{result=\"Connect\"}")
                .await;
            (failed >= 2.0).then_some(())
        },
    )
    .await;
    scene.coverage_lists("d", &expected).await;
    let after_restart = domains.get("d").await.expect("the domain");
    assert_eq!(
        after_restart.status.as_ref().map(|s| &s.conditions),
        before_restart.status.as_ref().map(|s| &s.conditions),
        "a restart while the directory is down changes nothing"
    );

    // Back: the condition clears; an entry added meanwhile reaches the recipient map.
    slapd.resume().await;
    directory_says(&domains, "True", "DirectoryRead", "answered").await;
    slapd.add(&person("newcomer", &format!("newcomer@{mail}"), &[])).await;
    let mut grown = expected.clone();
    grown.push(format!("newcomer@{mail}"));
    grown.sort();
    scene.coverage_lists("d", &grown).await;
    rendered(&scene, "d", "the newcomer in the recipient map", |f| {
        recipients(f).contains(&format!("newcomer@{mail}"))
    })
    .await;

    // The outage was announced once, by one Warning Event.
    let events: Api<Event> = scene.api();
    let unreachable: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .expect("listing Events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("DirectoryUnreachable"))
        .collect();
    assert_eq!(unreachable.len(), 1, "{unreachable:?}");
    assert_eq!(unreachable[0].type_.as_deref(), Some("Warning"));
}

#[tokio::test]
async fn ldaps_and_starttls_with_a_private_ca_and_a_refused_bind_that_leaks_nothing() {
    let scene = Scene::new("ldaps").await;
    let mail = scene.mail.clone();
    let slapd = Slapd::start(&directory_of(&mail)).await;
    scene.apply(&bind_secret_yaml(READER_PASSWORD)).await;
    let ca: String = slapd.ca.ca_pem.lines().map(|l| format!("            {l}\n")).collect();
    let domains: Api<ContinuityDomain> = scene.api();

    // LDAPS, the certificate checked against the domain's CA bundle.
    let ldaps = format!("        tls:\n          mode: LDAPS\n          caBundle: |\n{ca}");
    scene
        .apply(&directory_domain(&mail, &slapd.url(true), &ldaps, &[]))
        .await;
    directory_says(&domains, "True", "DirectoryRead", &format!("{}:636", slapd.ip)).await;
    let covered = PEOPLE + 3;
    wait_for("the directory's users covered", Duration::from_secs(30), || async {
        let users = domains.get("d").await.ok()?.status?.users?;
        (users.covered == covered as u32).then_some(())
    })
    .await;

    // StartTLS on the plain port.
    let starttls = format!("        tls:\n          mode: StartTLS\n          caBundle: |\n{ca}");
    scene
        .apply(&directory_domain(&mail, &slapd.url(false), &starttls, &[]))
        .await;
    directory_says(&domains, "True", "DirectoryRead", &format!("{}:389", slapd.ip)).await;

    // A hung directory (it accepts and never answers) costs a read its timeout, no more.
    slapd.signal("STOP");
    directory_says(
        &domains,
        "False",
        "DirectoryUnreachable",
        "did not answer within the timeout",
    )
    .await;
    slapd.signal("CONT");
    directory_says(&domains, "True", "DirectoryRead", &format!("{}:389", slapd.ip)).await;

    // Without the CA bundle the certificate is not trusted: the directory counts as
    // unreachable, coverage stays.
    let untrusted = "        tls:\n          mode: StartTLS\n";
    scene
        .apply(&directory_domain(&mail, &slapd.url(false), untrusted, &[]))
        .await;
    let message = directory_says(&domains, "False", "DirectoryUnreachable", "certificate").await;
    assert!(message.contains(&format!("({covered} addresses covered)")), "{message}");

    // A wrong password: the bind is refused, and the password appears nowhere.
    let wrong = "not-the-reader-password-8128";
    scene.apply(&bind_secret_yaml(wrong)).await;
    scene
        .apply(&directory_domain(&mail, &slapd.url(false), &starttls, &[]))
        .await;
    let message = directory_says(&domains, "False", "DirectoryBindFailed", "invalidCredentials").await;
    assert!(message.contains(READER_DN), "names who bound: {message}");
    let domain = serde_json::to_string(&domains.get("d").await.expect("the domain")).expect("JSON");
    let events = serde_json::to_string(
        &scene
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("Events")
            .items,
    )
    .expect("JSON");
    for (place, text) in [
        ("status", domain),
        ("Events", events),
        ("the operator's log", scene.operator.log_text()),
    ] {
        assert!(!text.contains(wrong), "the bind password in {place}");
        assert!(!text.contains(READER_PASSWORD), "the old bind password in {place}");
    }
}
