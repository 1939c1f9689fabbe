//! Every problem of a tenants file, each with its JSON path, found by the filter's own
//! `config::parse` (so this tool and the filter in Envoy never disagree).
//!
//! `parse` stops at the first error and names a field, not a position. To list every problem,
//! the document is checked in parts: each top-level key and each `settings` field alone (an
//! absent setting takes its default), then each tenant alone. Within a tenant, a problem is
//! repaired with the value the example tenants use at that path (or removed) and the tenant
//! parsed again, until it passes or stops making progress. Errors the parser reports without a
//! field (serde's "unknown field", "invalid type") are located by searching the tenant for
//! the key or value named and confirming the candidate by editing it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde_json::{json, Map, Value};
use tvp_core::config;

/// The example tenants: donors of a valid value for any field while a broken tenant is
/// repaired to find its next problem.
const EXAMPLE: &str = include_str!("../../tenants.example.json");

/// Bound on repair rounds per tenant (a tenant has fewer fields than this).
const MAX_ROUNDS: usize = 64;

/// One step of a path inside a JSON document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A location in the tenants file, printed as `$.tenants[1].vault.client_secret_env`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct JsonPath(pub Vec<Seg>);

impl JsonPath {
    pub fn root() -> Self {
        JsonPath(Vec::new())
    }

    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }

    pub fn index(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }

    /// `a.b[2].c` (the filter's field names) below this path.
    pub fn dotted(&self, field: &str) -> Self {
        field
            .split('.')
            .filter(|s| !s.is_empty())
            .fold(self.clone(), |p, segment| {
                let indexed = segment
                    .strip_suffix(']')
                    .and_then(|s| s.split_once('['))
                    .and_then(|(k, i)| Some((k, i.parse::<usize>().ok()?)));
                match indexed {
                    Some((k, i)) => p.key(k).index(i),
                    None => p.key(segment),
                }
            })
    }

    pub fn join(&self, rest: &JsonPath) -> Self {
        let mut p = self.clone();
        p.0.extend(rest.0.iter().cloned());
        p
    }

    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(doc, |v, seg| match seg {
            Seg::Key(k) => v.get(k),
            Seg::Index(i) => v.get(i),
        })
    }

    pub fn get_mut<'a>(&self, doc: &'a mut Value) -> Option<&'a mut Value> {
        self.0.iter().try_fold(doc, |v, seg| match seg {
            Seg::Key(k) => v.get_mut(k),
            Seg::Index(i) => v.get_mut(i),
        })
    }

    /// Set the value, creating missing parent objects.
    fn set(&self, doc: &mut Value, value: Value) -> bool {
        let Some((last, parents)) = self.0.split_last() else {
            return false;
        };
        let mut v = doc;
        for seg in parents {
            v = match seg {
                Seg::Key(k) => {
                    let Some(obj) = v.as_object_mut() else {
                        return false;
                    };
                    obj.entry(k.clone()).or_insert_with(|| json!({}))
                }
                Seg::Index(i) => match v.get_mut(i) {
                    Some(x) => x,
                    None => return false,
                },
            };
        }
        match (last, v) {
            (Seg::Key(k), Value::Object(o)) => {
                o.insert(k.clone(), value);
                true
            }
            (Seg::Index(i), Value::Array(a)) if *i < a.len() => {
                a[*i] = value;
                true
            }
            _ => false,
        }
    }

    fn remove(&self, doc: &mut Value) -> bool {
        let Some((last, parents)) = self.0.split_last() else {
            return false;
        };
        match (last, JsonPath(parents.to_vec()).get_mut(doc)) {
            (Seg::Key(k), Some(Value::Object(o))) => o.remove(k).is_some(),
            (Seg::Index(i), Some(Value::Array(a))) if *i < a.len() => {
                a.remove(*i);
                true
            }
            _ => false,
        }
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("$")?;
        for seg in &self.0 {
            match seg {
                Seg::Key(k)
                    if !k.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    write!(f, ".{k}")?
                }
                Seg::Key(k) => write!(f, "[{}]", Value::String(k.clone()))?,
                Seg::Index(i) => write!(f, "[{i}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: JsonPath,
    pub message: String,
}

impl Problem {
    pub fn new(path: JsonPath, message: impl Into<String>) -> Self {
        Problem {
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The file as JSON, or the one problem that it is not.
pub fn parse_json(text: &str) -> Result<Value, Problem> {
    serde_json::from_str(text)
        .map_err(|e| Problem::new(JsonPath::root(), format!("not valid JSON: {e}")))
}

/// Secrets are checked by name, not value: validation runs where the secrets are not. The
/// stand-in is a valid private key (a fixed RSA-2048 test key, no other use: RSA passes
/// wherever a key is allowed, also where Auth0 takes RS256 only), so it also passes as the PEM
/// of a `private_key_env`, and as any client secret; the sealing key variable gets a stand-in
/// sealing key.
fn any_env(sealing_key_env: Option<&str>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| {
        Some(if Some(name) == sealing_key_env {
            "stand-in-sealing-key-for-validation-only".into()
        } else {
            STAND_IN_KEY_PEM.into()
        })
    }
}

const STAND_IN_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCus/Uyj6d8xtXS
DY/GT6Vq0siswd8RglSs5fZyyNiw9fWmeGo6qJBSBU5So4sqwtaPao7pbLwkTjbD
Bpf6FliMaghsjmaoiU4E4NPNjOBHmKPG22HfBpL+C3aFr4XKeUqRpK3ruxvK74MC
diD2OvTJnukkqhUZ2TyAApfE5XMHZKv38UrR/Zbxm3cMfEUhS6V01SGVceL/y2zv
V5+FPeLPcuxpKCmJQ9dsBwnpdfnDU9b4cCl4mqKtTUOMhkXxUipBkWVLLawbSAlz
ZkVM5V/rRuhW0C4pQP7+9bzS86KshDMlTXUMk+UhxqX0qZIh6eLzGdFI79gN4Eno
5PkNEPa5AgMBAAECggEAEbe5gc+03kAyFjP+5U9ViOBorrCYxWdQ3BoUZO6+ny/K
on/q0hkfTdow58ujRQpuhSv642x+JjZyclP8XMYgY9krEotcmPIX4gHFKT8Eze4K
ihPcuKgrhy01b3huGqszZ1LqupIGzw18XWcKj75J7hq6LVg8fJsd+iOJLdRRVqnx
UopW7lJWZmz6RFdkR4wyqosf/tC60DZKvAURsqgt98FMiwJVAyT/xw1crq4s19sd
+dfqQ053gjupAQ6y5vE7MrLYFHi60W3Mt7jeAvgLx1kzgkBgBdeacct/mIxWJoeQ
VeEZ1F1l+BM5ohCyVgmFA5tCnktd/BGqY3sWXU9GAQKBgQDwLeREHg0YsTL0Dd4K
JN1IJ50qg7SpI9SeAg+j8xhdE4Sj4z67R3JXIYzOFHawJR8SteUx898PFEQ9K+bg
uOPVqIDQ94pAspMj+oM5/RjNGm/nRfiWFg2PbIm9lZJ7AcZvorWYR2ojUBTIuL+K
wN/4Klnd4PKKYE1dt9rciW0eOQKBgQC6NfLa9g/bOGbKUJ0W6u0dM2usCprdRI03
pCpHMHkx2QAfzJ0cAYirXqKvsCR0gUMykp90HGH0q8RcLxA2OY/kZuomANXOqPKY
HGfNNcxaJI5n8fnEUnWdi5tMrOgb8Z9mDVAZG4v/92745Z/efBomXUc2TqpY7WPW
e1uoI/qcgQKBgF9eaaBeqmaenhPomb0/bBplmHO0Pn1W++sN+HXqZkc3I9kLt/IX
aaCNcuK1n3dMFi2QyoRuSKktK/d6QkADSnyhXx0a3evYvLJxm7/f7wQqNjsIPrAh
65qCx6LfDH4Jc2kKm77uxIdnGgmlynDnK0fYUTzYQJaPrMjE44Pkkc6JAoGBAKlR
tOp1JCXqO01rz+uu4rzSrO1bF0Zrtx0JIYhqA0nYT8yaeaGlo2hwPO4T9JIbl8a8
nFEwHcIlDf/kq5Ei9jxxeCfmSoQIC89UxO5MJO0yoGrUFJD3igsfjq9B6iy+oHpj
UJoD+mFd1IJuCdh8cCrCVqaDEVKbSVUWBln1nUQBAoGAbuhpndPf7GCRUsoJ+y28
l8Z1aj4cwtR7ryDAhS7aDE3udQTLF0YxYsuv1LifyJobdS82XEjdJVIavcDlK2v/
chSBnkGehgDGSRjqdWzaEqT910wmza2pKl1jacnugyqDLreFCeeGk8c/aGNH9/wK
6LXoGZn6YUQc8t24u7R0es0=
-----END PRIVATE KEY-----";

/// The filter's verdict on a document: `None` if it would start.
pub fn filter_error(doc: &Value) -> Option<String> {
    let env = any_env(doc["settings"]["sealing_key_env"].as_str());
    config::parse(doc.to_string().as_bytes(), &env)
        .err()
        .map(|e| e.to_string())
}

/// What the filter said, split into the field it named (if any) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    field: Option<String>,
    message: String,
}

fn verdict(error: &str, tenant_label: Option<&str>) -> Verdict {
    let mut rest = error
        .strip_prefix("invalid plugin configuration: ")
        .unwrap_or(error);
    rest = rest
        .strip_prefix("not a valid configuration document: ")
        .unwrap_or(rest);
    if let Some(label) = tenant_label {
        let prefix = format!("tenant '{label}': ");
        rest = rest.strip_prefix(prefix.as_str()).unwrap_or(rest);
    }
    let (field, message) = match rest
        .strip_prefix("field '")
        .and_then(|r| r.split_once("': "))
    {
        Some((field, message)) => (Some(field.to_string()), message),
        None => (None, rest),
    };
    // serde_json appends a position in the text we generated, which means nothing to the user.
    let message = match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => &message[..i],
        _ => message,
    };
    Verdict {
        field,
        message: message.to_string(),
    }
}

/// Every problem of a tenants document: the filter's, then the deployment's.
pub fn check(doc: &Value) -> Vec<Problem> {
    let mut problems = filter_problems(doc);
    if problems.is_empty() {
        problems.extend(crate::upstream::problems(doc));
    }
    problems
}

/// Every problem the filter finds in the document, each with its path.
pub fn filter_problems(doc: &Value) -> Vec<Problem> {
    let root = JsonPath::root();
    let Some(top) = doc.as_object() else {
        let v = verdict(&filter_error(doc).unwrap_or_default(), None);
        return vec![Problem::new(root, v.message)];
    };
    let mut problems = Vec::new();
    // With no tenant, parse validates everything else and then says exactly this.
    let no_tenants = |extra: Map<String, Value>| {
        let mut d = extra;
        d.insert("tenants".into(), json!([]));
        filter_error(&Value::Object(d)).map(|e| verdict(&e, None))
    };
    let passes_without_tenants = |v: &Option<Verdict>| {
        v.as_ref()
            .is_none_or(|v| v.field.as_deref() == Some("tenants"))
    };
    for (key, value) in top.iter().filter(|(k, _)| k.as_str() != "tenants") {
        let v = no_tenants(Map::from_iter([(key.clone(), value.clone())]));
        if passes_without_tenants(&v) {
            continue;
        }
        match (key.as_str(), value.as_object()) {
            // Each setting alone: an absent one takes its (valid) default.
            ("settings", Some(settings)) => {
                for (name, setting) in settings {
                    let alone = json!({ name.clone(): setting.clone() });
                    let v = no_tenants(Map::from_iter([("settings".into(), alone)]));
                    if let Some(v) = v.filter(|v| v.field.as_deref() != Some("tenants")) {
                        problems.push(Problem::new(root.key("settings").key(name), v.message));
                    }
                }
            }
            _ => {
                let message = v.map(|v| v.message).unwrap_or_default();
                problems.push(Problem::new(root.key(key), message));
            }
        }
    }
    // Settings that pass one by one but not together are a problem of `settings` as a whole.
    if problems.is_empty() {
        let mut others = top.clone();
        others.remove("tenants");
        let v = no_tenants(others);
        if !passes_without_tenants(&v) {
            let message = v.map(|v| v.message).unwrap_or_default();
            problems.push(Problem::new(root.key("settings"), message));
        }
    }
    // Tenants are checked with the settings that passed (some tenant checks depend on them).
    let mut settings = top.get("settings").cloned().unwrap_or_else(|| json!({}));
    for p in &problems {
        match p.path.0.as_slice() {
            [Seg::Key(s), rest @ ..] if s == "settings" => {
                if JsonPath(rest.to_vec()).0.is_empty() {
                    settings = json!({});
                } else {
                    JsonPath(rest.to_vec()).remove(&mut settings);
                }
            }
            _ => {}
        }
    }
    if !settings.is_object() {
        settings = json!({});
    }

    match top.get("tenants") {
        Some(Value::Array(tenants)) if !tenants.is_empty() => {
            for (i, tenant) in tenants.iter().enumerate() {
                let at = root.key("tenants").index(i);
                for (path, message) in tenant_problems(&settings, tenant) {
                    problems.push(Problem::new(at.join(&path), message));
                }
            }
            problems.extend(duplicate_ids(tenants));
        }
        other => {
            let mut d = Map::new();
            if let Some(t) = other {
                d.insert("tenants".into(), t.clone());
            }
            let v = verdict(&filter_error(&Value::Object(d)).unwrap_or_default(), None);
            problems.push(Problem::new(root.key("tenants"), v.message));
        }
    }
    // Whatever the parts missed, the whole document decides.
    if problems.is_empty() {
        if let Some(e) = filter_error(doc) {
            problems.push(Problem::new(root, verdict(&e, None).message));
        }
    }
    problems
}

fn duplicate_ids(tenants: &[Value]) -> Vec<Problem> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (i, t) in tenants.iter().enumerate() {
        if let Some(id) = t.get("id").and_then(Value::as_str) {
            match first.get(id) {
                Some(j) => problems.push(Problem::new(
                    JsonPath::root().key("tenants").index(i).key("id"),
                    format!("duplicate tenant id (also $.tenants[{j}].id)"),
                )),
                None => {
                    first.insert(id, i);
                }
            }
        }
    }
    problems
}

/// The label the filter gives a tenant in its messages.
fn label(tenant: &Value) -> String {
    match tenant.get("id").and_then(Value::as_str) {
        Some(id) => id
            .chars()
            .take(64)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect(),
        None => "#0".into(),
    }
}

/// The filter's verdict on one tenant alone, with the given (valid) settings.
fn tenant_verdict(settings: &Value, tenant: &Value) -> Option<Verdict> {
    let doc = json!({ "settings": settings, "tenants": [tenant] });
    filter_error(&doc).map(|e| verdict(&e, Some(&label(tenant))))
}

/// Problems of one tenant, with paths relative to it.
fn tenant_problems(settings: &Value, tenant: &Value) -> Vec<(JsonPath, String)> {
    let mut t = tenant.clone();
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let Some(v) = tenant_verdict(settings, &t) else {
            break;
        };
        let path = match &v.field {
            Some(field) => JsonPath::root().dotted(field),
            None => locate(settings, &t, &v.message),
        };
        if !seen.insert((path.clone(), v.message.clone())) {
            break;
        }
        found.push((path.clone(), v.message.clone()));
        if !repair(settings, &mut t, &path, &v) {
            break;
        }
    }
    found
}

/// Replace the value at `path` with the example's (or remove it) so that parsing moves past
/// this problem; false if neither does.
fn repair(settings: &Value, t: &mut Value, path: &JsonPath, was: &Verdict) -> bool {
    if path.0.is_empty() {
        return false;
    }
    let donors: Value = serde_json::from_str(EXAMPLE).unwrap_or_default();
    let donated = donors["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|d| path.get(d).cloned());
    let mut attempts = Vec::new();
    if let Some(value) = donated {
        let mut c = t.clone();
        if path.set(&mut c, value) {
            attempts.push(c);
        }
    }
    let mut c = t.clone();
    if path.remove(&mut c) {
        attempts.push(c);
    }
    // A candidate the filter takes first: a donated value can bring problems of its own (the
    // example's Auth0 `connect` in an Okta tenant), which are not this tenant's.
    let verdicts: Vec<Option<Verdict>> = attempts
        .iter()
        .map(|c| tenant_verdict(settings, c))
        .collect();
    let pick = verdicts
        .iter()
        .position(Option::is_none)
        .or_else(|| verdicts.iter().position(|v| v.as_ref() != Some(was)));
    match pick {
        Some(i) => {
            *t = attempts.swap_remove(i);
            true
        }
        None => false,
    }
}

/// Every path in the tenant (objects and arrays included), parents before children.
fn all_paths(v: &Value, at: JsonPath, out: &mut Vec<JsonPath>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = at.key(k);
                out.push(p.clone());
                all_paths(child, p, out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                let p = at.index(i);
                out.push(p.clone());
                all_paths(child, p, out);
            }
        }
        _ => {}
    }
}

