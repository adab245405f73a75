//! The standby mail stack: the children the operator builds for it on the control plane, its
//! readiness as the workloads report it, and the configuration it renders, read back from the
//! ConfigMap and Secret and run in Debian's real Postfix and Dovecot.

use std::collections::BTreeMap;
use std::time::Duration;

use continuity_operator::api::domain::DomainPhase;
use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};

use crate::common::*;
use crate::mailstack::{MailStack, deliver, imap_subjects, recipients, rendered, submit, wait_for_subject};
use crate::peers::{Behavior, Peer};

const CONFIG: &str = "d-standby-config";
const PASSWORDS: &str = "d-standby-passwords";

fn secret_yaml(name: &str, pairs: &[(&str, &str)]) -> String {
    let data: String = pairs.iter().map(|(k, v)| format!("  {k}: {v}\n")).collect();
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\ntype: Opaque\nstringData:\n{data}")
}

/// Domain `d` whose users' passwords default to Secret `shared`, with `extra` spec lines.
fn domain_with_passwords(mail: &str, extra: &str) -> String {
    format!(
        "{}  emergencyPasswords:\n    secretRef:\n      name: shared\n{extra}",
        domain_yaml("d", mail)
    )
}

fn user_with_password(name: &str, address: &str, secret: &str) -> String {
    format!(
        "{}  emergencyPassword:\n    name: {secret}\n    key: password\n",
        user_yaml(name, "d", address)
    )
}

/// Fails unless the IMAP server refuses the login (not merely: cannot be reached).
fn assert_login_fails(server: std::net::SocketAddr, user: &str, password: &str) {
    match imap_subjects(server, user, password) {
        Err(refusal) => assert!(refusal.contains("LOGIN FAILED"), "{user}: {refusal}"),
        Ok(subjects) => panic!("{user} logged in with a password that must fail; INBOX: {subjects:?}"),
    }
}

/// Fails if `secret` appears in any ConfigMap, in any Secret but `source`, in the status of
/// any domain or user, in any Event of the namespace or in the operator's log.
async fn assert_nowhere(scene: &Scene, secret: &str, sources: &[&str]) {
    let mut places: Vec<(String, String)> = Vec::new();
    let everything = ListParams::default();
    for map in scene.api::<ConfigMap>().list(&everything).await.expect("ConfigMaps") {
        places.push((
            format!("ConfigMap {}", map.name_any()),
            serde_json::to_string(&map.data).unwrap_or_default(),
        ));
    }
    for found in scene.api::<Secret>().list(&everything).await.expect("Secrets") {
        if !sources.contains(&found.name_any().as_str()) {
            let decoded: Vec<String> = found
                .data
                .iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v.0)))
                .collect();
            places.push((format!("Secret {}", found.name_any()), decoded.join("\n")));
        }
    }
    for domain in scene
        .api::<ContinuityDomain>()
        .list(&everything)
        .await
        .expect("domains")
    {
        places.push((
            format!("status of {}", domain.name_any()),
            serde_json::to_string(&domain.status).unwrap_or_default(),
        ));
    }
    for user in scene.api::<ContinuityUser>().list(&everything).await.expect("users") {
        places.push((
            format!("status of {}", user.name_any()),
            serde_json::to_string(&user.status).unwrap_or_default(),
        ));
    }
    for event in scene.api::<Event>().list(&everything).await.expect("Events") {
        places.push(("an Event".into(), serde_json::to_string(&event).unwrap_or_default()));
    }
    places.push(("the operator's log".into(), scene.operator.log_text()));
    for (place, text) in places {
        assert!(!text.contains(secret), "an emergency password appears in {place}");
    }
}

