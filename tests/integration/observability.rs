//! What a provider's Prometheus and Grafana meet, checked with Prometheus's own promtool: the
//! operator's /metrics parse and pass promtool's lint, the shipped alerting rules pass their
//! `promtool test rules` suite, and every query of the alerts and the dashboard is valid
//! PromQL naming metrics the running operator really exports. And its JSON logs carry the
//! reconciled object as fields of the reconcile span.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use continuity_operator::api::ContinuityDomain;
use continuity_operator::api::domain::ContinuityDomainStatus;
use continuity_operator::telemetry::Metrics;
use kube::Api;

use crate::common::*;
use crate::peers::{Behavior, Peer};

/// promtool, from hack/promtool.sh (which takes it out of Debian's prometheus package).
fn promtool() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let output = Command::new(repo().join("hack/promtool.sh"))
            .output()
            .expect("running hack/promtool.sh");
        assert!(
            output.status.success(),
            "hack/promtool.sh: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
    })
}

/// Runs promtool with `args` (and `stdin`); returns (success, what it printed).
fn run_promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let (ok, stdout, stderr) = run_with_input(Command::new(promtool()).args(args).current_dir(repo()), stdin);
    (ok, format!("{stdout}{stderr}"))
}

const ALERTS: &str = "charts/continuity-operator/files/alerts.yaml";
const DASHBOARD: &str = "charts/continuity-operator/files/dashboard.json";

/// Every PromQL expression of the alerts and the dashboard, with where it comes from; the
/// dashboard's Grafana variables replaced by values Prometheus would see.
fn queries() -> Vec<(String, String)> {
    let alerts: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join(ALERTS)).expect("alerts.yaml"))
            .expect("alerts YAML");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join(DASHBOARD)).expect("dashboard.json"))
            .expect("dashboard JSON");
    let mut queries = Vec::new();
    for group in alerts["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            queries.push((
                format!("alert {}", rule["alert"]),
                rule["expr"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    for panel in dashboard["panels"].as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_default()
                .replace("$namespace", ".*")
                .replace("$__rate_interval", "5m");
            queries.push((format!("panel {}", panel["title"]), expr));
        }
    }
    queries.push(("the namespace variable".into(), "continuity_domain_phase".into()));
    queries
}

/// The family a sample name belongs to.
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// The metric names an expression selects (ours all start with `continuity_`), without the
/// suffixes a counter's or histogram's samples add to its family name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(start) = rest.find("continuity_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(family(&tail[..end]).to_owned());
        rest = &tail[end..];
    }
    names
}

/// The metric families a metrics text declares.
fn families(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(|name| family(name).to_owned())
        .collect()
}

/// The families only an LDAP directory, held mail, the webhook or a failing reconcile bring
/// about (a family without series is not exported), none of which this scene has: recorded
/// through the operator's own metrics, as those code paths record them.
fn recorded_elsewhere() -> BTreeSet<String> {
    let metrics = Metrics::default();
    metrics.directory_read("Ok");
    metrics.admitted("ContinuityDomain", "allowed");
    metrics.reconcile_failed("ContinuityDomain", &continuity_operator::Error::Config("x".into()));
    let status: ContinuityDomainStatus = serde_json::from_value(serde_json::json!({
        "phase": "FailingBack",
        "conditions": [{
            "type": "DirectoryReachable", "status": "True", "reason": "DirectoryRead", "message": "",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        }],
        "messages": { "held": 3, "delivered": 1, "pending": 2, "failed": 0, "oldestPendingTime": "2026-01-01T00:00:00Z" },
    }))
    .expect("a status");
    metrics.domains.update(&("t".to_owned(), "d".to_owned()), Some(&status));
    families(&metrics.encode_text_format())
}

#[test]
fn the_alerting_rules_pass_their_promtool_suite() {
    let (ok, output) = run_promtool(&["check", "rules", ALERTS], "");
    assert!(ok, "promtool check rules: {output}");
    let (ok, output) = run_promtool(&["test", "rules", "tests/prometheus/alerts-test.yaml"], "");
    assert!(ok, "promtool test rules: {output}");
}

#[tokio::test]
async fn the_dashboard_and_alerts_query_what_the_operator_exports() {
    let scene = Scene::with_flags("observability", &["--log-format=json"]).await;
    let healthy = Peer::start(Behavior::Smtp(None)).await;
    scene
        .apply(&probed_domain("armed", &scene.mail, healthy.port, ""))
        .await;
    let manual = "  activation:\n    mode: Manual\n    override: Active\n";
    scene
        .apply(&probed_domain(
            "active",
            &mail_domain("observability-active"),
            healthy.port,
            manual,
        ))
        .await;
    standby_ready(&scene, "armed").await;
    let domains: Api<ContinuityDomain> = scene.api();
    reach(&domains, "active", "ContinuityActive", "True", "ManualOverride").await;
    let metrics = wait_for("both domains' series", std::time::Duration::from_secs(30), || async {
        let text = scene.operator.metrics().await;
        (text.contains(r#"name="active",phase="Active"} 1"#) && text.contains(r#"name="armed",phase="Armed"} 1"#))
            .then_some(text)
    })
    .await;

    // The JSON log: a reconcile's lines carry the domain on the reconcile span.
    let log = scene.operator.log_text();
    let updated: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == "status updated" && line["span"]["kind"] == "ContinuityDomain")
        .collect();
    let domains_logged: BTreeSet<&str> = updated
        .iter()
        .filter_map(|line| line["span"]["domain"].as_str())
        .collect();
    assert_eq!(domains_logged, BTreeSet::from(["active", "armed"]), "{log}");
    assert!(
        updated
            .iter()
            .all(|line| line["span"]["namespace"] == scene.namespace.as_str()),
        "{log}"
    );

    let (ok, output) = run_promtool(&["check", "metrics"], &metrics);
    assert!(ok, "promtool check metrics: {output}\n{metrics}");

    let exported = families(&metrics);
    let recorded = recorded_elsewhere();
    let mut rules = String::from("groups:\n- name: queries\n  rules:\n");
    for (index, (source, expr)) in queries().iter().enumerate() {
        let unknown: Vec<String> = metric_names(expr)
            .into_iter()
            .filter(|name| !exported.contains(name) && !recorded.contains(name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{source} queries {unknown:?}, which the operator does not export: {expr}"
        );
        rules.push_str(&format!(
            "  - record: query_{index}\n    expr: {}\n",
            serde_json::Value::String(expr.clone())
        ));
    }
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(unique("queries"))
        .with_extension("yaml");
    std::fs::write(&file, rules).expect("writing the queries");
    let (ok, output) = run_promtool(&["check", "rules", &file.display().to_string()], "");
    assert!(ok, "a query is not valid PromQL: {output}");
}
