//! `lograft check-config` on the seed configs and on broken ones (acceptance 1 of issue 2).

mod common;
use std::process::Command;

fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(common::BIN)
        .arg("check-config")
        .arg("-c")
        .arg(path)
        .output()
        .unwrap()
}

#[test]
fn seed_configs_and_local_variants_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for f in [
        "forwarder.conf",
        "aggregator.conf",
        "forwarder.local.conf",
        "aggregator.local.conf",
        "local.conf",
    ] {
        let out = check(&root.join("config").join(f));
        assert!(
            out.status.success(),
            "{f}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = check(&root.join("config/forwarder.conf"));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("192.168.0.2"),
        "summary lists the servers: {summary}"
    );
}

#[test]
fn typo_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "<source>\n  type forward\n  port 24224\n</source>\n<match mytag.**>\n  type stdout\n  flush_intervl 60s\n</match>\n",
    )
    .unwrap();
    let out = check(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:7:", path.display())), "{err}");
    assert!(err.contains("flush_intervl"), "{err}");
    assert!(
        err.contains("flush_interval"),
        "did-you-mean missing: {err}"
    );
}

#[test]
fn bad_pattern_and_unknown_type_fail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(
        &path,
        "<match a.{b,c>\n  @type stdout\n</match>\n<match x>\n  @type nosuch\n</match>\n",
    )
    .unwrap();
    let out = check(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nosuch"), "{err}");
}
