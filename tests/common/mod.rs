//! End-to-end harness: a real Envoy (ENVOY_BIN or `.tools/envoy`) running the release wasm
//! module, against an in-process sim, all on free loopback ports. What is not about this
//! project's stacks (finding Envoy and the module, ports, processes, the HTTP client) is
//! testkit's.

#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
pub use sim::{Endpoint, Fault, Mint, Sim, SimTenant};
pub use testkit::raw::KeepAlive;
pub use testkit::{envoy_bin, root, Process, Response};

pub mod browser;
pub mod fleet;
pub mod mcp;

pub const GITHUB_SECRET: &str = "github-e2e-secret-value";

pub fn wasm_path() -> PathBuf {
    testkit::require_wasm().unwrap_or_else(|e| panic!("{e}"))
}

/// A port free now and never handed out before in this test process.
pub fn free_port() -> u16 {
    testkit::free_port().expect("a free loopback port")
}

/// The example tenants re-pointed at this sim, with `settings` merged over its settings.
pub fn plugin_config(sim: &Sim, settings: Value) -> Value {
    let example = std::fs::read_to_string(root().join("tenants.example.json")).unwrap_or_default();
    let ports = sim::envoy::Ports {
        listen: 0,
        admin: 0,
        sim: sim.port,
        backend: sim.backend_port,
    };
    let mut doc: Value =
        serde_json::from_str(&sim::envoy::plugin_config_for(&example, &ports)).unwrap_or_default();
    if let (Some(target), Some(overlay)) = (doc["settings"].as_object_mut(), settings.as_object()) {
        for (k, v) in overlay {
            target.insert(k.clone(), v.clone());
        }
    }
    doc
}

/// Settings that make tests fast: short refetch interval and call-out timeout.
pub fn test_settings() -> Value {
    json!({"jwks_min_refetch_seconds": 1, "callout_timeout_ms": 1500})
}

pub type ConfigEdit = Box<dyn Fn(&mut Value)>;
pub type SimHook = Box<dyn Fn(&Sim)>;

pub struct Options {
    pub settings: Value,
    /// Change the plugin configuration (already pointed at this stack's sim).
    pub edit: Option<ConfigEdit>,
    /// Runs after the sim started and before Envoy does (e.g. to fault the JWKS).
    pub before_envoy: Option<SimHook>,
    pub concurrency: u32,
    pub wait_for_keys: bool,
    /// Set `settings.public_base_url` to this stack's own listener (for flows a client
    /// follows through redirects).
    pub public_base_is_stack: bool,
    /// Tenants added to the example's (`127.0.0.1:9000`/`:9001` re-pointed at this stack's
    /// sim), known to the sim too: e.g. [`okta_tenants`].
    pub extra_tenants: Vec<Value>,
    /// Route every path no tenant route takes (the connect pages among them) to the github
    /// backend instead of the rendered 404, as on an ingress shared with another application:
    /// whatever of such a request the filter lets go on reaches the backend, which records it.
    pub rest_to_backend: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settings: test_settings(),
            edit: None,
            before_envoy: None,
            concurrency: 1,
            wait_for_keys: true,
            public_base_is_stack: false,
            extra_tenants: Vec::new(),
            rest_to_backend: false,
        }
    }
}

pub struct Stack {
    pub sim: Sim,
    pub port: u16,
    pub admin: u16,
    envoy: Process,
    pub log: PathBuf,
    dir: PathBuf,
}

/// The environment variable of the Okta agent's private key (see [`okta_tenants`]).
pub const AGENT_KEY_ENV: &str = "OKTA_AGENT_PRIVATE_KEY";

/// The key sealing the connect flow's state (`settings.sealing_key_env` of the example),
/// the same for every Envoy a test starts: replicas open what each other sealed.
pub const SEALING_KEY: &str = "e2e-sealing-key-e2e-sealing-key-e2e-sealing-key";

