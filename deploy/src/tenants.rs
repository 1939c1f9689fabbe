//! A tenants file as `tvp` reads it: paths into the JSON, and every problem of the file, each
//! with its JSON path, straight from the filter's own `config::parse` (so this tool and the
//! filter in Envoy never disagree), which reports them all with their paths.

use std::fmt;

use serde_json::Value;
use tvp_core::config::{self, Config, ConfigError, ConfigErrors};

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

/// A problem of the tenants file, at a JSON path (`$.tenants[1].vault.client_secret_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: JsonPath, message: impl Into<String>) -> Self {
        Problem {
            path: path.to_string(),
            message: message.into(),
        }
    }

    /// A problem the filter's configuration parser found, at the path it names.
    pub fn from_config(e: &ConfigError) -> Self {
        let path = match e.path.as_str() {
            "" => "$".to_string(),
            p if p.starts_with('[') => format!("${p}"),
            p => format!("$.{p}"),
        };
        Problem {
            path,
            message: e.message.clone(),
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

/// The filter's configuration of a document, with stand-ins for its secrets: what the filter
/// would run with, or every problem it has.
pub fn parse_config(doc: &Value) -> Result<Config, ConfigErrors> {
    // The one field read before parsing: which variable must hold a sealing key, not a PEM.
    let env = any_env(doc["settings"]["sealing_key_env"].as_str());
    config::parse(doc.to_string().as_bytes(), &env)
}

/// The filter's verdict on a document: `None` if it would start.
pub fn filter_error(doc: &Value) -> Option<String> {
    parse_config(doc).err().map(|e| e.to_string())
}

/// Every problem of a tenants document: the filter's, or once it has none the deployment's.
pub fn check(doc: &Value) -> Vec<Problem> {
    crate::upstream::plan(doc).err().unwrap_or_default()
}

/// Every problem the filter finds in the document, each with its path.
pub fn filter_problems(doc: &Value) -> Vec<Problem> {
    match parse_config(doc) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(Problem::from_config).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use serde_json::json;

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
        let mut doc = example();
        doc["tenants"][0]["a b"] = json!(1);
        assert!(lines(&doc)[0].starts_with("$.tenants[0][\"a b\"]: unknown field `a b`"));
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
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn whole_document_problems() {
        assert_eq!(
            lines(&json!([])),
            vec!["$: invalid type: sequence, expected an object"]
        );
        assert_eq!(
            lines(&json!({"tenants": []})),
            vec!["$.tenants: must list at least one tenant"]
        );
        assert_eq!(
            lines(&json!({})),
            vec!["$.tenants: missing field `tenants`"]
        );
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
            vec!["$.tenants[1].id: duplicate tenant id (also tenants[0].id)"]
        );
    }

    #[test]
    fn a_tenant_that_is_not_an_object() {
        let mut doc = example();
        doc["tenants"][1] = json!("google");
        let got = lines(&doc);
        assert_eq!(
            got,
            ["$.tenants[1]: invalid type: string \"google\", expected an object"]
        );
    }

    /// A problem of one section hides nothing of the others, and nothing is blamed on a
    /// section for another's problem (the repairs this replaced donated the example's).
    #[test]
    fn a_broken_section_hides_nothing_else() {
        let mut doc = example();
        doc["tenants"][1]["vault"] = json!({"type": "okta-sts", "cluster": "okta"});
        doc["tenants"][1]["connect"] = json!({"client_id": "web"});
        doc["tenants"][1]["scopes"]["read"] = json!([]);
        let got = lines(&doc);
        let want = [
            "$.tenants[1].scopes.read: must list at least one scope",
            "$.tenants[1].vault.client_id: missing field `client_id`",
            "$.tenants[1].vault.connection: missing field `connection`",
            "$.tenants[1].vault.token_url: missing",
            "$.tenants[1].vault.private_key_env: missing",
            "$.tenants[1].vault.resource: must not be empty",
            "$.tenants[1].connect.client_secret: missing (give client_secret or client_secret_env)",
        ];
        assert_eq!(got, want);
    }
}
