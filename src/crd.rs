//! The CRDs, generated from the Rust types in [`crate::api`], as committed in `crds/` and in
//! the Helm chart. `cargo run --bin crdgen` rewrites them; a test fails when they drift.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{ContinuityDomain, ContinuityUser};

const HEADER: &str = "# Generated from the Rust types by `cargo run --bin crdgen`. Do not edit.\n";

/// Path of the chart template holding the CRDs.
pub const CHART_TEMPLATE: &str = "charts/continuity-operator/templates/crds.yaml";

/// The label every CRD carries, so that `kubectl get crd -l` finds ours.
const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "continuity-operator");

/// The operator's CRDs.
pub fn definitions() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![ContinuityDomain::crd(), ContinuityUser::crd()];
    for crd in &mut crds {
        crd.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(PART_OF.0.into(), PART_OF.1.into());
    }
    crds
}

fn to_yaml(crd: &CustomResourceDefinition) -> String {
    serde_saphyr::to_string(crd).unwrap_or_else(|error| format!("# cannot render: {error}\n"))
}

/// Every generated file (path relative to the repository root) with its content.
pub fn generated_files() -> Vec<(String, String)> {
    let crds = definitions();
    let mut files: Vec<(String, String)> = crds
        .iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            (format!("crds/{name}.yaml"), format!("{HEADER}{}", to_yaml(crd)))
        })
        .collect();

    // In the chart, CRDs are templates (so upgrades update them) that Helm never deletes:
    // deleting a CRD would delete every customer's resources with it.
    let mut template = format!("{HEADER}{{{{- if .Values.crds.install }}}}\n");
    for crd in crds {
        let mut crd = crd;
        crd.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert("helm.sh/resource-policy".into(), "keep".into());
        template.push_str("---\n");
        // The release's labels (and the provider's commonLabels) join ours.
        template.push_str(&to_yaml(&crd).replacen(
            "\n  labels:\n",
            "\n  labels:\n    {{- include \"continuity-operator.labels\" . | nindent 4 }}\n",
            1,
        ));
    }
    template.push_str("{{- end }}\n");
    files.push((CHART_TEMPLATE.to_owned(), template));
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed CRDs are what the types generate. On failure run `cargo run --bin crdgen`.
    #[test]
    fn committed_crds_match_the_rust_types() {
        let root = env!("CARGO_MANIFEST_DIR");
        for (path, expected) in generated_files() {
            let committed = std::fs::read_to_string(format!("{root}/{path}")).unwrap_or_default();
            assert!(
                committed == expected,
                "{path} differs from the Rust types; run `cargo run --bin crdgen`"
            );
        }
    }

    /// What `kubectl apply -f crds/` sends is exactly the types' CRDs: the YAML rendering
    /// (folded long strings, quoting) loses nothing.
    #[test]
    fn the_yaml_reads_back_as_the_definitions() {
        for (crd, (path, text)) in definitions().iter().zip(generated_files()) {
            let read: CustomResourceDefinition =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(
                serde_json::to_value(&read).unwrap(),
                serde_json::to_value(crd).unwrap(),
                "{path}"
            );
        }
    }

    #[test]
    fn list_maps_printer_columns_and_short_names_are_generated() {
        let files = generated_files();
        let domain = &files[0].1;
        assert!(domain.contains("x-kubernetes-list-type: map"));
        assert!(domain.contains("x-kubernetes-list-map-keys:\n"));
        assert!(domain.contains("- cdom"));
        assert!(domain.contains("jsonPath: .status.users.covered"));
        assert!(domain.contains("rule: self == oldSelf"));
        assert!(files[1].1.contains("- cuser"));
    }
}