/// One RSA key for the Okta agent client per test process (generating one takes a while).
pub fn agent_key_pem() -> &'static str {
    static KEY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    KEY.get_or_init(sim::keys::generate_agent_key_pem)
}

/// The environment variable of the Cross App Access client's secret at the Auth0 resource AS.
pub const XAA_SECRET_ENV: &str = "WIKI_AUTH0_CLIENT_SECRET";
pub const XAA_SECRET: &str = "wiki-auth0-e2e-secret-value";

fn agent_key_env(name: &str) -> Option<String> {
    match name {
        AGENT_KEY_ENV => Some(agent_key_pem().to_string()),
        XAA_SECRET_ENV => Some(XAA_SECRET.to_string()),
        _ => None,
    }
}

/// `doc` with the local stack's sim and backend addresses replaced by these ports.
fn repoint(doc: &Value, sim_port: u16, backend_port: u16) -> Value {
    let ports = sim::envoy::Ports {
        listen: 0,
        admin: 0,
        sim: sim_port,
        backend: backend_port,
    };
    serde_json::from_str(&sim::envoy::plugin_config_for(&doc.to_string(), &ports))
        .unwrap_or_default()
}

/// More tenants brokered by Okta (as the sim plays it) than the example's `slack` (the STS
/// exchange with machine access: the agent's access token) and `wiki` (Cross App Access at an
/// Okta custom AS), authenticated at Okta by the agent's client assertion signed with
/// [`agent_key_pem`]: `slack-user` with user access (the user's ID token for the agent's
/// client, in `x-agent-id-token`), `wiki-auth0` and `wiki-auth0-key` at an Auth0 resource AS,
/// by client secret ([`XAA_SECRET_ENV`]) and by RS256 `private_key_jwt`.
pub fn okta_tenants() -> Vec<Value> {
    let tenant = |id: &str, vault: Value| {
        json!({
            "id": id, "name": format!("{id} via Okta"),
            "issuer": format!("http://127.0.0.1:9000/issuers/{id}/"),
            "audience": format!("https://{id}.tvp.example"),
            "jwks": {"cluster": "sim_control", "url": format!("http://127.0.0.1:9000/issuers/{id}/jwks.json")},
            "algorithms": ["RS256"],
            "scopes": {"read": [format!("{id}:read")], "write": [format!("{id}:write")]},
            "backend": "http://127.0.0.1:9001",
            "vault": vault,
        })
    };
    let okta = |kind: &str| {
        json!({
            "type": kind, "cluster": "sim_control",
            "token_url": "http://127.0.0.1:9000/okta/oauth2/v1/token",
            "client_id": "okta-agent-client", "private_key_env": AGENT_KEY_ENV,
            "key_id": "agent-key-1",
        })
    };
    let mut sts = okta("okta-sts");
    sts["resource"] = json!("https://slack.example/api");
    sts["connection"] = json!("slack");
    let mut user = sts.clone();
    user["resource"] = json!("https://slack.example/user-api");
    user["subject_token_type"] = json!("id_token");
    user["subject_token_header"] = json!("x-agent-id-token");
    let auth0 = |client: &str| {
        let mut v = okta("id-jag");
        v["audience"] = json!(XAA_AUTH0_ISSUER);
        v["scopes"] = json!(["wiki.read"]);
        v["resource"] = json!(XAA_RESOURCE);
        v["resource_as"] = json!("auth0");
        v["resource_token_url"] = json!(format!("{XAA_AUTH0_ISSUER}oauth/token"));
        v["resource_client_id"] = json!(client);
        v["connection"] = json!("wiki");
        v
    };
    let mut by_secret = auth0("wiki-auth0-secret-client");
    by_secret["resource_client_secret_env"] = json!(XAA_SECRET_ENV);
    // `slack` (STS, machine access, connect pages at the org) and `wiki` (ID-JAG at an Okta
    // custom AS) are the example's own.
    vec![
        tenant("slack-user", user),
        tenant("wiki-auth0", by_secret),
        tenant("wiki-auth0-key", auth0("wiki-auth0-key-client")),
    ]
}

