//! `<parse> @type regexp` (`expression` with named captures, Ruby's `/.../flags` form
//! accepted), and the built-in expressions of `apache2` and `nginx` (Apache/nginx combined
//! log format). Owns matching a line and turning captures into fields; time and types are
//! [`super::common`]'s.

use super::common::{Fields, Value};
use crate::config::diag::Diag;
use crate::config::section::Section;
use regex::bytes::Regex;

#[derive(Debug, Clone)]
pub struct RegexpParams {
    pub expression: Regex,
    /// Fields whose capture is `-` become nil (apache2/nginx `size`, `referer`...).
    pub dash_is_nil: bool,
    /// Captures converted to integers (apache2/nginx `code` and `size`).
    pub integer_fields: &'static [&'static str],
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag) -> Option<RegexpParams> {
    let key = "expression";
    let expression = sec.typed(d, key, compile)?;
    // Fluentd's v0.12 regexp flags
    sec.raw("ignorecase");
    sec.raw("multiline");
    Some(RegexpParams {
        expression,
        dash_is_nil: false,
        integer_fields: &[],
    })
}

/// Compile an expression written as Fluentd takes it: bare, or `/.../` with Ruby flags
/// (`i` case-insensitive, `m` dot matches newline, `x` extended).
pub(crate) fn compile(text: &str) -> Result<Regex, crate::config::value::ValueError> {
    let mut body = text.trim();
    let mut flags = String::new();
    if let Some(rest) = body.strip_prefix('/') {
        if let Some(end) = rest.rfind('/') {
            for f in rest[end + 1..].chars() {
                match f {
                    'i' => flags.push('i'),
                    'm' => flags.push('s'),
                    'x' => flags.push('x'),
                    other => {
                        return Err(crate::config::value::ValueError::Invalid(format!(
                            "unknown regular expression flag '{other}'"
                        )))
                    }
                }
            }
            body = &rest[..end];
        }
    }
    let pattern = if flags.is_empty() {
        body.to_string()
    } else {
        format!("(?{flags}){body}")
    };
    let re = Regex::new(&pattern).map_err(|e| {
        crate::config::value::ValueError::Invalid(format!("invalid regular expression: {e}"))
    })?;
    if re.capture_names().flatten().next().is_none() {
        return Err(crate::config::value::ValueError::Invalid(
            "the expression has no named capture (?<name>...)".into(),
        ));
    }
    Ok(re)
}

impl RegexpParams {
    /// The named captures of a matching line, as string fields (unmatched optional groups
    /// left out); None when the line does not match.
    pub fn fields(&self, line: &[u8]) -> Option<Fields> {
        let caps = self.expression.captures(line)?;
        let mut out = Vec::new();
        for name in self.expression.capture_names().flatten() {
            let Some(m) = caps.name(name) else { continue };
            let text = String::from_utf8_lossy(m.as_bytes());
            let value = if self.dash_is_nil && text == "-" {
                Value::Nil
            } else if self.integer_fields.contains(&name) {
                text.parse::<i64>().map(Value::from).unwrap_or(Value::Nil)
            } else {
                Value::from(text.as_ref())
            };
            out.push((name.to_string(), value));
        }
        Some(out)
    }
}

/// Apache combined log format (Fluentd's `apache2`).
pub fn apache2() -> RegexpParams {
    RegexpParams {
        expression: Regex::new(concat!(
            r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "#,
            r#""(?<method>\S+)(?: +(?<path>(?:[^"]|\\.)*?)(?: +\S*)?)?" "#,
            r#"(?<code>[^ ]*) (?<size>[^ ]*)"#,
            r#"(?: "(?<referer>(?:[^"]|\\.)*)" "(?<agent>(?:[^"]|\\.)*)")?$"#
        ))
        .expect("built-in apache2 expression"),
        dash_is_nil: true,
        integer_fields: &["code", "size"],
    }
}

/// nginx's default `combined` log format (Fluentd's `nginx`).
pub fn nginx() -> RegexpParams {
    RegexpParams {
        expression: Regex::new(concat!(
            r#"^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "#,
            r#""(?<method>\S+)(?: +(?<path>[^"]*?)(?: +\S*)?)?" "#,
            r#"(?<code>[^ ]*) (?<size>[^ ]*)"#,
            r#"(?: "(?<referer>[^"]*)" "(?<agent>[^"]*)"(?:\s+(?<http_x_forwarded_for>[^ ]+))?)?$"#
        ))
        .expect("built-in nginx expression"),
        dash_is_nil: true,
        integer_fields: &["code", "size"],
    }
}