#[tokio::test]
async fn the_rendered_configuration_serves_covered_users_only_and_picks_up_changes() {
    let scene = Scene::new("mailstack").await;
    let (alice, bob, carol) = (
        format!("alice@{}", scene.mail),
        format!("bob@{}", scene.mail),
        format!("carol@{}", scene.mail),
    );
    let (alice_password, alice_new_password, carol_password) =
        (unique("alice-first"), unique("alice-second"), unique("carol"));
    scene.apply(&secret_yaml("shared", &[("alice", &alice_password)])).await;
    scene.apply(&domain_with_passwords(&scene.mail, "")).await;
    scene.apply(&user_yaml("alice", "d", &alice)).await;
    scene.apply(&user_yaml("bob", "d", &bob)).await;
    let files = rendered(&scene, "d", "alice and bob in the recipient map", |f| {
        recipients(f).contains(&alice) && recipients(f).contains(&bob)
    })
    .await;
    let mut stack = MailStack::start(&files).await;

    // A covered user's mail is accepted and lands in the mailbox she reads over IMAP.
    let (code, transcript) = deliver(stack.smtp, &alice, "for alice");
    assert_eq!(code, 250, "{transcript}\n{}", stack.log("postfix"));
    wait_for_subject(stack.imap, &alice, &alice_password, "for alice").await;
    // Another address of the domain is deferred (the sender retries, and the primary gets it
    // once it is back); another domain is refused: no relaying.
    let (code, transcript) = deliver(stack.smtp, &carol, "for carol");
    assert_eq!(code, 450, "{transcript}");
    let (code, transcript) = deliver(stack.smtp, "someone@elsewhere.example", "relay attempt");
    assert!((500..600).contains(&code), "{transcript}");
    // Logins: a wrong password fails; Bob, without an emergency password, cannot log in, but
    // receives mail.
    assert_login_fails(stack.imap, &alice, "not-her-password");
    assert_login_fails(stack.imap, &bob, "x");
    assert_eq!(deliver(stack.smtp, &bob, "for bob").0, 250);
    // Sending, as the webmail does: authenticated through Dovecot, as oneself only.
    let (code, transcript) = submit(
        stack.submission,
        Some((&alice, &alice_password)),
        &alice,
        &alice,
        "note to self",
    );
    assert_eq!(code, 250, "{transcript}");
    wait_for_subject(stack.imap, &alice, &alice_password, "note to self").await;
    let (code, transcript) = submit(
        stack.submission,
        Some((&alice, &alice_password)),
        &bob,
        &alice,
        "forged",
    );
    assert_eq!(code, 553, "alice may not send as bob: {transcript}");
    let (code, transcript) = submit(stack.submission, None, &alice, "someone@elsewhere.example", "anonymous");
    assert!(
        (500..600).contains(&code),
        "no sending without logging in: {transcript}"
    );
    let domains: Api<ContinuityDomain> = scene.api();
    wait_for("bob counted without a password", Duration::from_secs(30), || async {
        let users = domains.get("d").await.ok()?.status?.users?;
        (users.without_emergency_password_addresses == [bob.clone()]).then_some(())
    })
    .await;
    reach(
        &scene.api::<ContinuityUser>(),
        "bob",
        "Ready",
        "False",
        "EmergencyPasswordMissing",
    )
    .await;

    // Carol is added with a Secret of her own, Alice's password changes. The operator renders
    // new files; the kubelet would swap them into the running pod; Postfix and Dovecot pick
    // them up without a restart.
    scene
        .apply(&secret_yaml("carol-pw", &[("password", &carol_password)]))
        .await;
    scene.apply(&user_with_password("carol", &carol, "carol-pw")).await;
    scene
        .apply(&secret_yaml("shared", &[("alice", &alice_new_password)]))
        .await;
    let old_passwd = files.passwd.clone();
    let files = rendered(&scene, "d", "carol covered and alice's new password hashed", |f| {
        recipients(f).contains(&carol)
            && f.passwd.contains(&carol)
            && f.passwd.lines().find(|l| l.starts_with(&alice)) != old_passwd.lines().find(|l| l.starts_with(&alice))
    })
    .await;
    stack.update(&files);
    let accepted = wait_for("carol's mail to be accepted", Duration::from_secs(30), || async {
        (deliver(stack.smtp, &carol, "for carol, now covered").0 == 250).then_some(())
    });
    accepted.await;
    wait_for_subject(stack.imap, &carol, &carol_password, "for carol, now covered").await;
    wait_for_subject(stack.imap, &alice, &alice_new_password, "for alice").await;
    // The old password no longer works.
    assert_login_fails(stack.imap, &alice, &alice_password);

    for password in [&alice_password, &alice_new_password, &carol_password] {
        assert_nowhere(&scene, password, &["shared", "carol-pw"]).await;
    }
    stack.stop_postfix();
    assert!(!stack.log("postfix").contains(&alice_new_password) && !stack.log("dovecot").contains(&carol_password));
}