/// The Okta web app the `slack` tenant's connect pages sign users in with.
pub const OKTA_CONNECT_CLIENT: &str = "slack-okta-connect";
pub const OKTA_CONNECT_SECRET: &str = "slack-okta-connect-demo-secret";

/// The sim's Auth0 issuer as a Cross App Access resource AS (`https://{domain}/` at Auth0).
pub const XAA_AUTH0_ISSUER: &str = "http://127.0.0.1:9000/";
/// The Auth0 API identifier the Cross App Access tenants ask for.
pub const XAA_RESOURCE: &str = "https://wiki.example/api";

pub fn sim_tenants(sim_port: u16, backend_port: u16) -> Vec<SimTenant> {
    let example = std::fs::read_to_string(root().join("tenants.example.json")).unwrap_or_default();
    let ports = sim::envoy::Ports {
        listen: 0,
        admin: 0,
        sim: sim_port,
        backend: backend_port,
    };
    let mut doc: Value =
        serde_json::from_str(&sim::envoy::plugin_config_for(&example, &ports)).unwrap_or_default();
    // Envoy reads the secret from its environment; hand the sim the same value directly.
    for t in doc["tenants"].as_array_mut().into_iter().flatten() {
        if t["vault"].get("client_secret_env").is_some() {
            t["vault"]["client_secret"] = json!(GITHUB_SECRET);
        }
    }
    SimTenant::from_filter_config_with(&doc, &agent_key_env).expect("example tenants")
}

/// A connect link is opaque: its only parameter is one sealed blob (URL-safe base64 of
/// ciphertext), so no user id, token or other value can be read in it. (Looking for a user name
/// as a substring would fail now and then: random ciphertext spells anything.)
pub fn assert_opaque_link(url: &str) {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    let sealed = query.strip_prefix("id=").unwrap_or_default();
    assert!(
        sealed.len() > 64
            && sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "not one sealed value: {url}"
    );
}

/// No agent token the sim minted comes back in an answer (an echo would mean it reached the
/// backend).
pub fn assert_no_agent_token(sim: &Sim, r: &Response, method: &str, path: &str) {
    let text = r.text();
    for token in sim.minted() {
        let leaked = text.contains(&token) || r.headers.iter().any(|(_, v)| v.contains(&token));
        assert!(
            !leaked,
            "an agent token came back in the answer to {method} {path}"
        );
    }
}

/// The sim, for the example's tenants and `extra` ones, on free ports. The issuer URLs contain
/// its port, so ports are picked first; another process may take one before the sim binds it,
/// so it tries a few times.
pub fn start_sim(extra: &[Value]) -> Sim {
    (0..5)
        .find_map(|_| {
            let (sim_port, backend_port) = (free_port(), free_port());
            let mut tenants = sim_tenants(sim_port, backend_port);
            let extra = repoint(&json!({ "tenants": extra }), sim_port, backend_port);
            tenants.extend(
                SimTenant::from_filter_config_with(&extra, &agent_key_env).expect("extra tenants"),
            );
            Sim::start(tenants, sim_port, backend_port).ok()
        })
        .expect("sim starts")
}

/// Make `base` the gateway's public URL, for the filter and for the outside parties the sim
/// plays: Okta's registered sign-in callbacks, and the Auth0 API identifiers of the tenants'
/// resource paths (as an Auth0 tenant set up for this gateway would have them).
pub fn public_base_is(sim: &Sim, config: &mut Value, base: &str) {
    config["settings"]["public_base_url"] = json!(base);
    sim.set_public_base(base);
    for t in config["tenants"].as_array().into_iter().flatten() {
        if let Some(path) = t["resources"][0].as_str().filter(|p| p.starts_with('/')) {
            let id = t["id"].as_str().unwrap_or_default();
            sim.set_audience(id, &format!("{base}{path}"));
        }
    }
}

impl Stack {
    /// Envoy's process id (for /proc/<pid>/status).
    pub fn envoy_pid(&self) -> u32 {
        self.envoy.id()
    }

