//! An ordered document tree and its YAML writer.
//!
//! serde_json's map sorts keys (the workspace must not turn on `preserve_order`: it would
//! change the filter's own JSON output in workspace builds), and a generated Envoy or
//! Kubernetes file should read in the usual order (`name` first, `apiVersion`, `kind`, ...).
//! So renderers build a [`Node`], written as YAML for people and converted to JSON for checks.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

/// `map! { "key" => value, ... }`: an ordered mapping; values are anything `Into<Node>`.
#[macro_export]
macro_rules! map {
    ($($k:expr => $v:expr),* $(,)?) => {
        $crate::doc::Node::Map(vec![$(($k.to_string(), $crate::doc::Node::from($v))),*])
    };
}

/// `seq![a, b]`: a sequence of anything `Into<Node>`.
#[macro_export]
macro_rules! seq {
    ($($v:expr),* $(,)?) => { $crate::doc::Node::Seq(vec![$($crate::doc::Node::from($v)),*]) };
}

impl From<&str> for Node {
    fn from(s: &str) -> Self {
        Node::Str(s.to_string())
    }
}
impl From<String> for Node {
    fn from(s: String) -> Self {
        Node::Str(s)
    }
}
impl From<&String> for Node {
    fn from(s: &String) -> Self {
        Node::Str(s.clone())
    }
}
impl From<u16> for Node {
    fn from(n: u16) -> Self {
        Node::Int(i64::from(n))
    }
}
impl From<u32> for Node {
    fn from(n: u32) -> Self {
        Node::Int(i64::from(n))
    }
}
impl From<i64> for Node {
    fn from(n: i64) -> Self {
        Node::Int(n)
    }
}
impl From<bool> for Node {
    fn from(b: bool) -> Self {
        Node::Bool(b)
    }
}
impl From<Vec<Node>> for Node {
    fn from(v: Vec<Node>) -> Self {
        Node::Seq(v)
    }
}

impl Node {
    /// Append a key to a mapping (no-op on other nodes).
    pub fn insert(&mut self, key: &str, value: impl Into<Node>) {
        if let Node::Map(entries) = self {
            entries.push((key.to_string(), value.into()));
        }
    }

