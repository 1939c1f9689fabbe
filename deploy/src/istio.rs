//! Istio resources: a `WasmPlugin` running the filter on the selected workloads (an ingress
//! gateway by default); per outside origin the filter calls or a tenant's https backend is
//! on, a `ServiceEntry` and a `DestinationRule` (TLS verified by CA and exact SAN); and a
//! `VirtualService` on the deployment's Istio `Gateway` routing `/{tenant}/` to each tenant's
//! backend for the gateway's own host names only. Istio names the cluster of an outside host
//! `outbound|<port>||<host>`, so the plugin configuration's `cluster` fields are rewritten to
//! those names: the tenants file stays the one source, whatever the platform.

use serde_json::Value;

use crate::deployment::Deployment;
use crate::doc::{yaml_stream, Node};
use crate::envoy::{hold_path_warning, plugin_config_without_hold, HEADER};
use crate::upstream::{public_hostname, Backend, Origin, Plan};
use crate::{map, schema, seq, tenants};

/// The cluster Istio generates for a ServiceEntry host and port.
pub fn cluster_name(o: &Origin) -> String {
    format!("outbound|{}||{}", o.port, o.host)
}

/// What the rendering cannot promise:
/// - the MCP hold routes, which need Envoy's buffer filter on them (a VirtualService cannot
///   configure a filter; an EnvoyFilter could, and has no vendored schema to check it
///   against); see [`plugin_config_without_hold`];
/// - a Gateway outside `istio.namespace`: the VirtualService binds to it from anywhere, but
///   the ServiceEntries and DestinationRules are exported to `istio.namespace` only, so the
///   gateway's proxy must run there to reach the outside hosts.
pub fn warnings(plan: &Plan, d: &Deployment) -> Vec<String> {
    let mut out = hold_path_warning(
        plan,
        "the WasmPlugin's pluginConfig",
        "a VirtualService cannot put Envoy's buffer filter on the hold routes",
    );
    if let Some((ns, name)) = &d.istio.gateway {
        if *ns != d.istio.namespace {
            let here = &d.istio.namespace;
            out.push(format!(
                "tvp: warning: istio.gateway {ns}/{name} is outside istio.namespace ({here}): the ServiceEntries and DestinationRules are exported to {here} only, so the gateway's proxy must run in {here}"
            ));
        }
    }
    out
}

/// The plugin configuration for Istio: the deployed configuration with Istio's cluster names,
/// without the MCP hold path (see [`warnings`]), and the gateway's host names as
/// `settings.hosts`.
pub fn istio_plugin_config(plan: &Plan, d: &Deployment) -> Result<Value, String> {
    let mut doc = plugin_config_without_hold(plan, d)?;
    // The tenant comes from the path: on a shared ingress the host must be checked too, or
    // `Host: other-app` with `/github/...` would get GitHub's token and go to other-app.
    let hosts: Vec<Value> = gateway_hosts(&doc, d)?
        .into_iter()
        .map(Value::String)
        .collect();
    if let Some(settings) = doc["settings"].as_object_mut() {
        settings.insert("hosts".into(), Value::Array(hosts));
    }
    for c in &plan.clusters {
        if c.origin.is_ip() {
            return Err(format!(
                "{}: reaches {}, but a ServiceEntry host must be a DNS name",
                c.path, c.origin
            ));
        }
        if let Some(v) = c.path.get_mut(&mut doc) {
            *v = Value::String(cluster_name(&c.origin));
        }
    }
    match tenants::filter_error(&doc) {
        None => Ok(doc),
        Some(e) => Err(e),
    }
}

/// The names the gateway answers to (`host[:port]`): `istio.hosts`, or the public URL's host.
fn gateway_hosts(config: &Value, d: &Deployment) -> Result<Vec<String>, String> {
    if !d.istio.hosts.is_empty() {
        return Ok(d.istio.hosts.clone());
    }
    public_hostname(config).map(|h| vec![h]).ok_or_else(|| {
        "deployment: istio.hosts: name the gateway's host names (or set public_base_url to a URL with a DNS name): the routes and the filter answer for them only".to_string()
    })
}

pub fn resources(plan: &Plan, d: &Deployment) -> Result<Vec<Node>, String> {
    let config = istio_plugin_config(plan, d)?;
    let mut docs = vec![wasm_plugin(plan, d, &config)?];
    for o in outside_origins(plan)? {
        docs.push(service_entry(o, d));
        docs.push(destination_rule(o, d));
    }
    docs.push(virtual_service(plan, d, &config)?);
    Ok(docs)
}

