//! Kubernetes objects checked against the Kubernetes OpenAPI schemas.

/// Checks Kubernetes objects (YAML, one or more documents) against the
/// Kubernetes 1.33 OpenAPI schemas with `kubernetes-validate --strict` (PyPI,
/// installed by `make deps`). `Err` carries what it printed.
pub fn kubernetes_validate(name: &str, yaml: &str) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!(
        "chatscale-validate-{}-{}",
        std::process::id(),
        name.replace('/', "_")
    ));
    std::fs::write(&file, yaml).map_err(|e| format!("{name}: {e}"))?;
    let output = std::process::Command::new("kubernetes-validate")
        .args(["--strict", "-k", "1.33.0", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate (PyPI) is missing: run `make deps`");
    let _ = std::fs::remove_file(&file);
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}