    pub fn start() -> Stack {
        Stack::with(Options::default())
    }

    pub fn with(opts: Options) -> Stack {
        let sim = start_sim(&opts.extra_tenants);
        let mut config = plugin_config(&sim, opts.settings.clone());
        let extra = repoint(&json!(opts.extra_tenants), sim.port, sim.backend_port);
        if let (Some(list), Some(extra)) = (config["tenants"].as_array_mut(), extra.as_array()) {
            list.extend(extra.iter().cloned());
        }
        if let Some(edit) = &opts.edit {
            edit(&mut config);
        }
        if let Some(hook) = &opts.before_envoy {
            hook(&sim);
        }
        Stack::launch(sim, &config, opts)
    }

    fn launch(sim: Sim, config: &Value, opts: Options) -> Stack {
        let (port, admin) = (free_port(), free_port());
        let mut config = config.clone();
        if opts.public_base_is_stack {
            public_base_is(&sim, &mut config, &format!("http://127.0.0.1:{port}"));
        }
        let dir = root().join("target/e2e").join(format!("envoy-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut yaml = render(port, admin, &config);
        if opts.rest_to_backend {
            yaml = rest_to_backend(&yaml);
        }
        let cfg_path = dir.join("envoy.yaml");
        std::fs::write(&cfg_path, yaml).expect("write envoy.yaml");
        let log = dir.join("envoy.log");
        let envoy = spawn_envoy(&cfg_path, &log, opts.concurrency);
        let stack = Stack {
            sim,
            port,
            admin,
            envoy,
            log,
            dir,
        };
        stack.wait_ready(opts.wait_for_keys);
        stack
    }

    /// Envoy's admin says ready and, if `keys`, `/health` lists every tenant's keys loaded.
    fn wait_ready(&self, keys: bool) {
        let keys_loaded = || {
            self.get("/health", &[]).is_ok_and(|h| {
                h.status == 200
                    && h.json()["tenants"]
                        .as_object()
                        .is_some_and(|t| t.values().all(|v| v["keys_loaded"] == true))
            })
        };
        let ready =
            testkit::ready::wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
                testkit::ready::envoy_ready(self.admin) && (!keys || keys_loaded())
            });
        if !ready {
            panic!("Envoy did not become ready; log:\n{}", self.log_text());
        }
    }

