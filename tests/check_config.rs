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

/// The Fluent Bit-style Kubernetes example (issue 12): valid, and its summary shows the tail.
#[test]
fn kubernetes_tail_example_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = check(&root.join("config/kubernetes.conf"));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{summary}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains("tail /var/log/containers/*.log tag kube.*"),
        "{summary}"
    );
}

/// in_tail configurations as Fluentd's documentation shows them are accepted; a broken one is
/// refused with file, line and key.
#[test]
fn fluentd_in_tail_examples_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let examples = [
        // The basic example: apache2 access log.
        "<source>\n  @type tail\n  path /var/log/httpd-access.log\n  pos_file /var/log/td-agent/httpd-access.log.pos\n  tag apache.access\n  <parse>\n    @type apache2\n  </parse>\n</source>\n",
        // nginx, several paths, excludes, tag expansion, the usual knobs.
        "<source>\n  @type tail\n  path /path/to/a/*,/path/to/b/c.log\n  exclude_path [\"/path/to/*.gz\", \"/path/to/*.zip\"]\n  tag foo.*\n  pos_file /var/log/td-agent/foo.pos\n  refresh_interval 60\n  rotate_wait 5\n  read_from_head true\n  follow_inodes true\n  limit_recently_modified 2d\n  read_lines_limit 1000\n  read_bytes_limit_per_second 8192\n  max_line_size 32k\n  skip_refresh_on_startup true\n  emit_unmatched_lines true\n  enable_watch_timer true\n  enable_stat_watcher false\n  open_on_every_update false\n  ignore_repeated_permission_error true\n  path_key tailed_path\n  <parse>\n    @type nginx\n  </parse>\n</source>\n",
        // regexp with named captures, time format and types.
        "<source>\n  @type tail\n  path /var/log/app.log\n  tag app\n  <parse>\n    @type regexp\n    expression /^(?<time>[^ ]* [^ ]*) (?<name>[^ ]*) (?<user>[^ ]*) (?<age>\\d*)$/\n    time_key time\n    time_format %Y-%m-%d %H:%M:%S %z\n    keep_time_key true\n    types age:integer\n  </parse>\n</source>\n",
        // json lines.
        "<source>\n  @type tail\n  path /var/log/json.log\n  pos_file /var/log/td-agent/json.pos\n  tag json\n  <parse>\n    @type json\n    time_key time\n    time_type float\n  </parse>\n</source>\n",
    ];
    for (i, ex) in examples.iter().enumerate() {
        let p = dir.path().join(format!("ex{i}.conf"));
        std::fs::write(&p, format!("{ex}<match **>\n  @type null\n</match>\n")).unwrap();
        let out = check(&p);
        assert!(
            out.status.success(),
            "example {i}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = dir.path().join("bad.conf");
    std::fs::write(
        &bad,
        "<source>\n  @type tail\n  path /x.log\n  tag x\n  read_lines_limt 5\n  <parse>\n    @type regexp\n    expression /no captures/\n  </parse>\n</source>\n",
    )
    .unwrap();
    let out = check(&bad);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("bad.conf:5") && text.contains("did you mean 'read_lines_limit'"),
        "{text}"
    );
    assert!(
        text.contains("bad.conf:8") && text.contains("named capture"),
        "{text}"
    );
}