/// The origins outside the mesh: every one the filter calls, and every backend that is not a
/// service of the mesh (named `NAME.NAMESPACE.svc.cluster.local`: Istio already knows it).
fn outside_origins(plan: &Plan) -> Result<Vec<&Origin>, String> {
    let mut out = plan.distinct_origins();
    for b in &plan.backends {
        if b.origin.is_ip() {
            return Err(format!(
                "{}: reaches {}, but an Istio route's destination must be a DNS name",
                b.path, b.origin
            ));
        }
        if is_mesh_service(&b.origin) {
            if b.origin.tls {
                // The gateway speaks plain HTTP to it inside Istio's mTLS: a backend that
                // expects TLS itself would get plain text.
                return Err(format!(
                    "{}: reaches {}, a service of the mesh: name it with http:// (Istio's mTLS encrypts it)",
                    b.path,
                    b.origin
                ));
            }
        } else if !out.contains(&&b.origin) {
            out.push(&b.origin);
        }
    }
    Ok(out)
}

/// A Kubernetes service's full name: routed by Istio as a service of the mesh. Anything else
/// is an outside host, which needs a ServiceEntry.
fn is_mesh_service(o: &Origin) -> bool {
    o.host.ends_with(".svc.cluster.local")
}

/// The resources as one YAML stream, each checked against the vendored Istio schemas first.
pub fn render(plan: &Plan, d: &Deployment) -> Result<String, String> {
    let docs = resources(plan, d)?;
    schema::check_all(&docs.iter().map(Node::to_json).collect::<Vec<_>>())?;
    Ok(format!("{HEADER}{}", yaml_stream(&docs)))
}

/// Kubernetes metadata of a rendered resource, labelled as part of token-vault-proxy.
pub fn k8s_metadata(name: String, namespace: &str) -> Node {
    map! {
        "name" => name,
        "namespace" => namespace,
        "labels" => map! { "app.kubernetes.io/part-of" => "token-vault-proxy" },
    }
}

fn wasm_plugin(plan: &Plan, d: &Deployment, config: &Value) -> Result<Node, String> {
    if d.istio.selector.is_empty() {
        // Without a selector the plugin would run on every workload of the namespace.
        return Err("deployment: istio.selector must name the workloads to run on".into());
    }
    let labels = Node::Map(
        d.istio
            .selector
            .iter()
            .map(|(k, v)| (k.clone(), Node::from(v)))
            .collect(),
    );
    let mut spec = map! {
        "selector" => map! { "matchLabels" => labels },
        "url" => d.wasm.clone(),
    };
    // Required by the deployment check: Istio then refuses a module that is not this one.
    if let Some(sha) = &d.wasm_sha256 {
        spec.insert("sha256", sha.clone());
    }
    let mut selector = map! { "mode" => d.istio.mode.clone() };
    if !d.istio.ports.is_empty() {
        let ports: Vec<Node> = d
            .istio
            .ports
            .iter()
            .map(|p| map! { "number" => *p })
            .collect();
        selector.insert("ports", Node::Seq(ports));
    }
    spec.insert("imagePullPolicy", "IfNotPresent");
    spec.insert("pluginName", "token-vault-proxy");
    // Before Istio's own authentication: the agent's token is the filter's to check.
    spec.insert("phase", "AUTHN");
    spec.insert("type", "HTTP");
    // Envoy's fail_open: false. A plugin that fails to load must stop traffic, not pass it.
    spec.insert("failStrategy", "FAIL_CLOSE");
    spec.insert("match", seq![selector]);
    if !plan.env_keys.is_empty() {
        // HOST: the value comes from the proxy container's environment (set it there from a
        // Secret); INLINE would put the secret into this resource.
        let env: Vec<Node> = plan
            .env_keys
            .iter()
            .map(|k| map! { "name" => k, "valueFrom" => "HOST" })
            .collect();
        spec.insert("vmConfig", map! { "env" => Node::Seq(env) });
    }
    spec.insert("pluginConfig", Node::from_json(config));
    Ok(map! {
        "apiVersion" => "extensions.istio.io/v1alpha1",
        "kind" => "WasmPlugin",
        "metadata" => k8s_metadata(d.istio.name.clone(), &d.istio.namespace),
        "spec" => spec,
    })
}