    /// Send a request through Envoy. Every answer is checked for leaks: no agent token may
    /// appear in what a client gets back (an echo would mean it reached the backend).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let r = http(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_tail()));
        assert_no_agent_token(&self.sim, &r, method, path);
        r
    }

    /// [`Stack::request`] with the bytes written as given (see [`raw`]), for hostile inputs.
    pub fn request_raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let r = raw(self.port, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_tail()));
        assert_no_agent_token(&self.sim, &r, method, path);
        r
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        http(self.port, "GET", path, headers, b"")
    }

    /// GET with `Authorization: Bearer <token>`.
    pub fn call(&self, method: &str, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.request(method, path, &[("authorization", &auth)], b"")
    }

    pub fn token(&self, tenant: &str, sub: &str) -> String {
        self.mint(Mint {
            tenant: tenant.into(),
            sub: sub.into(),
            ..Mint::default()
        })
    }

    pub fn mint(&self, m: Mint) -> String {
        self.sim.mint(&m).expect("mint")
    }

    pub fn log_text(&self) -> String {
        testkit::log::read(&self.log)
    }

    pub fn log_tail(&self) -> String {
        testkit::log::tail(&self.log_text(), 40)
    }

    /// Decision records the filter logged, in order.
    pub fn decisions(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter_map(|l| l.split_once(" decision {").map(|(_, r)| format!("{{{r}")))
            .map(|r| serde_json::from_str(&r).expect("decision record is JSON"))
            .collect()
    }

    /// Envoy's access log lines (JSON), in order.
    pub fn access_log(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log.with_file_name("access.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Repeat `probe` until it returns `want` or 10 s pass; the last value otherwise.
    pub fn eventually<T: PartialEq + std::fmt::Debug>(&self, want: T, probe: impl Fn() -> T) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = probe();
            if got == want || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn stat(&self, name: &str) -> u64 {
        let r = http(
            self.admin,
            "GET",
            &format!("/stats?filter=^{name}$"),
            &[],
            b"",
        )
        .expect("admin stats");
        r.text()
            .lines()
            .find_map(|l| {
                l.split_once(": ")
                    .and_then(|(n, v)| (n == name).then(|| v.trim().parse().ok()))
                    .flatten()
            })
            .unwrap_or(0)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.envoy.stop();
        let text = self.log_text();
        assert_log_clean(&self.sim, &text);
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// No token, secret or key in an Envoy log (which runs at wasm:debug in every test), and no
/// sign of a trapped VM or a panic: a failure even if every assertion passed.
pub fn assert_log_clean(sim: &Sim, text: &str) {
    if std::thread::panicking() {
        return;
    }
    let tokens: Vec<String> = sim
        .minted()
        .into_iter()
        .chain(sim.downstream_tokens())
        .collect();
    let tokens: Vec<(&str, &str)> = tokens.iter().map(|t| ("a token", t.as_str())).collect();
    let key_line = agent_key_pem().lines().nth(1).unwrap_or("-");
    let secrets = [
        ("a client secret", GITHUB_SECRET),
        ("a client secret", XAA_SECRET),
        ("a client secret", OKTA_CONNECT_SECRET),
        ("a client secret", SEALING_KEY),
        ("a client secret", "google-demo-secret"),
        ("a client secret", "github-connect-demo-secret"),
        ("the agent's private key", key_line),
    ];
    for found in [&tokens[..], &secrets[..]] {
        if let Some(what) = testkit::log::leaked(text, found) {
            panic!("{what} reached Envoy's log");
        }
    }
    if let Some(line) = testkit::log::filter_failure(text) {
        panic!("Envoy log shows a filter failure: {line}");
    }
}

/// The local stack's deployment (envoy/local.deployment.yaml) on these ports, with the
/// module's absolute path.
fn local_deployment(listen: u16, admin: u16) -> deploy::deployment::Deployment {
    let text = std::fs::read_to_string(root().join("envoy/local.deployment.yaml"))
        .expect("envoy/local.deployment.yaml");
    let mut sets = vec![
        format!("listen_port={listen}"),
        format!("admin_port={admin}"),
    ];
    sets.extend(module_sets());
    deploy::deployment::load(&text, &sets, deploy::deployment::Target::Envoy)
        .expect("envoy/local.deployment.yaml loads")
}

/// The deployment settings naming the module the tests run (`TVP_HOST`): the wasm filter, or
/// the dynamic module.
pub fn module_sets() -> Vec<String> {
    let module = testkit::require_module().unwrap_or_else(|e| panic!("{e}"));
    if testkit::native_host() {
        vec![
            "host=native".into(),
            format!("native_module={}", module.display()),
        ]
    } else {
        vec![format!("wasm={}", module.display())]
    }
}

/// What `tvp render envoy` makes of a plugin configuration for the local stack (as
/// envoy/envoy.yaml), on these ports.
pub fn render(listen: u16, admin: u16, plugin_config: &Value) -> String {
    let plan = deploy::upstream::plan(plugin_config)
        .unwrap_or_else(|p| panic!("cannot deploy the configuration: {p:?}"));
    deploy::envoy::render(&plan, &local_deployment(listen, admin)).expect("render")
}

/// A rendered configuration whose catch-all route (a 404 `direct_response`) leads to the
/// github backend instead.
pub fn rest_to_backend(yaml: &str) -> String {
    let mut out = Vec::new();
    let mut skip_deeper_than = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skip_deeper_than {
            if indent > level {
                continue;
            }
            skip_deeper_than = None;
        }
        if line.trim() == "direct_response:" {
            let pad = &line[..indent];
            out.push(format!("{pad}route:"));
            out.push(format!("{pad}  cluster: backend_github"));
            out.push(format!("{pad}  timeout: \"30s\""));
            skip_deeper_than = Some(indent);
            continue;
        }
        out.push(line.to_string());
    }
    assert!(
        out.iter().any(|l| l.trim() == "cluster: backend_github"),
        "no catch-all route to replace"
    );
    out.join("\n") + "\n"
}

pub fn spawn_envoy(config: &Path, log: &Path, concurrency: u32) -> Process {
    spawn_envoy_with(config, log, concurrency, &[])
}

/// [`spawn_envoy`] with more command-line options (`--drain-strategy immediate`, ...): the
/// filter's log at debug (every test checks it for leaks), the access log next to the log,
/// the secrets the example's tenants name in the environment.
pub fn spawn_envoy_with(config: &Path, log: &Path, concurrency: u32, extra: &[&str]) -> Process {
    testkit::Envoy::new(config)
        .concurrency(concurrency)
        .args(&[
            "--component-log-level",
            "wasm:debug,dynamic_modules:debug",
            // Access log lines reach the file quickly enough for tests to read them.
            "--file-flush-interval-msec",
            "100",
        ])
        .args(extra)
        .env("GITHUB_VAULT_CLIENT_SECRET", GITHUB_SECRET)
        .env("TVP_SEALING_KEY", SEALING_KEY)
        .env(AGENT_KEY_ENV, agent_key_pem())
        .env(XAA_SECRET_ENV, XAA_SECRET)
        .log(log)
        .access_log(&log.with_file_name("access.log"))
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Run Envoy until it exits (for configurations that must be refused), returning its log.
pub fn envoy_refuses(plugin_config: &str) -> (bool, String) {
    let ports = sim::envoy::Ports {
        listen: free_port(),
        admin: free_port(),
        sim: 1,
        backend: 1,
    };
    let dir = root()
        .join("target/e2e")
        .join(format!("refuse-{}", ports.listen));
    std::fs::create_dir_all(&dir).expect("mkdir");
    // The example's routes and clusters (nothing answers on port 1), with the document under
    // test embedded as it is, even if it is not JSON.
    let example = std::fs::read_to_string(root().join("tenants.example.json")).expect("example");
    let example: Value = serde_json::from_str(&sim::envoy::plugin_config_for(&example, &ports))
        .expect("example tenants");
    let plan = deploy::upstream::plan(&example).expect("the example deploys");
    let d = local_deployment(ports.listen, ports.admin);
    let yaml = deploy::envoy::bootstrap_with(&plan, &d, plugin_config).to_yaml();
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).expect("write");
    let log = dir.join("envoy.log");
    let mut envoy = spawn_envoy(&cfg, &log, 1);
    let mut exited = None;
    // Still running and serving means the plugin loaded.
    testkit::ready::wait_until(Duration::from_secs(20), Duration::from_millis(50), || {
        exited = envoy.exited();
        exited.is_some() || testkit::ready::envoy_ready(ports.admin)
    });
    envoy.stop();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (exited.is_some_and(|s| !s.success()), text)
}

/// One ordinary request, through testkit's HTTP client (a new connection each time).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    testkit::http::request(port, method, path, headers, body)
}

/// A request written byte for byte as given (repeated headers, `..` and quotes in the path,
/// any header value): for the hostile inputs no client library would send.
pub fn raw(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    testkit::raw::send(port, method, path, headers, body, None)
}

/// As [`raw`], the body sent in a second write `after` the headers: by then the filter has
/// seen the headers alone and stopped them or let them go on (no client library pauses
/// between the two).
pub fn http_with_body_after(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    after: Option<Duration>,
) -> std::io::Result<Response> {
    testkit::raw::send(port, method, path, headers, body, after)
}

/// The echo backend's view of one request: header values by name.
pub fn echoed_headers(r: &Response) -> Vec<(String, String)> {
    r.json()["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or("").to_string(),
                        h[1].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}
