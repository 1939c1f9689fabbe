//! The strict schema: serde's own checks (unknown fields, wrong types, repeated keys), each
//! problem with serde's path to it. Serde stops at the first problem; to report every one, an
//! object that fails is checked again one field at a time, and the fields that pass are kept so
//! that the validators can still look at them.

use serde::de::{DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_path_to_error::Segment;

use super::errors::{join, key, Found};

/// Where an object is and which of its fields failed the schema.
pub(super) struct Shape {
    /// The object's path, relative to the part of the document being checked.
    at: String,
    failed: Vec<String>,
}

impl Shape {
    /// An object with nothing wrong (e.g. a section left out, taking its defaults).
    pub fn clean_at(at: &str) -> Shape {
        Shape {
            at: at.to_string(),
            failed: Vec::new(),
        }
    }

    /// Whether `field` passed the schema (absent counts as passed).
    pub fn ok(&self, field: &str) -> bool {
        !self.failed.iter().any(|f| f == field)
    }

    /// Whether every field passed.
    pub fn clean(&self) -> bool {
        self.failed.is_empty()
    }

    /// The fields that failed.
    pub fn failed(&self) -> &[String] {
        &self.failed
    }

    /// A field the schema makes optional only so that one missing field does not hide the
    /// others: "missing field" when it is absent (and did not fail the schema already).
    pub fn required<V>(&self, found: &mut Found, field: &str, value: Option<V>) -> Option<V> {
        if value.is_none() && self.ok(field) {
            found.add(&key(&self.at, field), format!("missing field `{field}`"));
        }
        value
    }
}

/// `raw`, a JSON object, as `T` (every field of which is optional, unknown ones denied), at
/// `at`. A problem makes the fields be tried one by one: each failing field is reported and
/// left out, and `T` holds the others. `None` if `raw` is not an object.
pub(super) fn object<T: DeserializeOwned>(
    raw: &RawValue,
    found: &mut Found,
    at: &str,
) -> Option<(T, Shape)> {
    // Serde also fills a struct from an array, by position: not here.
    if !raw.get().trim_start().starts_with('{') {
        let not_an_object = serde_json::from_str::<Entries>(raw.get()).err();
        found.add(at, not_an_object.map_or_else(String::new, |e| message(&e)));
        return None;
    }
    let whole = match strict::<T>(raw.get()) {
        Ok(value) => return Some((value, Shape::clean_at(at))),
        Err(problem) => problem,
    };
    let Ok(Entries(entries)) = serde_json::from_str::<Entries>(raw.get()) else {
        found.add(&join(at, &whole.0), whole.1);
        return None;
    };
    let mut kept: Vec<(String, Box<RawValue>)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for (name, value) in entries {
        if kept.iter().any(|(k, _)| *k == name) || failed.contains(&name) {
            // Which of the two was meant is unknown: neither is kept.
            found.add(&key(at, &name), format!("duplicate field `{name}`"));
            kept.retain(|(k, _)| *k != name);
            failed.push(name);
            continue;
        }
        match strict::<T>(&object_text([(&name, &*value)])) {
            Ok(_) => kept.push((name, value)),
            Err((path, message)) => {
                found.add(&join(at, &path), message);
                failed.push(name);
            }
        }
    }
    match strict::<T>(&object_text(kept.iter().map(|(k, v)| (k, &**v)))) {
        // Serde refused the whole; if no field alone explains it, the whole is the problem.
        Ok(_) if failed.is_empty() => {
            found.add(&join(at, &whole.0), whole.1);
            None
        }
        Ok(value) => Some((
            value,
            Shape {
                at: at.to_string(),
                failed,
            },
        )),
        Err((path, message)) => {
            found.add(&join(at, &path), message);
            None
        }
    }
}

/// `text` as `T`, or serde's path (relative) and message.
fn strict<T: DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let mut path = String::new();
        for segment in e.path().iter() {
            path = match segment {
                Segment::Seq { index } => format!("{path}[{index}]"),
                Segment::Map { key: k } | Segment::Enum { variant: k } => key(&path, k),
                Segment::Unknown => key(&path, "?"),
            };
        }
        (path, message(e.inner()))
    })
}

/// Serde's message without the position: the text parsed is the field's, not the file's (the
/// path says where it is).
fn message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&position).unwrap_or(&text).to_string()
}

fn object_text<'a>(entries: impl IntoIterator<Item = (&'a String, &'a RawValue)>) -> String {
    let fields: Vec<String> = entries
        .into_iter()
        .map(|(k, v)| {
            format!(
                "{}:{}",
                serde_json::to_string(k).unwrap_or_default(),
                v.get()
            )
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// An object's members in document order, repeated keys included.
struct Entries(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> Visitor<'de> for Members {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(Members)
    }
}

/// For `#[serde(deserialize_with)]` on an `Option` field that may be absent but not `null`:
/// `null` is a wrong type, as it was before the field became optional.
pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default, Debug)]
    #[serde(deny_unknown_fields, default)]
    struct Doc {
        #[serde(deserialize_with = "present")]
        name: Option<String>,
        list: Vec<String>,
        flag: bool,
    }

    fn check(text: &str) -> (Option<(Doc, super::Shape)>, Vec<String>) {
        let raw: Box<RawValue> = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
        let mut found = Found::default();
        let checked = object::<Doc>(&raw, &mut found, "part");
        let lines = found
            .into_errors("", None)
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        (checked, lines)
    }

    #[test]
    fn every_bad_field_is_reported_and_the_good_ones_kept() {
        let (checked, lines) =
            check(r#"{"name": "n", "list": ["a", 7], "colour": 1, "flag": "yes"}"#);
        assert_eq!(
            lines,
            [
                "part.list[1]: invalid type: integer `7`, expected a string",
                "part.colour: unknown field `colour`, expected one of `name`, `list`, `flag`",
                "part.flag: invalid type: string \"yes\", expected a boolean",
            ]
        );
        let (doc, shape) = checked.unwrap_or_else(|| panic!("kept"));
        assert_eq!(doc.name.as_deref(), Some("n"));
        assert!(shape.ok("name") && !shape.ok("list") && !shape.ok("flag") && !shape.clean());
    }

    #[test]
    fn repeated_keys_null_and_non_objects_are_refused() {
        assert_eq!(
            check(r#"{"name": "a", "name": "b"}"#).1,
            ["part.name: duplicate field `name`"]
        );
        assert_eq!(
            check(r#"{"name": null}"#).1,
            ["part.name: invalid type: null, expected a string"]
        );
        let (checked, lines) = check(r#""text""#);
        assert!(checked.is_none());
        assert_eq!(
            lines,
            ["part: invalid type: string \"text\", expected an object"]
        );
        // Serde would fill the struct from an array, by position.
        assert_eq!(
            check(r#"["n", ["a"], true]"#).1,
            ["part: invalid type: sequence, expected an object"]
        );
        assert!(check(r#"{"bad\nkey": 1}"#).1[0].starts_with("part[\"bad\\nkey\"]: unknown"));
    }

    #[test]
    fn a_missing_field_is_named_by_its_path() {
        let (checked, lines) = check("{}");
        let (doc, shape) = checked.unwrap_or_else(|| panic!("an object"));
        assert!(lines.is_empty() && shape.clean());
        let mut found = Found::default();
        assert_eq!(shape.required(&mut found, "name", doc.name), None);
        let lines: Vec<String> = found
            .into_errors("", None)
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(lines, ["part.name"]);
    }
}
