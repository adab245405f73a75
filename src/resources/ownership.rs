//! Whether a child still holds what the operator applied, told from the fields its field
//! manager owns rather than from the child's whole content, so that the caches need not hold
//! the children's specs.
//!
//! Server-side apply records, per manager, the set of fields it set (`managedFields`,
//! `fieldsV1`). Whoever changes or removes one of those fields afterwards takes it out of the
//! operator's set (an update takes ownership of what it changes; a forced apply of another
//! manager too). So the values at the operator's owned fields, read from the object as the
//! API server holds it, equal the object the operator applied exactly when nobody changed any
//! of them; fields others added (their own labels, defaults the server filled in) are not in
//! the set and do not count. [`owned_digest`] hashes those values; [`applied_digest`] hashes
//! the object the operator would apply, in the same form; a cache keeps the first, a
//! reconcile compares it with the second.
//!
//! Hand-written: no crate reads `fieldsV1` (structured-merge-diff is Go only); the format is
//! small: `f:<field>` for a field, `k:<json>` for the item of a keyed list whose key fields
//! have those values, `v:<json>` for the item of a set equal to it, `.` for the map or item
//! itself, an empty object for a leaf (owned whole, as an atomic list or struct is).

use serde_json::{Map, Value};

use super::quantity;

/// Fields left out on both sides, or a child holding them would be applied again at every
/// reconcile: those an older API server drops from what it stores, so that they never appear
/// among the owned ones (Kubernetes 1.20, its IPv6DualStack gate off by default, drops a
/// Service's `ipFamilies` and `ipFamilyPolicy`), and the `status` the API server fills into a
/// StatefulSet's volumeClaimTemplates (an atomic list, owned whole), which no child the
/// operator applies sets.
const LEFT_OUT: &[&str] = &["ipFamilies", "ipFamilyPolicy", "status"];

/// The digest of the values at the fields `fields_v1` (one manager's `managedFields` entry)
/// names, in `object` (the whole object as JSON).
pub fn owned_digest(fields_v1: &Value, object: &Value) -> u64 {
    let mut owned = project(fields_v1, object);
    normalise(&mut owned, false);
    super::fnv1a64(owned.to_string().as_bytes())
}

/// The digest of `desired` (the object the operator applies, as JSON), in the form
/// [`owned_digest`] gives it back once applied and untouched: identity fields, which
/// `managedFields` never lists, left out.
pub fn applied_digest(desired: &Value) -> u64 {
    let mut desired = desired.clone();
    if let Value::Object(top) = &mut desired {
        top.remove("apiVersion");
        top.remove("kind");
        if let Some(Value::Object(meta)) = top.get_mut("metadata") {
            meta.remove("name");
            meta.remove("namespace");
        }
    }
    normalise(&mut desired, false);
    super::fnv1a64(desired.to_string().as_bytes())
}

/// The part of `object` that `fields` selects.
fn project(fields: &Value, object: &Value) -> Value {
    let Value::Object(fields) = fields else {
        return Value::Null;
    };
    // A leaf: owned whole.
    if fields.is_empty() {
        return object.clone();
    }
    match object {
        Value::Object(present) => Value::Object(
            fields
                .iter()
                .filter_map(|(path, sub)| {
                    let name = path.strip_prefix("f:")?;
                    Some((name.to_owned(), project(sub, present.get(name)?)))
                })
                .collect::<Map<String, Value>>(),
        ),
        // Items in the object's order, each projected by the selector that picks it.
        Value::Array(items) => Value::Array(
            items
                .iter()
                .filter_map(|item| {
                    fields
                        .iter()
                        .find(|(path, _)| selects(path, item))
                        .map(|(_, sub)| project(sub, item))
                })
                .collect(),
        ),
        // The set names children of a scalar: the object no longer has that shape.
        _ => Value::Null,
    }
}

/// Whether the list selector `path` (`k:{...}` or `v:...`) picks `item`.
fn selects(path: &str, item: &Value) -> bool {
    if let Some(keys) = path.strip_prefix("k:") {
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(keys) else {
            return false;
        };
        return keys.iter().all(|(key, value)| item.get(key) == Some(value));
    }
    if let Some(value) = path.strip_prefix("v:") {
        return serde_json::from_str::<Value>(value).is_ok_and(|value| &value == item);
    }
    false
}

