//! Test helpers: YAML fixtures from `tests/fixtures/`.

use serde::de::DeserializeOwned;

/// Parses `tests/fixtures/<name>`; a missing or malformed fixture fails the test loudly.
pub fn fixture<T: DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}
