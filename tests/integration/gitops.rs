//! What GitOps tools read from our resources, on objects the operator wrote to the API server:
//! Argo CD's health checks and actions (deploy/argocd/argocd-cm.yaml, run with Debian's Lua
//! 5.1, the dialect of Argo CD's gopher-lua) and kstatus' reading (Flux, cli-utils, Helm's
//! waiter), in every phase the control plane can bring a domain to.

use std::collections::BTreeMap;
use std::process::Command;

use continuity_operator::api::domain::{DomainPhase, RouteTarget};
use continuity_operator::api::{ContinuityDomain, ContinuityUser};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::common::*;
use crate::peers::{Behavior, Peer};

const DOMAIN_KEY: &str = "continuity.mailops.io_ContinuityDomain";
const USER_KEY: &str = "continuity.mailops.io_ContinuityUser";

/// The `data` of the shipped argocd-cm patch.
fn argocd_cm() -> Value {
    let text =
        std::fs::read_to_string(repo().join("deploy/argocd/argocd-cm.yaml")).expect("deploy/argocd/argocd-cm.yaml");
    let patch: Value = serde_saphyr::from_str(&text).expect("argocd-cm.yaml is YAML");
    patch["data"].clone()
}

fn script(key: &str) -> String {
    argocd_cm()[key]
        .as_str()
        .unwrap_or_else(|| panic!("argocd-cm has {key}"))
        .to_owned()
}

/// The domain actions' configuration (a YAML document inside the ConfigMap value, as Argo CD
/// reads it).
fn actions() -> Value {
    serde_saphyr::from_str(&script(&format!("resource.customizations.actions.{DOMAIN_KEY}"))).expect("actions YAML")
}

/// `value` as a Lua table constructor, the shape Argo CD hands its scripts as `obj`.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => format!("{{{}}}", items.iter().map(lua).collect::<Vec<_>>().join(",")),
        Value::Object(fields) => format!(
            "{{{}}}",
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("[{}]={}", lua_string(k), lua(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn lua_string(text: &str) -> String {
    let escaped: String = text
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' => format!("\\{}", b as char),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\{b}"),
        })
        .collect();
    format!("\"{escaped}\"")
}

/// JSON out of Lua 5.1, which has no encoder: for what an action returns.
const ENCODE: &str = r#"
local function encode(v)
  local t = type(v)
  if t == "table" then
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    local parts = {}
    if n > 0 and #v == n then
      for i = 1, n do parts[i] = encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = encode(k) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif t == "number" and v == math.floor(v) then
    return string.format("%d", v)
  end
  return tostring(v)
end
"#;

/// Runs `body` (a script returning a value, as Argo CD's are) with `obj` bound to `object`,
/// and prints the value with `print`, a Lua function of one argument.
fn run_lua(object: &Value, body: &str, print: &str) -> String {
    let program = format!(
        "{ENCODE}\nlocal obj = {}\nlocal function script()\n{body}\nend\nio.write(({print})(script()))\n",
        lua(object)
    );
    // lua5.1 is Debian's package lua5.1 (hack/test.sh installs it).
    let (ok, stdout, stderr) = run_with_input(Command::new("lua5.1").arg("-"), &program);
    assert!(ok, "the script failed: {stderr}");
    stdout
}

/// Argo CD's health of `object`: (status, message).
fn argo_health(key: &str, object: &Value) -> (String, String) {
    let body = script(&format!("resource.customizations.health.{key}"));
    let shown = run_lua(
        object,
        &body,
        "function(hs) return hs.status .. '\\n' .. (hs.message or '') end",
    );
    let (status, message) = shown.split_once('\n').expect("status and message");
    (status.to_owned(), message.to_owned())
}

/// The domain actions Argo CD offers for `object`, each with whether it is disabled.
fn argo_actions(object: &Value) -> BTreeMap<String, bool> {
    let body = actions()["discovery.lua"].as_str().expect("discovery.lua").to_owned();
    let shown = run_lua(object, &body, "encode");
    let actions: BTreeMap<String, Value> = serde_json::from_str(&shown).expect("discovery returns a table");
    actions
        .into_iter()
        .map(|(name, action)| (name, action["disabled"].as_bool().unwrap_or(false)))
        .collect()
}

/// The object action `name` returns for `object`.
fn argo_action(name: &str, object: &Value) -> Value {
    let definitions = actions()["definitions"].as_array().expect("definitions").clone();
    let definition = definitions
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("an action {name}"));
    let body = definition["action.lua"].as_str().expect("action.lua");
    serde_json::from_str(&run_lua(object, body, "encode")).expect("the action returns an object")
}