/// Drops the fields [`LEFT_OUT`] names and empty values, and writes quantities under
/// `resources` in one form (the API server rewrites `0.5` as `500m`). Empty values because
/// server-side apply does not record them as owned: an `emptyDir: {}` applied is stored but
/// absent from the owned set.
fn normalise(value: &mut Value, quantities: bool) {
    match value {
        Value::Object(map) => {
            map.retain(|key, _| !LEFT_OUT.contains(&key.as_str()));
            for (key, child) in map.iter_mut() {
                normalise(child, quantities || key == "resources");
            }
            map.retain(|_, child| !is_empty(child));
        }
        Value::Array(items) => items.iter_mut().for_each(|item| normalise(item, quantities)),
        Value::String(text) if quantities => {
            if let Some(amount) = quantity(text) {
                *text = format!("{amount:.9e}");
            }
        }
        _ => {}
    }
}

/// Null, `{}` or `[]`.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A StatefulSet as the API server returns it after the operator applied `applied()`:
    /// defaults filled in, another manager's label, and the operator's managedFields.
    fn stored() -> (Value, Value) {
        let object = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {
                "name": "m", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "mail", "team": "theirs"},
                "annotations": {"continuity.mailops.io/spec-hash": "abc"}
            },
            "spec": {
                "replicas": 1,
                "revisionHistoryLimit": 10,
                "template": {"spec": {
                    "containers": [
                        {"name": "sidecar", "image": "theirs:1"},
                        {"name": "postfix", "image": "postfix:1", "args": ["-c", "x"],
                         "imagePullPolicy": "IfNotPresent",
                         "resources": {"requests": {"cpu": "500m"}},
                         "ports": [{"containerPort": 25, "protocol": "TCP"}]}
                    ],
                    "volumes": [{"name": "spool", "emptyDir": {}}]
                }},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"},
                    "status": {"phase": "Pending"}
                }]
            },
            "status": {"replicas": 1}
        });
        let fields = json!({
            "f:metadata": {
                "f:labels": {".": {}, "f:app": {}},
                "f:annotations": {".": {}, "f:continuity.mailops.io/spec-hash": {}}
            },
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {
                    "f:containers": {"k:{\"name\":\"postfix\"}": {
                        ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                        "f:resources": {"f:requests": {"f:cpu": {}}},
                        "f:ports": {"k:{\"containerPort\":25,\"protocol\":\"TCP\"}": {
                            ".": {}, "f:containerPort": {}
                        }}
                    }},
                    "f:volumes": {"k:{\"name\":\"spool\"}": {".": {}, "f:name": {}}}
                }},
                "f:volumeClaimTemplates": {}
            }
        });
        (object, fields)
    }

    fn applied() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {
                "name": "m", "namespace": "ns",
                "labels": {"app": "mail"},
                "annotations": {"continuity.mailops.io/spec-hash": "abc"}
            },
            "spec": {
                "replicas": 1,
                "template": {"spec": {
                    "containers": [{"name": "postfix", "image": "postfix:1", "args": ["-c", "x"],
                                    "resources": {"requests": {"cpu": "0.5"}},
                                    "ports": [{"containerPort": 25}]}],
                    "volumes": [{"name": "spool", "emptyDir": {}}]
                }},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}
                }]
            }
        })
    }

    #[test]
    fn an_untouched_child_matches_what_was_applied_whatever_others_added() {
        let (object, fields) = stored();
        assert_eq!(owned_digest(&fields, &object), applied_digest(&applied()));
    }

    #[test]
    fn a_changed_or_removed_owned_field_is_told() {
        let (object, fields) = stored();
        // An update that changed the image took the field from the operator's set.
        let mut taken = fields.clone();
        let postfix = &mut taken["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"postfix\"}"];
        postfix.as_object_mut().unwrap().remove("f:image");
        assert_ne!(owned_digest(&taken, &object), applied_digest(&applied()));
        // A changed atomic list is owned whole: its value counts.
        let mut edited = object.clone();
        edited["spec"]["template"]["spec"]["containers"][1]["args"] = json!(["-c", "y"]);
        assert_ne!(owned_digest(&fields, &edited), applied_digest(&applied()));
        // A new desired object differs too.
        let mut wanted = applied();
        wanted["spec"]["replicas"] = json!(2);
        assert_ne!(owned_digest(&fields, &object), applied_digest(&wanted));
    }

    #[test]
    fn set_items_and_fields_older_servers_drop() {
        let object = json!({"spec": {"policyTypes": ["Ingress", "Egress"], "ipFamilies": ["IPv4"]}});
        let fields = json!({"f:spec": {"f:policyTypes": {"v:\"Ingress\"": {}}}});
        let applied =
            json!({"spec": {"policyTypes": ["Ingress"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack"}});
        assert_eq!(owned_digest(&fields, &object), applied_digest(&applied));
    }
}
