//! Interop with clients written by others (acceptance 5 of issue 2): the `fluent-logger` Python
//! package sends to in_forward; curl posts JSON, msgpack, ndjson and form bodies to in_http.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn node(dir: &std::path::Path) -> (Node, u16, u16) {
    let fport = free_port();
    let hport = free_port();
    let conf = format!(
        r#"
<source>
  @type forward
  bind 127.0.0.1
  port {fport}
</source>
<source>
  @type http
  bind 127.0.0.1
  port {hport}
</source>
<match interop.**>
  @type file
  path {out}/events
  <buffer tag>
    @type file
    path {buf}
    flush_interval 0.2s
  </buffer>
</match>
"#,
        out = dir.join("out").display(),
        buf = dir.join("buffer").display(),
    );
    (Node::start(dir, &conf, &[fport, hport]), fport, hport)
}

#[test]
fn python_fluent_logger_events_arrive() {
    let python = python_with_fluent_logger();
    let dir = tempfile::tempdir().unwrap();
    let (n, fport, _) = node(dir.path());
    let script = format!(
        r#"
from fluent import sender, event
a = sender.FluentSender('interop', host='127.0.0.1', port={fport}, nanosecond_precision=True)
b = sender.FluentSender('interop', host='127.0.0.1', port={fport})
for i in range(100):
    ok = (a if i % 2 else b).emit('py', {{'seq': i, 'text': 'héllo'}})
    assert ok, (a if i % 2 else b).last_error
a.close(); b.close()
"#
    );
    let st = Command::new(&python)
        .arg("-c")
        .arg(&script)
        .status()
        .unwrap();
    assert!(st.success());
    let out = dir.path().join("out");
    assert!(
        wait_until(Duration::from_secs(20), || seq_counts(
            &read_out_file_records(&out)
        )
        .len()
            == 100),
        "log:\n{}",
        n.log_text()
    );
    let recs = read_out_file_records(&out);
    assert!(recs
        .iter()
        .all(|(tag, r)| tag == "interop.py" && r["text"] == "héllo"));
}

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn curl_posts_json_msgpack_ndjson_and_form() {
    let python = python_with_fluent_logger();
    let dir = tempfile::tempdir().unwrap();
    let (n, _, hport) = node(dir.path());
    let url = |tag: &str| format!("http://127.0.0.1:{hport}/{tag}");

    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"seq":1}"#,
            &url("interop/json")
        ]),
        "200"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"[{"seq":2},{"seq":3,"time":1700000000}]"#,
            &url("interop/batch")
        ]),
        "200"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/x-ndjson",
            "--data-binary",
            "{\"seq\":4}\n{\"seq\":5}\n",
            &url("interop/ndjson")
        ]),
        "200"
    );
    assert_eq!(
        curl(&[
            "--data-urlencode",
            r#"json={"seq":6}"#,
            &url("interop/form")
        ]),
        "200"
    );

    let mp = dir.path().join("body.msgpack");
    let st = Command::new(&python)
        .arg("-c")
        .arg(format!(
            "import msgpack; open('{}', 'wb').write(msgpack.packb([{{'seq': 7}}, {{'seq': 8}}]))",
            mp.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/msgpack",
            "--data-binary",
            &format!("@{}", mp.display()),
            &url("interop/msgpack")
        ]),
        "200"
    );
    // Bad input: clear 400, server keeps serving.
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            "{not json",
            &url("interop/bad")
        ]),
        "400"
    );
    assert_eq!(
        curl(&[
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"seq":9}"#,
            &url("interop/json")
        ]),
        "200"
    );

    let out = dir.path().join("out");
    let want: Vec<u64> = (1..=9).collect();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let c = seq_counts(&read_out_file_records(&out));
            want.iter().all(|s| c.contains_key(s))
        }),
        "log:\n{}",
        n.log_text()
    );
    let recs = read_out_file_records(&out);
    assert!(recs
        .iter()
        .any(|(t, r)| t == "interop.batch" && r["seq"] == 3 && r.get("time").is_none()));
    assert!(recs.iter().any(|(t, _)| t == "interop.msgpack"));
}