/// The JSON merge patch (RFC 7386) from `live` to `new`, as Argo CD computes it to apply an
/// action's result. Lua cannot tell an empty list from an empty table, so `{}` for `[]` is no
/// change.
fn merge_patch(live: &Value, new: &Value) -> Value {
    let (Value::Object(live), Value::Object(new)) = (live, new) else {
        return new.clone();
    };
    let mut patch = serde_json::Map::new();
    for (key, before) in live {
        match new.get(key) {
            None => {
                patch.insert(key.clone(), Value::Null);
            }
            Some(after) if after == before => {}
            Some(Value::Object(after)) if after.is_empty() && before.as_array().is_some_and(Vec::is_empty) => {}
            Some(after) => {
                let nested = merge_patch(before, after);
                if nested != json!({}) {
                    patch.insert(key.clone(), nested);
                }
            }
        }
    }
    for (key, after) in new {
        if !live.contains_key(key) {
            patch.insert(key.clone(), after.clone());
        }
    }
    Value::Object(patch)
}

/// kstatus' reading of a custom resource, re-stated from cli-utils (pkg/kstatus/status:
/// `checkGenericProperties`, then `Current` when nothing else decides), since kstatus is a Go
/// library: deletion, a lagging `observedGeneration`, `Reconciling` or `Stalled` True.
fn kstatus(object: &Value) -> &'static str {
    if !object["metadata"]["deletionTimestamp"].is_null() {
        return "Terminating";
    }
    let generation = object["metadata"]["generation"].as_i64();
    let observed = object["status"]["observedGeneration"].as_i64();
    if generation.is_some() && observed.is_some() && generation != observed {
        return "InProgress";
    }
    let conditions = object["status"]["conditions"].as_array().cloned().unwrap_or_default();
    for condition in conditions {
        match (condition["type"].as_str(), condition["status"].as_str()) {
            (Some("Reconciling"), Some("True")) => return "InProgress",
            (Some("Stalled"), Some("True")) => return "Failed",
            _ => {}
        }
    }
    "Current"
}

fn json_of<K: serde::Serialize>(object: &K) -> Value {
    serde_json::to_value(object).expect("an object serializes")
}

async fn in_phase(domains: &Api<ContinuityDomain>, name: &str, phase: DomainPhase) -> Value {
    let domain = wait_for(
        &format!("{name} in phase {phase:?}"),
        std::time::Duration::from_secs(30),
        || async {
            let domain = domains.get(name).await.ok()?;
            let status = domain.status.as_ref()?;
            (status.phase == Some(phase) && status.observed_generation == domain.metadata.generation).then_some(domain)
        },
    )
    .await;
    json_of(&domain)
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_every_phase_of_a_domain() {
    let scene = Scene::new("gitops").await;
    let domains: Api<ContinuityDomain> = scene.api();
    let healthy = Peer::start(Behavior::Smtp(None)).await;
    let hung = Peer::start(Behavior::Silent).await;

    scene
        .apply(&probed_domain("armed", &scene.mail, healthy.port, ""))
        .await;
    let manual = "  activation:\n    mode: Manual\n    override: Active\n";
    scene
        .apply(&probed_domain(
            "active",
            &mail_domain("gitops-active"),
            healthy.port,
            manual,
        ))
        .await;
    scene
        .apply(
            &domain_yaml("suspended", &mail_domain("gitops-suspended")).replace("spec:\n", "spec:\n  suspend: true\n"),
        )
        .await;
    scene.apply(&domain_yaml("not-granted", "mail.not-granted.test")).await;
    reach(&domains, "armed", "Conflict", "False", "DomainClaimAccepted").await;
    scene.apply(&domain_yaml("second", &scene.mail)).await;
    standby_ready(&scene, "armed").await;
    standby_ready(&scene, "active").await;
    // Created once the others' pods are ready, so theirs are not.
    scene
        .apply(&domain_yaml("provisioning", &mail_domain("gitops-provisioning")))
        .await;
    scene
        .apply(&probed_domain("blocked", &mail_domain("gitops-blocked"), hung.port, ""))
        .await;

    let cases = [
        ("armed", DomainPhase::Armed, "Healthy", "Current"),
        ("active", DomainPhase::Active, "Degraded", "Current"),
        ("suspended", DomainPhase::Suspended, "Suspended", "Current"),
        ("not-granted", DomainPhase::Error, "Degraded", "Failed"),
        ("second", DomainPhase::Error, "Degraded", "Failed"),
        ("provisioning", DomainPhase::Provisioning, "Progressing", "InProgress"),
        ("blocked", DomainPhase::Degraded, "Degraded", "Current"),
    ];
    for (name, phase, argo, kstatus_reads) in cases {
        let object = in_phase(&domains, name, phase).await;
        let (health, message) = argo_health(DOMAIN_KEY, &object);
        let ready = &object["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready").cloned())
            .expect("a Ready condition")["message"];
        assert_eq!(health, argo, "Argo CD's health of {name} ({phase:?}): {message}");
        assert_eq!(
            message,
            format!("{phase:?}: {}", ready.as_str().unwrap_or_default()),
            "{name}: the phase and Ready's sentence"
        );
        assert_eq!(
            kstatus(&object),
            kstatus_reads,
            "kstatus of {name} ({phase:?}): {object}"
        );
    }

    // A failback with held mail (not reachable without a hand-back agent here): the phase
    // alone decides, and status carries Reconciling while it lasts (tested in status::progress).
    let mut failing_back = in_phase(&domains, "armed", DomainPhase::Armed).await;
    failing_back["status"]["phase"] = json!("FailingBack");
    assert_eq!(argo_health(DOMAIN_KEY, &failing_back).0, "Progressing");

    // A spec edit the operator has not acted on yet, and a domain it has never seen.
    let mut edited = in_phase(&domains, "armed", DomainPhase::Armed).await;
    edited["metadata"]["generation"] = json!(edited["status"]["observedGeneration"].as_i64().unwrap_or(0) + 1);
    assert_eq!(argo_health(DOMAIN_KEY, &edited).0, "Progressing");
    assert_eq!(kstatus(&edited), "InProgress");
    let mut unseen = edited.clone();
    unseen["status"] = Value::Null;
    let (health, message) = argo_health(DOMAIN_KEY, &unseen);
    assert_eq!(
        (health.as_str(), message.as_str()),
        (
            "Progressing",
            "Waiting for the continuity operator to act on this domain"
        )
    );
}

