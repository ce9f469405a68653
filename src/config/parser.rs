//! Fluentd config syntax → [`Element`] tree, following `@include`s.
//!
//! Owns the text level only: sections, parameters, comments, quoting, multi-line JSON values,
//! includes (relative to the including file, globs sorted), and syntax errors with `FILE:LINE`.
//! It must not interpret parameter names or values (that is `build`). Reading files is blocking
//! I/O: call it before starting the async runtime or from `spawn_blocking`.

use super::element::{Element, Param};
use super::{ConfigError, ConfigErrors, Location};
use std::path::{Path, PathBuf};

/// Parses the file at `path` and every file it includes.
pub fn parse_file(path: &Path) -> Result<Element, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, path),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            location: Location {
                file: path.to_path_buf(),
                line: 0,
            },
            message: format!("cannot read config file: {e}"),
        }])),
    }
}

/// Parses `text` as if it were the content of `path` (used for messages and to resolve
/// relative `@include`s against `path`'s directory).
pub fn parse_str(text: &str, path: &Path) -> Result<Element, ConfigErrors> {
    let mut ctx = Ctx {
        errors: Vec::new(),
        include_stack: vec![canonical(path)],
    };
    let mut root = Element::new("ROOT", "", location(path, 1));
    parse_into(&mut ctx, text, path, &mut root);
    if ctx.errors.is_empty() {
        Ok(root)
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

fn location(file: &Path, line: usize) -> Location {
    Location {
        file: file.to_path_buf(),
        line,
    }
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// State shared by a file and the files it includes.
struct Ctx {
    errors: Vec<ConfigError>,
    /// Files being parsed, outermost first (to refuse include cycles).
    include_stack: Vec<PathBuf>,
}

impl Ctx {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            location,
            message: message.into(),
        });
    }
}

/// A syntax error after which the rest of the file cannot be read (already recorded).
struct Abort;

/// How a section body ended.
enum Ended {
    EndOfFile,
    /// By its own close tag.
    Closed,
    /// By the close tag of an enclosing section (named), the inner one being unclosed.
    ClosedOuter(String),
}

/// Parses one file's text into `target` (the root, or the section holding an `@include`).
fn parse_into(ctx: &mut Ctx, text: &str, file: &Path, target: &mut Element) {
    let mut parser = FileParser {
        src: text,
        pos: 0,
        line: 1,
        file: file.to_path_buf(),
    };
    let root_level = target.name == "ROOT";
    // Errors that abort were recorded where they happened.
    let _ = parser.body(ctx, target, &[], root_level);
}

struct FileParser<'t> {
    src: &'t str,
    pos: usize,
    line: usize,
    file: PathBuf,
}

/// An open section, for matching close tags.
struct Open<'a> {
    name: &'a str,
    location: &'a Location,
}