    /// A JSON value, ordered or not, as a node (used to embed `pluginConfig`).
    pub fn from_json(v: &Value) -> Node {
        match v {
            Value::Null => Node::Str(String::new()),
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Node::Int(i),
                // Not produced by the configuration schema; keep the digits as text.
                None => Node::Str(n.to_string()),
            },
            Value::String(s) => Node::Str(s.clone()),
            Value::Array(a) => Node::Seq(a.iter().map(Node::from_json).collect()),
            Value::Object(o) => Node::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Node::from_json(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Node::Str(s) => Value::String(s.clone()),
            Node::Int(i) => Value::from(*i),
            Node::Bool(b) => Value::Bool(*b),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The node as one YAML document (block style, ending with a newline).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        match self {
            Node::Map(e) if !e.is_empty() => write_map(&mut out, e, 0),
            Node::Seq(s) if !s.is_empty() => write_seq(&mut out, s, 0),
            other => {
                out.push_str(&inline(other, 0));
                out.push('\n');
            }
        }
        out
    }
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn write_map(out: &mut String, entries: &[(String, Node)], indent: usize) {
    for (i, (key, value)) in entries.iter().enumerate() {
        // The first entry of a mapping inside a sequence item sits on the dash line.
        if i > 0 || !out.ends_with("- ") {
            pad(out, indent);
        }
        out.push_str(&scalar(key));
        out.push(':');
        write_value(out, value, indent);
    }
}

fn write_seq(out: &mut String, items: &[Node], indent: usize) {
    for item in items {
        pad(out, indent);
        out.push_str("- ");
        match item {
            Node::Map(e) if !e.is_empty() => write_map(out, e, indent + 2),
            Node::Seq(s) if !s.is_empty() => {
                out.push('\n');
                write_seq(out, s, indent + 2);
            }
            other => {
                out.push_str(&inline(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

/// After `key:`: a nested block on the next lines, or a scalar on this one.
fn write_value(out: &mut String, value: &Node, indent: usize) {
    match value {
        Node::Map(e) if !e.is_empty() => {
            out.push('\n');
            write_map(out, e, indent + 2);
        }
        Node::Seq(s) if !s.is_empty() => {
            out.push('\n');
            write_seq(out, s, indent + 2);
        }
        other => {
            out.push(' ');
            out.push_str(&inline(other, indent + 2));
            out.push('\n');
        }
    }
}

/// A scalar or an empty collection; multi-line text becomes a literal block at `indent`.
fn inline(node: &Node, indent: usize) -> String {
    match node {
        Node::Str(s) if block_safe(s) => {
            let chomp = if s.ends_with('\n') { "" } else { "-" };
            let mut text = format!("|{chomp}");
            for line in s.trim_end_matches('\n').split('\n') {
                text.push('\n');
                if !line.is_empty() {
                    text.push_str(&" ".repeat(indent));
                    text.push_str(line);
                }
            }
            text
        }
        Node::Str(s) => scalar(s),
        Node::Int(i) => i.to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Seq(_) => "[]".into(),
        Node::Map(_) => "{}".into(),
    }
}

/// A literal block keeps multi-line text (the embedded plugin JSON) readable; it cannot
/// carry a leading space on the first line, trailing spaces, control characters or more than
/// one trailing newline, so such text is double-quoted instead.
fn block_safe(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && s.split('\n').all(|l| !l.ends_with(' '))
}

/// A string as a plain scalar when that cannot be misread (as a number, a boolean, null or
/// YAML syntax), double-quoted otherwise. JSON string escapes are valid YAML escapes.
pub fn scalar(s: &str) -> String {
    let special = [
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./:|-".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && !special.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        Value::String(s.to_string()).to_string()
    }
}

/// Several documents as one multi-document YAML stream (what `kubectl apply -f` reads).
pub fn yaml_stream(docs: &[Node]) -> String {
    docs.iter()
        .map(Node::to_yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(node: &Node) -> Value {
        serde_yaml::from_str(&node.to_yaml()).unwrap()
    }

    #[test]
    fn nested_maps_and_sequences_round_trip() {
        let node = map! {
            "name" => "agents",
            "@type" => "type.googleapis.com/x",
            "port" => 3000u16,
            "flag" => false,
            "empty" => Node::Seq(vec![]),
            "none" => map! {},
            "items" => seq![
                map! { "a" => "1", "b" => seq!["x", "y"] },
                seq!["nested"],
                "plain",
            ],
        };
        assert_eq!(
            round_trip(&node),
            json!({
                "name": "agents", "@type": "type.googleapis.com/x", "port": 3000, "flag": false,
                "empty": [], "none": {},
                "items": [{"a": "1", "b": ["x", "y"]}, ["nested"], "plain"],
            })
        );
    }

    #[test]
    fn keeps_key_order() {
        let yaml = map! { "kind" => "b", "apiVersion" => "a" }.to_yaml();
        assert_eq!(yaml, "kind: b\napiVersion: a\n");
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for s in [
            "true",
            "No",
            "null",
            "~",
            "3000",
            "1.5",
            "30s",
            "",
            " x",
            "a: b",
            "a #b",
            "@type",
            "-x",
            "{token}",
            "Bearer {token}",
            "x:",
            "*",
            "!x",
            "%x",
            "'",
            "\"",
            "a\tb",
        ] {
            let yaml = map! { "k" => s }.to_yaml();
            let back: Value = serde_yaml::from_str(&yaml).unwrap();
            assert_eq!(back["k"], json!(s), "{s:?} as {yaml}");
        }
        assert_eq!(
            scalar("outbound|443||tenant.auth0.com"),
            "outbound|443||tenant.auth0.com"
        );
        assert_eq!(scalar("http://127.0.0.1:9000/x"), "http://127.0.0.1:9000/x");
        assert_eq!(scalar("127.0.0.1"), "\"127.0.0.1\"");
    }

    #[test]
    fn multi_line_text_is_a_literal_block_and_survives() {
        for s in [
            "{\n  \"a\": 1\n}",
            "{\n  \"a\": 1\n}\n",
            "line\n\nafter blank",
            " leading space\nx",
            "trailing \nx",
            "two newlines\n\n",
        ] {
            let node = map! { "outer" => map! { "value" => s } };
            let back = round_trip(&node);
            assert_eq!(back["outer"]["value"], json!(s), "{s:?}");
        }
        let yaml = map! { "v" => "{\n  \"a\": 1\n}" }.to_yaml();
        assert_eq!(yaml, "v: |-\n  {\n    \"a\": 1\n  }\n");
    }

    #[test]
    fn json_conversion_both_ways() {
        let v = json!({"b": [1, "x", true, {"c": []}], "a": {}});
        assert_eq!(Node::from_json(&v).to_json(), v);
    }

    #[test]
    fn stream_separates_documents() {
        let text = yaml_stream(&[map! {"a" => "1"}, map! {"b" => "2"}]);
        assert_eq!(text, "a: \"1\"\n---\nb: \"2\"\n");
    }
}
