//! Hot configuration in real Envoy: with `lds_path`, the listener (and the filter's plugin
//! configuration) lives in a file Envoy watches. Moving a new one into place adds a tenant,
//! removes one and changes settings without a restart: a request in flight finishes on the
//! old configuration, the removed tenant is unknown at once (its cached token unused), the
//! downstream-token cache in shared data survives, and an invalid push is refused while the
//! running configuration keeps serving.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use deploy::deployment::Target;
use serde_json::{json, Value};

const UPDATES: &str = "listener_manager.lds.update_success";
const REJECTED: &str = "listener_manager.lds.update_rejected";
const GITHUB2_AUDIENCE: &str = "https://github2.tvp.example";
const GITHUB2_CLIENT: &str = "github2-custom-api-client";
const NEW_BASE: &str = "https://gw2.example.com";

/// A third tenant for the sim (which knows every tenant from the start): github's users and
/// connection behind its own issuer, audience and vault client.
fn github2_sim(tenants: &[SimTenant]) -> SimTenant {
    let mut t = tenants.iter().find(|t| t.id == "github").unwrap().clone();
    t.id = "github2".into();
    t.issuer = t.issuer.replace("/issuers/github/", "/issuers/github2/");
    t.audience = GITHUB2_AUDIENCE.into();
    t.vault_client_id = Some(GITHUB2_CLIENT.into());
    t
}

/// The same tenant as the filter sees it, from github's entry of a plugin configuration.
fn github2_config(github: &Value) -> Value {
    let mut t = github.clone();
    t["id"] = json!("github2");
    t["name"] = json!("GitHub, second tenant");
    for field in ["issuer", "jwks"] {
        let moved = t[field]
            .to_string()
            .replace("/issuers/github/", "/issuers/github2/");
        t[field] = serde_json::from_str(&moved).unwrap();
    }
    // Its own API: an Auth0 tenant accepts one audience.
    t.as_object_mut().unwrap().remove("resources");
    t["audience"] = json!(GITHUB2_AUDIENCE);
    t["vault"]["client_id"] = json!(GITHUB2_CLIENT);
    t.as_object_mut().unwrap().remove("connect");
    t
}

/// The local stack's deployment description (as envoy/envoy.yaml's).
fn deployment() -> String {
    std::fs::read_to_string(root().join("envoy/local.deployment.yaml"))
        .expect("envoy/local.deployment.yaml")
}

/// `tvp render envoy` of a plugin configuration with the local stack's deployment and `sets`
/// (ports, module, `lds_path`): (bootstrap, listener file).
fn render(sets: &[String], config: &Value) -> (String, String) {
    let r = deploy::render(Target::Envoy, &config.to_string(), &deployment(), sets)
        .unwrap_or_else(|p| panic!("{p:#?}"));
    let (name, listeners) = r.more.into_iter().next().expect("a listener file");
    assert_eq!(name, "listeners.yaml");
    (r.text, listeners)
}

/// Write a listener file next to the watched directory and move it in: what
/// `mv staging/listeners.yaml lds/` does (a rename, atomic on one filesystem).
fn push(dir: &Path, listeners: &str) {
    let staging = dir.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("listeners.yaml"), listeners).unwrap();
    std::fs::rename(
        staging.join("listeners.yaml"),
        dir.join("lds/listeners.yaml"),
    )
    .unwrap();
}

/// Envoy on the `lds_path` layout: bootstrap (clusters) in `dir`, the listener file in
/// `dir/lds`, new versions rendered into `dir/staging` and moved into place.
struct HotStack {
    sim: Sim,
    envoy: Process,
    port: u16,
    admin: u16,
    dir: PathBuf,
    sets: Vec<String>,
    /// The plugin configuration and bootstrap Envoy started with.
    config: Value,
    bootstrap: String,
}

impl HotStack {
    fn start() -> HotStack {
        HotStack::start_with(&[])
    }