#[tokio::test]
async fn mail_accepted_before_a_postfix_restart_is_still_delivered() {
    let scene = Scene::new("queue").await;
    let alice = format!("alice@{}", scene.mail);
    let password = unique("pw");
    scene.apply(&secret_yaml("shared", &[("alice", &password)])).await;
    scene.apply(&domain_with_passwords(&scene.mail, "")).await;
    scene.apply(&user_yaml("alice", "d", &alice)).await;
    let files = rendered(&scene, "d", "alice in the recipient map", |f| {
        recipients(f).contains(&alice)
    })
    .await;
    let mut stack = MailStack::start(&files).await;

    // Dovecot is down: Postfix accepts the message (250) and keeps it in its queue, on the
    // volume.
    stack.stop_dovecot();
    let (code, transcript) = deliver(stack.smtp, &alice, "accepted while dovecot was down");
    assert_eq!(code, 250, "{transcript}");
    wait_for("the message deferred in the queue", Duration::from_secs(30), || async {
        stack.log("postfix").contains("status=deferred").then_some(())
    })
    .await;
    stack.stop_postfix();
    assert_eq!(
        stack.queued(),
        1,
        "the queue on the volume holds the message while Postfix is down"
    );

    stack.start_postfix().await;
    stack.start_dovecot().await;
    // Postfix retries deferred mail on its own within a minute; flushing asks it to now.
    stack.flush();
    wait_for_subject(stack.imap, &alice, &password, "accepted while dovecot was down").await;
    assert_eq!(stack.queued(), 0);
}

/// Every child of domain `d` present now (kind/name: resourceVersion, generation), each
/// checked to be controlled by the domain.
async fn present_children(scene: &Scene) -> BTreeMap<String, (String, Option<i64>)> {
    let mut found = BTreeMap::new();
    let mut add = |kind: &str, meta: Option<&kube::api::ObjectMeta>| {
        if let Some(meta) = meta {
            let owned = meta
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "ContinuityDomain" && o.name == "d" && o.controller == Some(true));
            assert!(owned, "{kind} {:?} has the domain as controller", meta.name);
            found.insert(
                format!("{kind}/{}", meta.name.clone().unwrap_or_default()),
                (meta.resource_version.clone().unwrap_or_default(), meta.generation),
            );
        }
    };
    let maps = scene.api::<ConfigMap>();
    for name in ["d-coverage", CONFIG, "d-webmail-config"] {
        add(
            "ConfigMap",
            maps.get_opt(name).await.expect("get").as_ref().map(Resource::meta),
        );
    }
    let secret = scene.api::<Secret>().get_opt(PASSWORDS).await.expect("get");
    add("Secret", secret.as_ref().map(Resource::meta));
    let services = scene.api::<Service>();
    for name in ["d-standby-mail", "d-webmail", "d-next-hop"] {
        add(
            "Service",
            services.get_opt(name).await.expect("get").as_ref().map(Resource::meta),
        );
    }
    let policies = scene.api::<NetworkPolicy>();
    for name in ["d-standby-mail", "d-webmail"] {
        add(
            "NetworkPolicy",
            policies.get_opt(name).await.expect("get").as_ref().map(Resource::meta),
        );
    }
    let set = scene.api::<StatefulSet>().get_opt("d-standby-mail").await.expect("get");
    add("StatefulSet", set.as_ref().map(Resource::meta));
    let deployment = scene.api::<Deployment>().get_opt("d-webmail").await.expect("get");
    add("Deployment", deployment.as_ref().map(Resource::meta));
    let ingress = scene.api::<Ingress>().get_opt("d-webmail").await.expect("get");
    add("Ingress", ingress.as_ref().map(Resource::meta));
    found
}

/// Every child of domain `d`, once all exist (the Ingress only with a webmail host).
async fn standby_children(scene: &Scene, with_ingress: bool) -> BTreeMap<String, (String, Option<i64>)> {
    let expected = if with_ingress { 12 } else { 11 };
    wait_for("the standby's children", Duration::from_secs(30), || async {
        let found = present_children(scene).await;
        (found.len() == expected).then_some(found)
    })
    .await
}

const WEBMAIL: &str =
    "  webmail:\n    host: webmail.example.test\n    ingressClassName: nginx\n    tlsSecretName: webmail-tls\n";

#[tokio::test]
async fn the_standby_children_are_owned_and_collected_with_the_domain() {
    let scene = Scene::new("standby-gc").await;
    scene.apply(&domain_with_passwords(&scene.mail, WEBMAIL)).await;
    scene
        .apply(&user_yaml("alice", "d", &format!("alice@{}", scene.mail)))
        .await;
    // Each child is checked to have the domain as its controller.
    standby_children(&scene, true).await;
    let ingress = scene.api::<Ingress>().get("d-webmail").await.expect("Ingress");
    let tls = ingress.spec.and_then(|s| s.tls).expect("TLS");
    assert_eq!(tls[0].secret_name.as_deref(), Some("webmail-tls"));

    // The claim on the mail volume is the StatefulSet controller's, not ours: mail is not
    // deleted with the domain.
    let claim = "data-d-standby-mail-0";
    let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = scene.api();
    wait_for("the mail volume's claim", Duration::from_secs(30), || async {
        claims.get_opt(claim).await.ok().flatten()
    })
    .await;

    scene
        .api::<ContinuityDomain>()
        .delete("d", &DeleteParams::background())
        .await
        .expect("deleting the domain");
    // kube-controller-manager's garbage collector removes every child.
    wait_for(
        "the garbage collector to delete every child",
        Duration::from_secs(60),
        || async { present_children(&scene).await.is_empty().then_some(()) },
    )
    .await;
    assert!(
        claims.get_opt(claim).await.expect("get").is_some(),
        "the mail volume outlives the domain"
    );
}

