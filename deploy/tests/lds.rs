//! `lds_path`: the listener (routes, the filter, its plugin configuration) in a file Envoy
//! watches, the clusters in the bootstrap. Both files pass `envoy --mode validate`, and a real
//! Envoy loads the listener file and takes a new one moved into its directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use testkit::{Envoy, Process};

/// The example plus `github2`, a copy of github on the same clusters and backend.
fn with_github2() -> Value {
    let mut doc = example();
    let mut third = doc["tenants"][0].clone();
    third["id"] = json!("github2");
    third["resources"] = json!(["/github2/mcp"]);
    doc["tenants"].as_array_mut().unwrap().push(third);
    doc
}

/// `tvp render envoy --out OUT` with the listener at `lds`; tvp's standard error.
fn render_lds(doc: &Value, out: &Path, lds: &Path, sets: &[String]) -> String {
    std::fs::create_dir_all(out).unwrap();
    let tenants = out.join("tenants.json");
    std::fs::write(&tenants, doc.to_string()).unwrap();
    let lds_set = format!("lds_path={}", lds.display());
    let wasm = format!("wasm={}", wasm_path().display());
    let mut args = vec!["render", "envoy", "--tenants", tenants.to_str().unwrap()];
    let demo = DEMO.to_string();
    for s in [&lds_set, &wasm, &demo].into_iter().chain(sets) {
        args.extend(["--set", s]);
    }
    args.extend(["--out", out.to_str().unwrap()]);
    let (code, _, err) = tvp(&args);
    assert_eq!(code, 0, "{err}");
    err
}

fn yaml_file(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn both_files_validate() {
    let dir = scratch("lds-validate");
    let lds = dir.join("lds/listeners.yaml");
    render_lds(&with_github2(), &dir, &lds, &[]);
    let bootstrap = std::fs::read_to_string(dir.join("envoy.yaml")).unwrap();
    let listeners = yaml_file(&dir.join("listeners.yaml"));
    let b: Value = serde_saphyr::from_str(&bootstrap).unwrap();
    assert_eq!(
        b["dynamic_resources"]["lds_config"]["path_config_source"]["watched_directory"]["path"],
        dir.join("lds").display().to_string()
    );

    // Validate mode does not read the listener file (it reports 0 listeners), so the
    // listener is validated on its own, as the static listener of the same bootstrap.
    std::fs::create_dir_all(dir.join("lds")).unwrap();
    std::fs::copy(dir.join("listeners.yaml"), &lds).unwrap();
    let check = dir.join("bootstrap");
    std::fs::create_dir_all(&check).unwrap();
    envoy_validates(&bootstrap, &check);

    let mut listener = listeners["resources"][0].clone();
    assert_eq!(
        listener["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    listener.as_object_mut().unwrap().remove("@type");
    let mut inlined = b.clone();
    inlined.as_object_mut().unwrap().remove("dynamic_resources");
    inlined["static_resources"]["listeners"] = json!([listener]);
    let check = dir.join("listener");
    std::fs::create_dir_all(&check).unwrap();
    // JSON is YAML; the secret variable the module reads is found in the inlined listener.
    let text = serde_json::to_string_pretty(&inlined).unwrap();
    assert_eq!(
        host_env_keys(&text),
        [
            "GITHUB_VAULT_CLIENT_SECRET",
            "OKTA_AGENT_PRIVATE_KEY",
            "TVP_SEALING_KEY"
        ]
    );
    assert_mcp_hold_route(&text, "/.tvp-hold");
    envoy_validates(&text, &check);
}

#[test]
fn render_needs_out_for_two_files() {
    let dir = scratch("lds-stdout");
    let file = dir.join("tenants.json");
    std::fs::write(&file, example().to_string()).unwrap();
    let (code, out, err) = tvp(&[
        "render",
        "envoy",
        "--tenants",
        file.to_str().unwrap(),
        "--set",
        "lds_path=/etc/envoy/lds/listeners.yaml",
        "--set",
        DEMO,
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("use --out DIR"), "{err}");
}

fn admin_get(port: u16, path: &str) -> Option<String> {
    testkit::http::request(port, "GET", path, &[], b"")
        .ok()
        .map(|r| r.text())
}

fn stat(admin: u16, name: &str) -> u64 {
    admin_get(admin, &format!("/stats?filter=^{name}$"))
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}: "))
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, envoy: &mut Process, log: &Path, probe: impl Fn() -> bool) {
    let mut exited = false;
    let held =
        testkit::ready::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
            exited = envoy.exited().is_some();
            !exited && probe()
        });
    assert!(
        held && !exited,
        "{what}; Envoy log:\n{}",
        testkit::log::read(log)
    );
}

#[test]
fn envoy_takes_a_listener_file_moved_into_place() {
    let dir = scratch("lds-run");
    let (staging, lds) = (dir.join("staging"), dir.join("lds/listeners.yaml"));
    let (listen, admin) = (free_port(), free_port());
    let ports = [
        format!("listen_port={listen}"),
        format!("admin_port={admin}"),
    ];
    render_lds(&example(), &staging, &lds, &ports);
    std::fs::create_dir_all(lds.parent().unwrap()).unwrap();
    std::fs::rename(staging.join("listeners.yaml"), &lds).unwrap();
    let log = dir.join("envoy.log");
    // Stopped when the test ends, however it ends.
    let mut envoy = Envoy::new(&staging.join("envoy.yaml"))
        .env("GITHUB_VAULT_CLIENT_SECRET", "lds-test-secret")
        .env("OKTA_AGENT_PRIVATE_KEY", support::agent_key())
        .env(
            "TVP_SEALING_KEY",
            "lds-test-sealing-key-lds-test-sealing-key",
        )
        .log(&log)
        .spawn()
        .unwrap();
    let update = "listener_manager.lds.update_success";
    wait_for("Envoy loads the listener file", &mut envoy, &log, || {
        stat(admin, update) == 1 && stat(admin, "listener_manager.total_listeners_active") == 1
    });

    // A new tenant on clusters the bootstrap has: the bootstrap is unchanged (no warning),
    // and moving the listener file in is the whole push.
    let err = render_lds(&with_github2(), &staging, &lds, &ports);
    assert!(!err.contains("restart Envoy"), "{err}");
    let mv = Command::new("mv")
        .arg(staging.join("listeners.yaml"))
        .arg(&lds)
        .status()
        .unwrap();
    assert!(mv.success());
    wait_for(
        "Envoy takes the new listener file",
        &mut envoy,
        &log,
        || stat(admin, update) == 2,
    );
    let dump = admin_get(admin, "/config_dump?resource=dynamic_listeners").unwrap();
    assert!(dump.contains("github2"), "{dump}");

    // A tenant on a new backend needs a cluster, so a new bootstrap and a restart: tvp says
    // so, and Envoy refuses the listener file alone, keeping the one it runs.
    let mut doc = with_github2();
    doc["tenants"][2]["backend"] = json!("http://127.0.0.1:9002");
    let err = render_lds(&doc, &staging, &lds, &ports);
    assert!(err.contains("restart Envoy"), "{err}");
    std::fs::rename(staging.join("listeners.yaml"), &lds).unwrap();
    wait_for("Envoy refuses the listener file", &mut envoy, &log, || {
        stat(admin, "listener_manager.lds.update_rejected") == 1
    });
    assert_eq!(stat(admin, update), 2);
    assert_eq!(stat(admin, "listener_manager.total_listeners_active"), 1);
}