    /// With more Envoy command-line options.
    fn start_with(envoy_args: &[&str]) -> HotStack {
        let sim = (0..5)
            .find_map(|_| {
                let (sim_port, backend_port) = (free_port(), free_port());
                let mut tenants = sim_tenants(sim_port, backend_port);
                tenants.push(github2_sim(&tenants));
                Sim::start(tenants, sim_port, backend_port).ok()
            })
            .expect("sim starts");
        let (port, admin) = (free_port(), free_port());
        let dir = root().join("target/e2e").join(format!("hot-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("lds")).unwrap();
        let mut sets = vec![
            format!("listen_port={port}"),
            format!("admin_port={admin}"),
            format!("lds_path={}", dir.join("lds/listeners.yaml").display()),
        ];
        sets.extend(module_sets());
        // The example's Auth0 tenants: the push below is about them.
        let mut config = plugin_config(&sim, test_settings());
        if let Some(list) = config["tenants"].as_array_mut() {
            list.retain(|t| t["vault"]["type"] == "auth0");
        }
        let (bootstrap, listeners) = render(&sets, &config);
        let cfg = dir.join("envoy.yaml");
        std::fs::write(&cfg, &bootstrap).unwrap();
        push(&dir, &listeners);
        let stack = HotStack {
            envoy: spawn_envoy_with(&cfg, &dir.join("envoy.log"), 2, envoy_args),
            sim,
            port,
            admin,
            dir,
            sets,
            config,
            bootstrap,
        };
        stack.wait_for("Envoy serves every tenant", || {
            stack.stat(UPDATES) == 1 && stack.keys_loaded(&["github", "google"])
        });
        stack
    }

    /// The listener file for `config` with `configuration` embedded as it is (for documents
    /// tvp would refuse to render).
    fn listeners_with(&self, config: &Value, configuration: &str) -> String {
        let d = deploy::deployment::load(&deployment(), &self.sets, Target::Envoy).unwrap();
        let plan = deploy::upstream::plan(config).unwrap();
        let file = deploy::envoy::listeners_with(&plan, &d, configuration);
        format!("{}{}", deploy::envoy::LDS_HEADER, file.to_yaml())
    }

    /// A counter from the admin's JSON stats (0 until Envoy defines it).
    fn stat(&self, name: &str) -> u64 {
        let path = format!("/stats?format=json&filter=^{name}$");
        let stats = http(self.admin, "GET", &path, &[], b"").map(|r| r.json());
        stats
            .ok()
            .and_then(|s| s["stats"][0]["value"].as_u64())
            .unwrap_or(0)
    }

    /// The tenants `/health` lists, with whether their keys are loaded.
    fn health(&self) -> Vec<(String, bool)> {
        let Ok(r) = http(self.port, "GET", "/health", &[], b"") else {
            return vec![];
        };
        let listed = r.json()["tenants"].as_object().cloned().unwrap_or_default();
        listed
            .into_iter()
            .map(|(t, v)| (t, v["keys_loaded"] == true))
            .collect()
    }

    /// `/health` lists exactly these tenants (sorted), each with its keys.
    fn keys_loaded(&self, tenants: &[&str]) -> bool {
        let health = self.health();
        health
            .iter()
            .map(|(t, _)| t.as_str())
            .eq(tenants.iter().copied())
            && health.iter().all(|(_, loaded)| *loaded)
    }

    fn wait_for(&self, what: &str, probe: impl Fn() -> bool) -> Duration {
        let start = Instant::now();
        while !probe() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        start.elapsed()
    }

    fn token(&self, tenant: &str) -> String {
        self.sim
            .mint(&Mint {
                tenant: tenant.into(),
                sub: "alice".into(),
                ..Mint::default()
            })
            .unwrap()
    }

    fn call(&self, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        http(self.port, "GET", path, &[("authorization", &auth)], b"").unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for HotStack {
    fn drop(&mut self) {
        self.envoy.stop();
        if std::thread::panicking() {
            return;
        }
        // The harness's own checks: no token or client secret in Envoy's log (wasm:debug),
        // no panic.
        let log = self.log();
        let tokens = self
            .sim
            .minted()
            .into_iter()
            .chain(self.sim.downstream_tokens());
        for t in tokens {
            assert!(!log.contains(&t), "a token reached Envoy's log");
        }
        for secret in [
            GITHUB_SECRET,
            "google-demo-secret",
            "github-connect-demo-secret",
        ] {
            assert!(!log.contains(secret), "a client secret reached Envoy's log");
        }
        assert!(!log.contains("panic"), "{log}");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn authorization(r: &Response) -> String {
    echoed_headers(r)
        .into_iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

fn resource_metadata(stack: &HotStack) -> String {
    let r = http(stack.port, "GET", "/github/mcp", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    r.header("www-authenticate").unwrap_or_default().to_string()
}

#[test]
fn a_pushed_configuration_takes_effect_without_dropping_requests() {
    let stack = HotStack::start();
    let sim = &stack.sim;

    // Before: both tenants work; each user's downstream token is fetched once and cached.
    let github = stack.call("/github/user", &stack.token("github"));
    assert_eq!(github.status, 200, "{}", github.text());
    let token = authorization(&github);
    assert!(token.starts_with("Bearer sim_github_alice_"), "{token}");
    let google_token = stack.token("google");
    assert_eq!(stack.call("/google/files", &google_token).status, 200);
    assert_eq!(
        stack.call("/github/user", &stack.token("github")).status,
        200
    );
    let vault = sim.count(Endpoint::Vault);
    assert_eq!(vault, 2);
    assert!(resource_metadata(&stack).contains("http://localhost:3000/"));

    // (a) A slow request through the filter: it is at the backend, which answers in 3 s.
    sim.fail(
        Endpoint::Backend,
        Fault::Delay(Duration::from_secs(3)),
        Some(1),
    );
    let backend_calls = sim.count(Endpoint::Backend);
    let slow = {
        let (port, auth) = (stack.port, format!("Bearer {}", stack.token("github")));
        std::thread::spawn(move || {
            let r = http(
                port,
                "GET",
                "/github/slow",
                &[("authorization", &auth)],
                b"",
            );
            (r, Instant::now())
        })
    };
    stack.wait_for("the slow request reaches the backend", || {
        sim.count(Endpoint::Backend) > backend_calls
    });

    // (b) The new configuration: github2 added, google removed, github's downstream header
    // format and the public URL changed. Same clusters, so the same bootstrap: no restart.
    let mut next = stack.config.clone();
    let github2 = github2_config(&next["tenants"][0]);
    next["tenants"] = json!([next["tenants"][0].clone(), github2]);
    next["tenants"][0]["downstream"]["format"] = json!("token {token}");
    next["settings"]["public_base_url"] = json!(NEW_BASE);
    let (bootstrap, listeners) = render(&stack.sets, &next);
    assert_eq!(bootstrap, stack.bootstrap);
    let jwks = sim.count(Endpoint::Jwks);
    let pushed = Instant::now();
    push(&stack.dir, &listeners);

    // (c) Envoy takes it, and the new filter configuration serves at once.
    let took = stack.wait_for("Envoy takes the new listener", || stack.stat(UPDATES) == 2);
    let updated = Instant::now();
    let active = took
        + stack.wait_for("the new tenants are listed", || {
            stack
                .health()
                .iter()
                .map(|(t, _)| t.as_str())
                .eq(["github", "github2"])
        });
    assert_eq!(stack.stat(REJECTED), 0);

    let loaded = stack.wait_for("github2's keys are loaded", || {
        stack.keys_loaded(&["github", "github2"])
    });
    eprintln!(
        "listener update {took:?} after the push, new tenants listed after {active:?}, \
         github2's keys loaded {loaded:?} later"
    );
    // One key fetch, github2's: github's keys came from shared data.
    assert_eq!(sim.count(Endpoint::Jwks), jwks + 1);

    // (e) The new tenant works, with its own vault exchange.
    let r = stack.call("/github2/user", &stack.token("github2"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(authorization(&r).starts_with("Bearer sim_github_alice_"));
    assert_eq!(sim.count(Endpoint::Vault), vault + 1);
    // From here on no key fetch: every worker has github2's keys (this request may have
    // fetched them for its worker before that worker's next read of shared data).
    let jwks = sim.count(Endpoint::Jwks);

    // (d) The request in flight finished normally, on the old configuration, after the update.
    let (slow, finished) = slow.join().unwrap();
    let slow = slow.expect("the in-flight request completes");
    assert_eq!(slow.status, 200, "{}", slow.text());
    assert_eq!(authorization(&slow), token);
    assert!(finished > updated, "it was in flight during the update");
    eprintln!(
        "in-flight request completed {:?} after the push",
        finished - pushed
    );

    // (f) The removed tenant is unknown at once: the filter's 404, nothing forwarded, no
    // vault call; its downstream token, unexpired in shared data, is never looked up.
    let backend_calls = sim.count(Endpoint::Backend);
    let r = stack.call("/google/files", &google_token);
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error_description"], "No such tenant.");
    assert_eq!(sim.count(Endpoint::Backend), backend_calls);
    assert_eq!(sim.count(Endpoint::Vault), vault + 1);

    // (g) github keeps its cached downstream token across the reload (no vault call; a
    // fresh agent token, so not the per-worker verified-token cache), sent in the new format.
    // The resource moved with the public URL, so agents now get tokens for the new URL (the
    // authorization server's API identifier moves with it).
    sim.set_audience("github", &format!("{NEW_BASE}/github/mcp"));
    let r = stack.call("/github/user", &stack.token("github"));
    assert_eq!(r.status, 200, "{}", r.text());
    let cached = token.replace("Bearer ", "token ");
    assert_eq!(authorization(&r), cached);
    assert_eq!(sim.count(Endpoint::Vault), vault + 1);
    assert_eq!(sim.count(Endpoint::Jwks), jwks);
    assert!(resource_metadata(&stack).contains(NEW_BASE));

    // (h) An invalid push (github2's issuer is no URL) is refused with one line naming the
    // field; the configuration pushed before keeps serving.
    let mut broken = next.clone();
    broken["tenants"][1]["issuer"] = json!("not-a-url");
    let lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains("invalid plugin configuration"))
            .count()
    };
    let critical = |log: &str| {
        log.lines()
            .filter(|l| l.contains("[critical]"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&stack.log()), 0);
    assert_eq!(critical(&stack.log()), Vec::<String>::new());
    push(
        &stack.dir,
        &stack.listeners_with(&next, &broken.to_string()),
    );
    stack.wait_for("Envoy refuses the listener", || stack.stat(REJECTED) == 1);
    let log = stack.log();
    assert_eq!(lines(&log), 1, "{log}");
    assert!(
        log.contains("invalid plugin configuration: tenant 'github2': field 'issuer'"),
        "{log}"
    );
    // Envoy's own lines about the refused plugin, on the main thread and each worker.
    for line in critical(&log) {
        assert!(line.contains("failed to load"), "{line}");
    }
    assert_eq!(stack.stat(UPDATES), 2);
    assert!(stack.keys_loaded(&["github", "github2"]));
    // Enough connections to reach both workers.
    for _ in 0..8 {
        let r = stack.call("/github2/user", &stack.token("github2"));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(stack.call("/google/files", &google_token).status, 404);
        let r = stack.call("/github/user", &stack.token("github"));
        assert_eq!(authorization(&r), cached);
    }
    assert_eq!(sim.count(Endpoint::Vault), vault + 1);
    assert_eq!(sim.count(Endpoint::Jwks), jwks);
}

/// A keep-alive connection accepted before a push stays on the old filter chain (Envoy drains
/// it for `--drain-time-s`, 600 s by default): its next request must not be served by the old
/// configuration. With a tenant removed and a scope tightened, it is refused (503, nothing
/// forwarded; with `--drain-strategy immediate`, as the README recommends for hot
/// configuration, Envoy adds `Connection: close` and closes it: without the filter's check that
/// request would have been served by the old configuration first). A new connection gets the
/// new configuration. Rolling back to the very same bytes (Envoy then reuses the old
/// configuration's root context, with no configure) is served again from the first new
/// connection, and the other configuration's connections are refused in turn.
#[test]
fn a_superseded_configuration_refuses_its_keep_alive_connections() {
    let stack = HotStack::start_with(&["--drain-strategy", "immediate"]);
    let sim = &stack.sim;
    let (github, google) = (stack.token("github"), stack.token("google"));
    let bearer = |t: &str| format!("Bearer {t}");
    // Several connections: with two workers, some land on each.
    let mut held: Vec<KeepAlive> = (0..4)
        .map(|_| KeepAlive::open(stack.port).unwrap())
        .collect();
    for conn in &mut held {
        let r = conn
            .send(
                "GET",
                "/google/files",
                &[("authorization", &bearer(&google))],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = conn
            .send(
                "GET",
                "/github/user",
                &[("authorization", &bearer(&github))],
            )
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // The push: google removed, github's reads need a second scope.
    let original = stack.config.clone();
    let mut next = original.clone();
    next["tenants"] = json!([next["tenants"][0].clone()]);
    next["tenants"][0]["scopes"]["read"] = json!(["github:read", "github:admin"]);
    let (_, tightened) = render(&stack.sets, &next);
    push(&stack.dir, &tightened);
    stack.wait_for("Envoy takes the new listener", || stack.stat(UPDATES) == 2);
    stack.wait_for("the new configuration is listed", || {
        stack.keys_loaded(&["github"])
    });

    // A worker trusts its last "current" reading for RECHECK_MS: the bound on how long an old
    // connection may still be served after a push.
    std::thread::sleep(Duration::from_millis(tvp_core::generation::RECHECK_MS + 50));
    // On the same connections: refused before anything else, and closed by Envoy.
    let backend = sim.count(Endpoint::Backend);
    for (i, conn) in held.iter_mut().enumerate() {
        let (path, token) = if i % 2 == 0 {
            ("/google/files", &google)
        } else {
            ("/github/user", &github)
        };
        let r = conn
            .send("GET", path, &[("authorization", &bearer(token))])
            .unwrap();
        assert_eq!(r.status, 503, "{path}: {}", r.text());
        assert_eq!(r.json()["error"], "temporarily_unavailable");
        assert_eq!(r.header("connection"), Some("close"));
    }
    // Envoy closes each once its HTTP/1.1 drain (`drain_timeout`, 5 s) ends.
    for conn in &mut held {
        assert!(conn.closed_by_server(Duration::from_secs(10)));
    }
    assert_eq!(sim.count(Endpoint::Backend), backend, "nothing forwarded");
    stack.wait_for("the refusals are counted", || {
        stack.stat("wasmcustom.tvp.token-vault-proxy.deny.superseded_configuration") == 4
    });
    let log = stack.log();
    assert!(
        log.contains("superseded_configuration") && log.contains("was superseded by"),
        "{log}"
    );

    // New connections get the new configuration.
    let r = stack.call("/google/files", &google);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = stack.call("/github/user", &github);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "insufficient_scope");
    let admin = sim
        .mint(&Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            scope: Some("github:read github:write github:admin".into()),
            ..Mint::default()
        })
        .unwrap();
    let mut current = KeepAlive::open(stack.port).unwrap();
    let r = current
        .send("GET", "/github/user", &[("authorization", &bearer(&admin))])
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // Roll back to the very same bytes, after the grace period in which connections cannot
    // switch configurations back (a worker switches listeners milliseconds after another).
    std::thread::sleep(Duration::from_secs(6));
    let (_, original_listeners) = render(&stack.sets, &original);
    push(&stack.dir, &original_listeners);
    stack.wait_for("Envoy takes the rollback", || stack.stat(UPDATES) == 3);
    // The first new connection switches back: google is served again, old scopes apply.
    stack.wait_for("google is served again", || {
        stack.call("/google/files", &google).status == 200
    });
    assert_eq!(stack.call("/github/user", &github).status, 200);
    assert!(stack.log().contains("is current again"));
    // The tightened configuration's keep-alive connection is refused now.
    let r = current
        .send("GET", "/github/user", &[("authorization", &bearer(&admin))])
        .unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(current.closed_by_server(Duration::from_secs(10)));
}