impl<'t> FileParser<'t> {
    fn loc(&self, line: usize) -> Location {
        location(&self.file, line)
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// Skips spaces and tabs (and `\r`) on the current line.
    fn skip_inline_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Moves to the `\n` ending the current line (not consuming it).
    fn skip_to_line_end(&mut self) {
        while !matches!(self.peek(), None | Some(b'\n')) {
            self.pos += 1;
        }
    }

    /// Skips whitespace, blank lines and `#` comment lines.
    fn skip_blank_and_comments(&mut self) {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.bump();
                }
                Some(b'#') => self.skip_to_line_end(),
                _ => return,
            }
        }
    }

    /// After a complete item: only spaces and an optional comment may remain on the line.
    /// Records an error otherwise (and skips the rest of the line).
    fn expect_line_end(&mut self, ctx: &mut Ctx, after: &str) {
        self.skip_inline_spaces();
        match self.peek() {
            None | Some(b'\n') => {}
            Some(b'#') => self.skip_to_line_end(),
            Some(_) => {
                let start = self.pos;
                self.skip_to_line_end();
                let extra = self.src[start..self.pos].trim_end();
                ctx.error(
                    self.loc(self.line),
                    format!("unexpected text '{extra}' after {after}"),
                );
            }
        }
    }

    /// Text up to `>` on the current line; `None` (position unchanged) if there is none.
    fn tag_content(&mut self) -> Option<&'t str> {
        let rest = &self.src[self.pos..];
        let line = rest.split('\n').next().unwrap_or("");
        let end = line.find('>')?;
        self.pos += end + 1;
        Some(&line[..end])
    }

    /// Parses a section body (or a whole file when `open` is empty) into `target`.
    fn body(
        &mut self,
        ctx: &mut Ctx,
        target: &mut Element,
        open: &[Open<'_>],
        root_level: bool,
    ) -> Result<Ended, Abort> {
        loop {
            self.skip_blank_and_comments();
            let Some(first) = self.peek() else {
                if let Some(inner) = open.last() {
                    ctx.error(
                        inner.location.clone(),
                        format!(
                            "<{0}> is never closed: expected </{0}> before the end of {1}",
                            inner.name,
                            self.file.display()
                        ),
                    );
                }
                return Ok(Ended::EndOfFile);
            };
            let line = self.line;
            if self.src[self.pos..].starts_with("</") {
                self.pos += 2;
                let Some(content) = self.tag_content() else {
                    ctx.error(self.loc(line), "expected '>' to end the close tag");
                    self.skip_to_line_end();
                    continue;
                };
                let name = content.trim();
                self.expect_line_end(ctx, &format!("</{name}>"));
                match open.last() {
                    None => ctx.error(
                        self.loc(line),
                        format!("</{name}> has no matching open tag"),
                    ),
                    Some(inner) if inner.name == name => return Ok(Ended::Closed),
                    Some(inner) => {
                        if open.iter().any(|o| o.name == name) {
                            ctx.error(
                                inner.location.clone(),
                                format!(
                                    "<{0}> is not closed: expected </{0}> before </{1}> at line {2}",
                                    inner.name, name, line
                                ),
                            );
                            return Ok(Ended::ClosedOuter(name.to_string()));
                        }
                        ctx.error(
                            self.loc(line),
                            format!(
                                "</{name}> does not match the open <{}> (line {}); expected </{}>",
                                inner.name, inner.location.line, inner.name
                            ),
                        );
                    }
                }
            } else if first == b'<' {
                self.pos += 1;
                let Some(content) = self.tag_content() else {
                    ctx.error(self.loc(line), "expected '>' to end the section tag");
                    self.skip_to_line_end();
                    continue;
                };
                let name_len = content
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .count();
                let (name, arg) = content.split_at(name_len);
                if name.is_empty() || !(arg.is_empty() || arg.starts_with([' ', '\t'])) {
                    ctx.error(
                        self.loc(line),
                        format!(
                            "invalid section tag '<{content}>': expected <name> or <name argument>"
                        ),
                    );
                    self.skip_to_line_end();
                    continue;
                }
                self.expect_line_end(ctx, &format!("<{content}>"));
                let mut child = Element::new(name, arg.trim(), self.loc(line));
                let child_location = child.location.clone();
                let mut stack: Vec<Open<'_>> = open
                    .iter()
                    .map(|o| Open {
                        name: o.name,
                        location: o.location,
                    })
                    .collect();
                stack.push(Open {
                    name,
                    location: &child_location,
                });
                let ended = self.body(ctx, &mut child, &stack, false);
                target.children.push(child);
                match ended? {
                    Ended::EndOfFile => {
                        if let Some(outer) = open.last() {
                            ctx.error(
                                outer.location.clone(),
                                format!(
                                    "<{0}> is never closed: expected </{0}> before the end of {1}",
                                    outer.name,
                                    self.file.display()
                                ),
                            );
                        }
                        return Ok(Ended::EndOfFile);
                    }
                    Ended::Closed => {}
                    Ended::ClosedOuter(outer) => {
                        if open.last().is_some_and(|o| o.name == outer) {
                            return Ok(Ended::Closed);
                        }
                        return Ok(Ended::ClosedOuter(outer));
                    }
                }
            } else {
                self.parameter(ctx, target, root_level)?;
            }
        }
    }

    /// One `key value` line (or `@include`).
    fn parameter(
        &mut self,
        ctx: &mut Ctx,
        target: &mut Element,
        root_level: bool,
    ) -> Result<(), Abort> {
        let line = self.line;
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
        let key = self.src[start..self.pos].to_string();
        if key == "@include" || (key == "include" && root_level) {
            let spec = self.value(ctx, &key, line)?;
            self.include(ctx, target, spec.trim(), line, root_level);
            return Ok(());
        }
        let value = self.value(ctx, &key, line)?;
        target.params.push(Param {
            key,
            value,
            location: self.loc(line),
        });
        Ok(())
    }

    /// The value after a key, up to the end of its line (or of its quotes / JSON brackets).
    fn value(&mut self, ctx: &mut Ctx, key: &str, line: usize) -> Result<String, Abort> {
        self.skip_inline_spaces();
        match self.peek() {
            None | Some(b'\n') => Ok(String::new()),
            Some(b'#') => {
                self.skip_to_line_end();
                Ok(String::new())
            }
            Some(b'"') => {
                self.pos += 1;
                let v = self.quoted(ctx, key, line, b'"')?;
                self.expect_line_end(ctx, &format!("the quoted value of '{key}'"));
                Ok(v)
            }
            Some(b'\'') => {
                self.pos += 1;
                let v = self.quoted(ctx, key, line, b'\'')?;
                self.expect_line_end(ctx, &format!("the quoted value of '{key}'"));
                Ok(v)
            }
            Some(open @ (b'[' | b'{')) if self.plausible_json_start(open) => {
                self.json(ctx, key, line, open)
            }
            Some(_) => Ok(self.unquoted()),
        }
    }

    /// Whether the text after the opening bracket can begin a JSON array/hash; if not (e.g.
    /// `[%{time}] ...`), the value is read as an unquoted string instead of running to the end of
    /// the file looking for a closing bracket.
    fn plausible_json_start(&self, open: u8) -> bool {
        let rest = self.src[self.pos + 1..].split('\n').next().unwrap_or("");
        let rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return true;
        };
        match (open, first) {
            (_, '"' | '#') | (b'{', '}') => true,
            (b'[', ']' | '[' | '{' | '-' | '0'..='9') => true,
            (b'[', c) if c.is_ascii_alphabetic() => {
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                matches!(word.as_str(), "true" | "false" | "null")
            }
            _ => false,
        }
    }

    /// Unquoted: to the end of the line; ` #` (a `#` after a space) starts a comment.
    fn unquoted(&mut self) -> String {
        let start = self.pos;
        let mut end = self.pos;
        while let Some(b) = self.peek() {
            if b == b'\n' {
                break;
            }
            if b == b'#'
                && self.pos > start
                && matches!(self.src.as_bytes()[self.pos - 1], b' ' | b'\t')
            {
                self.skip_to_line_end();
                break;
            }
            self.pos += 1;
            end = self.pos;
        }
        self.src[start..end].trim_end().to_string()
    }

    /// A quoted value after its opening `quote`, up to the closing one (may span lines).
    /// Double quotes: escapes `\" \\ \' \n \t \r \f \b`, a backslash before any other symbol
    /// keeps the symbol, a backslash before a letter or digit is an error. Single quotes: only
    /// `\'` and `\\` are escapes, as in Fluentd.
    fn quoted(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        line: usize,
        quote: u8,
    ) -> Result<String, Abort> {
        let mut out = String::new();
        let mut segment = self.pos;
        loop {
            match self.peek() {
                None => {
                    let (style, mark) = if quote == b'"' {
                        ("double", '"')
                    } else {
                        ("single", '\'')
                    };
                    ctx.error(
                        self.loc(line),
                        format!(
                            "the {style}-quoted value of '{key}' is never closed (missing {mark})"
                        ),
                    );
                    return Err(Abort);
                }
                Some(b) if b == quote => {
                    out.push_str(&self.src[segment..self.pos]);
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') if quote == b'\'' => {
                    // Single quotes: only \' and \\ are escapes; any other backslash is literal.
                    if let Some(&c @ (b'\'' | b'\\')) = self.src.as_bytes().get(self.pos + 1) {
                        out.push_str(&self.src[segment..self.pos]);
                        out.push(c as char);
                        self.pos += 2;
                        segment = self.pos;
                    } else {
                        self.bump();
                    }
                }
                Some(b'\\') => {
                    out.push_str(&self.src[segment..self.pos]);
                    self.pos += 1;
                    let Some(c) = self.src[self.pos..].chars().next() else {
                        continue;
                    };
                    let replacement = match c {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'f' => '\u{c}',
                        'b' => '\u{8}',
                        c if c.is_ascii_alphanumeric() => {
                            ctx.error(
                                self.loc(self.line),
                                format!("unknown escape '\\{c}' in the value of '{key}'"),
                            );
                            c
                        }
                        other => other,
                    };
                    out.push(replacement);
                    for _ in 0..c.len_utf8() {
                        self.bump();
                    }
                    segment = self.pos;
                }
                Some(_) => {
                    self.bump();
                }
            }
        }
    }

    /// A JSON array or hash, possibly over several lines (`#` comments outside strings allowed).
    /// Stored compact. A one-line value that is not valid JSON is kept as an unquoted string.
    fn json(&mut self, ctx: &mut Ctx, key: &str, line: usize, open: u8) -> Result<String, Abort> {
        let start_pos = self.pos;
        let what = if open == b'[' { "array" } else { "hash" };
        let mut text = String::new();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut segment = self.pos;
        loop {
            let Some(b) = self.peek() else {
                ctx.error(
                    self.loc(line),
                    format!("the JSON {what} value of '{key}' is never closed (reached the end of the file)"),
                );
                return Err(Abort);
            };
            if in_string {
                match b {
                    b'\\' => {
                        self.bump();
                        self.bump();
                    }
                    b'"' => {
                        in_string = false;
                        self.bump();
                    }
                    _ => {
                        self.bump();
                    }
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                b'#' => {
                    text.push_str(&self.src[segment..self.pos]);
                    self.skip_to_line_end();
                    segment = self.pos;
                    continue;
                }
                _ => {}
            }
            self.bump();
            if depth == 0 {
                break;
            }
        }
        text.push_str(&self.src[segment..self.pos]);
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(parsed) => {
                self.expect_line_end(ctx, &format!("the JSON value of '{key}'"));
                Ok(parsed.to_string())
            }
            Err(_) if self.line == line => {
                self.pos = start_pos;
                Ok(self.unquoted())
            }
            Err(e) => {
                ctx.error(
                    self.loc(line),
                    format!("the value of '{key}' starts a JSON {what} over several lines but is not valid JSON: {e}"),
                );
                self.expect_line_end(ctx, &format!("the JSON value of '{key}'"));
                Ok(text)
            }
        }
    }

    /// `@include PATH_OR_GLOB`: parses each matching file (sorted) into `target`.
    fn include(
        &mut self,
        ctx: &mut Ctx,
        target: &mut Element,
        spec: &str,
        line: usize,
        root_level: bool,
    ) {
        let here = self.loc(line);
        if spec.is_empty() {
            ctx.error(here, "@include needs a path or glob");
            return;
        }
        let local = spec.strip_prefix("file://").unwrap_or(spec);
        if local.contains("://") {
            ctx.error(
                here,
                format!("@include {spec}: only local files can be included"),
            );
            return;
        }
        let base = match self.file.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let is_glob = local.contains(['*', '?', '[']);
        let files: Vec<PathBuf> = if is_glob {
            let pattern = if Path::new(local).is_absolute() {
                local.to_string()
            } else {
                format!(
                    "{}/{}",
                    glob::Pattern::escape(&base.to_string_lossy()),
                    local
                )
            };
            match glob::glob(&pattern) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths
                        .filter_map(Result::ok)
                        .filter(|p| p.is_file())
                        .collect();
                    found.sort();
                    found
                }
                Err(e) => {
                    ctx.error(here, format!("@include {spec}: invalid glob: {e}"));
                    return;
                }
            }
        } else {
            let path = base.join(local);
            if !path.is_file() {
                ctx.error(
                    here,
                    format!("@include {spec}: no such file ({})", path.display()),
                );
                return;
            }
            vec![path]
        };
        for path in files {
            let key = canonical(&path);
            if ctx.include_stack.contains(&key) {
                ctx.error(
                    here.clone(),
                    format!(
                        "@include {spec}: {} includes itself (include cycle)",
                        path.display()
                    ),
                );
                continue;
            }
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) => {
                    ctx.error(
                        here.clone(),
                        format!("@include {spec}: cannot read {}: {e}", path.display()),
                    );
                    continue;
                }
            };
            ctx.include_stack.push(key);
            let mut parser = FileParser {
                src: &text,
                pos: 0,
                line: 1,
                file: path.clone(),
            };
            let _ = parser.body(ctx, target, &[], root_level);
            ctx.include_stack.pop();
        }
    }
}

#[cfg(test)]
mod tests {
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
}
