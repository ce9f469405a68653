//! Tests of whole config loads: the seed configs, directives, `@type`/`type`, `@include`,
//! diagnostics that span plugins (ordering, typos, unknown types), and typed values reaching
//! every plugin's struct. Tests of one component's parameters live beside that component.

use super::build::{load, load_str};
use super::test_support::{errors, forward_out, ok, seed, warning_text};
use super::*;
use crate::buffer::config::{BufferKind, FlushMode, OverflowAction};
use crate::output::file::config::FileFormat;
use crate::output::forward::config::{HeartbeatType, Transport};
use crate::retry::RetryType;
use std::time::Duration;

#[test]
fn seed_forwarder_config() {
    let loaded = load(&seed("forwarder.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{}", warning_text(&loaded));
    let cfg = &loaded.config;
    assert_eq!(cfg.sources.len(), 2);
    match &cfg.sources[0].kind {
        SourceKind::Forward(f) => {
            assert_eq!((f.bind.as_str(), f.port), ("0.0.0.0", 24224));
            assert!(f.skip_invalid_event);
            assert_eq!(f.decompression_size_limit, 256 << 20);
        }
        other => panic!("{other:?}"),
    }
    match &cfg.sources[1].kind {
        SourceKind::Http(h) => {
            assert_eq!(h.port, 8888);
            assert_eq!(h.body_size_limit, 32 << 20);
            assert_eq!(h.keepalive_timeout, Duration::from_secs(10));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(cfg.matches.len(), 1);
    let m = &cfg.matches[0];
    assert_eq!(m.patterns, vec!["mytag.**"]);
    let f = forward_out(m);
    assert_eq!(f.servers.len(), 2);
    assert_eq!(
        (
            f.servers[0].host.as_str(),
            f.servers[0].port,
            f.servers[0].standby
        ),
        ("192.168.0.1", 24224, false)
    );
    assert_eq!(
        (
            f.servers[1].host.as_str(),
            f.servers[1].port,
            f.servers[1].standby
        ),
        ("192.168.0.2", 24224, true)
    );
    assert_eq!(f.servers[1].weight, 60);
    assert_eq!(f.servers[1].location.line, 26);
    assert!(f.require_ack_response, "lograft defaults to at-least-once");
    assert_eq!(f.ack_response_timeout, Duration::from_secs(190));
    assert_eq!(f.health.heartbeat_type, HeartbeatType::Transport);
    assert!(f.tls.verify_hostname);
    let b = &m.buffer;
    assert_eq!(b.kind, BufferKind::File { path: None });
    assert_eq!(b.flush_interval, Duration::from_secs(60));
    assert_eq!(b.flush_mode, FlushMode::Interval);
    assert!(b.chunk_by_tag);
    assert_eq!(b.timekey, None);
    assert_eq!(
        (b.chunk_limit_size, b.total_limit_size),
        (256 << 20, 64 << 30)
    );
    assert!(!b.flush_at_shutdown);
    assert!(m.secondary.is_none());
}

#[test]
fn seed_aggregator_config() {
    let loaded = load(&seed("aggregator.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert!(loaded.warnings.is_empty(), "{}", warning_text(&loaded));
    let cfg = &loaded.config;
    assert_eq!(cfg.sources.len(), 1);
    assert!(matches!(&cfg.sources[0].kind, SourceKind::Forward(f) if f.port == 24224));
    let m = &cfg.matches[0];
    assert_eq!(m.patterns, vec!["mytag.**"]);
    match &m.output {
        OutputConfig::File(f) => {
            assert_eq!(f.path, "/var/log/lograft/mytag");
            assert!(!f.append && f.add_path_suffix);
            assert_eq!(f.path_suffix, ".log");
            assert_eq!(f.format, FileFormat::OutFile);
        }
        other => panic!("{other:?}"),
    }
    // out_file's Fluentd default: daily time chunks, flushed lazily.
    assert_eq!(m.buffer.timekey, Some(Duration::from_secs(86400)));
    assert!(!m.buffer.chunk_by_tag);
    assert_eq!(m.buffer.flush_mode, FlushMode::Lazy);
}

#[test]
fn local_variants_load_cleanly() {
    let fwd = load(&seed("forwarder.local.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert!(fwd.warnings.is_empty(), "{}", warning_text(&fwd));
    let f = forward_out(&fwd.config.matches[0]);
    let ports: Vec<(u16, bool)> = f.servers.iter().map(|s| (s.port, s.standby)).collect();
    assert_eq!(ports, vec![(24225, false), (24226, true)]);
    assert!(f.servers.iter().all(|s| s.host == "127.0.0.1"));
    let b = &fwd.config.matches[0].buffer;
    assert_eq!(
        b.kind,
        BufferKind::File {
            path: Some("/tmp/lograft/forwarder/buffer".into())
        }
    );
    assert_eq!(b.flush_interval, Duration::from_secs(1));
    assert_eq!(b.flush_mode, FlushMode::Interval);

    let agg = load(&seed("aggregator.local.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert!(agg.warnings.is_empty(), "{}", warning_text(&agg));
    assert!(matches!(&agg.config.sources[0].kind, SourceKind::Forward(s) if s.port == 24225));
    match &agg.config.matches[0].output {
        OutputConfig::File(f) => assert!(f.path.starts_with("/tmp/lograft/aggregator/out")),
        other => panic!("{other:?}"),
    }
    assert_eq!(agg.config.matches[0].buffer.flush_mode, FlushMode::Interval);
    assert_eq!(agg.config.matches[0].buffer.timekey, None);
}

#[test]
fn type_and_at_type_give_the_same_config() {
    let v012 = std::fs::read_to_string(seed("forwarder.conf")).unwrap();
    let v1 = v012.replace("  type ", "  @type ");
    assert_ne!(v012, v1);
    let a = ok(&v012);
    let b = ok(&v1);
    assert_eq!(format!("{:?}", a.config), format!("{:?}", b.config));
    let both = errors("<source>\n  @type forward\n  type forward\n</source>\n");
    assert!(
        both.contains("test.conf:3: both '@type' (line 2) and 'type'"),
        "{both}"
    );
}

#[test]
fn typed_values_reach_the_structs() {
    let loaded = ok(r#"
<system>
  root_dir /var/lib/lograft
  log_level debug
</system>
<source>
  @type http
  @id web
  @log_level warn
  port 9000
  body_size_limit 1m
  keepalive_timeout 0.5
  add_http_headers yes
  use_204_response
  cors_allow_origins ["http://a.example",
                      "http://b.example"]
</source>
<source>
  @type forward
  chunk_size_limit 8m
  chunk_size_warn_limit 512k
  skip_invalid_event false
  <security>
    self_hostname agg1
    shared_key "s3cr\"et"
    <user>
      username u
      password p
    </user>
    <client>
      network 10.0.0.0/8
      users u, v
    </client>
  </security>
  <transport tls>
    cert_path /c.pem
    private_key_path /k.pem
    client_cert_auth true
  </transport>
</source>
<match x.**>
  @type forward
  phi_threshold 24.5
  heartbeat_type none
  transport tls
  tls_cert_path ["/ca1.pem", "/ca2.pem"]
  tls_verify_hostname false
  require_ack_response false
  compress gzip
  <server>
    host h
    weight 10
  </server>
  <buffer>
    @type memory
    chunk_limit_size 1g
    chunk_limit_records 1000
    retry_type periodic
    retry_max_times 3
    retry_secondary_threshold 0.5
    overflow_action drop_oldest_chunk
  </buffer>
</match>
"#);
    let cfg = &loaded.config;
    assert_eq!(cfg.system.root_dir, Some(PathBuf::from("/var/lib/lograft")));
    assert_eq!(cfg.system.log_level, Some(LogLevel::Debug));
    assert_eq!(cfg.sources[0].common.id.as_deref(), Some("web"));
    assert_eq!(cfg.sources[0].common.log_level, Some(LogLevel::Warn));
    match &cfg.sources[0].kind {
        SourceKind::Http(h) => {
            assert_eq!(h.port, 9000);
            assert_eq!(h.body_size_limit, 1 << 20);
            assert_eq!(h.keepalive_timeout, Duration::from_millis(500));
            assert!(h.add_http_headers && h.use_204_response && !h.add_remote_addr);
            assert_eq!(
                h.cors_allow_origins,
                vec!["http://a.example", "http://b.example"]
            );
        }
        other => panic!("{other:?}"),
    }
    match &cfg.sources[1].kind {
        SourceKind::Forward(f) => {
            assert_eq!(f.chunk_size_limit, Some(8 << 20));
            assert_eq!(f.chunk_size_warn_limit, Some(512 << 10));
            assert!(!f.skip_invalid_event);
            let sec = f.security.as_ref().unwrap();
            assert_eq!(sec.shared_key, "s3cr\"et");
            assert!(sec.allow_anonymous_source && !sec.user_auth);
            assert_eq!(sec.users[0].username, "u");
            assert_eq!(sec.clients[0].network.as_deref(), Some("10.0.0.0/8"));
            assert_eq!(sec.clients[0].users, vec!["u", "v"]);
            let tls = f.tls.as_ref().unwrap();
            assert_eq!(tls.cert_path, PathBuf::from("/c.pem"));
            assert!(tls.client_cert_auth);
        }
        other => panic!("{other:?}"),
    }
    let m = &cfg.matches[0];
    let f = forward_out(m);
    assert_eq!(f.health.phi_threshold, 24.5);
    assert_eq!(f.health.heartbeat_type, HeartbeatType::None);
    assert_eq!(f.transport, Transport::Tls);
    assert_eq!(
        f.tls.cert_path,
        vec![PathBuf::from("/ca1.pem"), PathBuf::from("/ca2.pem")]
    );
    assert!(!f.tls.verify_hostname && !f.require_ack_response);
    assert_eq!(f.compress, Compression::Gzip);
    assert_eq!(f.servers[0].weight, 10);
    let b = &m.buffer;
    assert_eq!(b.kind, BufferKind::Memory);
    assert_eq!(b.chunk_limit_size, 1 << 30);
    assert_eq!(b.total_limit_size, 512 << 20);
    assert!(
        b.flush_at_shutdown,
        "memory buffers flush at shutdown by default"
    );
    assert_eq!(b.chunk_limit_records, Some(1000));
    assert_eq!(b.retry.retry_type, RetryType::Periodic);
    assert_eq!(b.retry.max_times, Some(3));
    assert_eq!(b.retry.secondary_threshold, 0.5);
    assert_eq!(b.overflow_action, OverflowAction::DropOldestChunk);
}

#[test]
fn wrong_value_types_name_key_and_expected_type() {
    let err = errors(concat!(
            "<source>\n  @type forward\n  port 99999\n  chunk_size_limit lots\n  resolve_hostname maybe\n</source>\n",
            "<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n  flush_interval soon\n  heartbeat_type tcpp\n</match>\n",
        ));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 5, "{err}");
    assert!(
        lines[0].starts_with("/etc/lograft/test.conf:3: 'port' in <source> (in_forward)"),
        "{err}"
    );
    assert!(lines[0].contains("between 0 and 65535"), "{err}");
    assert!(
        lines[1].contains(":4: 'chunk_size_limit'") && lines[1].contains("expected a size"),
        "{err}"
    );
    assert!(
        lines[2].contains(":5: 'resolve_hostname'") && lines[2].contains("expected a boolean"),
        "{err}"
    );
    assert!(
        err.contains(
            ":12: 'flush_interval' in <buffer> of <match a> (out_forward): expected a duration"
        ),
        "{err}"
    );
    assert!(
        err.contains(":13: 'heartbeat_type'")
            && err.contains("expected one of transport, tcp, udp, none, got 'tcpp'"),
        "{err}"
    );
}

#[test]
fn typo_gives_location_key_and_suggestion() {
    let err = errors(
            "<match a.**>\n  @type forward\n  <server>\n    host h\n    standbye\n  </server>\n  flush_intervl 5s\n</match>\n",
        );
    assert!(
            err.contains("/etc/lograft/test.conf:5: unknown parameter 'standbye' in <server> of out_forward; did you mean 'standby'?"),
            "{err}"
        );
    assert!(
            err.contains("/etc/lograft/test.conf:7: unknown parameter 'flush_intervl' in <match a.**> (out_forward); did you mean 'flush_interval'?"),
            "{err}"
        );
    let far = errors("<source>\n  @type http\n  zzzzzz 1\n</source>\n");
    assert!(
        far.contains("unknown parameter 'zzzzzz' in <source> (in_http)")
            && !far.contains("did you mean"),
        "{far}"
    );
    let section =
        errors("<match a>\n  @type forward\n  <sever>\n    host h\n  </sever>\n</match>\n");
    assert!(
        section.contains(":3: unknown section <sever>")
            && section.contains("did you mean <server>?"),
        "{section}"
    );
}

#[test]
fn unknown_types_directives_and_unsupported_ones() {
    let err = errors(concat!(
        "<source>\n  @type syslog\n</source>\n",
        "<match a>\n  @type kafka\n</match>\n",
        "<filter a>\n  @type grep\n</filter>\n",
        "<label @x>\n</label>\n",
        "<sorce>\n</sorce>\n",
        "stray_key 1\n",
    ));
    assert!(
        err.contains(":2: unknown source type 'syslog'; lograft supports: forward, http, tail"),
        "{err}"
    );
    assert!(err.contains(":5: unknown output type 'kafka' in <match a>; lograft supports: stdout, null, file, forward, s3"), "{err}");
    assert!(err.contains(":7: <filter> is not supported yet"), "{err}");
    assert!(err.contains(":10: <label> is not supported yet"), "{err}");
    assert!(
        err.contains(":12: unknown directive <sorce> (did you mean <source>?)"),
        "{err}"
    );
    assert!(
        err.contains(":14: parameter 'stray_key' is outside any directive"),
        "{err}"
    );
    let missing = errors("<source>\n  port 1\n</source>\n");
    assert!(
        missing.contains(":1: missing required parameter '@type' in <source>"),
        "{missing}"
    );
}

#[test]
fn missing_required_parameters() {
    let err = errors(concat!(
        "<match a>\n  @type forward\n  <server>\n    port 24224\n  </server>\n</match>\n",
        "<match b>\n  @type file\n</match>\n",
        "<match c>\n  @type forward\n</match>\n",
        "<source>\n  @type forward\n  <security>\n    self_hostname x\n  </security>\n</source>\n",
    ));
    assert!(
        err.contains(":3: missing required parameter 'host' in <server> of out_forward"),
        "{err}"
    );
    assert!(
        err.contains(":7: missing required parameter 'path' in <match b> (out_file)"),
        "{err}"
    );
    assert!(
        err.contains(":10: <match c> (out_forward) needs at least one <server>"),
        "{err}"
    );
    assert!(
        err.contains(":15: missing required parameter 'shared_key' in <security> of in_forward"),
        "{err}"
    );
}

#[test]
fn accepted_but_not_implemented_params_warn() {
    let loaded = ok(concat!(
            "<system>\n  workers 4\n</system>\n",
            "<source>\n  @type forward\n  linger_timeout 0\n  send_keepalive_packet true\n</source>\n",
            "<match a>\n  @type forward\n  tls_version TLSv1_3\n  tls_ciphers ALL\n  ignore_network_errors_at_startup true\n",
            "  <server>\n    host h\n  </server>\n",
            "  <buffer>\n    queued_chunks_limit_size 4\n    delayed_commit_timeout 30\n  </buffer>\n</match>\n",
        ));
    let w = warning_text(&loaded);
    for (line, key) in [
        (2, "workers"),
        (6, "linger_timeout"),
        (7, "send_keepalive_packet"),
        (11, "tls_version"),
        (12, "tls_ciphers"),
        (13, "ignore_network_errors_at_startup"),
        (18, "queued_chunks_limit_size"),
        (19, "delayed_commit_timeout"),
    ] {
        let expected = format!("/etc/lograft/test.conf:{line}: '{key}' in ");
        assert!(w.contains(&expected), "missing {expected}\n{w}");
    }
    assert!(
        w.contains("accepted but not implemented by lograft; ignored"),
        "{w}"
    );
    assert_eq!(loaded.warnings.len(), 8, "{w}");
    assert_eq!(loaded.config.matches.len(), 1);
}

#[test]
fn secondary_outputs() {
    let loaded = ok(concat!(
        "<match a>\n  @type forward\n  <server>\n    host h\n  </server>\n",
        "  <secondary>\n    @type file\n    path /var/log/failed\n  </secondary>\n</match>\n",
    ));
    match &loaded.config.matches[0].secondary {
        Some(OutputConfig::File(f)) => assert_eq!(f.path, "/var/log/failed"),
        other => panic!("{other:?}"),
    }
    let err = errors(concat!(
        "<match a>\n  @type stdout\n  retry_forever true\n",
        "  <secondary>\n    @type file\n    <buffer>\n    </buffer>\n  </secondary>\n</match>\n",
    ));
    assert!(
        err.contains(":4: <secondary> and 'retry_forever' are exclusive"),
        "{err}"
    );
    assert!(
        err.contains(":6: <secondary> cannot have its own <buffer>"),
        "{err}"
    );
    assert!(
        err.contains(":4: missing required parameter 'path' in <secondary> (out_file)"),
        "{err}"
    );
}

#[test]
fn includes_resolve_relative_to_the_given_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sources")).unwrap();
    std::fs::write(
        dir.path().join("sources/10-forward.conf"),
        "<source>\n  @type forward\n  port 24230\n</source>\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sources/20-http.conf"),
        "<source>\n  @type http\n  prot 1\n</source>\n",
    )
    .unwrap();
    let main = dir.path().join("main.conf");
    let err = load_str("@include sources/*.conf\n", &main)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("20-http.conf:3: unknown parameter 'prot'"),
        "{err}"
    );
    assert!(err.contains("did you mean 'port'?"), "{err}");
    std::fs::remove_file(dir.path().join("sources/20-http.conf")).unwrap();
    let loaded = load_str("@include sources/*.conf\n", &main).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(&loaded.config.sources[0].kind, SourceKind::Forward(f) if f.port == 24230));
}

#[test]
fn unreadable_file_is_an_error() {
    let err = load(Path::new("/nonexistent/lograft.conf"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/lograft.conf") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn input_limits_parse_with_defaults() {
    let cfg =
        ok("<source>\n  @type forward\n</source>\n<match **>\n  @type null\n</match>\n").config;
    assert_eq!(cfg.system.max_in_flight_bytes, None);
    match &cfg.sources[0].kind {
        SourceKind::Forward(f) => {
            assert_eq!(f.max_connections, 16384);
            assert_eq!(f.idle_timeout, Duration::from_secs(300));
        }
        other => panic!("{other:?}"),
    }
    let cfg = ok("<system>\n  max_in_flight_bytes 64m\n</system>\n<source>\n  @type forward\n  max_connections 10\n  idle_timeout 2m\n</source>\n<match **>\n  @type null\n</match>\n")
        .config;
    assert_eq!(cfg.system.max_in_flight_bytes, Some(64 << 20));
    match &cfg.sources[0].kind {
        SourceKind::Forward(f) => {
            assert_eq!(f.max_connections, 10);
            assert_eq!(f.idle_timeout, Duration::from_secs(120));
        }
        other => panic!("{other:?}"),
    }
    let e = errors(
        "<system>\n  max_in_flight_bytes 10k\n</system>\n<match **>\n  @type null\n</match>\n",
    );
    assert!(
        e.contains(":2: 'max_in_flight_bytes'") && e.contains("at least 1m"),
        "{e}"
    );
    let e = errors("<source>\n  @type forward\n  max_connections many\n</source>\n<match **>\n  @type null\n</match>\n");
    assert!(e.contains("'max_connections'"), "{e}");
}

#[test]
fn out_forward_max_frame_size_defaults_to_4m_and_0_means_whole_chunks() {
    let conf = |extra: &str| {
        format!(
            "<match **>\n  @type forward\n  {extra}\n  <server>\n    host 127.0.0.1\n  </server>\n</match>\n"
        )
    };
    let loaded = ok(&conf(""));
    assert_eq!(
        forward_out(&loaded.config.matches[0]).max_frame_size,
        4 << 20
    );
    let loaded = ok(&conf("max_frame_size 6m"));
    assert_eq!(
        forward_out(&loaded.config.matches[0]).max_frame_size,
        6 << 20
    );
    let loaded = ok(&conf("max_frame_size 0"));
    assert_eq!(forward_out(&loaded.config.matches[0]).max_frame_size, 0);
    assert!(errors(&conf("max_frame_size huge")).contains("max_frame_size"));
}
