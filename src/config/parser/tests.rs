//! Tests of the config file parser: syntax, includes, errors with file and line.

use super::*;

fn parse(text: &str) -> Element {
    parse_str(text, Path::new("/cfg/test.conf")).unwrap_or_else(|e| panic!("{e}"))
}

fn parse_err(text: &str) -> String {
    parse_str(text, Path::new("/cfg/test.conf"))
        .expect_err("expected a parse error")
        .to_string()
}

#[test]
fn sections_params_lines_and_comments() {
    let root = parse(
        "# top comment\n<source>\n  @type forward # trailing\n  port 24224\n</source>\n\n<match a.** b.*>\n  path /var/log/x#y\n  <server>\n    host h\n    standby\n  </server>\n</match>\n",
    );
    assert_eq!(root.children.len(), 2);
    let source = &root.children[0];
    assert_eq!((source.name.as_str(), source.location.line), ("source", 2));
    assert_eq!(source.value("@type"), Some("forward"));
    assert_eq!(source.param("port").unwrap().location.line, 4);
    let m = &root.children[1];
    assert_eq!(m.arg, "a.** b.*");
    // '#' not preceded by a space is part of the value.
    assert_eq!(m.value("path"), Some("/var/log/x#y"));
    let server = &m.children[0];
    assert_eq!(server.value("standby"), Some(""));
    assert_eq!(server.location.to_string(), "/cfg/test.conf:9");
}

#[test]
fn quoted_values_and_escapes() {
    let root = parse(concat!(
        "<system>\n",
        "  a \"x \\\"q\\\" \\\\ \\n\\t\\r # not a comment\" # comment\n",
        "  b 'single \\n # kept' \n",
        "  c \"line1\nline2\"\n",
        "  d 'it\\'s'\n",
        "  e \"é\\$\"\n",
        "</system>\n"
    ));
    let s = &root.children[0];
    assert_eq!(s.value("a"), Some("x \"q\" \\ \n\t\r # not a comment"));
    assert_eq!(s.value("b"), Some("single \\n # kept"));
    assert_eq!(s.value("c"), Some("line1\nline2"));
    assert_eq!(s.param("d").unwrap().location.line, 6);
    assert_eq!(s.value("d"), Some("it's"));
    assert_eq!(s.value("e"), Some("é$"));
    assert!(parse_err("<system>\n  a \"\\q\"\n</system>\n").contains("unknown escape '\\q'"));
    let err = parse_err("<system>\n  a \"open\n</system>\n");
    assert!(
        err.contains("test.conf:2:") && err.contains("never closed"),
        "{err}"
    );
}

#[test]
fn multi_line_json_values() {
    let root = parse(concat!(
        "<source>\n",
        "  list [\"a\", # first\n",
        "    \"b#c\"]\n",
        "  map {\"k\": \"v\",\n",
        "       \"n\": 1}\n",
        "  plain [not json\n",
        "  after x\n",
        "</source>\n"
    ));
    let s = &root.children[0];
    assert_eq!(s.value("list"), Some(r#"["a","b#c"]"#));
    assert_eq!(s.value("map"), Some(r#"{"k":"v","n":1}"#));
    assert_eq!(s.param("after").unwrap().location.line, 7);
    let err = parse_err("<source>\n  list [\"a\",\n</source>\n");
    assert!(
        err.contains("test.conf:2:") && err.contains("JSON array"),
        "{err}"
    );
}

#[test]
fn structural_errors_name_file_and_line() {
    let err = parse_err("<source>\n  @type forward\n");
    assert!(
        err.contains("test.conf:1: <source> is never closed"),
        "{err}"
    );
    let err = parse_err("</match>\n");
    assert!(
        err.contains("test.conf:1: </match> has no matching open tag"),
        "{err}"
    );
    let err = parse_err("<match x>\n  <server>\n</match>\n");
    assert!(err.contains("test.conf:2: <server> is not closed"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let err = parse_err("<match x>\n  </source>\n</match>\n");
    assert!(
        err.contains("test.conf:2: </source> does not match the open <match>"),
        "{err}"
    );
    let err = parse_err("<match x\n");
    assert!(err.contains("expected '>'"), "{err}");
    let err = parse_err("<source> junk\n</source>\n");
    assert!(err.contains("unexpected text 'junk'"), "{err}");
}

#[test]
fn includes_globs_sorted_relative_and_inside_sections() {
    let dir = tempfile::tempdir().unwrap();
    let conf_d = dir.path().join("conf.d");
    std::fs::create_dir(&conf_d).unwrap();
    std::fs::write(
        conf_d.join("b.conf"),
        "<match b.**>\n  @type null\n</match>\n",
    )
    .unwrap();
    std::fs::write(
        conf_d.join("a.conf"),
        "<match a.**>\n  @type null\n</match>\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("server.inc"), "host 10.0.0.1\nport 1234\n").unwrap();
    let main = dir.path().join("main.conf");
    let text = "@include conf.d/*.conf\n@include nothing/*.conf\n<match c>\n  <server>\n    @include server.inc\n  </server>\n</match>\n";
    std::fs::write(&main, text).unwrap();
    let root = parse_file(&main).unwrap_or_else(|e| panic!("{e}"));
    let args: Vec<&str> = root.children.iter().map(|c| c.arg.as_str()).collect();
    assert_eq!(args, vec!["a.**", "b.**", "c"]);
    assert_eq!(root.children[0].location.file, conf_d.join("a.conf"));
    let server = &root.children[2].children[0];
    assert_eq!(server.value("host"), Some("10.0.0.1"));
    assert_eq!(
        server.param("port").unwrap().location.file,
        dir.path().join("server.inc")
    );
    assert_eq!(server.param("port").unwrap().location.line, 2);

    // A plain path that does not exist is an error; a cycle is refused.
    let err = parse_str("@include missing.conf\n", &main)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("main.conf:1:") && err.contains("no such file"),
        "{err}"
    );
    let looped = dir.path().join("loop.conf");
    std::fs::write(&looped, "@include loop.conf\n").unwrap();
    let err = parse_file(&looped).unwrap_err().to_string();
    assert!(err.contains("include cycle"), "{err}");
}
