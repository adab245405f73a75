//! ContinuityUser conditions: every reason a user is not covered, recovery when the cause goes
//! away, domains following their users' moves, and the confirmed switch to `AllUsers`.

use std::time::Duration;

use continuity_operator::api::domain::UserScope;
use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};

use crate::common::*;

#[tokio::test]
async fn user_conditions_tell_why_a_user_is_or_is_not_covered() {
    let scene = Scene::new("users").await;
    let (users, domains): (Api<ContinuityUser>, Api<ContinuityDomain>) = (scene.api(), scene.api());
    let mail = &scene.mail;
    let static_mail = mail_domain("all-users");

    let early = apply_yaml(
        &scene.client,
        &scene.namespace,
        &user_yaml("early", "selected", &format!("early@{mail}")),
    )
    .await;
    reach(&users, "early", "Covered", "False", "DomainNotFound").await;

    scene.apply(&domain_yaml("selected", mail)).await;
    // The domain's arrival alone re-judges the user.
    reach(&users, "early", "Covered", "True", "Covered").await;

    scene
        .apply(&user_yaml("stranger", "selected", "someone@elsewhere.example"))
        .await;
    let stranger = reach(&users, "stranger", "Covered", "False", "AddressNotInDomain").await;
    let message = condition(&stranger.status.expect("status").conditions, "Covered")
        .expect("Covered")
        .2;
    assert!(message.contains(mail.as_str()), "{message}");

    let all_users = format!(
        "{}  users:\n    scope: AllUsers\n    directory:\n      static:\n        addresses: [a@{static_mail}]\n",
        domain_yaml("everyone", &static_mail)
    );
    scene.apply(&all_users).await;
    scene
        .apply(&user_yaml("single", "everyone", &format!("a@{static_mail}")))
        .await;
    reach(&users, "single", "Covered", "False", "DomainScopeIsAllUsers").await;

    created_after(&scene.client, &early[0]).await;
    scene
        .apply(&user_yaml("copy", "selected", &format!("Early@{mail}")))
        .await;
    reach(&users, "copy", "Covered", "False", "DuplicateAddress").await;
    wait_for("the domain to count one user", Duration::from_secs(30), || async {
        (domains.get("selected").await.ok()?.status?.users?.covered == 1).then_some(())
    })
    .await;

    // Removing the original hands the address to the duplicate.
    users
        .delete("early", &DeleteParams::default())
        .await
        .expect("deleting a user");
    reach(&users, "copy", "Covered", "True", "Covered").await;

    // Deleting the domain uncovers its users.
    domains
        .delete("selected", &DeleteParams::default())
        .await
        .expect("deleting the domain");
    reach(&users, "copy", "Covered", "False", "DomainNotFound").await;
    reach(&users, "copy", "Ready", "False", "NotCovered").await;
}

#[tokio::test]
async fn changing_a_users_address_or_domain_recounts_both_domains() {
    let scene = Scene::new("moves").await;
    let (first, second) = (scene.mail.clone(), mail_domain("second"));
    scene.apply(&domain_yaml("first", &first)).await;
    scene.apply(&domain_yaml("second", &second)).await;
    scene.apply(&user_yaml("u", "first", &format!("u@{first}"))).await;
    scene.coverage_lists("first", &[format!("u@{first}")]).await;

    // Same user, same domain, new address: the domain's list follows.
    scene.apply(&user_yaml("u", "first", &format!("renamed@{first}"))).await;
    scene.coverage_lists("first", &[format!("renamed@{first}")]).await;

    // Moved to the other domain: the old one is emptied, the new one lists it.
    scene
        .apply(&user_yaml("u", "second", &format!("renamed@{second}")))
        .await;
    scene.coverage_lists("second", &[format!("renamed@{second}")]).await;
    scene.coverage_lists("first", &[]).await;
}

#[tokio::test]
async fn switching_to_all_users_removes_the_users_only_once_confirmed() {
    let scene = Scene::new("scope").await;
    let mail = scene.mail.clone();
    let [alice, bob, carol, dave] = ["alice", "bob", "carol", "dave"].map(|u| format!("{u}@{mail}"));
    scene.apply(&domain_yaml("d", &mail)).await;
    scene.apply(&user_yaml("alice", "d", &alice)).await;
    scene.apply(&user_yaml("bob", "d", &bob)).await;
    scene.coverage_lists("d", &[alice.clone(), bob.clone()]).await;

    // The switch asked for: nothing is removed, the old scope is still served, and status
    // names who would go.
    let all_users = format!(
        "{}  users:\n    scope: AllUsers\n    directory:\n      static:\n        addresses: [{carol}, {dave}]\n",
        domain_yaml("d", &mail)
    );
    scene.apply(&all_users).await;
    let domains: Api<ContinuityDomain> = scene.api();
    let waiting = awaiting_scope_confirmation(&domains, "d").await;
    let (_, _, message) = condition(
        &waiting.status.expect("status").conditions,
        "ScopeChangeNeedsConfirmation",
    )
    .expect("the condition");
    assert!(message.contains("2 ContinuityUsers (alice, bob)"), "{message}");
    scene.coverage_lists("d", &[alice.clone(), bob.clone()]).await;
    let users: Api<ContinuityUser> = scene.api();
    assert_eq!(users.list(&ListParams::default()).await.expect("users").items.len(), 2);
    reach(&users, "alice", "Covered", "True", "Covered").await;
    assert_eq!(
        events_with_reason(&scene, "ScopeChangeNeedsConfirmation").await.len(),
        1
    );

    // Confirmed: the users go, the directory's addresses are covered, an Event names who went.
    let patch = serde_json::json!({ "metadata": { "annotations": { "continuity.mailops.io/confirm-scope-change": "AllUsers" } } });
    domains
        .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("confirming");
    scene.coverage_lists("d", &[carol.clone(), dave.clone()]).await;
    wait_for("the users removed", Duration::from_secs(30), || async {
        users
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    let switched = wait_for("the switch in status", Duration::from_secs(30), || async {
        let status = domains.get("d").await.ok()?.status?;
        (status.users.as_ref()?.scope == Some(UserScope::AllUsers)).then_some(status)
    })
    .await;
    assert!(
        condition(&switched.conditions, "ScopeChangeNeedsConfirmation").is_none(),
        "{:?}",
        switched.conditions
    );
    let changed = wait_for("the ScopeChanged Event", Duration::from_secs(30), || async {
        events_with_reason(&scene, "ScopeChanged").await.into_iter().next()
    })
    .await;
    assert!(
        changed
            .note
            .as_deref()
            .is_some_and(|n| n.contains("2 ContinuityUsers removed: alice, bob")),
        "{changed:?}"
    );
}
