//! ContinuityUser conditions: every reason a user is not covered, and recovery when the cause
//! goes away.

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::ContinuityUser;
use kube::Api;
use kube::api::DeleteParams;
use std::time::Duration;

use crate::common::*;

#[tokio::test]
async fn user_conditions_tell_why_a_user_is_or_is_not_covered() {
    let client = client().await;
    let namespace = namespace(&client, "users").await;
    let _operator = Operator::start(OperatorOptions::scoped(&namespace));
    let users: Api<ContinuityUser> = Api::namespaced(client.clone(), &namespace);
    let domains: Api<ContinuityDomain> = Api::namespaced(client.clone(), &namespace);
    let mail = mail_domain("users");
    let static_mail = mail_domain("all-users");

    apply_yaml(
        &client,
        &namespace,
        &user_yaml("early", "selected", &format!("early@{mail}")),
    )
    .await;
    user_condition(&users, "early", "Covered", "False", "DomainNotFound").await;

    apply_yaml(&client, &namespace, &domain_yaml("selected", &mail)).await;
    // The domain's arrival alone re-judges the user.
    user_condition(&users, "early", "Covered", "True", "Covered").await;

    apply_yaml(
        &client,
        &namespace,
        &user_yaml("stranger", "selected", "someone@elsewhere.example"),
    )
    .await;
    let stranger = user_condition(&users, "stranger", "Covered", "False", "AddressNotInDomain").await;
    let message = condition(&stranger.status.expect("status").conditions, "Covered")
        .expect("Covered")
        .2;
    assert!(message.contains(&mail), "{message}");

    let all_users = format!(
        "{}  users:\n    scope: AllUsers\n    directory:\n      static:\n        addresses: [a@{static_mail}]\n",
        domain_yaml("everyone", &static_mail)
    );
    apply_yaml(&client, &namespace, &all_users).await;
    apply_yaml(
        &client,
        &namespace,
        &user_yaml("single", "everyone", &format!("a@{static_mail}")),
    )
    .await;
    user_condition(&users, "single", "Covered", "False", "DomainScopeIsAllUsers").await;

    tokio::time::sleep(Duration::from_millis(1100)).await;
    apply_yaml(
        &client,
        &namespace,
        &user_yaml("copy", "selected", &format!("Early@{mail}")),
    )
    .await;
    user_condition(&users, "copy", "Covered", "False", "DuplicateAddress").await;
    wait_for("the domain to count one user", Duration::from_secs(30), || async {
        (domains.get("selected").await.ok()?.status?.users?.covered == 1).then_some(())
    })
    .await;

    // Removing the original hands the address to the duplicate.
    users
        .delete("early", &DeleteParams::default())
        .await
        .expect("deleting a user");
    user_condition(&users, "copy", "Covered", "True", "Covered").await;

    // Deleting the domain uncovers its users.
    domains
        .delete("selected", &DeleteParams::default())
        .await
        .expect("deleting the domain");
    user_condition(&users, "copy", "Covered", "False", "DomainNotFound").await;
    user_condition(&users, "copy", "Ready", "False", "NotCovered").await;
}

#[tokio::test]
async fn changing_a_users_address_or_domain_recounts_both_domains() {
    let client = client().await;
    let namespace = namespace(&client, "moves").await;
    let _operator = Operator::start(OperatorOptions::scoped(&namespace));
    let (first, second) = (mail_domain("first"), mail_domain("second"));
    apply_yaml(&client, &namespace, &domain_yaml("first", &first)).await;
    apply_yaml(&client, &namespace, &domain_yaml("second", &second)).await;
    apply_yaml(&client, &namespace, &user_yaml("u", "first", &format!("u@{first}"))).await;
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let listing = |name: &'static str, expected: String| {
        let maps = maps.clone();
        async move {
            wait_for(
                &format!("{name}-coverage to list {expected:?}"),
                Duration::from_secs(30),
                || async {
                    let map = maps.get_opt(&format!("{name}-coverage")).await.ok().flatten()?;
                    (map.data?.get("addresses") == Some(&expected)).then_some(())
                },
            )
            .await;
        }
    };
    listing("first", format!("u@{first}\n")).await;

    // Same user, same domain, new address: the domain's list follows.
    apply_yaml(
        &client,
        &namespace,
        &user_yaml("u", "first", &format!("renamed@{first}")),
    )
    .await;
    listing("first", format!("renamed@{first}\n")).await;

    // Moved to the other domain: the old one is emptied, the new one lists it.
    apply_yaml(
        &client,
        &namespace,
        &user_yaml("u", "second", &format!("renamed@{second}")),
    )
    .await;
    listing("second", format!("renamed@{second}\n")).await;
    listing("first", String::new()).await;
}
