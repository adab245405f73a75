//! Writes the Helm chart's README.md from the `# --` comments of its values.yaml (the
//! convention of helm-docs, a Go tool not packaged for Debian: a few lines of Rust do what the
//! chart needs). `chartdoc --check` only reports drift (exit status 1); a test runs the same
//! check, and checks that values.schema.json knows every documented value.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

const CHART: &str = "charts/continuity-operator";

const INTRO: &str = "# continuity-operator Helm chart

Installs the continuity operator: the ContinuityDomain and ContinuityUser CRDs, the operator
Deployment with its least-privilege RBAC, the validating admission webhook, and optionally its
monitoring (ServiceMonitor or PodMonitor, PrometheusRule, Grafana dashboard). The project's
README explains the resources, the tenancy model and each integration (Argo CD, Flux,
Prometheus and Grafana).

```sh
helm install continuity-operator charts/continuity-operator \\
  --namespace continuity-system --create-namespace
```

A wrong value fails the install with the reason (`values.schema.json`).

## Values

Generated from the comments in values.yaml by `cargo run --bin chartdoc`; a test fails when
this table and values.yaml drift apart.

| Key | Type | Default | Description |
|-----|------|---------|-------------|
";

/// A documented value: its dotted path and its `# --` comment.
#[derive(Debug, PartialEq)]
struct Documented {
    path: String,
    description: String,
}

/// The documented values of `values_yaml`, in file order.
fn documented(values_yaml: &str) -> Vec<Documented> {
    let mut found = Vec::new();
    let mut parents: Vec<(usize, String)> = Vec::new();
    let mut comment: Option<Vec<String>> = None;
    for line in values_yaml.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if let Some(text) = trimmed.strip_prefix("# -- ") {
            comment = Some(vec![text.trim().to_owned()]);
        } else if let Some(text) = trimmed.strip_prefix('#') {
            if let Some(lines) = comment.as_mut() {
                lines.push(text.trim().to_owned());
            }
        } else if trimmed.is_empty() {
            comment = None;
        } else if let Some((key, _)) = trimmed.split_once(':')
            && !trimmed.starts_with('-')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            parents.retain(|(depth, _)| *depth < indent);
            parents.push((indent, key.to_owned()));
            if let Some(lines) = comment.take() {
                found.push(Documented {
                    path: parents.iter().map(|(_, k)| k.as_str()).collect::<Vec<_>>().join("."),
                    description: lines.join(" "),
                });
            }
        }
    }
    found
}

/// The value at the dotted `path` of `values`.
fn at<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(values, |value, key| value.get(key))
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// The README for the chart in `chart`.
fn readme(chart: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(chart.join("values.yaml")).map_err(|e| format!("values.yaml: {e}"))?;
    let values: Value = serde_saphyr::from_str(&text).map_err(|e| format!("values.yaml: {e}"))?;
    let mut readme = INTRO.to_owned();
    for doc in documented(&text) {
        let default = at(&values, &doc.path).ok_or_else(|| format!("values.yaml: no value at {}", doc.path))?;
        readme.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            doc.path,
            type_name(default),
            default.to_string().replace('|', "\\|"),
            doc.description.replace('|', "\\|")
        ));
    }
    Ok(readme)
}

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let chart = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CHART);
    let readme = match readme(&chart) {
        Ok(readme) => readme,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::FAILURE;
        }
    };
    let path = chart.join("README.md");
    if std::fs::read_to_string(&path).is_ok_and(|current| current == readme) {
        return ExitCode::SUCCESS;
    }
    if check {
        eprintln!("{CHART}/README.md is out of date; run `cargo run --bin chartdoc`");
        return ExitCode::FAILURE;
    }
    match std::fs::write(&path, readme) {
        Ok(()) => {
            println!("wrote {CHART}/README.md");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cannot write {CHART}/README.md: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(CHART)
    }

    #[test]
    fn comments_document_the_key_below_them_by_its_path() {
        let yaml = "# -- Top.\n# More.\ntop: 1\n\nnested:\n  # -- Inner.\n  inner: a\n  # plain comment\n  undocumented: b\nlist:\n- name: x\n";
        assert_eq!(
            documented(yaml),
            [
                Documented {
                    path: "top".into(),
                    description: "Top. More.".into()
                },
                Documented {
                    path: "nested.inner".into(),
                    description: "Inner.".into()
                },
            ]
        );
    }

    /// On failure run `cargo run --bin chartdoc`.
    #[test]
    fn the_committed_readme_is_what_values_yaml_documents() {
        let expected = readme(&chart()).expect("values.yaml reads");
        let committed = std::fs::read_to_string(chart().join("README.md")).unwrap_or_default();
        assert!(
            committed == expected,
            "{CHART}/README.md is out of date; run `cargo run --bin chartdoc`"
        );
    }

    #[test]
    fn the_schema_knows_every_documented_value_and_every_value_is_documented() {
        let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
        let values: Value = serde_saphyr::from_str(&text).expect("values.yaml is YAML");
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(chart().join("values.schema.json")).expect("values.schema.json"),
        )
        .expect("values.schema.json is JSON");
        let docs = documented(&text);
        for doc in &docs {
            let known = doc
                .path
                .split('.')
                .try_fold(&schema, |node, key| node.get("properties")?.get(key));
            assert!(known.is_some(), "values.schema.json has no {}", doc.path);
        }
        // Every leaf is documented, itself or through a documented parent (an open map).
        fn leaves(value: &Value, path: String, out: &mut Vec<String>) {
            match value {
                Value::Object(fields) if !fields.is_empty() => {
                    for (key, field) in fields {
                        let path = if path.is_empty() {
                            key.clone()
                        } else {
                            format!("{path}.{key}")
                        };
                        leaves(field, path, out);
                    }
                }
                _ => out.push(path),
            }
        }
        let mut all = Vec::new();
        leaves(&values, String::new(), &mut all);
        for leaf in all {
            assert!(
                docs.iter()
                    .any(|d| leaf == d.path || leaf.starts_with(&format!("{}.", d.path))),
                "values.yaml: {leaf} has no `# --` comment"
            );
        }
    }
}
