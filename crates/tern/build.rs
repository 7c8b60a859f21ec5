//! Records the commit the binary was built from, for `tern --version` (`unknown` outside a git
//! checkout, e.g. a `cargo install` from a registry; `TERN_COMMIT` in the environment wins).

fn main() {
    // A build without the repository (a container build) may pass it in.
    println!("cargo:rerun-if-env-changed=TERN_COMMIT");
    if let Some(commit) = std::env::var("TERN_COMMIT").ok().filter(|c| !c.is_empty()) {
        println!("cargo:rustc-env=TERN_COMMIT={commit}");
        return;
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=TERN_COMMIT={commit}");
    // Rebuild when HEAD moves (these may not exist outside a checkout; cargo then ignores them).
    println!("cargo:rerun-if-changed=../../.git/HEAD");
    println!("cargo:rerun-if-changed=../../.git/refs/heads");
}
