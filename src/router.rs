//! Router: Fluentd `<match>` patterns, and sending each batch to the first matching pipeline.
//!
//! Owns pattern compilation with Fluentd's semantics — `*` matches one tag part, `**` zero or
//! more parts (`a.**` matches `a`, `a.b`, `a.b.c`), `{x,y}` any alternative, several patterns in
//! one directive, first directive that matches wins — and a tag → route cache. Events whose tag
//! matches nothing are dropped with a rate-limited warning, as Fluentd does. The router must not
//! store data itself: its [`Emit`] answer is the buffer's.

use crate::buffer::Buffer;
use crate::event::EventBatch;
use crate::log_limit::WarnLimiter;
use crate::pipeline::{BoxFuture, Emit, EmitError, SourceMark};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// One compiled `<match>` pattern.
#[derive(Debug, Clone)]
pub struct MatchPattern {
    source: String,
    regex: Regex,
}

/// A pattern that could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid match pattern '{pattern}': {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

impl MatchPattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let chars: Vec<char> = pattern.chars().collect();
        let (body, end) = compile_glob(&chars, 0, false).map_err(|r| err(&r))?;
        if end != chars.len() {
            return Err(err("unbalanced '}'"));
        }
        let regex = Regex::new(&format!("^{body}$")).map_err(|e| err(&e.to_string()))?;
        Ok(MatchPattern {
            source: pattern.to_string(),
            regex,
        })
    }

    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }
}

/// Compile glob chars from `i` into a regex; inside braces, stop at `,` or `}`.
fn compile_glob(p: &[char], mut i: usize, in_brace: bool) -> Result<(String, usize), String> {
    let mut out = String::new();
    while i < p.len() {
        let c = p[i];
        match c {
            '*' if p.get(i + 1) == Some(&'*') => {
                if p.get(i + 2) == Some(&'.') {
                    // `**.x`: zero or more leading parts
                    out.push_str(r"(?:.*\.)?");
                    i += 3;
                } else {
                    out.push_str(".*");
                    i += 2;
                }
            }
            '*' => {
                out.push_str(r"[^.]*");
                i += 1;
            }
            '.' if p.get(i + 1) == Some(&'*') && p.get(i + 2) == Some(&'*') => {
                // `x.**`: zero or more trailing parts (so `a.**` matches `a`)
                out.push_str(r"(?:\..*)?");
                i += 3;
            }
            '{' => {
                let mut alts = Vec::new();
                i += 1;
                loop {
                    let (alt, next) = compile_glob(p, i, true)?;
                    alts.push(alt);
                    match p.get(next) {
                        Some(',') => i = next + 1,
                        Some('}') => {
                            i = next + 1;
                            break;
                        }
                        _ => return Err("unclosed '{'".into()),
                    }
                }
                out.push_str(&format!("(?:{})", alts.join("|")));
            }
            ',' | '}' if in_brace => return Ok((out, i)),
            '}' => return Err("unbalanced '}'".into()),
            c if c.is_whitespace() => return Err("whitespace inside a pattern".into()),
            c => {
                out.push_str(&regex::escape(&c.to_string()));
                i += 1;
            }
        }
    }
    Ok((out, i))
}

/// Where events for a `<match>` go.
pub struct Route {
    pub patterns: Vec<MatchPattern>,
    pub buffer: Arc<Buffer>,
}

/// Which `<match>` a tag belongs to: the first whose patterns match, as in Fluentd. Caches
/// answers per tag. Shared by the [`Router`] and the aggregator cluster, which routes the
/// same way but stores into the Raft log instead of a buffer.
pub struct TagRoutes {
    patterns: Vec<Vec<MatchPattern>>,
    cache: RwLock<HashMap<String, Option<usize>>>,
    unmatched: WarnLimiter,
}

const CACHE_LIMIT: usize = 4096;

impl TagRoutes {
    /// `patterns[i]`: the patterns of the `i`-th `<match>`.
    pub fn new(patterns: Vec<Vec<MatchPattern>>) -> Self {
        TagRoutes {
            patterns,
            cache: RwLock::new(HashMap::new()),
            unmatched: WarnLimiter::default(),
        }
    }

