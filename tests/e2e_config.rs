//! Plugin configuration in real Envoy: invalid documents refuse to load with one line naming
//! the tenant and field; the shipped config is `tvp render envoy`'s and validates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn example() -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join("tenants.example.json")).unwrap())
        .unwrap()
}

/// The filter's error lines in Envoy's log.
fn config_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("invalid plugin configuration"))
        .collect()
}

#[test]
fn invalid_configurations_refuse_to_start() {
    let cases: Vec<(&str, ConfigEdit)> = vec![
        (
            "tenant 'github': field 'colour': unknown field `colour`",
            Box::new(|d| d["tenants"][0]["colour"] = json!("blue")),
        ),
        (
            "tenant 'github': field 'token_typ': invalid type: boolean `true`, expected a string",
            Box::new(|d| d["tenants"][0]["token_typ"] = json!(true)),
        ),
        (
            "tenant 'github': field 'resources': name the URL clients use",
            Box::new(|d| {
                d["tenants"][0].as_object_mut().unwrap().remove("resources");
            }),
        ),
        (
            "tenant 'google': field 'issuer'",
            Box::new(|d| d["tenants"][1]["issuer"] = json!("not-a-url")),
        ),
        (
            "tenant 'github': field 'algorithms'",
            Box::new(|d| d["tenants"][0]["algorithms"] = json!([])),
        ),
        (
            "tenant 'github': field 'scopes.write'",
            Box::new(|d| d["tenants"][0]["scopes"]["write"] = json!([])),
        ),
        (
            "tenant 'github': field 'id': duplicate",
            Box::new(|d| d["tenants"][1]["id"] = json!("github")),
        ),
        (
            // Connect pages on plain http without the demo flag: their cookies could be
            // planted by a sibling subdomain.
            "tenant 'github': field 'connect': needs settings.public_base_url to be an https \
             origin without a path",
            Box::new(|d| {
                d["settings"]
                    .as_object_mut()
                    .unwrap()
                    .remove("allow_insecure_connect_cookies");
            }),
        ),
        (
            "tenant 'github': field 'vault.client_secret_env'",
            Box::new(|d| {
                d["tenants"][0]["vault"]["client_secret_env"] = json!("UNSET_VARIABLE_XYZ")
            }),
        ),
    ];
    for (expected, edit) in cases {
        let mut doc = example();
        edit(&mut doc);
        let (refused, log) = envoy_refuses(&serde_json::to_string_pretty(&doc).unwrap());
        assert!(
            refused,
            "Envoy started with a bad configuration ({expected}):\n{log}"
        );
        let errors = config_errors(&log);
        assert!(
            errors.iter().any(|l| l.contains(expected)),
            "{expected}: {errors:#?}\n{log}"
        );
        assert!(
            !log.contains(GITHUB_SECRET) && !log.contains("google-demo-secret"),
            "a secret in the log"
        );
    }
    // Every problem is logged, each on its line, not only the first.
    let mut doc = example();
    doc["settings"]["callout_timeout_ms"] = json!(0);
    doc["tenants"][0]["scopes"]["read"] = json!([]);
    doc["tenants"][1]["issuer"] = json!("not-a-url");
    doc["tenants"][1]["vault"]["colour"] = json!("red");
    let (refused, log) = envoy_refuses(&doc.to_string());
    assert!(refused, "{log}");
    let expected = [
        "field 'settings.callout_timeout_ms': must be greater than 0",
        "tenant 'github': field 'scopes.read': must list at least one scope",
        "tenant 'google': field 'issuer': must be an absolute http(s) URL",
        "tenant 'google': field 'vault.colour': unknown field `colour`",
    ];
    // Envoy may load the configuration on more than one thread: the same lines each time.
    let errors = config_errors(&log);
    for want in expected {
        assert!(
            errors.iter().any(|l| l.contains(want)),
            "{want}: {errors:#?}"
        );
    }
    assert!(
        errors.len() % expected.len() == 0
            && errors
                .iter()
                .all(|l| expected.iter().any(|w| l.contains(w))),
        "{errors:#?}"
    );
    let (refused, log) = envoy_refuses("this is not json");
    assert!(refused);
    assert!(
        config_errors(&log)
            .iter()
            .all(|l| l.contains("not a valid configuration document")),
        "{log}"
    );
}

const RENDER: &str = "cargo run -q -p deploy --bin tvp -- render envoy --tenants tenants.example.json --deployment envoy/local.deployment.yaml --out envoy";

#[test]
fn shipped_envoy_config_is_the_rendering_and_validates() {
    let read = |file: &str| std::fs::read_to_string(root().join(file)).unwrap();
    let rendered = deploy::render(
        deploy::deployment::Target::Envoy,
        &read("tenants.example.json"),
        &read("envoy/local.deployment.yaml"),
        &[],
    )
    .unwrap_or_else(|problems| panic!("{problems:#?}"));
    assert!(
        rendered.text == read("envoy/envoy.yaml"),
        "envoy/envoy.yaml is stale: run `{RENDER}`"
    );
    assert!(rendered.text.contains("prefix: /.tvp-hold/github/"));
    wasm_path();
    let env = [
        ("GITHUB_VAULT_CLIENT_SECRET", "validate"),
        ("TVP_SEALING_KEY", SEALING_KEY),
        (AGENT_KEY_ENV, agent_key_pem()),
    ];
    let (ok, text) =
        testkit::process::envoy_validates(Path::new("envoy/envoy.yaml"), &root(), &env).unwrap();
    assert!(ok, "{text}");
}