/// The text between the first pair of backticks after `prefix`.
fn quoted_field(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let rest = rest.strip_prefix('`')?;
    rest.split_once('`').map(|(name, _)| name.to_string())
}

/// Where in the tenant a field-less parser error comes from (the tenant itself if unknown).
fn locate(settings: &Value, t: &Value, message: &str) -> JsonPath {
    let mut paths = vec![JsonPath::root()];
    all_paths(t, JsonPath::root(), &mut paths);
    let still = |c: &Value, needle: &str| {
        tenant_verdict(settings, c).is_some_and(|v| v.message.contains(needle))
    };
    if let Some(name) = quoted_field(message, "unknown field ") {
        let needle = format!("unknown field `{name}`");
        let holders: Vec<JsonPath> = paths
            .iter()
            .filter(|p| p.get(t).and_then(|v| v.get(&name)).is_some())
            .map(|p| p.key(&name))
            .collect();
        let confirmed = holders.iter().find(|p| {
            let mut c = t.clone();
            p.remove(&mut c) && !still(&c, &needle)
        });
        return confirmed.or(holders.first()).cloned().unwrap_or_default();
    }
    if let Some(name) = quoted_field(message, "missing field ") {
        let needle = format!("`{name}`");
        let confirmed = paths
            .iter()
            .filter(|p| {
                p.get(t)
                    .is_some_and(|v| v.is_object() && v.get(&name).is_none())
            })
            .map(|p| p.key(&name))
            .find(|p| {
                let mut c = t.clone();
                p.set(&mut c, Value::Null) && !still(&c, &needle)
            });
        return confirmed.unwrap_or_default();
    }
    // "invalid type: string \"x\", expected ...": the value it names.
    let described: Vec<JsonPath> = paths
        .iter()
        .skip(1)
        .filter(|p| p.get(t).is_some_and(|v| message.contains(&describe(v))))
        .cloned()
        .collect();
    let confirmed = described.iter().find(|p| {
        let mut c = t.clone();
        p.remove(&mut c) && tenant_verdict(settings, &c).is_none_or(|v| v.message != message)
    });
    confirmed.or(described.first()).cloned().unwrap_or_default()
}

