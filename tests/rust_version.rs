//! The minimum Rust version the workspace claims (`rust-version` in
//! Cargo.toml, which the Dockerfile's image must match) is true: no locked
//! dependency needs a newer compiler. A `cargo update` that pulls in one
//! fails here, not on a user's machine.

use serde_json::Value;
use std::process::Command;

/// `1.89` or `1.89.0` as comparable numbers.
fn version(text: &str) -> Vec<u64> {
    text.split('.').map(|n| n.parse().unwrap_or(0)).collect()
}

fn at_least(a: &[u64], b: &[u64]) -> bool {
    let pad = |v: &[u64]| {
        let mut v = v.to_vec();
        v.resize(3, 0);
        v
    };
    pad(a) >= pad(b)
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_the_workspace_claims() {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let claimed = packages
        .iter()
        .find(|p| p["name"] == "ordersaga")
        .and_then(|p| p["rust_version"].as_str())
        .expect("the workspace claims a rust-version");
    let claimed = version(claimed);
    let too_new: Vec<String> = packages
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (!at_least(&claimed, &version(needs)))
                .then(|| format!("{} {} needs rustc {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version claims {claimed:?}, but: {}",
        too_new.join(", ")
    );

    // The Dockerfile builds with the image of the claimed version.
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("read the Dockerfile");
    let claimed_text: Vec<String> = claimed.iter().take(2).map(u64::to_string).collect();
    let image = format!("FROM rust:{}-", claimed_text.join("."));
    assert!(
        dockerfile.contains(&image),
        "the Dockerfile does not build with {image}…"
    );
}