/// The tenants' routes on the deployment's Gateway, for the gateway's own host names only: a
/// request for another application's host never reaches a tenant's backend through them.
fn virtual_service(plan: &Plan, d: &Deployment, config: &Value) -> Result<Node, String> {
    let (ns, name) = d
        .istio
        .gateway
        .as_ref()
        .ok_or("deployment: istio.gateway: name the Istio Gateway (NAMESPACE/NAME)")?;
    // A VirtualService host is a name; the port of a `host:port` entry is the filter's check.
    let mut hosts: Vec<String> = Vec::new();
    for h in gateway_hosts(config, d)? {
        let host = h.rsplit_once(':').map_or(h.as_str(), |(host, _)| host);
        if !hosts.iter().any(|seen| seen == host) {
            hosts.push(host.to_string());
        }
    }
    let mut routes: Vec<Node> = plan.backends.iter().map(tenant_route).collect();
    // The filter answers its own paths before routing; this only guards a gap, as in
    // `render envoy`.
    routes.push(map! {
        "name" => "not-found",
        "directResponse" => map! {
            "status" => 404u16,
            "body" => map! { "string" => "{\"error\":\"not_found\"}" },
        },
    });
    Ok(map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "VirtualService",
        "metadata" => k8s_metadata(d.istio.name.clone(), &d.istio.namespace),
        "spec" => map! {
            "hosts" => Node::Seq(hosts.into_iter().map(Node::from).collect()),
            "gateways" => seq![format!("{ns}/{name}")],
            "http" => Node::Seq(routes),
        },
    })
}

/// `/{tenant}/` to the tenant's backend: the tenant segment is replaced by the backend URL's
/// path and the backend sees its own host name, as in `render envoy`.
fn tenant_route(b: &Backend) -> Node {
    map! {
        "name" => b.tenant.clone(),
        "match" => seq![map! { "uri" => map! { "prefix" => format!("/{}/", b.tenant) } }],
        "rewrite" => map! { "uri" => b.prefix.clone(), "authority" => b.origin.authority() },
        "route" => seq![map! {
            "destination" => map! {
                "host" => b.origin.host.clone(),
                "port" => map! { "number" => b.origin.port },
            },
        }],
        "timeout" => "30s",
    }
}

fn resource_name(o: &Origin, d: &Deployment) -> String {
    format!("{}-{}-{}", d.istio.name, o.host, o.port)
}

fn service_entry(o: &Origin, d: &Deployment) -> Node {
    // The filter speaks plain HTTP to the cluster; the DestinationRule originates TLS. Kept to
    // this namespace (exportTo "."), so other workloads' own TLS to the host is untouched.
    let port_name = if o.tls {
        "http-tls-origination"
    } else {
        "http"
    };
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "ServiceEntry",
        "metadata" => k8s_metadata(resource_name(o, d), &d.istio.namespace),
        "spec" => map! {
            "hosts" => seq![o.host.clone()],
            "location" => "MESH_EXTERNAL",
            "resolution" => "DNS",
            "ports" => seq![map! { "number" => o.port, "name" => port_name, "protocol" => "HTTP" }],
            "exportTo" => seq!["."],
        },
    }
}

