//! Writes the CRDs generated from the Rust types into `crds/` and the Helm chart.
//! `crdgen --check` only reports drift (exit status 1).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut drifted = false;
    for (path, content) in continuity_operator::crd::generated_files() {
        let file = root.join(&path);
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        if current == content {
            continue;
        }
        drifted = true;
        if check {
            eprintln!("{path} is out of date; run `cargo run --bin crdgen`");
        } else if let Err(error) = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&file, content))
        {
            eprintln!("cannot write {path}: {error}");
            return ExitCode::FAILURE;
        } else {
            println!("wrote {path}");
        }
    }
    if check && drifted {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
