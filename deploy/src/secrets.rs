//! Secrets written into the tenants file: rendered, they sit in the Envoy configuration, the
//! Istio resource or the compose file, and in Envoy's config dump. Refused unless the
//! deployment says it is a demo (`allow_inline_secrets`); the `*_env` fields keep them in the
//! proxy's environment instead.

use serde_json::Value;

use crate::tenants::{JsonPath, Problem};

/// The fields holding a secret's value (each has a `*_env` alternative).
const INLINE_FIELDS: [&str; 2] = ["client_secret", "resource_client_secret"];

/// Every inline secret of the document, with its path.
pub fn inline_secrets(doc: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    walk(doc, &JsonPath::root(), &mut out);
    out
}

fn walk(v: &Value, at: &JsonPath, out: &mut Vec<Problem>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                let p = at.key(k);
                if INLINE_FIELDS.contains(&k.as_str()) && child.is_string() {
                    out.push(Problem::new(
                        p,
                        format!(
                            "an inline secret would be written into the rendered configuration: use {k}_env (the proxy's environment), or set allow_inline_secrets=true in the deployment for a demo"
                        ),
                    ));
                } else {
                    walk(child, &p, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                walk(child, &at.index(i), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;
    use serde_json::json;

    #[test]
    fn every_inline_secret_is_named_by_its_path() {
        let mut doc = example();
        doc["tenants"][1]["vault"]["resource_client_secret"] = json!("r");
        let paths: Vec<String> = inline_secrets(&doc)
            .iter()
            .map(|p| p.path.to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "$.tenants[0].connect.client_secret",
                "$.tenants[1].vault.client_secret",
                "$.tenants[1].vault.resource_client_secret"
            ]
        );
        let doc = json!({"tenants": [{"vault": {"client_secret_env": "S"}}]});
        assert!(inline_secrets(&doc).is_empty());
    }
}
