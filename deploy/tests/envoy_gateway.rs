//! `tvp render envoy-gateway`: every rendered document passes the vendored Envoy Gateway and
//! Gateway API CRD schemas, the HTTPRoutes route each tenant, the patched-in clusters are the
//! plugin's and Envoy accepts them, and what cannot work is refused by tenant and field.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::*;

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn sets() -> Vec<String> {
    vec![
        "wasm=oci://registry.example/token-vault-proxy:0.1.0".into(),
        format!("wasm_sha256={SHA}"),
        "envoy_gateway.gateway=gateways/agents".into(),
        "public_base_url=https://agents.example.com".into(),
    ]
}

/// `tvp render envoy-gateway` of `tenants` written to `dir`, with extra arguments.
fn tvp_render(dir: &std::path::Path, tenants: &Value, extra: &[&str]) -> (i32, String, String) {
    let file = dir.join("tenants.json");
    std::fs::write(&file, tenants.to_string()).unwrap();
    let sets = sets();
    let mut args = vec![
        "render",
        "envoy-gateway",
        "--tenants",
        file.to_str().unwrap(),
        "--set",
        DEMO,
    ];
    for s in &sets {
        args.extend(["--set", s]);
    }
    args.extend(extra);
    tvp(&args)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn every_rendered_document_passes_the_vendored_schemas() {
    let dir = scratch("eg-schema");
    let out = dir.join("out");
    let (code, _, err) = tvp_render(&dir, &auth0_tenants(), &["--out", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let file = out.join("envoy-gateway.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        deploy::schema::check_stream(&text).unwrap(),
        Vec::<String>::new()
    );
    let (code, out, err) = tvp(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let docs = stream(&text);
    // Clusters first, the filter last: it attaches once what it calls and serves exists.
    assert_eq!(docs[0]["kind"], "EnvoyPatchPolicy");
    assert_eq!(docs[docs.len() - 1]["kind"], "EnvoyExtensionPolicy");
    for (kind, n) in [("Backend", 2), ("BackendTLSPolicy", 2), ("HTTPRoute", 3)] {
        assert_eq!(of_kind(&docs, kind).len(), n, "{kind}");
    }
}

#[test]
fn the_routes_lead_each_tenant_to_its_backend_through_the_filter() {
    let dir = scratch("eg-routes");
    let (code, text, err) = tvp_render(&dir, &auth0_tenants(), &[]);
    assert_eq!(code, 0, "{err}");
    let docs = stream(&text);
    let eep = of_kind(&docs, "EnvoyExtensionPolicy")[0];
    let targets: Vec<&Value> = eep["spec"]["targetRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["name"])
        .collect();
    let routes = of_kind(&docs, "HTTPRoute");
    // The filter runs on every route tvp renders, and only there.
    assert_eq!(targets.len(), routes.len());
    for r in &routes {
        assert!(targets.contains(&&r["metadata"]["name"]), "{r}");
        assert_eq!(r["spec"]["parentRefs"][0]["name"], "agents");
        assert_eq!(r["spec"]["hostnames"], json!(["agents.example.com"]));
    }
    let config = &eep["spec"]["wasm"][0]["config"];
    for t in config["tenants"].as_array().unwrap() {
        let id = t["id"].as_str().unwrap();
        let route = routes
            .iter()
            .find(|r| r["spec"]["rules"][0]["matches"][0]["path"]["value"] == format!("/{id}/"))
            .unwrap_or_else(|| panic!("no route for tenant {id}"));
        let backend_ref = &route["spec"]["rules"][0]["backendRefs"][0];
        let backend = docs
            .iter()
            .find(|d| d["kind"] == "Backend" && d["metadata"]["name"] == backend_ref["name"])
            .unwrap();
        let want = t["backend"]
            .as_str()
            .unwrap()
            .trim_start_matches("https://");
        assert_eq!(backend["spec"]["endpoints"][0]["fqdn"]["hostname"], want);
        assert_eq!(backend["spec"]["endpoints"][0]["fqdn"]["port"], 443);
        assert_eq!(
            route["spec"]["rules"][0]["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"],
            "/"
        );
    }
    let wasm = &eep["spec"]["wasm"][0];
    assert_eq!(wasm["failOpen"], false);
    assert_eq!(wasm["code"]["image"]["sha256"], SHA);
    assert_eq!(
        wasm["env"]["hostKeys"],
        json!(["GITHUB_VAULT_CLIENT_SECRET", "TVP_SEALING_KEY"])
    );
    assert!(!text.contains("mcp_hold_path"), "{text}");
    assert!(err.contains("settings.mcp_hold_path"), "{err}");
}

/// The patch's clusters, as Envoy reads them from a bootstrap.
fn patched_clusters(docs: &[Value]) -> Vec<Value> {
    of_kind(docs, "EnvoyPatchPolicy")[0]["spec"]["jsonPatches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["operation"]["value"].clone())
        .collect()
}

#[test]
fn the_patched_clusters_are_the_plugins_with_verified_tls_and_envoy_accepts_them() {
    let dir = scratch("eg-clusters");
    let (code, text, err) = tvp_render(&dir, &auth0_tenants(), &[]);
    assert_eq!(code, 0, "{err}");
    let docs = stream(&text);
    let clusters = patched_clusters(&docs);
    let names: Vec<&str> = clusters
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let config = &of_kind(&docs, "EnvoyExtensionPolicy")[0]["spec"]["wasm"][0]["config"];
    let mut named: Vec<&str> = config["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| [&t["jwks"]["cluster"], &t["vault"]["cluster"]])
        .map(|c| c.as_str().unwrap())
        .collect();
    named.sort();
    named.dedup();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, named, "each cluster the plugin names, once");
    for c in &clusters {
        let host = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"]["address"]
            .clone();
        let tls = &c["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], host);
        let v = &tls["common_tls_context"]["validation_context"];
        assert!(v["trusted_ca"]["filename"].is_string(), "{c}");
        assert_eq!(v["match_typed_subject_alt_names"][0]["san_type"], "DNS");
        assert_eq!(
            v["match_typed_subject_alt_names"][0]["matcher"]["exact"],
            host
        );
    }
    // The values are plain Envoy Cluster protos: Envoy's validate mode builds them.
    let bootstrap = json!({"static_resources": {"clusters": clusters}});
    envoy_validates(&serde_saphyr::to_string(&bootstrap).unwrap(), &dir);
}

#[test]
fn what_cannot_work_is_refused_by_tenant_and_field() {
    let dir = scratch("eg-refused");
    // The local stack: the sim over plain HTTP on loopback.
    let (code, out, err) = tvp_render(&dir, &example(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        err.contains("$.tenants[0].jwks.cluster: reaches http://127.0.0.1:9000 over plain HTTP"),
        "{err}"
    );
    assert!(err.contains("envoy_gateway.allow_plain_http=true"), "{err}");
    let (code, _, err) = tvp_render(
        &dir,
        &example(),
        &["--set", "envoy_gateway.allow_plain_http=true"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("$.tenants[0].backend: reaches http://127.0.0.1:9001: Envoy Gateway's Backend refuses loopback"), "{err}");
    assert!(!err.contains("plain HTTP"), "{err}");

    let mut doc = auth0_tenants();
    doc["tenants"][1]["backend"] = json!("https://192.0.2.7/api");
    let (code, _, err) = tvp_render(&dir, &doc, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("$.tenants[1].backend: reaches https://192.0.2.7:443: TLS to an IP address"),
        "{err}"
    );

    // No module digest, no Gateway.
    let file = dir.join("tenants.json");
    let render_with = |set: &str| {
        let module = "wasm=oci://registry.example/tvp:1";
        let (file, set) = (file.to_str().unwrap(), set.to_string());
        let args = [
            "render",
            "envoy-gateway",
            "--tenants",
            file,
            "--set",
            module,
        ];
        tvp(&[&args[..], &["--set", &set]].concat())
    };
    let (code, _, err) = render_with("envoy_gateway.gateway=gw/eg");
    assert_eq!(code, 1);
    assert!(
        err.contains("wasm_sha256: Envoy Gateway must pin the module"),
        "{err}"
    );
    let (code, _, err) = render_with(&format!("wasm_sha256={SHA}"));
    assert_eq!(code, 1);
    assert!(
        err.contains("envoy_gateway.gateway: name the Gateway"),
        "{err}"
    );
}

#[test]
fn the_usage_names_the_target() {
    let (code, out, err) = tvp(&["render", "nowhere"]);
    assert_eq!(code, 2, "a usage error");
    assert!(out.is_empty() && err.contains("'nowhere'"), "{err}");
    let (code, out, _) = tvp(&["render", "--help"]);
    assert_eq!(code, 0);
    for target in ["envoy", "istio", "envoy-gateway", "compose", "front"] {
        assert!(out.contains(&format!("  {target} ")), "{out}");
    }
    let (code, out, _) = tvp(&["render", "envoy-gateway", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("envoy_gateway.gateway (NAMESPACE/NAME)"),
        "{out}"
    );
}
