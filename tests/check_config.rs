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
        "cluster/node1.conf",
        "cluster/node2.conf",
        "cluster/node3.conf",
        "cluster/forwarder.conf",
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

/// The seed aggregator.conf plus a `<cluster>` section is a valid cluster node: its `type file`
/// output becomes the upload target.
#[test]
fn seed_aggregator_plus_cluster_section_is_a_cluster_node() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let seed = std::fs::read_to_string(root.join("config/aggregator.conf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aggregator.conf");
    let cluster = "<cluster>\n  node_id 1\n  address 127.0.0.1:7101\n  <member>\n    id 1\n    address 127.0.0.1:7101\n  </member>\n  <member>\n    id 2\n    address 127.0.0.1:7102\n  </member>\n</cluster>\n";
    std::fs::write(&path, format!("{seed}\n{cluster}")).unwrap();
    let out = check(&path);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("cluster: node 1 at 127.0.0.1:7101"),
        "{summary}"
    );
    // An output that cannot be an upload target is refused in cluster mode.
    let stdout_match = seed
        .replace("type file", "type null")
        .replace("path /var/log/lograft/mytag", "");
    std::fs::write(&path, format!("{stdout_match}\n{cluster}")).unwrap();
    let out = check(&path);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be an upload target"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
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
