//! Envoy Gateway (Gateway API) resources for a user's Gateway:
//!
//! - an `EnvoyPatchPolicy` adding the clusters the filter calls (issuers, Auth0, Okta) under
//!   the tenants file's own cluster names, built as `render envoy` builds them (TLS verified
//!   by CA, SAN and SNI). Envoy Gateway's other way for a Wasm extension to reach a host,
//!   `EnvoyExtensionPolicy.spec.backends` (v1.10+), gives the filter a cluster name only
//!   through the route's metadata during a request, and the filter refreshes signing keys from
//!   its root context, where no route is selected; nor is it in the vendored schemas.
//! - per tenant a `Backend` (with a `BackendTLSPolicy` for https) and an `HTTPRoute`
//!   `/{tenant}/` → the backend, prefix replaced by the backend URL's path;
//! - an `HTTPRoute` for the filter's own endpoints, with no backend: the filter answers them,
//!   and anything it let through would get Envoy Gateway's 500 (fail closed);
//! - the `EnvoyExtensionPolicy` running the module (pinned by sha256, `failOpen: false`) on
//!   those routes only: on the whole Gateway it would answer other applications' requests as
//!   unknown tenants.

use serde_json::Value;

use crate::deployment::Deployment;
use crate::doc::{yaml_stream, Node};
use crate::envoy::{cluster, hold_path_warning, plugin_config_without_hold, HEADER, ROOT_ID};
use crate::istio::k8s_metadata;
use crate::tenants::JsonPath;
use crate::upstream::{public_hostname, Backend, Origin, Plan};
use crate::{map, schema, seq};

const GATEWAY_API: &str = "gateway.networking.k8s.io";
const ENVOY_GATEWAY_API: &str = "gateway.envoyproxy.io";
const CLUSTER_TYPE: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// The paths the filter answers itself outside `/{tenant}/` (see the filter's
/// `endpoints::route`): each needs a route, or Envoy Gateway never runs the filter there.
pub const FILTER_PATHS: &[(&str, &str)] = &[
    ("Exact", "/health"),
    ("Exact", "/tenants"),
    ("PathPrefix", "/.well-known/oauth-protected-resource/"),
    ("PathPrefix", "/connect/"),
];

/// The MCP hold routes are left out: they need a buffer filter on a route per tenant, and
/// Envoy Gateway's request buffering (BackendTrafficPolicy) has no vendored schema here.
pub fn warnings(plan: &Plan) -> Vec<String> {
    hold_path_warning(
        plan,
        "the EnvoyExtensionPolicy's config",
        "`render envoy-gateway` adds no hold routes (they need a buffering route per tenant)",
    )
}

/// The resources as one YAML stream, each checked against the vendored schemas and the CEL
/// rules `tvp` checks by hand. Errors: every refusal, one line each.
pub fn render(plan: &Plan, d: &Deployment) -> Result<String, Vec<String>> {
    let docs = resources(plan, d)?;
    schema::check_all(&docs.iter().map(Node::to_json).collect::<Vec<_>>()).map_err(|e| vec![e])?;
    Ok(format!("{HEADER}{}", yaml_stream(&docs)))
}

pub fn resources(plan: &Plan, d: &Deployment) -> Result<Vec<Node>, Vec<String>> {
    let eg = &d.envoy_gateway;
    let Some((gw_namespace, gw_name)) = &eg.gateway else {
        return Err(vec![
            "deployment: envoy_gateway.gateway: name the Gateway (NAMESPACE/NAME)".into(),
        ]);
    };
    refusals(plan, d)?;
    let names = route_names(plan, d)?;
    let config = plugin_config_without_hold(plan, d).map_err(|e| vec![e])?;
    let mut parent = map! {
        "group" => GATEWAY_API,
        "kind" => "Gateway",
        "namespace" => gw_namespace.clone(),
        "name" => gw_name.clone(),
    };
    if let Some(listener) = &eg.listener {
        parent.insert("sectionName", listener.clone());
    }
    let routes = Routes {
        parent,
        hostnames: public_hostname(&config)
            .into_iter()
            .map(Node::from)
            .collect(),
    };

    let mut docs = vec![patch_policy(plan, d, gw_namespace, gw_name)];
    for (b, name) in plan.backends.iter().zip(&names) {
        docs.push(backend(b, name, d));
        if b.origin.tls {
            docs.push(backend_tls_policy(b, name, d));
        }
        docs.push(routes.tenant(b, name, d));
    }
    docs.push(routes.filter(d));
    let mut targets: Vec<&str> = names.iter().map(String::as_str).collect();
    targets.push(&eg.name);
    docs.push(extension_policy(plan, d, &config, &targets));
    Ok(docs)
}