#[tokio::test]
async fn argo_cd_and_kstatus_read_users() {
    let scene = Scene::new("gitops-users").await;
    let users: Api<ContinuityUser> = scene.api();
    scene.apply(&domain_yaml("d", &scene.mail)).await;
    let secrets: Api<Secret> = scene.api();
    let secret: Secret = serde_json::from_value(json!({
        "metadata": { "name": "ready-password" },
        "stringData": { "password": "correct horse battery staple" },
    }))
    .expect("a Secret");
    secrets
        .create(&Default::default(), &secret)
        .await
        .expect("creating the password Secret");
    let address = |local: &str| format!("{local}@{}", scene.mail);
    scene
        .apply(&format!(
            "{}  emergencyPassword:\n    name: ready-password\n    key: password\n",
            user_yaml("ready", "d", &address("ready"))
        ))
        .await;
    scene.apply(&user_yaml("no-password", "d", &address("nopw"))).await;
    scene
        .apply(&user_yaml("outside", "d", "someone@elsewhere.example.test"))
        .await;
    scene.apply(&user_yaml("orphan", "missing", &address("orphan"))).await;
    standby_ready(&scene, "d").await;

    let cases = [
        ("ready", "Ready", "True", "Provisioned", "Healthy", "Current"),
        (
            "no-password",
            "Ready",
            "False",
            "EmergencyPasswordMissing",
            "Degraded",
            "Failed",
        ),
        (
            "outside",
            "Covered",
            "False",
            "AddressNotInDomain",
            "Degraded",
            "Failed",
        ),
        (
            "orphan",
            "Covered",
            "False",
            "DomainNotFound",
            "Progressing",
            "InProgress",
        ),
    ];
    for (name, type_, status, reason, argo, kstatus_reads) in cases {
        let user = json_of(&reach(&users, name, type_, status, reason).await);
        let (health, message) = argo_health(USER_KEY, &user);
        assert_eq!(health, argo, "Argo CD's health of user {name}: {message}");
        assert!(!message.is_empty(), "user {name}: a message");
        assert_eq!(kstatus(&user), kstatus_reads, "kstatus of user {name}: {user}");
    }
}

#[tokio::test]
async fn argo_cd_actions_switch_continuity_by_hand_and_back() {
    let scene = Scene::new("gitops-actions").await;
    let domains: Api<ContinuityDomain> = scene.api();
    let healthy = Peer::start(Behavior::Smtp(None)).await;
    scene.apply(&probed_domain("d", &scene.mail, healthy.port, "")).await;
    standby_ready(&scene, "d").await;
    let armed = in_phase(&domains, "d", DomainPhase::Armed).await;
    let offered = argo_actions(&armed);
    assert_eq!(
        offered,
        BTreeMap::from([
            ("activate-continuity".to_owned(), false),
            ("deactivate-continuity".to_owned(), false),
            ("resume-automatic".to_owned(), true),
        ])
    );

    // Argo CD applies an action's result as a merge patch from the live object.
    let patch = merge_patch(&armed, &argo_action("activate-continuity", &armed));
    assert_eq!(
        patch,
        json!({ "spec": { "activation": { "mode": "Manual", "override": "Active" } } })
    );
    domains
        .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the API server admits the activation");
    let active = in_phase(&domains, "d", DomainPhase::Active).await;
    assert_eq!(active["status"]["routing"]["target"], json!(RouteTarget::Standby));
    assert_eq!(argo_health(DOMAIN_KEY, &active).0, "Degraded");
    assert_eq!(
        argo_actions(&active),
        BTreeMap::from([
            ("activate-continuity".to_owned(), true),
            ("deactivate-continuity".to_owned(), false),
            ("resume-automatic".to_owned(), false),
        ]),
        "in manual mode with continuity on, activating again is not offered"
    );

    let patch = merge_patch(&active, &argo_action("resume-automatic", &active));
    assert_eq!(
        patch,
        json!({ "spec": { "activation": { "mode": "Automatic", "override": null } } })
    );
    domains
        .patch("d", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the API server admits the return to automatic");
    let back = in_phase(&domains, "d", DomainPhase::Armed).await;
    assert_eq!(argo_health(DOMAIN_KEY, &back).0, "Healthy");
}
