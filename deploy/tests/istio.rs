//! Rendered Istio resources pass the vendored CRD schemas, name the clusters Istio generates,
//! and the checker rejects broken documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use serde_json::{json, Value};
use support::*;

fn render_istio(doc: &Value, dir: &std::path::Path) -> String {
    let sets = vec![
        "wasm=oci://registry.example/token-vault-proxy:0.1.0".to_string(),
        SHA_SET.into(),
        "public_base_url=https://agents.example.com".into(),
        "istio.namespace=gateways".into(),
        "istio.selector={\"app\":\"agents-gateway\"}".into(),
        "istio.ports=[443]".into(),
        ISTIO_GATEWAY.into(),
    ];
    render("istio", doc, &sets, dir)
}

#[test]
fn every_rendered_resource_passes_its_schema() {
    let dir = scratch("istio-schema");
    let text = render_istio(&auth0_tenants(), &dir);
    assert_eq!(
        deploy::schema::check_stream(&text).unwrap(),
        Vec::<String>::new()
    );
    let file = dir.join("istio.yaml");
    std::fs::write(&file, &text).unwrap();
    let (code, out, err) = tvp(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let docs = stream(&text);
    assert_eq!(
        docs.len(),
        1 + 2 * 2 + 2 * 2 + 1,
        "a WasmPlugin, per Auth0 host and per https backend an entry and a rule, the routes"
    );
    assert_eq!(docs.last().unwrap()["kind"], "VirtualService");
    assert_eq!(docs[0]["metadata"]["namespace"], "gateways");
    assert_eq!(
        docs[0]["spec"]["match"],
        json!([{"mode": "CLIENT", "ports": [{"number": 443}]}])
    );
}

#[test]
fn every_cluster_the_plugin_names_is_one_istio_generates() {
    let dir = scratch("istio-clusters");
    let docs = stream(&render_istio(&auth0_tenants(), &dir));
    let entries: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceEntry")
        .flat_map(|d| {
            let host = d["spec"]["hosts"][0].as_str().unwrap().to_string();
            d["spec"]["ports"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |p| format!("outbound|{}||{host}", p["number"]))
                .collect::<Vec<_>>()
        })
        .collect();
    let config = &docs[0]["spec"]["pluginConfig"];
    let mut named = Vec::new();
    for t in config["tenants"].as_array().unwrap() {
        for c in [&t["jwks"]["cluster"], &t["vault"]["cluster"]] {
            named.push(c.as_str().unwrap().to_string());
        }
    }
    assert_eq!(
        named,
        [
            "outbound|443||github-agents.us.auth0.com",
            "outbound|443||github-agents.us.auth0.com",
            "outbound|443||google-agents.us.auth0.com",
            "outbound|443||google-agents.us.auth0.com",
        ]
    );
    for n in &named {
        assert!(entries.contains(n), "{n} has no ServiceEntry: {entries:?}");
    }
    for d in docs.iter().filter(|d| d["kind"] == "DestinationRule") {
        let host = &d["spec"]["host"];
        let tls = &d["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"];
        assert_eq!(tls["mode"], "SIMPLE");
        assert_eq!(&tls["sni"], host);
        // Verified as plain Envoy verifies: a CA and the exact host name.
        assert_eq!(tls["subjectAltNames"], json!([host]));
        assert_eq!(tls["caCertificates"], "/etc/ssl/certs/ca-certificates.crt");
        assert_eq!(tls["insecureSkipVerify"], false);
    }
    assert_eq!(
        config["settings"]["public_base_url"],
        "https://agents.example.com"
    );
    assert_eq!(
        docs[0]["spec"]["vmConfig"]["env"],
        json!([
            {"name": "GITHUB_VAULT_CLIENT_SECRET", "valueFrom": "HOST"},
            {"name": "TVP_SEALING_KEY", "valueFrom": "HOST"}
        ])
    );
    assert_eq!(docs[0]["spec"]["failStrategy"], "FAIL_CLOSE");
}

#[test]
fn the_checker_rejects_broken_documents() {
    let dir = scratch("istio-broken");
    let text = render_istio(&auth0_tenants(), &dir);
    let mut docs = stream(&text);
    docs[0]["spec"]["phase"] = json!("EARLY");
    docs[0]["spec"]["vmConfig"]["env"][0]["valueFrom"] = json!("SECRET");
    docs[1]["spec"].as_object_mut().unwrap().remove("hosts");
    docs[2]["spec"]["trafficPolicy"]["tls"] = json!({"mode": "SIMPLE", "sni": 443});
    docs[3]["metadata"]["name"] = json!("Not_A_Name");
    docs[4]["apiVersion"] = json!("networking.istio.io/v1alpha3-typo");
    let broken: Vec<String> = docs
        .iter()
        .map(|d| serde_saphyr::to_string(d).unwrap())
        .collect();
    let file = dir.join("broken.yaml");
    std::fs::write(&file, broken.join("---\n")).unwrap();
    let (code, _, err) = tvp(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    for want in [
        "WasmPlugin/token-vault-proxy: .spec.phase: \"EARLY\" is not one of",
        ".spec.vmConfig.env[0].valueFrom: \"SECRET\" is not one of",
        ".spec.hosts: required",
        ".spec.trafficPolicy.tls.sni: must be string, not integer",
        ".metadata.name: 'Not_A_Name' is not a valid Kubernetes name",
        ".apiVersion: must be networking.istio.io/v1 for DestinationRule",
    ] {
        assert!(err.contains(want), "{want} not in\n{err}");
    }
    assert_eq!(err.lines().count(), 6, "{err}");
}

/// `tvp render istio` of a tenants file written to `dir`, with a module URL.
fn tvp_render_istio(dir: &std::path::Path, tenants: &str) -> (i32, String, String) {
    let file = dir.join("tenants.json");
    std::fs::write(&file, tenants).unwrap();
    tvp(&[
        "render",
        "istio",
        "--tenants",
        file.to_str().unwrap(),
        "--set",
        "wasm=oci://registry.example/tvp:1",
        "--set",
        SHA_SET,
        "--set",
        DEMO,
        "--set",
        ISTIO_GATEWAY,
    ])
}

#[test]
fn the_local_stack_cannot_go_to_istio() {
    let dir = scratch("istio-local");
    let (code, _, err) = tvp_render_istio(&dir, &example_text());
    assert_eq!(code, 1);
    assert!(
        err.contains("a ServiceEntry host must be a DNS name"),
        "{err}"
    );
    let file = dir.join("tenants.json");
    let (code, _, err) = tvp(&["render", "istio", "--tenants", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("wasm: Istio needs the module's URL"), "{err}");
}

#[test]
fn the_mcp_hold_path_is_left_out_of_the_plugin_config_with_a_warning() {
    let dir = scratch("istio-hold");
    let doc = auth0_tenants();
    assert_eq!(doc["settings"]["mcp_hold_path"], "/.tvp-hold");
    let (code, out, err) = tvp_render_istio(&dir, &doc.to_string());
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("mcp_hold_path"), "{out}");
    assert!(!out.contains(".tvp-hold"), "{out}");
    let docs = stream(&out);
    assert_eq!(
        docs[0]["spec"]["pluginConfig"]["settings"]["max_token_bytes"],
        8192
    );
    assert!(
        err.contains("settings.mcp_hold_path") && err.contains("plain HTTP 403"),
        "{err}"
    );
}

/// Runs `tests/istio-schema/validate.mjs` (a current Istio release's validators, installed by
/// `make test-tools`) on `docs`: its exit code and output.
fn current_istio_validators(docs: &[Value], dir: &std::path::Path) -> (i32, String) {
    let checker = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/istio-schema");
    assert!(
        checker
            .join("node_modules/@kubernetes-models/istio")
            .is_dir(),
        "the Istio validators are not installed: run `make test-tools` (npm ci in {})",
        checker.display()
    );
    let file = dir.join("istio.json");
    std::fs::write(&file, serde_json::to_string(docs).unwrap()).unwrap();
    let out = std::process::Command::new("node")
        .arg(checker.join("validate.mjs"))
        .arg(&file)
        .output()
        .expect("node runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

/// A second opinion from the structural schemas of a current Istio release's CRDs (1.29.2):
/// the vendored VirtualService schema is Istio 1.18's. This one refuses what a newer release
/// requires (a route's destination host, for one). Neither runs CEL rules or istiod's checks.
#[test]
fn every_rendered_resource_passes_a_current_istio_releases_validators() {
    let dir = scratch("istio-current");
    let docs = stream(&render_istio(&auth0_tenants(), &dir));
    let (code, out) = current_istio_validators(&docs, &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("10 of 10 documents valid"), "{out}");

    let mut broken = docs.clone();
    let vs = broken.last_mut().unwrap();
    assert_eq!(vs["kind"], "VirtualService");
    vs["spec"]["http"][0]["route"][0]["destination"]
        .as_object_mut()
        .unwrap()
        .remove("host");
    broken[1]["spec"]["ports"][0]["number"] = json!("443");
    let (code, out) = current_istio_validators(&broken, &dir);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("VirtualService/token-vault-proxy: "), "{out}");
    assert!(out.contains("ServiceEntry/"), "{out}");
    assert!(out.contains("8 of 10 documents valid"), "{out}");
}
