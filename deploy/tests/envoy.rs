//! Rendered Envoy bootstraps pass `envoy --mode validate` (real Envoy, real module), and the
//! local stack's envoy/envoy.yaml is the rendering.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};
use support::*;

fn wasm_set() -> String {
    format!("wasm={}", wasm_path().display())
}

#[test]
fn the_example_renders_to_a_valid_bootstrap() {
    let dir = scratch("envoy-example");
    let yaml = render("envoy", &example(), &[wasm_set()], &dir);
    assert_mcp_hold_route(&yaml, "/.tvp-hold");
    envoy_validates(&yaml, &dir);
}

#[test]
fn the_native_host_renders_the_dynamic_module_and_envoy_loads_it() {
    let dir = scratch("envoy-native");
    let module = testkit::require_native().unwrap_or_else(|e| panic!("{e}"));
    let wasm = render("envoy", &example(), &[wasm_set()], &dir);
    let yaml = render(
        "envoy",
        &example(),
        &[
            "host=native".into(),
            format!("native_module={}", module.display()),
        ],
        &dir,
    );
    let doc: Value = serde_saphyr::from_str(&yaml).unwrap();
    let filters = &doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    assert_eq!(
        filters[0]["name"], "envoy.filters.http.dynamic_modules",
        "{yaml}"
    );
    let module_config = &filters[0]["typed_config"]["dynamic_module_config"];
    assert_eq!(
        module_config["module"]["local"]["filename"],
        module.display().to_string()
    );
    // The wasm filter's stat names on either host.
    assert_eq!(module_config["metrics_namespace"], "wasmcustom");
    assert!(!yaml.contains("envoy.filters.http.wasm"), "{yaml}");
    // The same routes, hold route included.
    assert_mcp_hold_route(&yaml, "/.tvp-hold");
    // Envoy loads the module (ABI matched) and the module accepts the configuration, with
    // the secrets the wasm rendering names in Envoy's environment.
    envoy_validates_with(&yaml, &host_env_keys(&wasm), &dir);
}

