//! An ordered document tree and its YAML writer.
//!
//! serde_json's map sorts keys (the workspace must not turn on `preserve_order`: it would
//! change the filter's own JSON output in workspace builds), and a generated Envoy or
//! Kubernetes file should read in the usual order (`name` first, `apiVersion`, `kind`, ...).
//! So renderers build a [`Node`], serialized as YAML for people and converted to JSON for
//! checks.

use serde::{Serialize, Serializer};
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

    /// The node as one YAML document (block style, ending with a newline). Writing strings,
    /// numbers and collections into a String does not fail; were it to, the document as JSON
    /// (which is YAML) is still valid and means the same, only without the key order.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string_with_options(self, yaml_options())
            .unwrap_or_else(|_| format!("{}\n", self.to_json()))
    }
}

/// Maps in their Vec order: the reason this tree exists.
impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Str(v) => s.serialize_str(v),
            Node::Int(i) => s.serialize_i64(*i),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Seq(items) => s.collect_seq(items),
            Node::Map(entries) => s.collect_map(entries.iter().map(|(k, v)| (k, v))),
        }
    }
}

/// Block style; a sequence indented under its key; multi-line text (the embedded plugin JSON)
/// as a literal block, and a long line kept on one line (not folded), so it can be grepped.
/// YAML 1.1 spellings (`on`, `yes`, `0755`, ...) are quoted: Envoy's reader would retype them.
fn yaml_options() -> serde_saphyr::SerializerOptions {
    serde_saphyr::ser_options! {
        compact_list_indent: false,
        folded_wrap_chars: usize::MAX,
    }
}

/// Reading: the default budgets (alias bombs, depth) and duplicate keys refused; an error as
/// one line with its line and column, not a multi-line snippet.
fn read_options() -> serde_saphyr::Options {
    serde_saphyr::options! { with_snippet: false }
}

/// One YAML document as a JSON value.
pub fn from_yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str_with_options(text, read_options()).map_err(|e| e.to_string())
}

/// Every non-empty document of a YAML stream.
pub fn from_yaml_stream(text: &str) -> Result<Vec<Value>, String> {
    serde_saphyr::from_multiple_with_options(text, read_options()).map_err(|e| e.to_string())
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

    fn yaml(node: &Node) -> String {
        node.to_yaml()
    }

    fn round_trip(node: &Node) -> Value {
        serde_saphyr::from_str(&yaml(node)).unwrap()
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
        let text = yaml(&map! { "kind" => "b", "apiVersion" => "a", "b" => seq!["x"] });
        assert_eq!(text, "kind: b\napiVersion: a\nb:\n  - x\n");
    }

    /// Strings a YAML reader would take for something else (a number, a boolean, null, YAML
    /// syntax; YAML 1.1 spellings, which Envoy's reader retypes, included) stay strings.
    #[test]
    fn ambiguous_strings_stay_strings() {
        let legacy = serde_saphyr::options! { legacy_octal_numbers: true };
        for s in [
            "true",
            "No",
            "on",
            "Off",
            "yes",
            "y",
            "n",
            "null",
            "Null",
            "~",
            "3000",
            "1.0",
            "1.5",
            "-1",
            "+1",
            "0755",
            "0o17",
            "0x1F",
            "0b101",
            "1e3",
            "1_000",
            ".inf",
            "-.Inf",
            ".nan",
            "12:30",
            "2001-12-14",
            "30s",
            "",
            " x",
            "x ",
            "a: b",
            "a #b",
            "#x",
            "@type",
            "-x",
            "- x",
            "-",
            "?",
            "? x",
            "{token}",
            "[x]",
            "Bearer {token}",
            "x:",
            "*",
            "&a",
            "!x",
            "%x",
            "|",
            ">",
            "'",
            "\"",
            "`x",
            ",",
            "a\tb",
            "\u{1b}[0m",
            "---",
            "...",
            "<<",
            "=",
        ] {
            let text = yaml(&map! { "k" => s });
            let back: Value = serde_saphyr::from_str(&text).unwrap();
            assert_eq!(back["k"], json!(s), "{s:?} as {text}");
            let back: Value = serde_saphyr::from_str_with_options(&text, legacy.clone()).unwrap();
            assert_eq!(back["k"], json!(s), "{s:?} as {text} (YAML 1.1 octal)");
        }
        // What needs no quotes gets none: the file reads as written by hand.
        let text = yaml(&map! {
            "cluster" => "outbound|443||tenant.auth0.com",
            "uri" => "http://127.0.0.1:9000/x",
        });
        assert_eq!(
            text,
            "cluster: outbound|443||tenant.auth0.com\nuri: http://127.0.0.1:9000/x\n"
        );
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
            "\nleading newline",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ] {
            let node = map! { "outer" => map! { "value" => s }, "list" => seq![s] };
            let back = round_trip(&node);
            assert_eq!(back["outer"]["value"], json!(s), "{s:?}");
            assert_eq!(back["list"][0], json!(s), "{s:?}");
        }
        let text = yaml(&map! { "v" => "{\n  \"a\": 1\n}" });
        assert_eq!(text, "v: |-\n  {\n    \"a\": 1\n  }\n");
    }

    #[test]
    fn long_lines_are_not_folded() {
        let long = format!("https://{}.example.com/path", "a".repeat(200));
        let text = yaml(&map! { "url" => long.as_str() });
        assert_eq!(text, format!("url: {long}\n"));
    }

    #[test]
    fn json_conversion_both_ways() {
        let v = json!({"b": [1, "x", true, {"c": []}], "a": {}});
        assert_eq!(Node::from_json(&v).to_json(), v);
    }

    #[test]
    fn stream_separates_documents() {
        let text = yaml_stream(&[map! {"a" => "1"}, map! {"b" => "2"}]);
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        assert_eq!(docs, vec![json!({"a": "1"}), json!({"b": "2"})]);
        assert_eq!(text.matches("---").count(), 1, "{text}");
    }
}