/// What cannot work on Envoy Gateway, named by the tenants file's path: TLS to an IP address
/// (no host name to verify), plain HTTP unless the deployment allows it (a demo), and
/// loopback backends (Envoy Gateway's `Backend` refuses them).
fn refusals(plan: &Plan, d: &Deployment) -> Result<(), Vec<String>> {
    let allow_plain = d.envoy_gateway.allow_plain_http;
    let mut out = Vec::new();
    for c in &plan.clusters {
        let what = "tokens and client credentials";
        out.extend(origin_problems(&c.path, &c.origin, what, allow_plain));
    }
    for b in &plan.backends {
        let what = "the tenant's credentials";
        out.extend(origin_problems(&b.path, &b.origin, what, allow_plain));
        let loopback = b.origin.host == "localhost"
            || b.origin
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if loopback {
            out.push(format!(
                "{}: reaches {}: Envoy Gateway's Backend refuses loopback addresses; name the backend's Service or host",
                b.path, b.origin
            ));
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

fn origin_problems(path: &JsonPath, o: &Origin, what: &str, allow_plain: bool) -> Vec<String> {
    let mut out = Vec::new();
    if o.tls && o.is_ip() {
        out.push(format!(
            "{path}: reaches {o}: TLS to an IP address cannot be verified by host name on Envoy Gateway; use the host's DNS name"
        ));
    }
    if !o.tls && !allow_plain {
        out.push(format!(
            "{path}: reaches {o} over plain HTTP, which would carry {what} unencrypted; use https, or set envoy_gateway.allow_plain_http=true for a demo"
        ));
    }
    out
}

/// A Kubernetes name per tenant (`{name}-{tenant}`, lower case, `_` as `-`): the tenant's
/// HTTPRoute, Backend and BackendTLSPolicy. Tenant ids differing only in case or `_`/`-`
/// would share one, so they are refused.
fn route_names(plan: &Plan, d: &Deployment) -> Result<Vec<String>, Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (i, b) in plan.backends.iter().enumerate() {
        let tenant = b.tenant.to_ascii_lowercase().replace('_', "-");
        let name = format!("{}-{}", d.envoy_gateway.name, tenant.trim_end_matches('-'));
        match names.iter().position(|n| *n == name) {
            Some(j) => out.push(format!(
                "{}: tenant '{}' and tenant '{}' ($.tenants[{j}]) would share the Kubernetes name '{name}'",
                JsonPath::root().key("tenants").index(i).key("id"),
                b.tenant,
                plan.backends[j].tenant
            )),
            None => names.push(name),
        }
    }
    if out.is_empty() {
        Ok(names)
    } else {
        Err(out)
    }
}

/// One EnvoyPatchPolicy in the Gateway's namespace (Envoy Gateway requires it there) adding
/// every cluster the plugin configuration names, with TLS inside the cluster: a
/// BackendTLSPolicy does not reach a cluster added by a patch.
fn patch_policy(plan: &Plan, d: &Deployment, gw_namespace: &str, gw_name: &str) -> Node {
    let patches: Vec<Node> = plan
        .distinct_clusters()
        .into_iter()
        .map(|c| {
            map! {
                "type" => CLUSTER_TYPE,
                "name" => c.name.clone(),
                // An empty path adds a whole resource (Envoy Gateway's own tests do it so).
                "operation" => map! {
                    "op" => "add",
                    "path" => "",
                    "value" => cluster(&c.name, &c.origin, &d.ca_bundle),
                },
            }
        })
        .collect();
    map! {
        "apiVersion" => "gateway.envoyproxy.io/v1alpha1",
        "kind" => "EnvoyPatchPolicy",
        "metadata" => k8s_metadata(d.envoy_gateway.name.clone(), gw_namespace),
        "spec" => map! {
            "targetRef" => map! { "group" => GATEWAY_API, "kind" => "Gateway", "name" => gw_name },
            "type" => "JSONPatch",
            "jsonPatches" => Node::Seq(patches),
        },
    }
}

fn backend(b: &Backend, name: &str, d: &Deployment) -> Node {
    let o = &b.origin;
    let endpoint = if o.is_ip() {
        map! { "ip" => map! { "address" => o.host.clone(), "port" => o.port } }
    } else {
        map! { "fqdn" => map! { "hostname" => o.host.clone(), "port" => o.port } }
    };
    map! {
        "apiVersion" => "gateway.envoyproxy.io/v1alpha1",
        "kind" => "Backend",
        "metadata" => k8s_metadata(name.to_string(), d.envoy_gateway.namespace()),
        "spec" => map! { "endpoints" => seq![endpoint] },
    }
}

/// TLS to an https backend: the host name is the SNI and what the certificate must match;
/// the CA is the system trust store or the deployment's ConfigMap.
fn backend_tls_policy(b: &Backend, name: &str, d: &Deployment) -> Node {
    let mut validation = map! { "hostname" => b.origin.host.clone() };
    match &d.envoy_gateway.ca_config_map {
        Some(cm) => validation.insert(
            "caCertificateRefs",
            seq![map! { "group" => "", "kind" => "ConfigMap", "name" => cm.clone() }],
        ),
        None => validation.insert("wellKnownCACertificates", "System"),
    }
    map! {
        "apiVersion" => "gateway.networking.k8s.io/v1",
        "kind" => "BackendTLSPolicy",
        "metadata" => k8s_metadata(name.to_string(), d.envoy_gateway.namespace()),
        "spec" => map! {
            "targetRefs" => seq![map! {
                "group" => ENVOY_GATEWAY_API,
                "kind" => "Backend",
                "name" => name,
            }],
            "validation" => validation,
        },
    }
}

/// What every rendered HTTPRoute shares: the Gateway (and listener) and the public host name.
struct Routes {
    parent: Node,
    hostnames: Vec<Node>,
}

impl Routes {
    fn route(&self, name: &str, d: &Deployment, rules: Node) -> Node {
        let mut spec = map! { "parentRefs" => seq![self.parent.clone()] };
        if !self.hostnames.is_empty() {
            spec.insert("hostnames", Node::Seq(self.hostnames.clone()));
        }
        spec.insert("rules", rules);
        map! {
            "apiVersion" => "gateway.networking.k8s.io/v1",
            "kind" => "HTTPRoute",
            "metadata" => k8s_metadata(name.to_string(), d.envoy_gateway.namespace()),
            "spec" => spec,
        }
    }

    /// `/{tenant}/` to the tenant's backend: the tenant segment is replaced by the backend
    /// URL's path and the backend sees its own host name, as in `render envoy`.
    fn tenant(&self, b: &Backend, name: &str, d: &Deployment) -> Node {
        let rule = map! {
            "matches" => seq![map! {
                "path" => map! { "type" => "PathPrefix", "value" => format!("/{}/", b.tenant) },
            }],
            "filters" => seq![map! {
                "type" => "URLRewrite",
                "urlRewrite" => map! {
                    "hostname" => b.origin.host.clone(),
                    "path" => map! {
                        "type" => "ReplacePrefixMatch",
                        "replacePrefixMatch" => b.prefix.clone(),
                    },
                },
            }],
            "backendRefs" => seq![map! {
                "group" => ENVOY_GATEWAY_API,
                "kind" => "Backend",
                "name" => name,
                "port" => b.origin.port,
            }],
            "timeouts" => map! { "request" => "30s" },
        };
        self.route(name, d, seq![rule])
    }

    /// The filter's own endpoints: no backend (see the module comment).
    fn filter(&self, d: &Deployment) -> Node {
        let matches: Vec<Node> = FILTER_PATHS
            .iter()
            .map(|(kind, value)| map! { "path" => map! { "type" => *kind, "value" => *value } })
            .collect();
        self.route(
            &d.envoy_gateway.name,
            d,
            seq![map! { "matches" => Node::Seq(matches) }],
        )
    }
}

fn extension_policy(plan: &Plan, d: &Deployment, config: &Value, routes: &[&str]) -> Node {
    let sha = d.wasm_sha256.clone().unwrap_or_default();
    // An https URL is a plain download; anything else (oci://, or no scheme) is an image.
    let code = if d.wasm.starts_with("https://") {
        map! { "type" => "HTTP", "http" => map! { "url" => d.wasm.clone(), "sha256" => sha } }
    } else {
        map! { "type" => "Image", "image" => map! { "url" => d.wasm.clone(), "sha256" => sha } }
    };
    let mut wasm = map! {
        "name" => d.envoy_gateway.name.clone(),
        "rootID" => ROOT_ID,
        "code" => code,
        "config" => Node::from_json(config),
        // A module that fails to load or configure stops traffic (Envoy Gateway answers 500).
        "failOpen" => false,
    };
    if !plan.env_keys.is_empty() {
        // Secrets stay in the Envoy proxy's environment; the configuration only names them.
        let keys: Vec<Node> = plan.env_keys.iter().map(Node::from).collect();
        wasm.insert("env", map! { "hostKeys" => Node::Seq(keys) });
    }
    let targets: Vec<Node> = routes
        .iter()
        .map(|r| map! { "group" => GATEWAY_API, "kind" => "HTTPRoute", "name" => *r })
        .collect();
    map! {
        "apiVersion" => "gateway.envoyproxy.io/v1alpha1",
        "kind" => "EnvoyExtensionPolicy",
        "metadata" => k8s_metadata(d.envoy_gateway.name.clone(), d.envoy_gateway.namespace()),
        "spec" => map! {
            "targetRefs" => Node::Seq(targets),
            "wasm" => seq![wasm],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::{load, Target};
    use crate::fixtures::*;
    use crate::upstream::plan;
    use serde_json::json;

    const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn deployment(extra: &[&str]) -> Deployment {
        let mut sets = vec![
            "wasm=oci://registry.example/token-vault-proxy:0.1.0".to_string(),
            format!("wasm_sha256={SHA}"),
            "envoy_gateway.gateway=gateways/agents".into(),
            "public_base_url=https://agents.example.com".into(),
        ];
        sets.extend(extra.iter().map(|s| s.to_string()));
        load("", &sets, Target::EnvoyGateway).unwrap()
    }

    /// Both tenants on their own Auth0 tenant, both backends https.
    fn real() -> Value {
        let mut doc = with_auth0();
        on_auth0(
            &mut doc["tenants"][1],
            "google-agents.eu.auth0.com",
            "google_idp",
        );
        doc["tenants"][1]["backend"] = json!("https://www.googleapis.com");
        doc
    }

    fn docs_with(doc: &Value, extra: &[&str]) -> Result<Vec<Value>, Vec<String>> {
        let docs = resources(&plan(doc).unwrap(), &deployment(extra))?;
        Ok(docs.iter().map(Node::to_json).collect())
    }

    fn docs(doc: &Value) -> Vec<Value> {
        docs_with(doc, &[]).unwrap()
    }

    fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
        docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    #[test]
    fn every_resource_passes_its_schema_and_rules() {
        let docs = docs(&real());
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "EnvoyPatchPolicy",
                "Backend",
                "BackendTLSPolicy",
                "HTTPRoute",
                "Backend",
                "BackendTLSPolicy",
                "HTTPRoute",
                "HTTPRoute",
                "EnvoyExtensionPolicy"
            ]
        );
        for d in &docs {
            assert_eq!(schema::check_resource(d), vec![], "{d}");
        }
        let text = render(&plan(&real()).unwrap(), &deployment(&[])).unwrap();
        assert!(text.starts_with(HEADER));
        assert_eq!(schema::check_stream(&text).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_patch_adds_the_plugins_clusters_with_verified_tls() {
        let docs = docs(&real());
        let patch = &docs[0];
        // Envoy Gateway wants the patch in the Gateway's namespace, targeting the Gateway.
        assert_eq!(patch["metadata"]["namespace"], "gateways");
        assert_eq!(
            patch["spec"]["targetRef"],
            json!({"group": GATEWAY_API, "kind": "Gateway", "name": "agents"})
        );
        let patches = patch["spec"]["jsonPatches"].as_array().unwrap();
        let names: Vec<&str> = patches
            .iter()
            .map(|p| p["operation"]["value"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["acme", "google_idp"]);
        let config = &of_kind(&docs, "EnvoyExtensionPolicy")[0]["spec"]["wasm"][0]["config"];
        for t in config["tenants"].as_array().unwrap() {
            for c in [&t["jwks"]["cluster"], &t["vault"]["cluster"]] {
                assert!(
                    names.contains(&c.as_str().unwrap()),
                    "{c} is not patched in"
                );
            }
        }
        for (p, host) in patches
            .iter()
            .zip(["acme.us.auth0.com", "google-agents.eu.auth0.com"])
        {
            assert_eq!(p["type"], CLUSTER_TYPE);
            assert_eq!(p["operation"]["op"], "add");
            assert_eq!(p["operation"]["path"], "");
            let tls = &p["operation"]["value"]["transport_socket"]["typed_config"];
            assert_eq!(tls["sni"], host);
            let v = &tls["common_tls_context"]["validation_context"];
            assert_eq!(
                v["trusted_ca"]["filename"],
                "/etc/ssl/certs/ca-certificates.crt"
            );
            assert_eq!(
                v["match_typed_subject_alt_names"],
                json!([{"san_type": "DNS", "matcher": {"exact": host}}])
            );
        }
    }

    #[test]
    fn each_tenant_is_routed_to_its_backend() {
        let docs = docs(&real());
        let routes = of_kind(&docs, "HTTPRoute");
        for (route, (tenant, host, prefix)) in routes.iter().zip([
            ("github", "api.github.com", "/v3/"),
            ("google", "www.googleapis.com", "/"),
        ]) {
            let name = format!("token-vault-proxy-{tenant}");
            assert_eq!(route["metadata"]["name"], name.as_str());
            assert_eq!(route["metadata"]["namespace"], "gateways");
            let spec = &route["spec"];
            assert_eq!(
                spec["parentRefs"],
                json!([{"group": GATEWAY_API, "kind": "Gateway", "namespace": "gateways", "name": "agents"}])
            );
            assert_eq!(spec["hostnames"], json!(["agents.example.com"]));
            let rule = &spec["rules"][0];
            assert_eq!(
                rule["matches"],
                json!([{"path": {"type": "PathPrefix", "value": format!("/{tenant}/")}}])
            );
            assert_eq!(
                rule["filters"][0]["urlRewrite"],
                json!({"hostname": host, "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": prefix}})
            );
            assert_eq!(
                rule["backendRefs"],
                json!([{"group": ENVOY_GATEWAY_API, "kind": "Backend", "name": name, "port": 443}])
            );
            let backend = docs
                .iter()
                .find(|d| d["kind"] == "Backend" && d["metadata"]["name"] == name.as_str())
                .unwrap();
            assert_eq!(
                backend["spec"]["endpoints"],
                json!([{"fqdn": {"hostname": host, "port": 443}}])
            );
            let tls = docs
                .iter()
                .find(|d| d["kind"] == "BackendTLSPolicy" && d["metadata"]["name"] == name.as_str())
                .unwrap();
            assert_eq!(
                tls["spec"]["validation"],
                json!({"hostname": host, "wellKnownCACertificates": "System"})
            );
            assert_eq!(tls["spec"]["targetRefs"][0]["name"], name.as_str());
        }
    }

    #[test]
    fn the_filters_own_endpoints_have_a_route_without_a_backend() {
        let docs = docs(&real());
        let route = of_kind(&docs, "HTTPRoute")[2];
        assert_eq!(route["metadata"]["name"], "token-vault-proxy");
        let rule = &route["spec"]["rules"][0];
        assert!(rule.get("backendRefs").is_none());
        let paths: Vec<&str> = rule["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["path"]["value"].as_str().unwrap())
            .collect();
        assert_eq!(
            paths,
            [
                "/health",
                "/tenants",
                "/.well-known/oauth-protected-resource/",
                "/connect/"
            ]
        );
        // The filter itself takes each of them as its own, not a tenant's.
        use tvp_core::endpoints::{route as filter_route, Route};
        for (kind, path) in FILTER_PATHS {
            let probe = match *kind {
                "Exact" => path.to_string(),
                _ => format!("{path}github/x"),
            };
            let r = filter_route("GET", &probe);
            assert!(
                !matches!(r, Route::Proxy(_) | Route::NoTenant),
                "{probe}: {r:?}"
            );
        }
    }

    #[test]
    fn the_extension_policy_pins_the_module_and_fails_closed() {
        let doc = real();
        let docs = docs(&doc);
        let eep = &of_kind(&docs, "EnvoyExtensionPolicy")[0];
        let targets: Vec<&str> = eep["spec"]["targetRefs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            targets,
            [
                "token-vault-proxy-github",
                "token-vault-proxy-google",
                "token-vault-proxy"
            ]
        );
        assert!(eep["spec"].get("targetRef").is_none());
        let wasm = &eep["spec"]["wasm"][0];
        assert_eq!(wasm["rootID"], ROOT_ID);
        assert_eq!(wasm["failOpen"], false);
        assert_eq!(
            wasm["code"],
            json!({"type": "Image", "image": {"url": "oci://registry.example/token-vault-proxy:0.1.0", "sha256": SHA}})
        );
        assert_eq!(
            wasm["env"],
            json!({"hostKeys": ["GITHUB_VAULT_CLIENT_SECRET", "TVP_SEALING_KEY"]})
        );
        // The tenants file as written, with the public URL, without the hold path.
        let mut want = doc.clone();
        want["settings"]
            .as_object_mut()
            .unwrap()
            .remove("mcp_hold_path");
        want["settings"]["public_base_url"] = json!("https://agents.example.com");
        assert_eq!(wasm["config"], want);
        let said = warnings(&plan(&doc).unwrap());
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("EnvoyExtensionPolicy"), "{said:?}");
    }

    #[test]
    fn deployment_options() {
        let docs = docs_with(
            &real(),
            &[
                "wasm=https://downloads.example/token_vault_proxy.wasm",
                "envoy_gateway.namespace=agents",
                "envoy_gateway.listener=https",
                "envoy_gateway.name=tvp",
                "envoy_gateway.ca_config_map=corp-ca",
                "public_base_url=https://10.0.0.1",
            ],
        )
        .unwrap();
        for d in &docs {
            assert_eq!(schema::check_resource(d), vec![], "{d}");
            let ns = if d["kind"] == "EnvoyPatchPolicy" {
                "gateways"
            } else {
                "agents"
            };
            assert_eq!(d["metadata"]["namespace"], ns, "{d}");
        }
        let eep = of_kind(&docs, "EnvoyExtensionPolicy")[0];
        assert_eq!(
            eep["spec"]["wasm"][0]["code"],
            json!({"type": "HTTP", "http": {"url": "https://downloads.example/token_vault_proxy.wasm", "sha256": SHA}})
        );
        let route = of_kind(&docs, "HTTPRoute")[0];
        assert_eq!(route["metadata"]["name"], "tvp-github");
        assert_eq!(route["spec"]["parentRefs"][0]["sectionName"], "https");
        // An IP address is no host name to route by.
        assert!(route["spec"].get("hostnames").is_none());
        let tls = of_kind(&docs, "BackendTLSPolicy")[0];
        assert_eq!(
            tls["spec"]["validation"]["caCertificateRefs"],
            json!([{"group": "", "kind": "ConfigMap", "name": "corp-ca"}])
        );
    }

    #[test]
    fn refuses_what_cannot_work() {
        // The local stack: plain HTTP to the sim, by IP address on loopback.
        let errs = docs_with(&example(), &[]).unwrap_err();
        assert!(
            errs[0].starts_with(
                "$.tenants[0].jwks.cluster: reaches http://127.0.0.1:9000 over plain HTTP"
            ),
            "{errs:?}"
        );
        assert!(errs.iter().any(|e| e.starts_with("$.tenants[1].backend:")));
        // Allowed for a demo, but a loopback backend still cannot be a Backend.
        let errs = docs_with(&example(), &["envoy_gateway.allow_plain_http=true"]).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("$.tenants[0].backend: reaches http://127.0.0.1:9001: Envoy Gateway's Backend refuses loopback"));
        let mut doc = example();
        for t in doc["tenants"].as_array_mut().unwrap() {
            t["backend"] = json!("http://mcp.apps.svc.cluster.local:8080/");
        }
        let docs = docs_with(&doc, &["envoy_gateway.allow_plain_http=true"]).unwrap();
        let backend = of_kind(&docs, "Backend")[0];
        assert_eq!(
            backend["spec"]["endpoints"],
            json!([{"fqdn": {"hostname": "mcp.apps.svc.cluster.local", "port": 8080}}])
        );
        assert!(of_kind(&docs, "BackendTLSPolicy").is_empty());
        let patch = &docs[0]["spec"]["jsonPatches"][0]["operation"]["value"];
        assert_eq!(patch["type"], "STATIC");
        assert!(patch.get("transport_socket").is_none());

        // TLS to an IP address.
        let mut doc = real();
        doc["tenants"][1]["backend"] = json!("https://10.1.2.3/api");
        let errs = docs_with(&doc, &[]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].starts_with(
                "$.tenants[1].backend: reaches https://10.1.2.3:443: TLS to an IP address"
            ),
            "{errs:?}"
        );
        let mut doc = real();
        doc["tenants"][0]["jwks"] =
            json!({"cluster": "keys", "url": "https://192.0.2.1/jwks.json"});
        let errs = docs_with(&doc, &[]).unwrap_err();
        assert!(
            errs[0].starts_with("$.tenants[0].jwks.cluster:"),
            "{errs:?}"
        );

        // Two tenant ids, one Kubernetes name.
        let mut doc = real();
        doc["tenants"][1]["id"] = json!("GitHub");
        doc["tenants"][1]["resources"] = json!(["/GitHub/mcp"]);
        // An Auth0 tenant accepts one audience: the resource.
        doc["tenants"][1]
            .as_object_mut()
            .unwrap()
            .remove("audience");
        let errs = docs_with(&doc, &[]).unwrap_err();
        assert_eq!(
            errs,
            ["$.tenants[1].id: tenant 'GitHub' and tenant 'github' ($.tenants[0]) would share the Kubernetes name 'token-vault-proxy-github'"]
        );
    }

    #[test]
    fn the_deployment_must_pin_the_module_and_name_the_gateway() {
        let base = [
            "wasm=oci://r/x:1".to_string(),
            format!("wasm_sha256={SHA}"),
            "envoy_gateway.gateway=gw/eg".into(),
        ];
        assert!(load("", &base, Target::EnvoyGateway).is_ok());
        for (drop, want) in [
            (0, "deployment: wasm: Envoy Gateway needs"),
            (1, "deployment: wasm_sha256: Envoy Gateway must pin"),
            (2, "deployment: envoy_gateway.gateway: name the Gateway"),
        ] {
            let mut sets = base.to_vec();
            sets.remove(drop);
            let e = load("", &sets, Target::EnvoyGateway).unwrap_err();
            assert!(e.starts_with(want), "{e}");
        }
        for bad in [
            "wasm=/local/token_vault_proxy.wasm",
            "wasm=http://r/x.wasm",
            "envoy_gateway.gateway=eg",
            "envoy_gateway.gateway=gw/",
        ] {
            let mut sets = base.to_vec();
            sets.push(bad.into());
            assert!(load("", &sets, Target::EnvoyGateway).is_err(), "{bad}");
        }
    }
}
