//! `tvp validate` as a user runs it: every problem of a broken tenants file, with paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use serde_json::{json, Value};

use testkit::root as repo;

fn run(doc_text: &str, name: &str) -> (i32, String) {
    let dir = repo().join("target/deploy-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    std::fs::write(&file, doc_text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tvp"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_example_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_tvp"))
        .arg("validate")
        .arg(repo().join("tenants.example.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim_end()
        .ends_with(": ok"));
}

#[test]
fn a_broken_file_lists_every_problem_with_its_path() {
    let text = std::fs::read_to_string(repo().join("tenants.example.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["settings"]["callout_timeout_ms"] = json!(0);
    doc["tenants"][0]["resources"] = json!(["/github/mcp/"]);
    doc["tenants"][0]["vault"]["client_secret_env"] = json!("not a name");
    doc["tenants"][1]["scopes"]["read"] = json!([]);
    doc["tenants"][1]["backend"] = json!("localhost:9001");
    doc["tenants"][1]["vault"]["colour"] = json!("red");
    let (code, out) = run(&serde_json::to_string_pretty(&doc).unwrap(), "broken.json");
    assert_eq!(code, 1, "{out}");
    for want in [
        "$.settings.callout_timeout_ms: must be greater than 0",
        "$.tenants[0].resources[0]: must not end with '/'",
        "$.tenants[1].vault.colour: unknown field `colour`",
        "$.tenants[1].scopes.read: must list at least one scope",
        "$.tenants[1].backend: must be an absolute http(s) URL",
    ] {
        assert!(
            out.lines().any(|l| l.contains(want)),
            "{want} not in\n{out}"
        );
    }
    assert_eq!(out.lines().count(), 5, "{out}");
}

#[test]
fn deployment_problems_once_the_filter_accepts_the_file() {
    let text = std::fs::read_to_string(repo().join("tenants.example.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    doc["tenants"][0]["vault"]["client_secret_env"] = json!("not a name");
    let (code, out) = run(&doc.to_string(), "bad-env.json");
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "$.tenants[0].vault.client_secret_env: not a usable environment variable name"
        ),
        "{out}"
    );
}

#[test]
fn not_json_at_all() {
    let (code, out) = run("{\"tenants\": [", "truncated.json");
    assert_eq!(code, 1);
    assert!(
        out.contains(": $: not valid JSON: EOF while parsing"),
        "{out}"
    );
}

#[test]
fn connect_pages_off_an_https_origin_need_the_demo_flag() {
    let text = std::fs::read_to_string(repo().join("tenants.example.json")).unwrap();
    let mut doc: Value = serde_json::from_str(&text).unwrap();
    // The example is a local demo on http://localhost: it says so.
    assert_eq!(
        doc["settings"]["allow_insecure_connect_cookies"],
        json!(true)
    );
    doc["settings"]
        .as_object_mut()
        .unwrap()
        .remove("allow_insecure_connect_cookies");
    let (code, out) = run(&doc.to_string(), "insecure-connect.json");
    assert_eq!(code, 1, "{out}");
    // Each tenant with connect pages, once (not the example's Auth0 connect section tried in
    // the Okta tenant's place).
    for tenant in [0, 2] {
        let want = format!(
            "$.tenants[{tenant}].connect: needs settings.public_base_url to be an https origin \
             without a path ('http://localhost:3000' is not)"
        );
        assert!(
            out.lines().any(|l| l.contains(&want)),
            "{want} not in\n{out}"
        );
    }
    assert_eq!(out.lines().count(), 2, "{out}");
    // At an https origin without a path the flag is not needed.
    doc["settings"]["public_base_url"] = json!("https://gw.example.com");
    let (code, out) = run(&doc.to_string(), "https-connect.json");
    assert_eq!(code, 0, "{out}");
}
