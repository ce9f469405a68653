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
mod tests;
