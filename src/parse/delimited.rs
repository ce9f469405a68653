//! The delimited formats: `csv` (`keys`, `delimiter` `,`, RFC 4180 quoting), `tsv` (`keys`,
//! `delimiter` tab) and `ltsv` (`label:value` pairs; `delimiter` tab, `label_delimiter` `:`).
//! Owns only splitting a line into fields; time and types are [`super::common`]'s.

use super::common::{Fields, Value};
use crate::config::diag::Diag;
use crate::config::section::Section;

#[derive(Debug, Clone)]
pub enum Delimited {
    Csv {
        keys: Vec<String>,
        delimiter: char,
    },
    Tsv {
        keys: Vec<String>,
        delimiter: String,
    },
    Ltsv {
        delimiter: String,
        label_delimiter: String,
    },
}

pub(crate) fn build(sec: &mut Section<'_>, d: &mut Diag, format: &str) -> Delimited {
    match format {
        "ltsv" => Delimited::Ltsv {
            delimiter: sec.string("delimiter").unwrap_or_else(|| "\t".into()),
            label_delimiter: sec.string("label_delimiter").unwrap_or_else(|| ":".into()),
        },
        _ => {
            let keys = match sec.array(d, "keys") {
                Some(k) => k,
                None => {
                    sec.missing(d, "keys");
                    Vec::new()
                }
            };
            sec.raw("parser_engine");
            if format == "csv" {
                let delimiter = sec.string("delimiter").unwrap_or_else(|| ",".into());
                let mut chars = delimiter.chars();
                let c = chars.next().unwrap_or(',');
                if chars.next().is_some() {
                    sec.missing(d, "delimiter (one character)");
                }
                Delimited::Csv { keys, delimiter: c }
            } else {
                Delimited::Tsv {
                    keys,
                    delimiter: sec.string("delimiter").unwrap_or_else(|| "\t".into()),
                }
            }
        }
    }
}

impl Delimited {
    pub fn fields(&self, line: &[u8]) -> Option<Fields> {
        let line = String::from_utf8_lossy(line);
        match self {
            Delimited::Csv { keys, delimiter } => {
                let values = split_csv(&line, *delimiter)?;
                Some(zip(keys, values))
            }
            Delimited::Tsv { keys, delimiter } => Some(zip(
                keys,
                line.split(delimiter.as_str()).map(str::to_string).collect(),
            )),
            Delimited::Ltsv {
                delimiter,
                label_delimiter,
            } => Some(
                line.split(delimiter.as_str())
                    .filter(|p| !p.is_empty())
                    .map(|p| match p.split_once(label_delimiter.as_str()) {
                        Some((k, v)) => (k.to_string(), Value::from(v)),
                        None => (p.to_string(), Value::Nil),
                    })
                    .collect(),
            ),
        }
    }
}

fn zip(keys: &[String], values: Vec<String>) -> Fields {
    keys.iter()
        .zip(values)
        .map(|(k, v)| (k.clone(), Value::from(v)))
        .collect()
}

/// Split one CSV record: fields may be quoted (`"a,b"`, `""` for a quote). None for an
/// unterminated quote.
fn split_csv(line: &str, delimiter: char) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            '"' if field.is_empty() => quoted = true,
            c if c == delimiter && !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return None;
    }
    out.push(field);
    Some(out)
}
