//! End-to-end tests of issue 11 ("Operators can see inside"): a real Prometheus server
//! (Debian's package) scrapes `<source> @type prometheus` of real `lograft run` processes on
//! 127.0.0.1 — a forwarder with two aggregators (one standby), and a three-node cluster — and
//! the values it stores are compared with what the test sent. Also: `promtool check metrics`
//! on the exposition, `/api/plugins.json` of `@type monitor_agent`, `/health`, and `/ready`
//! without and with a quorum.

mod common;
use common::prometheus::{http_get, promtool_check_metrics, Prometheus};
use common::*;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn prometheus_source(port: u16) -> String {
    format!("<source>\n  @type prometheus\n  bind 127.0.0.1\n  port {port}\n</source>")
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An aggregator: forward in, out_file to `dir/out`, metrics on `metrics`.
fn aggregator(dir: &Path, forward: u16, metrics: u16) -> Node {
    let text = ConfigText::new()
        .forward_source(forward)
        .raw(&prometheus_source(metrics))
        .out_file(
            "test.**",
            dir.join("out/${tag}"),
            BufferText::file(dir.join("buffer")).param("flush_interval", "0.2s"),
        )
        .build();
    Node::start(dir, &text, &[forward, metrics])
}

#[test]
fn prometheus_scrapes_a_forwarder_and_its_aggregators_and_sees_a_server_fail_over() {
    let tmp = tempfile::tempdir().unwrap();
    let (fwd, fwd_metrics, monitor) = (free_port(), free_port(), free_port());
    let (b_fwd, b_metrics, c_fwd, c_metrics) = (free_port(), free_port(), free_port(), free_port());
    let mut primary = aggregator(&tmp.path().join("b"), b_fwd, b_metrics);
    let _standby = aggregator(&tmp.path().join("c"), c_fwd, c_metrics);
    let sources = ConfigText::new()
        .forward_source(fwd)
        .raw(&prometheus_source(fwd_metrics))
        .raw(&format!(
            "<source>\n  @type monitor_agent\n  bind 127.0.0.1\n  port {monitor}\n</source>"
        ));
    let servers = format!(
        "  <server>\n    name primary\n    host 127.0.0.1\n    port {b_fwd}\n  </server>\n  <server>\n    name backup\n    host 127.0.0.1\n    port {c_fwd}\n    standby true\n  </server>"
    );
    let text = forwarder_config(
        sources,
        &tmp.path().join("a"),
        &servers,
        "2s",
        "require_ack_response true\n  @id to_aggregators",
    );
    let _forwarder = Node::start(&tmp.path().join("a"), &text, &[fwd, fwd_metrics, monitor]);
    let prom = Prometheus::start(
        &tmp.path().join("prometheus"),
        &[
            ("forwarder", vec![fwd_metrics]),
            ("aggregator", vec![b_metrics, c_metrics]),
        ],
    );

    // A known number of events: 5 acknowledged batches of 100.
    let mut client = ForwardClient::connect(addr(fwd)).unwrap();
    for b in 0..5u64 {
        client
            .send_acked("test.metrics", b * 100..(b + 1) * 100, 20)
            .unwrap();
    }
    let delivered = wait_until(WAIT, || {
        read_out_file_records(&tmp.path().join("b/out")).len() == 500
    });
    assert!(delivered, "the primary did not receive 500 events");

    let expect = |q: &str, want: f64| {
        let got = prom.wait_value(q, WAIT, |v| v == want);
        assert_eq!(got, Ok(want), "{q}: {}", prom.log_text());
    };
    expect(
        r#"lograft_input_events_total{job="forwarder",type="forward"}"#,
        500.0,
    );
    expect(
        r#"lograft_input_chunks_total{job="forwarder",type="forward"}"#,
        5.0,
    );
    expect(
        r#"lograft_input_acks_total{job="forwarder",type="forward"}"#,
        5.0,
    );
    expect(
        r#"lograft_output_events_total{job="forwarder",plugin_id="to_aggregators",type="forward"}"#,
        500.0,
    );
    expect(
        r#"sum(lograft_input_events_total{job="aggregator"})"#,
        500.0,
    );
    expect(
        &format!(r#"lograft_output_events_total{{instance="127.0.0.1:{b_metrics}",type="file"}}"#),
        500.0,
    );
    expect(r#"lograft_buffer_records{job="forwarder"}"#, 0.0);
    expect(
        r#"lograft_forward_server_up{job="forwarder",server="primary"}"#,
        1.0,
    );
    expect(
        r#"lograft_forward_server_active{job="forwarder",server="backup"}"#,
        0.0,
    );
    let fsyncs = prom.wait_value(
        r#"lograft_buffer_fsync_seconds_count{job="forwarder"}"#,
        WAIT,
        |v| v >= 1.0,
    );
    assert!(fsyncs.is_ok(), "no fsync observed: {fsyncs:?}");
    expect(
        r#"lograft_output_flush_seconds_count{job="forwarder",plugin_id="to_aggregators"}"#,
        prom.value(r#"lograft_output_chunks_total{job="forwarder",plugin_id="to_aggregators"}"#)
            .unwrap(),
    );

    // The exposition passes promtool, and OpenMetrics is served to those who ask for it.
    let (status, content_type, text) = http_get(fwd_metrics, "/metrics", None).unwrap();
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let (ok, report) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics: {report}\n{text}");
    let (_, content_type, om) = http_get(
        fwd_metrics,
        "/metrics",
        Some("application/openmetrics-text"),
    )
    .unwrap();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");

    // monitor_agent answers with Fluentd's fields.
    let (status, _, body) = http_get(monitor, "/api/plugins.json", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let plugins = json["plugins"].as_array().unwrap();
    let input = plugins
        .iter()
        .find(|p| p["plugin_category"] == "input" && p["type"] == "forward")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(input["emit_records"], 500, "{body}");
    assert_eq!(input["output_plugin"], false);
    assert!(input["retry_count"].is_null());
    let output = plugins
        .iter()
        .find(|p| p["plugin_id"] == "to_aggregators")
        .unwrap_or_else(|| panic!("{body}"));
    for field in [
        "plugin_category",
        "type",
        "output_plugin",
        "buffer_queue_length",
        "buffer_total_queued_size",
        "retry_count",
        "emit_records",
        "write_count",
        "rollback_count",
    ] {
        assert!(!output[field].is_null(), "{field} missing: {body}");
    }
    assert_eq!(output["type"], "forward");
    assert_eq!(output["output_plugin"], true);
    assert_eq!(output["emit_records"], 500, "{body}");
    assert_eq!(output["buffer_queue_length"], 0, "{body}");
    assert_eq!(http_get(fwd_metrics, "/health", None).unwrap().0, 200);
    assert_eq!(http_get(fwd_metrics, "/ready", None).unwrap().0, 200);

    // The primary dies: it is shown down and the standby active; events go on to the standby.
    primary.kill9();
    expect(
        r#"lograft_forward_server_up{job="forwarder",server="primary"}"#,
        0.0,
    );
    expect(
        r#"lograft_forward_server_active{job="forwarder",server="backup"}"#,
        1.0,
    );
    client.send_acked("test.metrics", 500..600, 20).unwrap();
    expect(
        &format!(r#"lograft_output_events_total{{instance="127.0.0.1:{c_metrics}",type="file"}}"#),
        100.0,
    );
    expect(
        r#"lograft_output_events_total{job="forwarder",plugin_id="to_aggregators"}"#,
        600.0,
    );
    // The Grafana dashboard's ingest, buffer, output and forward-server panels have data.
    prom.check_dashboard(&[
        "lograft_input_",
        "lograft_buffer_",
        "lograft_output_",
        "lograft_forward_",
    ]);
}

/// Ports of one cluster node.
#[derive(Clone, Copy)]
struct Ports {
    forward: u16,
    raft: u16,
    metrics: u16,
}

fn cluster_config(dir: &Path, id: u64, all: &[Ports]) -> String {
    let members: String = all
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "<member>\n id {}\n address 127.0.0.1:{}\n</member>\n",
                i + 1,
                p.raft
            )
        })
        .collect();
    let me = all[id as usize - 1];
    ConfigText::new()
        .forward_source(me.forward)
        .raw(&prometheus_source(me.metrics))
        .out_file(
            "test.**",
            dir.join("bucket"),
            BufferText::default_type()
                .param("flush_interval", "0.3s")
                .param("retry_wait", "0.2s")
                .param("retry_max_interval", "0.5s"),
        )
        .raw(&format!(
            "<cluster>\n  node_id {id}\n  address 127.0.0.1:{}\n  data_dir {}\n  heartbeat_interval 0.1s\n  election_timeout 0.5s\n{members}</cluster>",
            me.raft,
            dir.join(format!("node{id}-raft")).display()
        ))
        .build()
}

#[test]
fn prometheus_scrapes_a_cluster_upload_lag_rises_and_falls_and_ready_follows_the_quorum() {
    let tmp = tempfile::tempdir().unwrap();
    let ports: Vec<Ports> = (0..3)
        .map(|_| Ports {
            forward: free_port(),
            raft: free_port(),
            metrics: free_port(),
        })
        .collect();
    let start = |id: u64| {
        let dir = tmp.path().join(format!("node{id}"));
        let text = cluster_config(tmp.path(), id, &ports);
        // The metrics server starts with the inputs, once the node is in the cluster.
        Node::start(&dir, &text, &[ports[id as usize - 1].raft])
    };
    let mut nodes: Vec<Node> = (1..=3).map(start).collect();
    let prom = Prometheus::start(
        &tmp.path().join("prometheus"),
        &[("cluster", ports.iter().map(|p| p.metrics).collect())],
    );
    let expect = |q: &str, ok: &dyn Fn(f64) -> bool, what: &str| {
        let got = prom.wait_value(q, WAIT, ok);
        assert!(got.is_ok(), "{q} should be {what}, last value {got:?}");
    };
    expect(
        r#"count(lograft_cluster_role{job="cluster",role="leader"} == 1)"#,
        &|v| v == 1.0,
        "one leader",
    );
    expect(
        r#"count(lograft_cluster_ready == 1)"#,
        &|v| v == 3.0,
        "3 ready nodes",
    );

    // A known number of events through node 1 (a follower forwards to the leader).
    let mut client = ForwardClient::connect(addr(ports[0].forward)).unwrap();
    for b in 0..4u64 {
        client
            .send_acked("test.ok", b * 50..(b + 1) * 50, 20)
            .unwrap();
    }
    expect(
        r#"sum(lograft_input_events_total{job="cluster",type="forward"})"#,
        &|v| v == 200.0,
        "200 events in",
    );
    expect(
        r#"sum(lograft_input_acks_total{job="cluster"})"#,
        &|v| v == 4.0,
        "4 acks",
    );
    expect(
        r#"sum(lograft_cluster_uploaded_events_total{job="cluster"})"#,
        &|v| v == 200.0,
        "200 events uploaded",
    );
    expect(
        r#"max(lograft_cluster_pending_chunks)"#,
        &|v| v == 0.0,
        "nothing pending",
    );
    expect(
        r#"max(lograft_cluster_upload_lag_seconds)"#,
        &|v| v == 0.0,
        "no upload lag",
    );
    expect(
        r#"min(lograft_cluster_applied_index)"#,
        &|v| v >= 4.0,
        "4 chunks applied on every node",
    );
    expect(
        r#"sum(lograft_cluster_propose_seconds_count)"#,
        &|v| v == 4.0,
        "4 proposals timed",
    );
    assert_eq!(
        read_out_file_records(&tmp.path().join("bucket")).len(),
        200,
        "bucket"
    );
    // Memory: each node's RSS (a real process is MBs, not 0 nor GBs) and RocksDB's share of
    // it (the chunks written are in memtables, the block cache is bounded by its size).
    expect(
        r#"count(lograft_process_resident_memory_bytes > 4e6 < 1e9)"#,
        &|v| v == 3.0,
        "3 nodes with a plausible RSS",
    );
    // The allocator's count: live bytes within the pages that hold them, within what it holds.
    expect(
        r#"count(lograft_process_heap_bytes{part="allocated"} > 1e5)"#,
        &|v| v == 3.0,
        "3 nodes with a live heap",
    );
    expect(
        r#"count((lograft_process_heap_bytes{part="active"} - ignoring(part) lograft_process_heap_bytes{part="allocated"}) >= 0
            and (lograft_process_heap_bytes{part="resident"} - ignoring(part) lograft_process_heap_bytes{part="active"}) >= 0)"#,
        &|v| v == 3.0,
        "allocated <= active <= resident on every node",
    );
    expect(
        r#"min(lograft_cluster_storage_memory_bytes{part="memtables"})"#,
        &|v| v > 0.0,
        "chunks in every node's memtables",
    );
    expect(
        r#"max(lograft_cluster_storage_memory_bytes{part="block_cache"})"#,
        &|v| v <= 4.0 * 1024.0 * 1024.0,
        "a block cache within its default 4 MiB",
    );

    // The upload target fails for one tag (a file stands where its directory goes): the upload
    // lag and the retry series rise; once it is removed they fall.
    let blocker = tmp.path().join("bucket/test.blocked");
    std::fs::write(&blocker, b"not a directory").unwrap();
    client.send_acked("test.blocked", 1000..1050, 20).unwrap();
    expect(
        r#"max(lograft_cluster_upload_lag_seconds)"#,
        &|v| v >= 2.0,
        "a rising lag",
    );
    expect(
        r#"sum(lograft_cluster_upload_retries_total)"#,
        &|v| v >= 2.0,
        "retries",
    );
    expect(
        r#"sum(lograft_cluster_upload_failing_batches)"#,
        &|v| v == 1.0,
        "one failing batch",
    );
    expect(
        r#"sum(rate(lograft_cluster_upload_retries_total[5s]))"#,
        &|v| v > 0.0,
        "retrying",
    );
    std::fs::remove_file(&blocker).unwrap();
    expect(
        r#"max(lograft_cluster_upload_lag_seconds)"#,
        &|v| v == 0.0,
        "lag back to 0",
    );
    expect(
        r#"sum(lograft_cluster_upload_failing_batches)"#,
        &|v| v == 0.0,
        "no failing batch",
    );
    expect(
        r#"sum(rate(lograft_cluster_upload_retries_total[5s]))"#,
        &|v| v == 0.0,
        "no more retries",
    );
    expect(
        r#"sum(lograft_cluster_uploaded_events_total{job="cluster"})"#,
        &|v| v == 250.0,
        "250 events uploaded",
    );

    // The Grafana dashboard's cluster panels have data.
    prom.check_dashboard(&["lograft_cluster_"]);

    // The exposition of a cluster node passes promtool.
    let (_, _, text) = http_get(ports[0].metrics, "/metrics", None).unwrap();
    let (ok, report) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics: {report}\n{text}");

    // Node 1 alone cannot reach a quorum: /ready 503; with the others back: 200.
    assert_eq!(http_get(ports[0].metrics, "/ready", None).unwrap().0, 200);
    nodes[1].kill9();
    nodes[2].kill9();
    let not_ready = wait_until(WAIT, || {
        http_get(ports[0].metrics, "/ready", None).is_ok_and(|(s, _, _)| s == 503)
    });
    assert!(not_ready, "/ready stayed 200 without a quorum");
    let (_, _, why) = http_get(ports[0].metrics, "/ready", None).unwrap();
    assert!(why.starts_with("not ready:"), "{why}");
    assert_eq!(http_get(ports[0].metrics, "/health", None).unwrap().0, 200);
    nodes[1].spawn();
    nodes[2].spawn();
    let ready = wait_until(WAIT, || {
        http_get(ports[0].metrics, "/ready", None).is_ok_and(|(s, _, _)| s == 200)
    });
    assert!(ready, "/ready did not return to 200 with the quorum back");
}
