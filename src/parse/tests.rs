//! Tests of the `<parse>` formats: config text in, msgpack entries out.

use super::*;
use crate::config::element::Element;
use crate::event::EntryIter;

fn parser(params: &[(&str, &str)]) -> LineParser {
    let loc = crate::config::Location {
        file: "t.conf".into(),
        line: 1,
    };
    let mut el = Element::new("parse", "", loc.clone());
    for (k, v) in params {
        el.params.push(crate::config::element::Param {
            key: k.to_string(),
            value: v.to_string(),
            location: loc.clone(),
        });
    }
    let mut d = Diag::default();
    let cfg = build(&el, "test", &mut d).expect("parse config");
    assert!(d.errors.is_empty(), "{:?}", d.errors);
    LineParser::new(&cfg)
}

const NOW: EventTime = EventTime { secs: 5, nanos: 0 };

/// Parse lines; returns (outcomes, decoded events as (secs, JSON record)).
fn run(p: &mut LineParser, lines: &[&str]) -> (Vec<Outcome>, Vec<(u32, serde_json::Value)>) {
    let mut out = BytesMut::new();
    let outcomes = lines
        .iter()
        .map(|l| p.parse(l.as_bytes(), NOW, Some(("path", "/x.log")), &mut out))
        .collect();
    let events = EntryIter::new(&out)
        .map(|e| {
            let e = e.unwrap();
            (e.time.secs, rmp_serde::from_slice(e.record).unwrap())
        })
        .collect();
    (outcomes, events)
}

#[test]
fn none_keeps_the_line() {
    let mut p = parser(&[("@type", "none")]);
    let (_, ev) = run(&mut p, &["hello world"]);
    assert_eq!(
        ev,
        vec![(
            5,
            serde_json::json!({"message": "hello world", "path": "/x.log"})
        )]
    );
}

#[test]
fn json_takes_time_and_unmatched_lines() {
    let mut p = parser(&[("@type", "json")]);
    let (o, ev) = run(
        &mut p,
        &[r#"{"a":1,"time":1700000000,"b":{"c":true}}"#, "not json"],
    );
    assert_eq!(o, vec![Outcome::Event, Outcome::Unmatched]);
    assert_eq!(ev[0].0, 1_700_000_000);
    assert_eq!(
        ev[0].1,
        serde_json::json!({"a": 1, "b": {"c": true}, "path": "/x.log"})
    );
}

#[test]
fn regexp_with_time_format_types_and_keep_time_key() {
    let mut p = parser(&[
        ("@type", "regexp"),
        (
            "expression",
            r#"/^(?<time>[^ ]+ [^ ]+) (?<level>\w+) (?<n>\d+) (?<msg>.*)$/"#,
        ),
        ("time_format", "%Y-%m-%d %H:%M:%S"),
        ("types", "n:integer"),
        ("keep_time_key", "true"),
    ]);
    let (o, ev) = run(&mut p, &["2023-11-14 22:13:20 INFO 42 started", "garbage"]);
    assert_eq!(o, vec![Outcome::Event, Outcome::Unmatched]);
    assert_eq!(ev[0].0, 1_700_000_000);
    assert_eq!(
        ev[0].1,
        serde_json::json!({"time": "2023-11-14 22:13:20", "level": "INFO", "n": 42, "msg": "started", "path": "/x.log"})
    );
}

#[test]
fn apache2_and_nginx() {
    let mut p = parser(&[("@type", "apache2")]);
    let (_, ev) = run(
        &mut p,
        &[
            r#"192.168.0.1 - - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0""#,
        ],
    );
    assert_eq!(ev[0].0, 1_362_020_400);
    assert_eq!(ev[0].1["code"], 200);
    assert_eq!(ev[0].1["size"], 777);
    assert_eq!(ev[0].1["referer"], serde_json::Value::Null);
    assert_eq!(ev[0].1["agent"], "Opera/12.0");
    let mut p = parser(&[("@type", "nginx")]);
    let (_, ev) = run(
        &mut p,
        &[
            r#"127.0.0.1 192.168.0.1 - [28/Feb/2013:12:00:00 +0900] "GET / HTTP/1.1" 200 777 "-" "Opera/12.0" -"#,
        ],
    );
    assert_eq!(ev[0].1["remote"], "127.0.0.1");
    assert_eq!(ev[0].1["method"], "GET");
}

#[test]
fn cri_joins_partial_lines() {
    let mut p = parser(&[("@type", "cri")]);
    let (o, ev) = run(
        &mut p,
        &[
            "2023-11-14T22:13:20.5Z stdout P part one, ",
            "2023-11-14T22:13:20.6Z stdout P part two, ",
            "2023-11-14T22:13:20.7Z stdout F end",
            "2023-11-14T22:13:21Z stderr F alone",
            "bad line",
        ],
    );
    assert_eq!(
        o,
        vec![
            Outcome::Pending,
            Outcome::Pending,
            Outcome::Event,
            Outcome::Event,
            Outcome::Unmatched
        ]
    );
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].1["message"], "part one, part two, end");
    assert_eq!(ev[0].1["stream"], "stdout");
    assert_eq!(ev[0].0, 1_700_000_000);
    assert_eq!(ev[1].1["message"], "alone");
    assert_eq!(ev[1].1["stream"], "stderr");
}

