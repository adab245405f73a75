//! `kubectl continuity` and its completion executable, run as a user runs them (the built
//! binaries, the caller's kubeconfig), against a SelectedUsers domain whose directory is a
//! real OpenLDAP ([`crate::slapd`]): completion offers the directory's uncovered addresses
//! from the third character typed, `users add` refuses an unknown address with the closest
//! ones, adds, lists and removes users, and `confirm-scope-change` carries out a switch.

use std::time::Duration;

use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use kube::api::{Patch, PatchParams};

use crate::common::*;
use crate::slapd::{READER_DN, READER_PASSWORD, SUFFIX, Slapd, ldif, person};

/// Runs a plugin binary with the test kubeconfig: (success, stdout, stderr).
async fn run(binary: &str, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(binary)
        .args(args)
        .env("KUBECONFIG", kubeconfig())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {binary}: {e}"));
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn plugin(ns: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["-n", ns];
    all.extend(args);
    run(env!("CARGO_BIN_EXE_kubectl-continuity"), &all).await
}

/// What completion offers for `kubectl continuity -n NS <words>`.
async fn completions(ns: &str, words: &[&str]) -> Vec<String> {
    let mut all = vec!["__complete", "-n", ns];
    all.extend(words);
    let (ok, out, err) = run(env!("CARGO_BIN_EXE_kubectl_complete-continuity"), &all).await;
    assert!(ok, "{err}");
    let mut lines: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(
        lines.pop().as_deref(),
        Some(":4"),
        "the directive ends the answer: {out}"
    );
    lines
}

#[tokio::test]
async fn users_come_from_the_directory_with_suggestions_from_the_third_character() {
    let scene = Scene::new("plugin").await;
    let mail = scene.mail.clone();
    let people: String = ["alice", "alicia", "malice", "albert", "bob"]
        .iter()
        .map(|uid| person(uid, &format!("{uid}@{mail}"), &[]))
        .collect::<String>()
        + &person("other", "alice@elsewhere.example.org", &[]);
    let slapd = Slapd::start(&ldif(&people)).await;
    scene
        .apply(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ldap-bind\nstringData:\n  bindDN: \"{READER_DN}\"\n  password: \"{READER_PASSWORD}\"\n"
        ))
        .await;
    scene
        .apply(&format!(
            "{}  users:\n    scope: SelectedUsers\n    directory:\n      ldap:\n        url: {}\n        bindSecretRef:\n          name: ldap-bind\n        baseDN: ou=people,{SUFFIX}\n        resyncPeriodSeconds: 10\n        timeoutSeconds: 5\n",
            domain_yaml("d", &mail),
            slapd.url(false)
        ))
        .await;
    let ns = scene.namespace.as_str();
    let address = |uid: &str| format!("{uid}@{mail}");

    // Completion: commands, then domains, then the directory's addresses from three characters.
    assert_eq!(completions(ns, &["us"]).await, ["users"]);
    assert_eq!(completions(ns, &["users", "add", ""]).await, ["d"]);
    let offered = wait_for("completion to offer the directory", Duration::from_secs(60), || async {
        let offered = completions(ns, &["users", "add", "d", "ali"]).await;
        (!offered.is_empty()).then_some(offered)
    })
    .await;
    assert_eq!(offered, [address("alice"), address("alicia"), address("malice")]);
    assert!(
        completions(ns, &["users", "add", "d", "al"]).await.is_empty(),
        "two characters offer nothing"
    );

    // An address the directory does not list: refused, with the closest it does.
    let (ok, _, err) = plugin(ns, &["users", "add", "d", "alcie"]).await;
    assert!(!ok && err.contains(&format!("closest: {}", address("alice"))), "{err}");
    let (ok, _, err) = plugin(ns, &["users", "add", "d", &format!("nobody@{mail}")]).await;
    assert!(!ok && err.contains("is not in the directory of d"), "{err}");

    // Adding, listing, removing.
    let (ok, out, err) = plugin(ns, &["users", "add", "d", &address("alice"), &address("bob")]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("added: {}", address("alice"))), "{out}");
    let users = scene.api::<ContinuityUser>();
    let alice = continuity_operator::plugin::users::user_name(&address("alice"));
    reach(&users, &alice, "Covered", "True", "Covered").await;
    wait_for("alice no longer offered", Duration::from_secs(60), || async {
        let offered = completions(ns, &["users", "add", "d", "ali"]).await;
        (offered == [address("alicia"), address("malice")]).then_some(())
    })
    .await;
    assert_eq!(
        completions(ns, &["users", "remove", "d", ""]).await,
        [address("alice"), address("bob")]
    );
    let (ok, out, err) = plugin(ns, &["users", "list", "d"]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&address("alice")) && l.contains("True") && l.contains("Covered")),
        "{out}"
    );
    let (ok, out, err) = plugin(ns, &["users", "remove", "d", &address("bob")]).await;
    assert!(ok && out.contains("removed"), "{out}{err}");
    let bob = continuity_operator::plugin::users::user_name(&address("bob"));
    wait_for("bob's ContinuityUser gone", Duration::from_secs(30), || async {
        users.get_opt(&bob).await.ok()?.is_none().then_some(())
    })
    .await;

    // Status, and the switch to AllUsers, confirmed with the plugin.
    let (ok, out, err) = plugin(ns, &["status"]).await;
    assert!(
        ok && out.lines().any(|l| l.starts_with("d ") && l.contains(&mail)),
        "{out}{err}"
    );
    let domains = scene.api::<ContinuityDomain>();
    let (ok, _, err) = plugin(ns, &["confirm-scope-change", "d"]).await;
    assert!(!ok && err.contains("set spec.users.scope to AllUsers first"), "{err}");
    let patch = serde_json::json!({ "spec": { "users": { "scope": "AllUsers" } } });
    domains
        .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("asking for AllUsers");
    awaiting_scope_confirmation(&domains, "d").await;
    let (ok, out, err) = plugin(ns, &["confirm-scope-change", "d"]).await;
    assert!(
        ok && out.contains(&format!("deletes its 1 ContinuityUsers: {alice}")),
        "{out}{err}"
    );
    wait_for("alice's ContinuityUser deleted", Duration::from_secs(60), || async {
        users.get_opt(&alice).await.ok()?.is_none().then_some(())
    })
    .await;
}
