//! Helpers of the deploy crate's integration tests: `tvp`, Envoy's validate mode, rendered
//! documents. Envoy, the module, ports and processes are testkit's.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

pub fn repo() -> PathBuf {
    testkit::root()
}

/// A loopback port never handed out before in this test process.
pub fn free_port() -> u16 {
    testkit::free_port().unwrap()
}

/// A fresh scratch directory under target/ for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = repo().join("target/deploy-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn example_text() -> String {
    std::fs::read_to_string(repo().join("tenants.example.json")).unwrap()
}

pub fn example() -> Value {
    serde_json::from_str(&example_text()).unwrap()
}

/// The example's Auth0 tenants only (the Okta ones reach the sim by IP address, which a
/// deployment with real hosts, or Istio, cannot name).
pub fn auth0_example() -> Value {
    let mut doc = example();
    doc["tenants"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["vault"]["type"] == "auth0");
    doc
}

/// Run `tvp` with arguments; (exit code, stdout, stderr).
pub fn tvp(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tvp"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `tvp render TARGET` of a tenants document with `--set` overrides; the rendered text.
/// The deployment setting that lets the demo's inline secrets be rendered.
pub const DEMO: &str = "allow_inline_secrets=true";

/// The Istio Gateway the VirtualService binds to (`render istio` needs one).
pub const ISTIO_GATEWAY: &str = "istio.gateway=istio-system/agents";

/// The sha256 of a module, for the targets that pin it.
pub const SHA_SET: &str =
    "wasm_sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub fn render(target: &str, tenants: &Value, sets: &[String], dir: &Path) -> String {
    let file = dir.join("tenants.json");
    std::fs::write(&file, serde_json::to_string_pretty(tenants).unwrap()).unwrap();
    // The fixtures are the demo's tenants, with inline secrets.
    let mut args = vec![
        "render",
        target,
        "--tenants",
        file.to_str().unwrap(),
        "--set",
        DEMO,
    ];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let (code, out, err) = tvp(&args);
    assert_eq!(code, 0, "tvp render {target} failed:\n{err}");
    out
}

/// The release module (Envoy's validate mode loads it with its configuration).
pub fn wasm_path() -> PathBuf {
    testkit::require_wasm().unwrap_or_else(|e| panic!("{e}"))
}

/// The HTTP connection manager of a rendered bootstrap.
fn connection_manager(yaml: &str) -> Value {
    let doc: Value = serde_saphyr::from_str(yaml).unwrap();
    doc["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        .clone()
}

/// The secret variables a rendered bootstrap asks Envoy's environment for.
pub fn host_env_keys(yaml: &str) -> Vec<String> {
    let filters = &connection_manager(yaml)["http_filters"];
    filters[0]["typed_config"]["config"]["vm_config"]["environment_variables"]["host_env_keys"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The bootstrap holds MCP requests sent to `path` in the buffer filter and never forwards
/// them: the route (first, matched exactly) answers locally, the buffer filter runs between
/// the filter and the router and only on that route.
pub fn assert_mcp_hold_route(yaml: &str, path: &str) {
    let hcm = connection_manager(yaml);
    let buffer = "envoy.filters.http.buffer";
    let filters: Vec<&str> = hcm["http_filters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    // The filter (either host's) first.
    assert!(
        [
            "envoy.filters.http.wasm",
            "envoy.filters.http.dynamic_modules"
        ]
        .contains(&filters[0]),
        "{filters:?}"
    );
    assert_eq!(filters[1..], [buffer, "envoy.filters.http.router"]);
    let host = &hcm["route_config"]["virtual_hosts"][0];
    assert_eq!(host["typed_per_filter_config"][buffer]["disabled"], true);
    // One hold route per tenant, leading where the tenant's own route leads.
    let hold = &host["routes"][0];
    let prefix = hold["match"]["prefix"].as_str().unwrap_or_default();
    assert!(prefix.starts_with(&format!("{path}/")), "{hold}");
    let tenant = &prefix[path.len()..];
    let own = host["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["match"]["prefix"] == tenant)
        .unwrap_or_else(|| panic!("no route for {tenant}"));
    assert_eq!(hold["route"], own["route"]);
    assert!(
        hold["typed_per_filter_config"][buffer]["buffer"]["max_request_bytes"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{hold}"
    );
}

/// One RSA key per test process for the Okta agent client (generating one takes a while).
pub fn agent_key() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(sim::keys::generate_agent_key_pem)
}

/// `envoy --mode validate` on a bootstrap, with a value for every secret variable it names.
/// Validate mode builds every listener and cluster and loads the wasm module with its
/// configuration, so the filter's own parser runs too.
pub fn envoy_validates(yaml: &str, dir: &Path) {
    envoy_validates_with(yaml, &host_env_keys(yaml), dir);
}

/// [`envoy_validates`] with Envoy's environment holding `keys` (the dynamic module reads
/// Envoy's own environment: its rendering names no variables).
pub fn envoy_validates_with(yaml: &str, keys: &[String], dir: &Path) {
    let file = dir.join("envoy.yaml");
    std::fs::write(&file, yaml).unwrap();
    // The filter parses key variables as PEM at load; any other secret is opaque.
    let env: Vec<(&str, &str)> = keys
        .iter()
        .map(|key| match key.ends_with("PRIVATE_KEY") {
            true => (key.as_str(), agent_key()),
            false => (
                key.as_str(),
                "validate-mode-secret-long-enough-for-a-sealing-key",
            ),
        })
        .collect();
    let (ok, log) =
        testkit::process::envoy_validates(&file, &repo(), &env).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ok,
        "envoy --mode validate refused {}:\n{log}",
        file.display()
    );
}

/// The example on two Auth0 tenants with https backends: what a real deployment looks like.
pub fn auth0_tenants() -> Value {
    let mut doc = auth0_example();
    for (i, name) in ["github", "google"].iter().enumerate() {
        let t = &mut doc["tenants"][i];
        let host = format!("{name}-agents.us.auth0.com");
        t["issuer"] = json!(format!("https://{host}/"));
        t["jwks"] =
            json!({"cluster": "idp", "url": format!("https://{host}/.well-known/jwks.json")});
        t["vault"]["domain"] = json!(host);
        t["vault"]["cluster"] = json!(format!("{name}_vault"));
        if let Some(c) = t.get_mut("connect") {
            c["login_url"] = json!(format!("https://{host}"));
        }
    }
    // One cluster name, one origin: the second tenant's JWKS goes through its own name.
    doc["tenants"][1]["jwks"]["cluster"] = json!("idp_google");
    doc["tenants"][0]["backend"] = json!("https://api.github.com");
    doc["tenants"][1]["backend"] = json!("https://www.googleapis.com");
    doc
}

/// The documents of a YAML stream.
pub fn stream(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple(text).unwrap()
}