/// Domain `d` with a webmail host whose primary is a healthy SMTP peer, so that routing
/// stays where it is.
async fn healthy_domain(scene: &Scene) -> Peer {
    let primary = Peer::start(Behavior::Smtp(None)).await;
    let health = format!(
        "host: localhost\n    port: {}\n  healthCheck:\n    periodSeconds: 1\n    timeoutSeconds: 1\n    successThreshold: 1",
        primary.port
    );
    let domain = domain_with_passwords(&scene.mail, WEBMAIL).replace(&format!("host: mx.{}", scene.mail), &health);
    scene.apply(&domain).await;
    primary
}

#[tokio::test]
async fn standby_ready_follows_the_workloads_and_arms_the_domain() {
    let scene = Scene::new("armed").await;
    scene.apply(&secret_yaml("shared", &[("alice", &unique("pw"))])).await;
    let _primary = healthy_domain(&scene).await;
    scene
        .apply(&user_yaml("alice", "d", &format!("alice@{}", scene.mail)))
        .await;
    let (domains, users): (Api<ContinuityDomain>, Api<ContinuityUser>) = (scene.api(), scene.api());
    reach(&domains, "d", "PrimaryReachable", "True", "Reachable").await;
    let waiting = reach(&domains, "d", "StandbyReady", "False", "MailPodNotReady").await;
    assert_eq!(waiting.status.and_then(|s| s.phase), Some(DomainPhase::Provisioning));
    reach(&users, "alice", "Ready", "False", "StandbyNotReady").await;

    // The kubelet reports the pods ready; the StatefulSet and ReplicaSet controllers count
    // them; an ingress controller gives the Ingress an address.
    assert_eq!(set_pods_ready(&scene, "standby-mail", true).await, 1);
    set_pods_ready(&scene, "webmail", true).await;
    let pending = reach(&domains, "d", "StandbyReady", "False", "IngressPending").await;
    let (_, _, message) = condition(&pending.status.expect("status").conditions, "StandbyReady").expect("condition");
    assert!(message.contains("no ingress controller of nginx"), "{message}");
    let address = serde_json::json!({ "status": { "loadBalancer": { "ingress": [{ "ip": "192.0.2.80" }] } } });
    scene
        .api::<Ingress>()
        .patch_status("d-webmail", &PatchParams::default(), &Patch::Merge(&address))
        .await
        .expect("setting the Ingress address");
    let armed = reach(&domains, "d", "Ready", "True", "Armed").await;
    let status = armed.status.expect("status");
    assert_eq!(status.phase, Some(DomainPhase::Armed));
    let (_, reason, message) = condition(&status.conditions, "StandbyReady").expect("StandbyReady");
    assert_eq!(reason, "Provisioned");
    assert!(message.contains("192.0.2.80"), "{message}");
    reach(&users, "alice", "Ready", "True", "Provisioned").await;

    // The mail pod fails its readiness probe: the domain is no longer armed.
    set_pods_ready(&scene, "standby-mail", false).await;
    let unready = reach(&domains, "d", "StandbyReady", "False", "MailPodNotReady").await;
    assert_eq!(unready.status.and_then(|s| s.phase), Some(DomainPhase::Provisioning));
    reach(&domains, "d", "Ready", "False", "StandbyNotReady").await;
}