#[test]
fn docker_json_file_joins_split_lines() {
    let mut p = parser(&[("@type", "docker")]);
    let (o, ev) = run(
        &mut p,
        &[
            r#"{"log":"first half ","stream":"stdout","time":"2023-11-14T22:13:20.5Z"}"#,
            r#"{"log":"second half\n","stream":"stdout","time":"2023-11-14T22:13:20.6Z"}"#,
            r#"{"log":"other\n","stream":"stderr","time":"2023-11-14T22:13:21Z"}"#,
            "{}",
        ],
    );
    assert_eq!(
        o,
        vec![
            Outcome::Pending,
            Outcome::Event,
            Outcome::Event,
            Outcome::Unmatched
        ]
    );
    assert_eq!(ev[0].1["log"], "first half second half");
    assert_eq!(ev[0].1["stream"], "stdout");
    assert_eq!(ev[0].0, 1_700_000_000);
    assert_eq!(ev[1].1["log"], "other");
}

#[test]
fn bad_parse_config_is_an_error() {
    let loc = crate::config::Location {
        file: "t.conf".into(),
        line: 3,
    };
    let mut el = Element::new("parse", "", loc.clone());
    el.params.push(crate::config::element::Param {
        key: "@type".into(),
        value: "regexp".into(),
        location: loc.clone(),
    });
    el.params.push(crate::config::element::Param {
        key: "expression".into(),
        value: "/no captures/".into(),
        location: loc,
    });
    let mut d = Diag::default();
    let _ = build(&el, "test", &mut d);
    assert!(
        d.errors
            .iter()
            .any(|e| e.to_string().contains("named capture")),
        "{:?}",
        d.errors
    );
}

#[test]
fn csv_tsv_ltsv() {
    let mut p = parser(&[("@type", "csv"), ("keys", "a,b,c"), ("types", "c:integer")]);
    let (_, ev) = run(&mut p, &[r#"x,"y, ""quoted""",3"#]);
    assert_eq!(
        ev[0].1,
        serde_json::json!({"a": "x", "b": "y, \"quoted\"", "c": 3, "path": "/x.log"})
    );
    let mut p = parser(&[("@type", "tsv"), ("keys", "a,b")]);
    let (_, ev) = run(&mut p, &["1\t2"]);
    assert_eq!(ev[0].1["b"], "2");
    let mut p = parser(&[("@type", "ltsv")]);
    let (_, ev) = run(&mut p, &["host:h1\tcode:200\ttime:1700000000"]);
    assert_eq!(ev[0].0, 1_700_000_000);
    assert_eq!(
        ev[0].1,
        serde_json::json!({"host": "h1", "code": "200", "path": "/x.log"})
    );
}

#[test]
fn syslog_3164_and_5424() {
    let mut p = parser(&[("@type", "syslog")]);
    let (o, ev) = run(
        &mut p,
        &[
            "Feb 28 12:00:00 192.168.0.1 fluentd[11111]: [error] Syslog test",
            "nope",
        ],
    );
    assert_eq!(o, vec![Outcome::Event, Outcome::Unmatched]);
    assert_eq!(ev[0].1["host"], "192.168.0.1");
    assert_eq!(ev[0].1["ident"], "fluentd");
    assert_eq!(ev[0].1["pid"], "11111");
    assert_eq!(ev[0].1["message"], "[error] Syslog test");
    let mut p = parser(&[("@type", "syslog"), ("message_format", "auto")]);
    let (_, ev) = run(
        &mut p,
        &[
            r#"<16>1 2013-02-28T12:00:00.003Z 192.168.0.1 fluentd 11111 ID24224 [exampleSDID@20224 iut="3" eventSource="Application"] Hi, from Fluentd!"#,
        ],
    );
    assert_eq!(ev[0].0, 1_362_052_800);
    assert_eq!(ev[0].1["pri"], 16);
    assert_eq!(ev[0].1["msgid"], "ID24224");
    assert_eq!(ev[0].1["message"], "Hi, from Fluentd!");
    assert!(ev[0].1["extradata"]
        .as_str()
        .unwrap()
        .starts_with("[exampleSDID"));
}

#[test]
fn multiline_groups_lines_from_firstline_to_firstline() {
    let mut p = parser(&[
        ("@type", "multiline"),
        ("format_firstline", r"/^\d{4}-\d{2}-\d{2}/"),
        (
            "format1",
            r"/^(?<time>\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?<level>\w+) /",
        ),
        ("format2", r"/(?<message>.*)/"),
        ("time_format", "%Y-%m-%d %H:%M:%S"),
    ]);
    let mut out = BytesMut::new();
    let lines = [
        "stray line before any group",
        "2023-11-14 22:13:20 ERROR boom",
        "  at frame 1",
        "  at frame 2",
        "2023-11-14 22:13:21 INFO next",
    ];
    let outcomes: Vec<Outcome> = lines
        .iter()
        .map(|l| p.parse(l.as_bytes(), NOW, None, &mut out))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Unmatched,
            Outcome::Pending,
            Outcome::Pending,
            Outcome::Pending,
            Outcome::Event
        ]
    );
    assert!(p.began_group(), "the last line started the next group");
    assert_eq!(p.flush(NOW, None, &mut out), Outcome::Event);
    let events: Vec<(u32, serde_json::Value)> = EntryIter::new(&out)
        .map(|e| {
            let e = e.unwrap();
            (e.time.secs, rmp_serde::from_slice(e.record).unwrap())
        })
        .collect();
    assert_eq!(events[0].0, 1_700_000_000);
    assert_eq!(events[0].1["message"], "boom\n  at frame 1\n  at frame 2");
    assert_eq!(events[0].1["level"], "ERROR");
    assert_eq!(events[1].1["message"], "next");
}