    /// Index of the first `<match>` whose patterns match `tag`.
    pub fn route_for(&self, tag: &str) -> Option<usize> {
        if let Some(hit) = self.cache.read().expect("router cache").get(tag) {
            return *hit;
        }
        let found = self
            .patterns
            .iter()
            .position(|ps| ps.iter().any(|p| p.matches(tag)));
        let mut cache = self.cache.write().expect("router cache");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(tag.to_string(), found);
        found
    }

    /// Log (rate-limited) that `count` events of `tag` matched no `<match>` and were dropped.
    pub fn warn_unmatched(&self, tag: &str, count: u32) {
        if let Some(held_back) = self.unmatched.check_n(count as u64) {
            tracing::warn!(
                tag,
                events = count,
                events_dropped_since_last_warning = held_back + count as u64,
                "no <match> pattern matches this tag; events dropped"
            );
        }
    }
}

/// Sends batches to the first matching route's buffer.
pub struct Router {
    table: TagRoutes,
    routes: Vec<Route>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Self {
        Router {
            table: TagRoutes::new(routes.iter().map(|r| r.patterns.clone()).collect()),
            routes,
        }
    }

    /// Index of the first route whose patterns match `tag`.
    pub fn route_for(&self, tag: &str) -> Option<usize> {
        self.table.route_for(tag)
    }
}

impl Emit for Router {
    fn emit(&self, batch: EventBatch) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(async move {
            match self.route_for(&batch.tag) {
                Some(i) => Ok(self.routes[i].buffer.append(&batch).await?),
                None => {
                    self.table.warn_unmatched(&batch.tag, batch.count);
                    Ok(())
                }
            }
        })
    }

    fn emit_marked(
        &self,
        batch: EventBatch,
        mark: SourceMark,
    ) -> BoxFuture<'_, Result<(), EmitError>> {
        Box::pin(async move {
            match self.route_for(&batch.tag) {
                Some(i) => Ok(self.routes[i].buffer.append_marked(&batch, &mark).await?),
                None => {
                    // Dropped as unmatched: nothing to keep, and the input may move on.
                    self.table.warn_unmatched(&batch.tag, batch.count);
                    Ok(())
                }
            }
        })
    }

    fn keeps_marks(&self) -> bool {
        self.routes.iter().all(|r| r.buffer.keeps_marks())
    }

    fn recovered_marks(&self) -> HashMap<String, u64> {
        let mut all = HashMap::new();
        for r in &self.routes {
            crate::buffer::marks::merge(&mut all, r.buffer.recovered_marks());
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, tag: &str) -> bool {
        MatchPattern::parse(p).unwrap().matches(tag)
    }

    #[test]
    fn fluentd_glob_semantics() {
        assert!(m("a.*", "a.b"));
        assert!(!m("a.*", "a"));
        assert!(!m("a.*", "a.b.c"));
        assert!(m("a.**", "a"));
        assert!(m("a.**", "a.b"));
        assert!(m("a.**", "a.b.c"));
        assert!(!m("a.**", "ab"));
        assert!(m("**", "anything.at.all"));
        assert!(m("**.c", "c"));
        assert!(m("**.c", "a.b.c"));
        assert!(!m("**.c", "a.bc"));
        assert!(m("a.**.z", "a.z"));
        assert!(m("a.**.z", "a.b.c.z"));
        assert!(m("a.{b,c}", "a.b"));
        assert!(m("a.{b,c}", "a.c"));
        assert!(!m("a.{b,c}", "a.d"));
        assert!(m("{a.*,x}.y", "a.q.y"));
        assert!(m("{a.*,x}.y", "x.y"));
        assert!(m("mytag.**", "mytag.app"));
        assert!(!m("mytag.**", "other.app"));
        assert!(m("a+b", "a+b"));
        assert!(!m("a.b", "aXb"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(MatchPattern::parse("a.{b,c").is_err());
        assert!(MatchPattern::parse("a.b}").is_err());
    }
}