/// The children whose content changed between two snapshots: workloads by generation (their
/// status is written by others), everything else by resourceVersion.
fn changed(
    before: &BTreeMap<String, (String, Option<i64>)>,
    after: &BTreeMap<String, (String, Option<i64>)>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(name, (version, generation))| {
            let (old_version, old_generation) = &before[*name];
            if generation.is_some() {
                generation != old_generation
            } else {
                version != old_version
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[tokio::test]
async fn a_spec_change_rewrites_exactly_the_children_it_affects() {
    // The Postfix image change below is one the provider allows.
    let scene = Scene::with_flags("affected", &["--allowed-image-prefixes=registry.example/"]).await;
    scene
        .apply(&secret_yaml("shared", &[("alice", "x-1"), ("bob", "x-2")]))
        .await;
    let _primary = healthy_domain(&scene).await;
    scene
        .apply(&user_yaml("alice", "d", &format!("alice@{}", scene.mail)))
        .await;
    scene.coverage_lists("d", &[format!("alice@{}", scene.mail)]).await;
    reach(
        &scene.api::<ContinuityDomain>(),
        "d",
        "PrimaryReachable",
        "True",
        "Reachable",
    )
    .await;
    let mut before = standby_children(&scene, true).await;
    let domains: Api<ContinuityDomain> = scene.api();

    let changes: [(&str, serde_json::Value, &[&str]); 3] = [
        (
            "two webmail pods",
            serde_json::json!({ "spec": { "standby": { "webmail": { "replicas": 2 } } } }),
            &["Deployment/d-webmail"],
        ),
        (
            "another Postfix image",
            serde_json::json!({ "spec": { "standby": { "mail": { "postfixImage": "registry.example/postfix:3" } } } }),
            &["StatefulSet/d-standby-mail"],
        ),
        (
            "a shorter archive",
            serde_json::json!({ "spec": { "archive": { "retentionDays": 30 } } }),
            &["ConfigMap/d-standby-config"],
        ),
    ];
    for (what, patch, expected) in changes {
        domains
            .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("patching the domain");
        // Status is written after every child of the reconcile that saw the new generation.
        wait_for(what, Duration::from_secs(30), || async {
            let domain = domains.get("d").await.ok()?;
            let generation = domain.metadata.generation;
            (domain.status?.observed_generation == generation).then_some(())
        })
        .await;
        let after = standby_children(&scene, true).await;
        assert_eq!(changed(&before, &after), expected, "{what}");
        before = after;
    }

    // A new user: the recipient map, the passwords and the coverage list; no workload.
    scene
        .apply(&user_yaml("bob", "d", &format!("bob@{}", scene.mail)))
        .await;
    scene
        .coverage_lists("d", &[format!("alice@{}", scene.mail), format!("bob@{}", scene.mail)])
        .await;
    // Status counts bob once every child of that reconcile is written.
    wait_for("two covered users in status", Duration::from_secs(30), || async {
        (domains.get("d").await.ok()?.status?.users?.covered == 2).then_some(())
    })
    .await;
    let after = standby_children(&scene, true).await;
    assert_eq!(
        changed(&before, &after),
        [
            "ConfigMap/d-coverage",
            "ConfigMap/d-standby-config",
            "Secret/d-standby-passwords"
        ]
    );
}

#[tokio::test]
async fn removing_the_webmail_host_removes_the_ingress_but_never_anothers() {
    let scene = Scene::new("unexposed").await;
    scene.apply(&domain_with_passwords(&scene.mail, WEBMAIL)).await;
    let ingresses: Api<Ingress> = scene.api();
    wait_for("the webmail Ingress", Duration::from_secs(30), || async {
        ingresses.get_opt("d-webmail").await.ok().flatten()
    })
    .await;
    let remove = serde_json::json!({ "spec": { "webmail": null } });
    scene
        .api::<ContinuityDomain>()
        .patch("d", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .expect("removing the webmail host");
    wait_for("the Ingress to be deleted", Duration::from_secs(30), || async {
        matches!(ingresses.get_opt("d-webmail").await, Ok(None)).then_some(())
    })
    .await;

    // An Ingress of that name the operator did not make is not its to delete, even one that
    // carries the operator's label (and so is in its cache: only the owner check spares it).
    let foreign = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: d-webmail\n  labels:\n    app.kubernetes.io/managed-by: continuity-operator\nspec:\n  defaultBackend:\n    service:\n      name: elsewhere\n      port:\n        number: 80\n";
    scene.apply(foreign).await;
    for round in 0..2 {
        let reconciles = scene.operator.metric_sum("continuity_reconciliations_total").await;
        let touch = serde_json::json!({ "metadata": { "labels": { "touched": round.to_string() } } });
        scene
            .api::<ContinuityDomain>()
            .patch("d", &PatchParams::default(), &Patch::Merge(&touch))
            .await
            .expect("touching the domain");
        wait_for("another reconcile", Duration::from_secs(30), || async {
            (scene.operator.metric_sum("continuity_reconciliations_total").await > reconciles).then_some(())
        })
        .await;
    }
    assert!(
        ingresses.get_opt("d-webmail").await.expect("get").is_some(),
        "the foreign Ingress stays"
    );
}
