//! The docker-compose demo without Docker: the compose file parses (`docker-compose config`),
//! its Envoy configuration is the committed rendering and passes `envoy --mode validate`, and
//! the demo walkthrough passes against the same stack run locally (sim + rendered Envoy).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;
use testkit::Envoy;

const COMPOSE_ENVOY: &str = "deploy/compose/envoy.yaml";
const RENDER: &str =
    "cargo run -p deploy --bin tvp -- render compose --tenants tenants.example.json --out deploy/compose";

fn committed() -> String {
    std::fs::read_to_string(repo().join(COMPOSE_ENVOY)).unwrap()
}

#[test]
fn the_compose_envoy_config_is_the_rendering_of_the_example() {
    let (code, out, err) = tvp(&["render", "compose", "--tenants", "tenants.example.json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out == committed(),
        "{COMPOSE_ENVOY} is not the rendering of tenants.example.json; run\n  {RENDER}"
    );
}

#[test]
fn the_compose_envoy_config_validates() {
    let dir = scratch("compose-validate");
    // In the stack the module is in the build volume; here, in this checkout's target/.
    let yaml = committed().replace(
        deploy::deployment::COMPOSE_WASM,
        &wasm_path().display().to_string(),
    );
    assert_mcp_hold_route(&yaml, "/.tvp-hold");
    envoy_validates(&yaml, &dir);
}

fn docker_compose(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker-compose")
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| {
            panic!("docker-compose not found ({e}): apt-get install -y docker-compose (make setup)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn docker_compose_config_accepts_the_file() {
    let (ok, text) = docker_compose(&["-f", "docker-compose.yml", "config", "-q"]);
    assert!(ok, "docker-compose config -q:\n{text}");
    let (ok, text) = docker_compose(&["-f", "docker-compose.yml", "config"]);
    assert!(ok, "{text}");
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    let services = &config["services"];
    for (name, s) in services.as_object().unwrap() {
        let image = s["image"].as_str().unwrap_or_default();
        assert!(
            image.contains(':') && !image.ends_with(":latest"),
            "{name}: image {image} is not pinned"
        );
    }
    // The image runs the Envoy release the tests validate with.
    let makefile = std::fs::read_to_string(repo().join("Makefile")).unwrap();
    let version = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ENVOY_PIP_VERSION := "))
        .unwrap();
    assert_eq!(
        services["envoy"]["image"],
        format!("envoyproxy/envoy:v{version}")
    );
    let mounts = services["envoy"]["volumes"].to_string();
    assert!(mounts.contains(COMPOSE_ENVOY), "{mounts}");
    assert!(services["demo"]["volumes"]
        .to_string()
        .contains("deploy/compose/demo.sh"));
    for s in ["envoy", "demo"] {
        assert_eq!(services[s]["network_mode"], "service:sim");
    }
    // The admin interface can dump the configuration and stop Envoy: never published, and
    // every published port bound to the host's loopback.
    for (name, s) in services.as_object().unwrap() {
        for p in s["ports"].as_array().into_iter().flatten() {
            let admin = p.as_str().map_or(p["target"] == 9901, |short| {
                short.trim_end_matches("/tcp").ends_with(":9901")
            });
            assert!(!admin, "{name}: publishes the admin port: {p}");
            // Short form ("127.0.0.1:3000:3000/tcp") or long form (host_ip).
            let loopback = p.as_str().map_or(p["host_ip"] == "127.0.0.1", |short| {
                short.starts_with("127.0.0.1:")
            });
            assert!(loopback, "{name}: {p} is published beyond loopback");
        }
    }
}

#[test]
fn the_compose_envoy_admin_listens_on_loopback_only() {
    let config: Value = serde_saphyr::from_str(&committed()).unwrap();
    assert_eq!(
        config["admin"]["address"]["socket_address"]["address"],
        "127.0.0.1"
    );
    // While the listener takes the containers' traffic.
    assert_eq!(
        config["static_resources"]["listeners"][0]["address"]["socket_address"]["address"],
        "0.0.0.0"
    );
}

#[test]
fn the_demo_walkthrough_passes_against_a_rendered_stack() {
    const SECRET: &str = "compose-walkthrough-secret";
    let dir = scratch("compose-demo");
    let (sim_port, backend_port, listen, admin) =
        (free_port(), free_port(), free_port(), free_port());
    let ports = sim::envoy::Ports {
        listen,
        admin,
        sim: sim_port,
        backend: backend_port,
    };
    let tenants: Value =
        serde_json::from_str(&sim::envoy::plugin_config_for(&example_text(), &ports)).unwrap();
    // Envoy reads the secret from its environment; the sim is handed the same value.
    let mut sim_doc = tenants.clone();
    for t in sim_doc["tenants"].as_array_mut().unwrap() {
        if t["vault"].get("client_secret_env").is_some() {
            t["vault"]["client_secret"] = json!(SECRET);
        }
    }
    // The Okta tenants' agent key, for Envoy (which signs) and the sim (which checks).
    let agent_key = support::agent_key().to_string();
    let env = |name: &str| (name == "OKTA_AGENT_PRIVATE_KEY").then(|| agent_key.clone());
    let sim = sim::Sim::start(
        sim::SimTenant::from_filter_config_with(&sim_doc, &env).unwrap(),
        sim_port,
        backend_port,
    )
    .unwrap();

    let yaml = render(
        "envoy",
        &tenants,
        &[
            format!("listen_port={listen}"),
            format!("admin_port={admin}"),
            format!("wasm={}", wasm_path().display()),
        ],
        &dir,
    );
    let config = dir.join("envoy.yaml");
    std::fs::write(&config, &yaml).unwrap();
    // Stopped when the test ends, however it ends.
    let _envoy = Envoy::new(&config)
        .concurrency(1)
        .env("GITHUB_VAULT_CLIENT_SECRET", SECRET)
        .env("OKTA_AGENT_PRIVATE_KEY", &agent_key)
        .env(
            "TVP_SEALING_KEY",
            "compose-demo-sealing-key-compose-demo-sealing-key",
        )
        .log(&dir.join("envoy.log"))
        .spawn()
        .unwrap();

    let started = Instant::now();
    let out = Command::new("sh")
        .arg(repo().join("deploy/compose/demo.sh"))
        .env("TVP_URL", format!("http://127.0.0.1:{listen}"))
        .env("SIM_URL", format!("http://127.0.0.1:{}", sim.port))
        .env("DEMO_WAIT_SECONDS", "60")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("demo: all answers as expected"),
        "demo.sh failed after {:?}:\n{text}{}\nEnvoy log:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
    );
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        4,
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
