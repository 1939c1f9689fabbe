//! Istio resources: a `WasmPlugin` running the filter on the selected workloads (an ingress
//! gateway by default), and per outside origin the filter calls a `ServiceEntry` and a
//! `DestinationRule` (TLS with SNI for https). Istio names the cluster of such a host
//! `outbound|<port>||<host>`, so the plugin configuration's `cluster` fields are rewritten to
//! those names: the tenants file stays the one source, whatever the platform.

use serde_json::Value;

use crate::deployment::Deployment;
use crate::doc::{yaml_stream, Node};
use crate::envoy::{hold_path_warning, plugin_config_without_hold, HEADER};
use crate::upstream::{Origin, Plan};
use crate::{map, schema, seq, tenants};

/// The cluster Istio generates for a ServiceEntry host and port.
pub fn cluster_name(o: &Origin) -> String {
    format!("outbound|{}||{}", o.port, o.host)
}

/// What a WasmPlugin cannot deploy: the MCP hold routes (routes need an EnvoyFilter, which
/// has no vendored schema to check it against); see [`plugin_config_without_hold`].
pub fn warnings(plan: &Plan) -> Vec<String> {
    hold_path_warning(
        plan,
        "the WasmPlugin's pluginConfig",
        "a WasmPlugin cannot add the hold routes it needs",
    )
}

/// The plugin configuration for Istio: the deployed configuration with Istio's cluster names,
/// without the MCP hold path (see [`warnings`]).
pub fn istio_plugin_config(plan: &Plan, d: &Deployment) -> Result<Value, String> {
    let mut doc = plugin_config_without_hold(plan, d)?;
    if !d.istio.hosts.is_empty() {
        // The tenant comes from the path: on a shared ingress the host must be checked too.
        let hosts: Vec<Value> = d.istio.hosts.iter().cloned().map(Value::String).collect();
        if let Some(settings) = doc["settings"].as_object_mut() {
            settings.insert("hosts".into(), Value::Array(hosts));
        }
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

pub fn resources(plan: &Plan, d: &Deployment) -> Result<Vec<Node>, String> {
    let config = istio_plugin_config(plan, d)?;
    let mut docs = vec![wasm_plugin(plan, d, &config)?];
    for o in plan.distinct_origins() {
        docs.push(service_entry(o, d));
        docs.push(destination_rule(o, d));
    }
    Ok(docs)
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
            &format!("wasm: oci://registry.example/token-vault-proxy:0.1.0\nwasm_sha256: {SHA}\n"),
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
        let said = warnings(&plan(&doc).unwrap());
        assert_eq!(said.len(), 1);
        assert!(said[0].contains("plain HTTP 403"), "{said:?}");
        let mut doc = doc;
        doc["settings"]
            .as_object_mut()
            .unwrap()
            .remove("mcp_hold_path");
        assert!(warnings(&plan(&doc).unwrap()).is_empty());
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
                "DestinationRule"
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
                "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  credential_name: corp-ca\n"
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
            "wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  hosts: [agents.example.com, \"agents.example.com:8443\"]\n"
        );
        let d = load(&text, &[], Target::Istio).unwrap();
        let config = istio_plugin_config(&plan(&auth0_both()).unwrap(), &d).unwrap();
        assert_eq!(
            config["settings"]["hosts"],
            json!(["agents.example.com", "agents.example.com:8443"])
        );
        assert!(docs(&auth0_both())[0]["spec"]["pluginConfig"]["settings"]
            .get("hosts")
            .is_none());
        // The filter's own check refuses what is not a host name.
        let bad =
            format!("wasm: oci://r/tvp:1\nwasm_sha256: {SHA}\nistio:\n  hosts: [\"https://x\"]\n");
        let d = load(&bad, &[], Target::Istio).unwrap();
        let e = istio_plugin_config(&plan(&auth0_both()).unwrap(), &d).unwrap_err();
        assert!(e.contains("settings.hosts"), "{e}");
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
        assert_eq!(text.matches("\n---\n").count(), 4);
    }
}