#[test]
fn the_native_host_is_for_plain_envoy_only() {
    let dir = scratch("istio-native");
    let file = dir.join("tenants.json");
    std::fs::write(&file, example().to_string()).unwrap();
    let (code, _, err) = tvp(&[
        "render",
        "istio",
        "--tenants",
        file.to_str().unwrap(),
        "--host",
        "native",
        "--set",
        DEMO,
        "--set",
        SHA_SET,
        "--set",
        "wasm=oci://r/tvp:1",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("host") && err.contains("native"), "{err}");
}

#[test]
fn without_an_mcp_hold_path_no_hold_route_and_no_buffer_filter() {
    let dir = scratch("envoy-no-hold");
    let mut doc = example();
    doc["settings"]
        .as_object_mut()
        .unwrap()
        .remove("mcp_hold_path");
    let yaml = render("envoy", &doc, &[wasm_set()], &dir);
    assert!(!yaml.contains("buffer"), "{yaml}");
    assert!(!yaml.contains(".tvp-hold"), "{yaml}");
    envoy_validates(&yaml, &dir);
}

/// A throwaway self-signed certificate for host names `names` (PEM cert, PEM key).
fn self_signed(dir: &std::path::Path, names: &str) -> (String, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=tvp-test"])
        .args(["-addext", &format!("subjectAltName={names}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (make setup)");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    (cert.display().to_string(), key.display().to_string())
}

#[test]
fn https_upstreams_and_a_tls_listener_validate() {
    let dir = scratch("envoy-https");
    let mut doc = auth0_example();
    for (i, name) in ["github", "google"].iter().enumerate() {
        let t = &mut doc["tenants"][i];
        t["issuer"] = json!(format!("https://{name}-agents.us.auth0.com/"));
        t["jwks"] = json!({"cluster": format!("{name}_idp")});
        t["vault"]["domain"] = json!(format!("{name}-agents.us.auth0.com"));
        t["vault"]["cluster"] = json!(format!("{name}_idp"));
        if let Some(c) = t.get_mut("connect") {
            c["login_url"] = json!(format!("https://{name}-agents.us.auth0.com"));
        }
    }
    doc["tenants"][0]["backend"] = json!("https://api.github.com");
    doc["tenants"][1]["backend"] = json!("https://www.googleapis.com/drive/v3");
    doc["tenants"][1]["vault"]
        .as_object_mut()
        .unwrap()
        .remove("client_secret");
    doc["tenants"][1]["vault"]["client_secret_env"] = json!("GOOGLE_VAULT_CLIENT_SECRET");
    let (cert, key) = self_signed(&dir, "DNS:gw.example.com");
    let sets = vec![
        wasm_set(),
        format!("tls={}", json!({"cert": cert, "key": key})),
        "listen_port=8443".into(),
        "public_base_url=https://gw.example.com:8443".into(),
        // Any PEM bundle will do for validation; the default is the system's.
        format!("ca_bundle={cert}"),
    ];
    let yaml = render("envoy", &doc, &sets, &dir);
    assert_eq!(
        host_env_keys(&yaml),
        [
            "GITHUB_VAULT_CLIENT_SECRET",
            "GOOGLE_VAULT_CLIENT_SECRET",
            "TVP_SEALING_KEY"
        ]
    );
    let b: Value = serde_saphyr::from_str(&yaml).unwrap();
    let clusters: BTreeMap<String, Value> = b["static_resources"]["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
        .collect();
    assert_eq!(
        clusters.keys().collect::<Vec<_>>(),
        [
            "backend_github",
            "backend_google",
            "github_idp",
            "google_idp"
        ]
    );
    for (name, sni) in [
        ("github_idp", "github-agents.us.auth0.com"),
        ("backend_google", "www.googleapis.com"),
    ] {
        assert_eq!(clusters[name]["type"], "STRICT_DNS");
        assert_eq!(
            clusters[name]["transport_socket"]["typed_config"]["sni"],
            sni
        );
    }
    envoy_validates(&yaml, &dir);
}

/// envoy/envoy.yaml, the local stack's bootstrap, is what `tvp render envoy` writes for the
/// example and envoy/local.deployment.yaml (the root e2e tests validate it in Envoy and run
/// every test on the same rendering with free ports).
#[test]
fn the_local_stack_envoy_yaml_is_the_rendering() {
    let dir = scratch("envoy-local");
    let (code, _, err) = tvp(&[
        "render",
        "envoy",
        "--tenants",
        "tenants.example.json",
        "--deployment",
        "envoy/local.deployment.yaml",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let ours = std::fs::read_to_string(dir.join("envoy.yaml")).unwrap();
    let shipped = std::fs::read_to_string(repo().join("envoy/envoy.yaml")).unwrap();
    assert!(
        ours == shipped,
        "envoy/envoy.yaml is stale: run\n  cargo run -q -p deploy --bin tvp -- render envoy --tenants tenants.example.json --deployment envoy/local.deployment.yaml --out envoy"
    );
    assert_mcp_hold_route(&ours, "/.tvp-hold");
}

#[test]
fn render_refuses_a_broken_tenants_file_with_its_problems() {
    let dir = scratch("envoy-broken");
    let mut doc = example();
    doc["tenants"][0]["algorithms"] = json!([]);
    doc["tenants"][1]["issuer"] = json!("nope");
    let file = dir.join("tenants.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let (code, out, err) = tvp(&["render", "envoy", "--tenants", file.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("$.tenants[0].algorithms: must list at least one algorithm"),
        "{err}"
    );
    assert!(
        err.contains("$.tenants[1].issuer: must be an absolute http(s) URL"),
        "{err}"
    );
}

#[test]
fn render_refuses_inline_secrets_unless_the_deployment_is_a_demo() {
    let dir = scratch("envoy-inline");
    let file = dir.join("tenants.json");
    std::fs::write(&file, example().to_string()).unwrap();
    let file = file.to_str().unwrap();
    let oci = [
        "--set",
        "wasm=oci://r/tvp:1",
        "--set",
        SHA_SET,
        "--set",
        ISTIO_GATEWAY,
    ];
    for (target, sets) in [("envoy", &[][..]), ("istio", &oci[..])] {
        let args = [&["render", target, "--tenants", file][..], sets].concat();
        let (code, out, err) = tvp(&args);
        assert_eq!(code, 1, "{target}");
        assert!(out.is_empty());
        for path in [
            "$.tenants[0].connect.client_secret: an inline secret",
            "$.tenants[1].vault.client_secret: an inline secret",
        ] {
            assert!(err.contains(path), "{target}: {path} not in {err}");
        }
        assert!(!err.contains("demo-secret"), "{err}");
    }
    let (code, _, err) = tvp(&[
        "render",
        "envoy",
        "--tenants",
        file,
        "--set",
        "allow_inline_secrets=true",
    ]);
    assert_eq!(code, 0, "{err}");
}