fn destination_rule(o: &Origin, d: &Deployment) -> Node {
    let tls = if o.tls {
        // Pinned as the plain-Envoy rendering pins it: these connections carry the JWKS, the
        // vault exchange and client secrets, so an unverified peer is an authentication bypass.
        let mut tls = map! { "mode" => "SIMPLE", "sni" => o.host.clone() };
        match &d.istio.credential_name {
            Some(secret) => tls.insert("credentialName", secret.clone()),
            None => tls.insert("caCertificates", d.ca_bundle.clone()),
        }
        tls.insert("subjectAltNames", seq![o.host.clone()]);
        tls.insert("insecureSkipVerify", false);
        tls
    } else {
        // Explicit, so a mesh-wide ISTIO_MUTUAL default does not apply to an outside host.
        map! { "mode" => "DISABLE" }
    };
    map! {
        "apiVersion" => "networking.istio.io/v1",
        "kind" => "DestinationRule",
        "metadata" => k8s_metadata(resource_name(o, d), &d.istio.namespace),
        "spec" => map! {
            "host" => o.host.clone(),
            "exportTo" => seq!["."],
            "trafficPolicy" => map! {
                "portLevelSettings" => seq![map! {
                    "port" => map! { "number" => o.port },
                    "tls" => tls,
                }],
            },
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

    fn deployment() -> Deployment {
        load(
            &format!("wasm: oci://registry.example/token-vault-proxy:0.1.0\nwasm_sha256: {SHA}\nistio:\n  gateway: istio-system/agents\n"),
            &[],
            Target::Istio,
        )
        .unwrap()
    }

    fn docs(doc: &Value) -> Vec<Value> {
        resources(&plan(doc).unwrap(), &deployment())
            .unwrap()
            .iter()
            .map(Node::to_json)
            .collect()
    }

    /// Both tenants on Auth0, each on its own Auth0 tenant.
    fn auth0_both() -> Value {
        let mut doc = with_auth0();
        on_auth0(
            &mut doc["tenants"][1],
            "google-agents.eu.auth0.com",
            "google_idp",
        );
        // A service of the mesh: Istio routes to it with its own mTLS.
        doc["tenants"][1]["backend"] = json!("http://mcp.agents.svc.cluster.local:8080/mcp");
        doc
    }

    #[test]
    fn clusters_are_renamed_to_istios() {
        let docs = docs(&auth0_both());
        let config = &docs[0]["spec"]["pluginConfig"];
        assert_eq!(
            config["tenants"][0]["jwks"]["cluster"],
            "outbound|443||acme.us.auth0.com"
        );
        assert_eq!(
            config["tenants"][0]["vault"]["cluster"],
            "outbound|443||acme.us.auth0.com"
        );
        assert_eq!(
            config["tenants"][1]["vault"]["cluster"],
            "outbound|443||google-agents.eu.auth0.com"
        );
        // Everything else is the tenants file as written.
        let mut back = config.clone();
        back["tenants"][0]["jwks"]["cluster"] = json!("acme");
        back["tenants"][0]["vault"]["cluster"] = json!("acme");
        back["tenants"][1]["jwks"]["cluster"] = json!("google_idp");
        back["tenants"][1]["vault"]["cluster"] = json!("google_idp");
        // The public URL's host is the gateway's: the only one the filter answers for.
        assert_eq!(back["settings"]["hosts"], json!(["localhost"]));
        back["settings"].as_object_mut().unwrap().remove("hosts");
        let mut without_hold = auth0_both();
        without_hold["settings"]
            .as_object_mut()
            .unwrap()
            .remove("mcp_hold_path");
        assert_eq!(back, without_hold);
    }

    #[test]
    fn the_mcp_hold_path_is_left_out_with_a_warning() {
        let doc = auth0_both();
        let config = &docs(&doc)[0]["spec"]["pluginConfig"];
        assert!(config["settings"].get("mcp_hold_path").is_none());
        assert_eq!(config["settings"]["callout_timeout_ms"], 5000);
        let said = warnings(&plan(&doc).unwrap(), &deployment());
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("plain HTTP 403"), "{said:?}");
        let mut doc = doc;
        doc["settings"]
            .as_object_mut()
            .unwrap()
            .remove("mcp_hold_path");
        assert!(warnings(&plan(&doc).unwrap(), &deployment()).is_empty());
    }

    #[test]
    fn one_service_entry_and_destination_rule_per_origin() {
        let docs = docs(&auth0_both());
        let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "WasmPlugin",
                "ServiceEntry",
                "DestinationRule",
                "ServiceEntry",
                "DestinationRule",
                "ServiceEntry",
                "DestinationRule",
                "VirtualService"
            ]
        );
        let se = &docs[1]["spec"];
        assert_eq!(se["hosts"], json!(["acme.us.auth0.com"]));
        assert_eq!(se["ports"][0]["number"], 443);
        assert_eq!(se["ports"][0]["protocol"], "HTTP");
        let dr = &docs[2]["spec"];
        assert_eq!(dr["host"], "acme.us.auth0.com");
        assert_eq!(
            dr["trafficPolicy"]["portLevelSettings"][0]["tls"],
            json!({
                "mode": "SIMPLE",
                "sni": "acme.us.auth0.com",
                "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                "subjectAltNames": ["acme.us.auth0.com"],
                "insecureSkipVerify": false,
            })
        );
        for d in &docs {
            assert_eq!(schema::check_resource(d), vec![], "{d}");
        }
    }

    #[test]
    fn tls_to_outside_hosts_is_verified_against_a_named_secret() {
        let d = load(
            &format!(
                "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  gateway: gw/agents\n  credential_name: corp-ca\n"
            ),
            &[],
            Target::Istio,
        )
        .unwrap();
        let docs = resources(&plan(&auth0_both()).unwrap(), &d).unwrap();
        let dr = docs[2].to_json();
        let tls = &dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"];
        assert_eq!(tls["credentialName"], "corp-ca");
        assert!(tls.get("caCertificates").is_none());
        assert_eq!(tls["subjectAltNames"], json!(["acme.us.auth0.com"]));
        assert_eq!(tls["insecureSkipVerify"], false);
        assert_eq!(schema::check_resource(&dr), vec![]);
    }

    #[test]
    fn the_gateways_hosts_become_the_plugins_allow_list() {
        let text = format!(
            "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  gateway: gw/agents\n  hosts: [agents.example.com, \"agents.example.com:8443\"]\n"
        );
        let d = load(&text, &[], Target::Istio).unwrap();
        let config = istio_plugin_config(&plan(&auth0_both()).unwrap(), &d).unwrap();
        assert_eq!(
            config["settings"]["hosts"],
            json!(["agents.example.com", "agents.example.com:8443"])
        );
        // Without istio.hosts: the public URL's host.
        assert_eq!(
            docs(&auth0_both())[0]["spec"]["pluginConfig"]["settings"]["hosts"],
            json!(["localhost"])
        );
        // The filter's own check refuses what is not a host name.
        let bad =
            format!("wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  gateway: gw/agents\n  hosts: [\"https://x\"]\n");
        let d = load(&bad, &[], Target::Istio).unwrap();
        let e = istio_plugin_config(&plan(&auth0_both()).unwrap(), &d).unwrap_err();
        assert!(e.contains("settings.hosts"), "{e}");
    }

    #[test]
    fn the_virtual_service_routes_each_tenant_on_the_gateways_hosts_only() {
        let text = format!(
            "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  gateway: gw/agents\n  hosts: [agents.example.com, \"agents.example.com:8443\"]\n"
        );
        let d = load(&text, &[], Target::Istio).unwrap();
        let docs: Vec<Value> = resources(&plan(&auth0_both()).unwrap(), &d)
            .unwrap()
            .iter()
            .map(Node::to_json)
            .collect();
        let vs = docs.last().unwrap();
        assert_eq!(vs["kind"], "VirtualService");
        assert_eq!(schema::check_resource(vs), vec![]);
        let spec = &vs["spec"];
        // Names, not host:port: the port of an entry is the filter's check.
        assert_eq!(spec["hosts"], json!(["agents.example.com"]));
        assert_eq!(spec["gateways"], json!(["gw/agents"]));
        assert_eq!(
            spec["http"][0],
            json!({
                "name": "github",
                "match": [{"uri": {"prefix": "/github/"}}],
                "rewrite": {"uri": "/v3/", "authority": "api.github.com"},
                "route": [{"destination": {"host": "api.github.com", "port": {"number": 443}}}],
                "timeout": "30s",
            })
        );
        assert_eq!(
            spec["http"][1],
            json!({
                "name": "google",
                "match": [{"uri": {"prefix": "/google/"}}],
                "rewrite": {"uri": "/mcp/", "authority": "mcp.agents.svc.cluster.local:8080"},
                "route": [{"destination": {"host": "mcp.agents.svc.cluster.local", "port": {"number": 8080}}}],
                "timeout": "30s",
            })
        );
        // Anything else the filter did not answer is not routed anywhere.
        assert_eq!(spec["http"][2]["directResponse"]["status"], 404);
        assert!(spec["http"][2].get("match").is_none());
        assert_eq!(spec["http"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn an_https_backend_is_outside_the_mesh_with_verified_tls_and_an_http_one_is_a_service() {
        let docs = docs(&auth0_both());
        let hosts: Vec<&str> = docs
            .iter()
            .filter(|d| d["kind"] == "DestinationRule")
            .map(|d| d["spec"]["host"].as_str().unwrap())
            .collect();
        assert_eq!(
            hosts,
            [
                "acme.us.auth0.com",
                "google-agents.eu.auth0.com",
                "api.github.com"
            ]
        );
        let dr = docs
            .iter()
            .find(|d| d["spec"]["host"] == "api.github.com")
            .unwrap();
        assert_eq!(
            dr["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"],
            json!({
                "mode": "SIMPLE",
                "sni": "api.github.com",
                "caCertificates": "/etc/ssl/certs/ca-certificates.crt",
                "subjectAltNames": ["api.github.com"],
                "insecureSkipVerify": false,
            })
        );
    }

    #[test]
    fn a_plain_http_backend_outside_the_mesh_gets_an_entry_and_a_mesh_service_over_https_is_refused(
    ) {
        let mut doc = auth0_both();
        doc["tenants"][1]["backend"] = json!("http://legacy.example.com:8080/");
        let rendered = docs(&doc);
        let dr = rendered
            .iter()
            .find(|d| d["kind"] == "DestinationRule" && d["spec"]["host"] == "legacy.example.com")
            .unwrap();
        assert_eq!(
            dr["spec"]["trafficPolicy"]["portLevelSettings"][0],
            json!({"port": {"number": 8080}, "tls": {"mode": "DISABLE"}})
        );
        assert!(rendered
            .iter()
            .any(|d| d["kind"] == "ServiceEntry"
                && d["spec"]["hosts"] == json!(["legacy.example.com"])));
        // The mesh service of auth0_both has neither.
        assert!(!docs(&auth0_both()).iter().any(|d| d
            .to_string()
            .contains("\"mcp.agents.svc.cluster.local\"")
            && d["kind"] != "VirtualService"));
        doc["tenants"][1]["backend"] = json!("https://mcp.agents.svc.cluster.local/");
        let err = resources(&plan(&doc).unwrap(), &deployment()).unwrap_err();
        assert!(
            err.starts_with("$.tenants[1].backend: reaches https://mcp.agents.svc.cluster.local:443, a service of the mesh: name it with http://"),
            "{err}"
        );
    }

    #[test]
    fn a_gateway_outside_the_resources_namespace_is_warned_about() {
        let text = format!(
            "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  gateway: istio-ingress/agents\n"
        );
        let d = load(&text, &[], Target::Istio).unwrap();
        let mut doc = auth0_both();
        doc["settings"]
            .as_object_mut()
            .unwrap()
            .remove("mcp_hold_path");
        let said = warnings(&plan(&doc).unwrap(), &d);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].contains(
                "istio.gateway istio-ingress/agents is outside istio.namespace (istio-system)"
            ),
            "{said:?}"
        );
        assert!(warnings(&plan(&doc).unwrap(), &deployment()).is_empty());
    }

    #[test]
    fn an_istio_route_cannot_lead_to_an_ip_address() {
        let mut doc = auth0_both();
        doc["tenants"][1]["backend"] = json!("http://10.0.0.7:9001/");
        let err = resources(&plan(&doc).unwrap(), &deployment()).unwrap_err();
        assert_eq!(
            err,
            "$.tenants[1].backend: reaches http://10.0.0.7:9001, but an Istio route's destination must be a DNS name"
        );
    }

    #[test]
    fn without_host_names_the_routes_would_take_any_host_and_are_refused() {
        let mut doc = auth0_both();
        doc["settings"]["public_base_url"] = json!("http://127.0.0.1:3000");
        let err = resources(&plan(&doc).unwrap(), &deployment()).unwrap_err();
        assert!(err.starts_with("deployment: istio.hosts: "), "{err}");
    }

    #[test]
    fn the_wasm_plugin() {
        let docs = docs(&auth0_both());
        let spec = &docs[0]["spec"];
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
        assert_eq!(spec["sha256"], SHA);
        assert_eq!(spec["phase"], "AUTHN");
        assert_eq!(
            spec["url"],
            "oci://registry.example/token-vault-proxy:0.1.0"
        );
        assert_eq!(
            spec["selector"]["matchLabels"],
            json!({"istio": "ingressgateway"})
        );
        assert_eq!(spec["match"], json!([{"mode": "CLIENT"}]));
        assert_eq!(
            spec["vmConfig"]["env"],
            json!([
                {"name": "GITHUB_VAULT_CLIENT_SECRET", "valueFrom": "HOST"},
                {"name": "TVP_SEALING_KEY", "valueFrom": "HOST"}
            ])
        );
        assert_eq!(docs[0]["metadata"]["namespace"], "istio-system");
    }

    #[test]
    fn ip_hosts_cannot_be_service_entries() {
        let err = resources(&plan(&example()).unwrap(), &deployment()).unwrap_err();
        assert!(
            err.starts_with("$.tenants[0].jwks.cluster: reaches http://127.0.0.1:9000"),
            "{err}"
        );
    }

    #[test]
    fn rendered_yaml_reads_back() {
        let text = render(&plan(&auth0_both()).unwrap(), &deployment()).unwrap();
        assert!(text.starts_with(HEADER));
        assert_eq!(schema::check_stream(&text).unwrap(), Vec::<String>::new());
        assert_eq!(text.matches("\n---\n").count(), 7);
    }
}