/// How serde names a value in "invalid type" messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "invalid type: null".into(),
        Value::Bool(b) => format!("boolean `{b}`"),
        Value::Number(n) if n.is_f64() => format!("floating point `{n}`"),
        Value::Number(n) => format!("integer `{n}`"),
        Value::String(s) => format!("string {}", Value::String(s.clone())),
        Value::Array(_) => "invalid type: sequence".into(),
        Value::Object(_) => "invalid type: map".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    fn lines(doc: &Value) -> Vec<String> {
        filter_problems(doc).iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_example_has_no_problem() {
        assert_eq!(lines(&example()), Vec::<String>::new());
    }

    #[test]
    fn paths_print_like_json_path() {
        let p = JsonPath::root()
            .key("tenants")
            .index(1)
            .dotted("vault.client_secret_env");
        assert_eq!(p.to_string(), "$.tenants[1].vault.client_secret_env");
        assert_eq!(JsonPath::root().key("a b").to_string(), "$[\"a b\"]");
    }

    #[test]
    fn lists_problems_of_several_tenants_and_fields() {
        let mut doc = example();
        doc["settings"]["clock_skew_seconds"] = json!(601);
        doc["settings"]["max_token_bytes"] = json!("big");
        doc["settings"]["colour"] = json!("blue");
        doc["tenants"][0]["issuer"] = json!("ftp://x");
        doc["tenants"][0]["algorithms"] = json!(["HS256"]);
        doc["tenants"][0]["vault"]["client_secret"] = json!("both");
        doc["tenants"][1]["jwks"]["extra"] = json!(1);
        doc["tenants"][1]["vault"]
            .as_object_mut()
            .unwrap()
            .remove("cluster");
        let got = lines(&doc);
        let want = [
            "$.settings.clock_skew_seconds: must be at most 600",
            "$.settings.colour: unknown field `colour`",
            "$.settings.max_token_bytes: invalid type: string \"big\"",
            "$.tenants[0].issuer: must be an absolute http(s) URL",
            "$.tenants[0].algorithms: 'HS256' is not supported",
            "$.tenants[0].vault.client_secret: give client_secret or client_secret_env, not both",
            "$.tenants[1].jwks.extra: unknown field `extra`",
            "$.tenants[1].vault.cluster: missing field `cluster`",
        ];
        for w in want {
            assert!(got.iter().any(|g| g.starts_with(w)), "{w} not in {got:#?}");
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn locates_type_errors_and_array_items() {
        let mut doc = example();
        doc["tenants"][0]["algorithms"] = json!(["RS256", 7]);
        doc["tenants"][0]["scopes"]["write_implies_read"] = json!("yes");
        let got = lines(&doc);
        assert!(
            got[0].starts_with("$.tenants[0].algorithms[1]: invalid type: integer `7`"),
            "{got:?}"
        );
        assert!(
            got[1].starts_with("$.tenants[0].scopes.write_implies_read: invalid type"),
            "{got:?}"
        );
    }

    #[test]
    fn whole_document_problems() {
        assert_eq!(lines(&json!([])).len(), 1);
        assert_eq!(
            lines(&json!({"tenants": []})),
            vec!["$.tenants: must list at least one tenant"]
        );
        assert!(lines(&json!({}))[0].starts_with("$.tenants: missing field `tenants`"));
        let mut doc = example();
        doc["extra"] = json!(true);
        assert!(lines(&doc)[0].starts_with("$.extra: unknown field `extra`"));
    }

    #[test]
    fn duplicate_ids_point_at_the_second() {
        let mut doc = example();
        doc["tenants"][1]["id"] = json!("github");
        assert_eq!(
            lines(&doc),
            vec!["$.tenants[1].id: duplicate tenant id (also $.tenants[0].id)"]
        );
    }

    #[test]
    fn a_tenant_that_is_not_an_object() {
        let mut doc = example();
        doc["tenants"][1] = json!("google");
        let got = lines(&doc);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("$.tenants[1]: invalid type"), "{got:?}");
    }
}
