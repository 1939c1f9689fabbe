//! Kubernetes resources checked against the Istio, Envoy Gateway and Gateway API CRD schemas
//! vendored in `deploy/schemas/` (OpenAPI v3 as the API server applies it), so a rendered
//! manifest is known to be accepted before it reaches a cluster.
//!
//! The subset the CRDs use: type, nullable, enum, properties, required, additionalProperties,
//! x-kubernetes-preserve-unknown-fields (otherwise an unknown field is an error, as with
//! kubectl's strict field validation), x-kubernetes-int-or-string, items, x-kubernetes-list-type
//! map/set uniqueness, min/max Length/Items/Properties, minimum/maximum, pattern, allOf, anyOf,
//! oneOf, not. Not evaluated: x-kubernetes-validations (CEL rules) and format; [`cel_rules`]
//! checks by hand the CEL rules of the Envoy Gateway kinds that `tvp` could break.

use std::collections::HashSet;

use regex::Regex;
use serde_json::Value;

/// A resource kind this crate renders: its apiVersion and schema.
pub struct Kind {
    pub api_version: &'static str,
    pub kind: &'static str,
    schema: &'static str,
}

pub const KINDS: &[Kind] = &[
    Kind {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "WasmPlugin",
        schema: include_str!("../schemas/wasmplugin-extensions-v1alpha1.json"),
    },
    Kind {
        api_version: "networking.istio.io/v1",
        kind: "ServiceEntry",
        schema: include_str!("../schemas/serviceentry-networking-v1.json"),
    },
    Kind {
        api_version: "networking.istio.io/v1",
        kind: "DestinationRule",
        schema: include_str!("../schemas/destinationrule-networking-v1.json"),
    },
    Kind {
        api_version: "networking.istio.io/v1",
        kind: "VirtualService",
        schema: include_str!("../schemas/virtualservice-networking-v1.json"),
    },
    Kind {
        api_version: "gateway.envoyproxy.io/v1alpha1",
        kind: "EnvoyExtensionPolicy",
        schema: include_str!("../schemas/envoyextensionpolicy-gateway-v1alpha1.json"),
    },
    Kind {
        api_version: "gateway.envoyproxy.io/v1alpha1",
        kind: "EnvoyPatchPolicy",
        schema: include_str!("../schemas/envoypatchpolicy-gateway-v1alpha1.json"),
    },
    Kind {
        api_version: "gateway.envoyproxy.io/v1alpha1",
        kind: "Backend",
        schema: include_str!("../schemas/backend-gateway-v1alpha1.json"),
    },
    Kind {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "HTTPRoute",
        schema: include_str!("../schemas/httproute-gateway-v1.json"),
    },
    Kind {
        api_version: "gateway.networking.k8s.io/v1",
        kind: "BackendTLSPolicy",
        schema: include_str!("../schemas/backendtlspolicy-gateway-v1.json"),
    },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn violation(path: &str, message: impl Into<String>) -> Violation {
    Violation {
        path: path.to_string(),
        message: message.into(),
    }
}

/// Check one resource: apiVersion and kind known, metadata well-formed, the rest against the
/// kind's schema.
pub fn check_resource(doc: &Value) -> Vec<Violation> {
    let kind = doc["kind"].as_str().unwrap_or_default();
    let Some(k) = KINDS.iter().find(|k| k.kind == kind) else {
        return vec![violation(
            ".kind",
            format!("'{kind}' is not a kind with a vendored schema"),
        )];
    };
    let mut out = Vec::new();
    if doc["apiVersion"] != k.api_version {
        out.push(violation(
            ".apiVersion",
            format!("must be {} for {kind}", k.api_version),
        ));
    }
    out.extend(check_metadata(&doc["metadata"]));
    let schema: Value = match serde_json::from_str(k.schema) {
        Ok(s) => s,
        Err(e) => return vec![violation("", format!("vendored schema of {kind}: {e}"))],
    };
    // The schemas describe spec and status; apiVersion, kind and metadata are checked above.
    let mut body = doc.clone();
    if let Some(o) = body.as_object_mut() {
        for key in ["apiVersion", "kind", "metadata"] {
            o.remove(key);
        }
    }
    check(&schema, &body, "", &mut out);
    out.extend(cel_rules(kind, &body["spec"]));
    out
}

/// Every resource of a rendering against its schema and rules: the first violation, if any,
/// as an error naming the resource.
pub fn check_all(docs: &[Value]) -> Result<(), String> {
    for doc in docs {
        if let Some(v) = check_resource(doc).first() {
            return Err(format!(
                "rendered {}/{} violates its schema: {v}",
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["name"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(())
}

/// The CEL rules (`x-kubernetes-validations`) of the vendored Envoy Gateway and Gateway API
/// schemas that a rendering could break, checked by hand because [`check`] skips CEL: the API
/// server would refuse the resource (or Envoy Gateway would not accept it) otherwise.
pub fn cel_rules(kind: &str, spec: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut rule = |ok: bool, path: &str, message: &str| {
        if !ok {
            out.push(violation(path, message));
        }
    };
    let has = |v: &Value, key: &str| v.get(key).is_some_and(|x| !x.is_null());
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match kind {
        "EnvoyExtensionPolicy" => {
            let targets = has(spec, "targetRef") as u8
                + spec["targetRefs"].as_array().is_some_and(|a| !a.is_empty()) as u8;
            rule(
                targets == 1 || (targets == 0 && has(spec, "targetSelectors")),
                ".spec",
                "either targetRef or targetRefs must be used",
            );
            let route_kinds = [
                "Gateway",
                "ListenerSet",
                "HTTPRoute",
                "GRPCRoute",
                "TCPRoute",
                "UDPRoute",
                "TLSRoute",
            ];
            let refs = items(&spec["targetRefs"])
                .into_iter()
                .chain(spec.get("targetRef").cloned());
            for r in refs {
                rule(
                    r["group"] == "gateway.networking.k8s.io",
                    ".spec",
                    "this policy can only have a targetRef(s) group of gateway.networking.k8s.io",
                );
                rule(
                    route_kinds.iter().any(|k| r["kind"] == *k),
                    ".spec",
                    "this policy can only have a targetRef(s) kind of Gateway/ListenerSet/HTTPRoute/GRPCRoute/TCPRoute/UDPRoute/TLSRoute",
                );
            }
            for (i, w) in items(&spec["wasm"]).iter().enumerate() {
                let code = &w["code"];
                let at = format!(".spec.wasm[{i}].code");
                rule(
                    code["type"] != "HTTP" || has(code, "http"),
                    &at,
                    "If type is HTTP, http field needs to be set.",
                );
                rule(
                    code["type"] != "Image" || has(code, "image"),
                    &at,
                    "If type is Image, image field needs to be set.",
                );
            }
        }
        "Backend" => {
            let endpoints = items(&spec["endpoints"]);
            let mut fqdn = 0;
            for (i, e) in endpoints.iter().enumerate() {
                let n = ["fqdn", "ip", "unix"].iter().filter(|k| has(e, k)).count();
                rule(
                    n == 1,
                    &format!(".spec.endpoints[{i}]"),
                    "exactly one of fqdn, ip or unix must be specified",
                );
                fqdn += usize::from(has(e, "fqdn"));
            }
            rule(
                fqdn == 0 || fqdn == endpoints.len(),
                ".spec.endpoints",
                "fqdn addresses cannot be mixed with other address types",
            );
        }
        "BackendTLSPolicy" => {
            let v = &spec["validation"];
            rule(
                has(v, "caCertificateRefs") != has(v, "wellKnownCACertificates"),
                ".spec.validation",
                "must specify exactly one of CACertificateRefs or WellKnownCACertificates",
            );
        }
        "HTTPRoute" => {
            for (i, r) in items(&spec["rules"]).iter().enumerate() {
                let prefix_rewrite = items(&r["filters"])
                    .iter()
                    .any(|f| f["urlRewrite"]["path"]["type"] == "ReplacePrefixMatch");
                let matches = items(&r["matches"]);
                rule(
                    !prefix_rewrite
                        || (matches.len() == 1 && matches[0]["path"]["type"] == "PathPrefix"),
                    &format!(".spec.rules[{i}]"),
                    "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match must be specified",
                );
            }
        }
        _ => {}
    }
    out
}

fn check_metadata(m: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(obj) = m.as_object() else {
        return vec![violation(".metadata", "must be an object")];
    };
    // DNS-1123 subdomain for names, DNS-1123 label for namespaces.
    let label = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
    let rules = [
        ("name", format!("^{label}(\\.{label})*$"), 253, true),
        ("namespace", format!("^{label}$"), 63, false),
    ];
    for (field, pattern, max, required) in rules {
        match obj.get(field).and_then(Value::as_str) {
            Some(v) if v.len() <= max && matches(&pattern, v) => {}
            Some(v) => out.push(violation(
                &format!(".metadata.{field}"),
                format!("'{v}' is not a valid Kubernetes {field}"),
            )),
            None if required => out.push(violation(&format!(".metadata.{field}"), "required")),
            None => {}
        }
    }
    for (key, value) in obj {
        match key.as_str() {
            "name" | "namespace" => {}
            "labels" | "annotations"
                if value
                    .as_object()
                    .is_some_and(|o| o.values().all(Value::is_string)) => {}
            _ => out.push(violation(
                &format!(".metadata.{key}"),
                "unexpected (name, namespace, labels and annotations are rendered)",
            )),
        }
    }
    out
}

fn matches(pattern: &str, s: &str) -> bool {
    Regex::new(pattern).is_ok_and(|r| r.is_match(s))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Check `value` against `schema`, appending violations at `path`.
pub fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    let int_or_string = schema["x-kubernetes-int-or-string"] == true;
    if let Some(want) = schema["type"].as_str() {
        let got = type_name(value);
        let ok = got == want
            || (want == "number" && got == "integer")
            || (int_or_string && (got == "integer" || got == "string"));
        if !ok {
            out.push(violation(path, format!("must be {want}, not {got}")));
            return;
        }
    } else if int_or_string && !matches!(type_name(value), "integer" | "string") {
        out.push(violation(path, "must be an integer or a string"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            out.push(violation(
                path,
                format!("{value} is not one of {}", Value::Array(allowed.clone())),
            ));
        }
    }
    match value {
        Value::String(s) => check_string(schema, s, path, out),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            bounds(schema, ("minimum", "maximum"), "value", x, path, out);
        }
        Value::Array(items) => check_array(schema, items, path, out),
        Value::Object(_) => check_object(schema, value, path, out),
        _ => {}
    }
    check_combinators(schema, value, path, out);
}

/// The schema's lower and upper bound (named by `keys`) on a measure of the value.
fn bounds(
    schema: &Value,
    keys: (&str, &str),
    measure: &str,
    actual: f64,
    path: &str,
    out: &mut Vec<Violation>,
) {
    let (low, high) = (schema[keys.0].as_f64(), schema[keys.1].as_f64());
    if let Some(m) = low.filter(|m| actual < *m) {
        out.push(violation(
            path,
            format!("{measure} {actual} is below {} {m}", keys.0),
        ));
    }
    if let Some(m) = high.filter(|m| actual > *m) {
        out.push(violation(
            path,
            format!("{measure} {actual} is above {} {m}", keys.1),
        ));
    }
}

fn check_string(schema: &Value, s: &str, path: &str, out: &mut Vec<Violation>) {
    let len = s.chars().count() as f64;
    bounds(schema, ("minLength", "maxLength"), "length", len, path, out);
    if let Some(p) = schema["pattern"].as_str() {
        if !matches(p, s) {
            out.push(violation(path, format!("'{s}' does not match {p}")));
        }
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, out: &mut Vec<Violation>) {
    let n = items.len() as f64;
    bounds(schema, ("minItems", "maxItems"), "item count", n, path, out);
    if schema["items"].is_object() {
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), out);
        }
    }
    // A list-type map is keyed by its key fields, a set by whole items: no duplicates.
    let key = |item: &Value| match schema["x-kubernetes-list-type"].as_str() {
        Some("map") => Some(
            schema["x-kubernetes-list-map-keys"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|k| item[k].to_string())
                .collect::<Vec<_>>()
                .join("/"),
        ),
        Some("set") => Some(item.to_string()),
        _ => None,
    };
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(k) = key(item) {
            if !seen.insert(k.clone()) {
                out.push(violation(
                    &format!("{path}[{i}]"),
                    format!("duplicate entry {k}"),
                ));
            }
        }
    }
}

fn check_object(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let Some(obj) = value.as_object() else {
        return;
    };
    for name in schema["required"].as_array().into_iter().flatten() {
        if let Some(name) = name.as_str() {
            if !obj.contains_key(name) {
                out.push(violation(&format!("{path}.{name}"), "required"));
            }
        }
    }
    let n = obj.len() as f64;
    bounds(
        schema,
        ("minProperties", "maxProperties"),
        "property count",
        n,
        path,
        out,
    );
    let properties = schema["properties"].as_object();
    let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
    for (key, child) in obj {
        let at = format!("{path}.{key}");
        match (
            properties.and_then(|p| p.get(key)),
            &schema["additionalProperties"],
        ) {
            (Some(s), _) => check(s, child, &at, out),
            (None, extra) if extra.is_object() => check(extra, child, &at, out),
            (None, Value::Bool(true)) => {}
            // Only a structural (typed) object schema declares its fields; the value
            // validations under allOf/anyOf/oneOf/not do not.
            (None, _) if schema["type"] == "object" && !preserve => {
                out.push(violation(&at, "unknown field"))
            }
            _ => {}
        }
    }
}

fn check_combinators(schema: &Value, value: &Value, path: &str, out: &mut Vec<Violation>) {
    let passes = |s: &Value| {
        let mut v = Vec::new();
        check(s, value, path, &mut v);
        v.is_empty()
    };
    for s in schema["allOf"].as_array().into_iter().flatten() {
        check(s, value, path, out);
    }
    if let Some(any) = schema["anyOf"].as_array() {
        if !any.iter().any(passes) {
            out.push(violation(path, "matches none of anyOf"));
        }
    }
    if let Some(one) = schema["oneOf"].as_array() {
        let n = one.iter().filter(|s| passes(s)).count();
        if n != 1 {
            out.push(violation(
                path,
                format!("must match exactly one of oneOf, matches {n}"),
            ));
        }
    }
    if schema["not"].is_object() && passes(&schema["not"]) {
        out.push(violation(path, "matches a forbidden (not) schema"));
    }
}

/// Every document of a YAML stream, checked; each violation prefixed by its document's kind
/// and name.
pub fn check_stream(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    // Empty documents are skipped; an error names its line and column.
    let docs = crate::doc::from_yaml_stream(text)?;
    for doc in docs {
        let label = format!(
            "{}/{}",
            doc["kind"].as_str().unwrap_or("?"),
            doc["metadata"]["name"].as_str().unwrap_or("?")
        );
        out.extend(check_resource(&doc).iter().map(|v| format!("{label}: {v}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wasm_plugin() -> Value {
        json!({
            "apiVersion": "extensions.istio.io/v1alpha1",
            "kind": "WasmPlugin",
            "metadata": {"name": "tvp", "namespace": "istio-system"},
            "spec": {
                "url": "oci://registry.example/tvp:0.1.0",
                "phase": "AUTHN",
                "failStrategy": "FAIL_CLOSE",
                "match": [{"mode": "CLIENT", "ports": [{"number": 8443}]}],
                "vmConfig": {"env": [{"name": "SECRET", "valueFrom": "HOST"}]},
                "pluginConfig": {"anything": {"goes": [1, 2]}},
            }
        })
    }

    fn violations(doc: &Value) -> Vec<String> {
        check_resource(doc)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_resource_passes() {
        assert_eq!(violations(&wasm_plugin()), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_mistake_is_caught() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "/spec/phase",
                json!("EARLY"),
                ".spec.phase: \"EARLY\" is not one of",
            ),
            (
                "/spec/failStrategy",
                json!(1),
                ".spec.failStrategy: must be string, not integer",
            ),
            (
                "/spec/match/0/ports/0/number",
                json!(70000),
                "value 70000 is above maximum 65535",
            ),
            (
                "/spec/vmConfig/env/0/valueFrom",
                json!("SECRET"),
                "is not one of",
            ),
            (
                "/spec/vmConfig/env/0/nam",
                json!("X"),
                ".spec.vmConfig.env[0].nam: unknown field",
            ),
            ("/spec/sha256", json!("abc"), "does not match"),
            (
                "/spec/pluginName",
                json!(""),
                "length 0 is below minLength 1",
            ),
            ("/spec/colour", json!("red"), ".spec.colour: unknown field"),
            (
                "/metadata/name",
                json!("Bad_Name"),
                ".metadata.name: 'Bad_Name' is not a valid",
            ),
            ("/kind", json!("Gateway"), ".kind: 'Gateway' is not a kind"),
            (
                "/apiVersion",
                json!("networking.istio.io/v1"),
                ".apiVersion: must be",
            ),
        ];
        for (pointer, value, want) in cases {
            let mut doc = wasm_plugin();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            doc.pointer_mut(parent).unwrap()[key] = value;
            let got = violations(&doc);
            assert!(
                got.iter().any(|g| g.contains(want)),
                "{pointer}: {want} not in {got:?}"
            );
        }
        let mut doc = wasm_plugin();
        doc["spec"].as_object_mut().unwrap().remove("url");
        assert_eq!(violations(&doc), vec![".spec.url: required"]);
        let mut doc = wasm_plugin();
        doc["spec"]["vmConfig"]["env"] = json!([{"name": "A"}, {"name": "A"}]);
        assert!(violations(&doc)[0].contains("duplicate entry"));
    }

    #[test]
    fn the_cel_rules_tvp_relies_on_are_checked_by_hand() {
        let eep = json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "EnvoyExtensionPolicy",
            "metadata": {"name": "tvp", "namespace": "gw"},
            "spec": {
                "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "r"}],
                "wasm": [{"code": {"type": "Image", "image": {"url": "oci://r/x:1", "sha256": "a"}}}],
            }
        });
        assert_eq!(violations(&eep), Vec::<String>::new());
        let broken = |pointer: &str, value: Value| {
            let mut doc = eep.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            doc.pointer_mut(parent).unwrap()[key] = value;
            violations(&doc)
        };
        let cases = [
            (
                "/spec/wasm/0/code/image",
                Value::Null,
                "If type is Image, image field",
            ),
            (
                "/spec/wasm/0/code/type",
                json!("HTTP"),
                "If type is HTTP, http field",
            ),
            (
                "/spec/targetRef",
                json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}),
                "either targetRef or targetRefs",
            ),
            (
                "/spec/targetRefs",
                json!([]),
                "either targetRef or targetRefs",
            ),
            (
                "/spec/targetRefs/0/kind",
                json!("Service"),
                "kind of Gateway/",
            ),
            (
                "/spec/targetRefs/0/group",
                json!("core"),
                "group of gateway.networking.k8s.io",
            ),
        ];
        for (pointer, value, want) in cases {
            let got = broken(pointer, value);
            assert!(
                got.iter().any(|g| g.contains(want)),
                "{pointer}: {want} not in {got:?}"
            );
        }

        let tls = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "BackendTLSPolicy",
            "metadata": {"name": "b", "namespace": "gw"},
            "spec": {
                "targetRefs": [{"group": "gateway.envoyproxy.io", "kind": "Backend", "name": "b"}],
                "validation": {"hostname": "api.example.com", "wellKnownCACertificates": "System"},
            }
        });
        assert_eq!(violations(&tls), Vec::<String>::new());
        for v in [
            json!({"hostname": "h"}),
            json!({"hostname": "h", "wellKnownCACertificates": "System",
                   "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]}),
        ] {
            let mut doc = tls.clone();
            doc["spec"]["validation"] = v;
            assert!(violations(&doc)[0].contains("exactly one of CACertificateRefs"));
        }

        let backend = json!({
            "apiVersion": "gateway.envoyproxy.io/v1alpha1",
            "kind": "Backend",
            "metadata": {"name": "b", "namespace": "gw"},
            "spec": {"endpoints": [{"fqdn": {"hostname": "api.example.com", "port": 443}}]},
        });
        assert_eq!(violations(&backend), Vec::<String>::new());
        let mut mixed = backend.clone();
        mixed["spec"]["endpoints"]
            .as_array_mut()
            .unwrap()
            .push(json!({"ip": {"address": "10.0.0.1", "port": 443}}));
        assert!(violations(&mixed)[0].contains("fqdn addresses cannot be mixed"));
        let mut both = backend.clone();
        both["spec"]["endpoints"][0]["ip"] = json!({"address": "10.0.0.1", "port": 443});
        assert!(violations(&both)
            .iter()
            .any(|v| v.contains("exactly one of fqdn, ip or unix")));

        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "gw"},
            "spec": {"rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/a/"}}],
                "filters": [{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}],
            }]},
        });
        assert_eq!(violations(&route), Vec::<String>::new());
        let mut two = route.clone();
        two["spec"]["rules"][0]["matches"]
            .as_array_mut()
            .unwrap()
            .push(json!({"path": {"type": "Exact", "value": "/b"}}));
        assert!(violations(&two)[0].contains("exactly one PathPrefix match"));
    }

    #[test]
    fn combinators() {
        let schema = json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
            "not": {"required": ["c"]},
            "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
        });
        let run = |v: Value| {
            let mut out = Vec::new();
            check(&schema, &v, "", &mut out);
            out.len()
        };
        assert_eq!(run(json!({"a": "x"})), 0);
        assert_eq!(run(json!({"a": "x", "b": "y"})), 1);
        assert_eq!(run(json!({})), 2);
        let int_or_string = json!({"x-kubernetes-int-or-string": true});
        let mut out = Vec::new();
        check(&int_or_string, &json!(true), "", &mut out);
        assert_eq!(out.len(), 1);
        let nullable = json!({"type": "integer", "nullable": true});
        let mut out = Vec::new();
        check(&nullable, &Value::Null, "", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_yaml_stream() {
        let mut bad = wasm_plugin();
        bad["spec"]["phase"] = json!("LATE");
        let text = format!(
            "{}---\n{}",
            serde_saphyr::to_string(&wasm_plugin()).unwrap(),
            serde_saphyr::to_string(&bad).unwrap()
        );
        let got = check_stream(&text).unwrap();
        assert_eq!(got.len(), 1);
        assert!(got[0].starts_with("WasmPlugin/tvp: .spec.phase"), "{got:?}");
        assert!(check_stream("a: [").is_err());
    }
}
