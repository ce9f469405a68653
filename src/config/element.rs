//! The parsed shape of a config file: a tree of [`Element`]s (`<source>`, `<match>`, `<server>`,
//! ...) holding [`Param`]s, each remembering the file and line it was written on.
//!
//! Owns the tree type only. It must not interpret parameters (that is `build`) nor read files
//! (that is `parser`).

use super::Location;

/// One `key value` line (the value already unquoted; empty when the key stood alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: String,
    pub location: Location,
}

/// One `<name arg>` ... `</name>` section. The root of a file is an element named `ROOT`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    /// Text after the name in the opening tag, trimmed (`mytag.**`, `tag,time`, `tls`).
    pub arg: String,
    /// In written order; a key may repeat (the last one wins).
    pub params: Vec<Param>,
    pub children: Vec<Element>,
    /// Where the opening tag is (for `ROOT`: line 1 of the top file).
    pub location: Location,
}

impl Element {
    pub fn new(name: impl Into<String>, arg: impl Into<String>, location: Location) -> Self {
        Element {
            name: name.into(),
            arg: arg.into(),
            params: Vec::new(),
            children: Vec::new(),
            location,
        }
    }

    /// The last parameter named `key`, as Fluentd lets a later line override an earlier one.
    pub fn param(&self, key: &str) -> Option<&Param> {
        self.params.iter().rev().find(|p| p.key == key)
    }

    /// The value of the last parameter named `key`.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.param(key).map(|p| p.value.as_str())
    }

    /// Child sections named `name`, in written order.
    pub fn children_named<'e>(&'e self, name: &'e str) -> impl Iterator<Item = &'e Element> + 'e {
        self.children.iter().filter(move |c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_param_wins_and_children_filter() {
        let loc = |line| Location {
            file: "x.conf".into(),
            line,
        };
        let mut el = Element::new("match", "a.**", loc(1));
        for (key, value, line) in [("port", "1", 2), ("host", "h", 3), ("port", "2", 4)] {
            el.params.push(Param {
                key: key.into(),
                value: value.into(),
                location: loc(line),
            });
        }
        el.children.push(Element::new("server", "", loc(5)));
        el.children.push(Element::new("buffer", "", loc(7)));
        el.children.push(Element::new("server", "", loc(9)));
        assert_eq!(el.value("port"), Some("2"));
        assert_eq!(el.param("port").unwrap().location.line, 4);
        assert_eq!(el.value("missing"), None);
        let lines: Vec<usize> = el
            .children_named("server")
            .map(|c| c.location.line)
            .collect();
        assert_eq!(lines, vec![5, 9]);
    }
}
