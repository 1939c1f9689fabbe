//! Shared pieces of the benchmark and soak binaries: Envoy configs, process control, wrk.
//! Envoy, the module, ports and processes are testkit's, as in the tests.

pub mod flood;
pub mod measure;
pub mod workers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use testkit::{Envoy, Process};

use serde_json::Value;

pub struct Variant {
    pub name: &'static str,
    pub port: u16,
    /// File of tokens to cycle through (one per line); `None` sends no Authorization.
    pub tokens: Option<PathBuf>,
}

pub struct Sample {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    /// CPU time of the Envoy under test per request (filled in by the caller).
    pub cpu_us: f64,
}

/// Where a run finds Envoy and the module, and keeps its files.
pub struct Paths {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(run: &str) -> Result<Paths, String> {
        let envoy = testkit::envoy_bin();
        let wasm = testkit::wasm_path();
        let dir = root().join("target").join(run);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        Ok(Paths { envoy, wasm, dir })
    }
}

/// The example tenants pointed at a sim on these ports, with the vault secrets inline (the
/// sim reads the same document), and the sim itself.
pub fn example_stack(
    sim_port: u16,
    backend_port: u16,
    secret: &str,
) -> Result<(Value, sim::Sim), String> {
    let example =
        std::fs::read_to_string(root().join("tenants.example.json")).map_err(|e| e.to_string())?;
    let ports = sim::envoy::Ports {
        listen: 0,
        admin: 0,
        sim: sim_port,
        backend: backend_port,
    };
    let mut plugin: Value = serde_json::from_str(&sim::envoy::plugin_config_for(&example, &ports))
        .map_err(|e| e.to_string())?;
    // The benchmark measures the Auth0 tenants' API path: no Okta tenants (they need the
    // agent's key) and no connect pages (they need a sealing key).
    if let Some(list) = plugin["tenants"].as_array_mut() {
        list.retain(|t| t["vault"]["type"] == "auth0");
        for t in list.iter_mut().filter_map(Value::as_object_mut) {
            t.remove("connect");
        }
    }
    if let Some(settings) = plugin["settings"].as_object_mut() {
        settings.remove("sealing_key_env");
    }
    if let Some(vault) = plugin["tenants"][0]["vault"].as_object_mut() {
        vault.remove("client_secret_env");
        vault.insert("client_secret".into(), Value::from(secret));
    }
    let tenants = sim::SimTenant::from_filter_config(&plugin)?;
    let sim = sim::Sim::start(tenants, sim_port, backend_port).map_err(|e| e.to_string())?;
    Ok((plugin, sim))
}

pub use testkit::root;

/// The audience the first tenant accepts (what the sim mints tokens for): its `audience`, or
/// its first resource (a path under `public_base_url`, or an absolute URL).
pub fn first_audience(plugin: &Value) -> String {
    let tenant = &plugin["tenants"][0];
    if let Some(a) = tenant["audience"].as_str() {
        return a.to_string();
    }
    let resource = tenant["resources"][0].as_str().unwrap_or_default();
    if resource.starts_with('/') {
        let base = plugin["settings"]["public_base_url"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/');
        format!("{base}{resource}")
    } else {
        resource.to_string()
    }
}

/// A loopback port not handed out before in this run (0, which Envoy refuses to share, if
/// none is left).
pub fn free_port() -> u16 {
    testkit::free_port().unwrap_or(0)
}

pub fn write_lines(path: &Path, lines: &[String]) -> Result<PathBuf, String> {
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    Ok(path.to_path_buf())
}

pub const LUA: &str = r#"
local tokens = {}
local i = 0
local non_2xx = 0
init = function(args)
  if args[1] then
    for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  end
end
request = function()
  i = i + 1
  if #tokens == 0 then
    return wrk.format("GET", "/github/user")
  end
  return wrk.format("GET", "/github/user", {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
response = function(status, headers, body)
  if status < 200 or status > 299 then non_2xx = non_2xx + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("TVP %f %f %d\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
"#;

pub fn wrk(script: &Path, v: &Variant, seconds: u64) -> Result<Sample, String> {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        "0",
        "wrk",
        "-t1",
        "-c8",
        &format!("-d{seconds}s"),
        "--latency",
        "-s",
    ])
    .arg(script)
    .arg(format!("http://127.0.0.1:{}", v.port));
    if let Some(t) = &v.tokens {
        cmd.arg("--").arg(t);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("wrk: {e} (install with `apt-get install wrk`)"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("Requests/sec:")
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .ok_or_else(|| format!("wrk output without Requests/sec:\n{text}"))?;
    let tvp: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("TVP "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Ok(Sample {
        rps,
        p50_ms: tvp.first().copied().unwrap_or(0.0),
        p99_ms: tvp.get(1).copied().unwrap_or(0.0),
        non_2xx: tvp.get(2).copied().unwrap_or(0.0) as u64,
        cpu_us: 0.0,
    })
}

/// Envoy with `workers` worker threads, not pinned (the soak run); stopped when dropped.
pub fn spawn_workers(
    envoy: &Path,
    cfg: &Path,
    log: &Path,
    workers: u32,
) -> Result<Process, String> {
    Envoy::new(cfg)
        .binary(envoy)
        .concurrency(workers)
        .log(log)
        .spawn()
}

/// Envoy with one worker on `cpu`; stopped when dropped.
pub fn spawn(envoy: &Path, cfg: &Path, log: &Path, cpu: &str) -> Result<Process, String> {
    Envoy::new(cfg)
        .binary(envoy)
        .concurrency(1)
        .pinned(cpu)
        .log(log)
        .spawn()
}

pub fn wait_ready(admin: u16) -> bool {
    testkit::ready::wait_until(Duration::from_secs(30), Duration::from_millis(5), || {
        testkit::ready::envoy_ready(admin)
    })
}

/// Start of a bootstrap: the admin listener, then the static listeners follow.
pub fn bootstrap_head(admin: u16) -> String {
    format!("admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}\nstatic_resources:\n  listeners:\n")
}

/// The proxied route every variant shares: `/github/...` to the upstream, prefix stripped.
const GITHUB_ROUTE: &str = r#"              - match: { prefix: "/github/" }
                route: { cluster: upstream, prefix_rewrite: "/" }"#;

pub fn listener(name: &str, port: u16, filters: &str) -> String {
    listener_with_route(name, port, GITHUB_ROUTE, filters)
}

/// A listener whose HTTP connection manager has one `route` entry and the given filters.
pub fn listener_with_route(name: &str, port: u16, route: &str, filters: &str) -> String {
    format!(
        r#"  - name: {name}
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          generate_request_id: false
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{route}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: false
"#
    )
}

pub fn wasm_filter(wasm: &Path, plugin: &Value, vm_id: &str) -> String {
    let config = plugin.to_string().replace('\'', "''");
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: token-vault-proxy
                root_id: token-vault-proxy
                fail_open: false
                vm_config:
                  vm_id: {vm_id}
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{}" }} }}
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{config}'
"#,
        wasm.display()
    )
}

/// The dynamic module (`make native`) with the same plugin configuration. `name` is the
/// filter's name, which names its configuration generation in the process-wide store: two
/// configurations in one Envoy need two names.
pub fn native_filter(module: &Path, plugin: &Value, name: &str) -> String {
    let config = plugin.to_string().replace('\'', "''");
    format!(
        r#"          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config:
                name: tvp_native
                module: {{ local: {{ filename: "{}" }} }}
                do_not_close: true
                metrics_namespace: wasmcustom
              filter_name: {name}
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '{config}'
"#,
        module.display()
    )
}

pub fn trivial_filter(wasm: &Path) -> String {
    format!(
        r#"          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: trivial
                vm_config:
                  vm_id: trivial
                  runtime: envoy.wasm.runtime.v8
                  code: {{ local: {{ filename: "{}" }} }}
"#,
        wasm.display()
    )
}

pub fn jwt_filter(issuer: &str, audience: &str, jwks: &str, cache: bool) -> String {
    let cache = if cache {
        "\n                  jwt_cache_config: { jwt_cache_size: 100 }"
    } else {
        ""
    };
    format!(
        r#"          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                sim:
                  issuer: "{issuer}"
                  audiences: ["{audience}"]
                  forward: false
                  local_jwks: {{ inline_string: '{jwks}' }}{cache}
              rules:
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: sim }}
"#
    )
}

pub fn cluster(name: &str, port: u16) -> String {
    format!(
        r#"  - name: {name}
    type: STATIC
    connect_timeout: 1s
    circuit_breakers: {{ thresholds: [{{ max_connections: 100000, max_pending_requests: 100000, max_requests: 100000 }}] }}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    )
}

/// A route answering every request 200 itself (Envoy's `direct_response`): an upstream that
/// costs the same whatever runs in front of it.
pub const ANSWER_200: &str = r#"              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "ok" } }"#;

pub fn upstream_yaml(port: u16, admin: u16) -> String {
    bootstrap_head(admin) + &listener_with_route("upstream", port, ANSWER_200, "")
}

pub fn startup_yaml(port: u16, admin: u16, filter: Option<(&Path, &Value)>) -> String {
    let filters = filter
        .map(|(m, p)| match m.extension().and_then(|e| e.to_str()) {
            Some("so") => native_filter(m, p, "tvp-startup"),
            _ => wasm_filter(m, p, "tvp-startup"),
        })
        .unwrap_or_default();
    let mut y = bootstrap_head(admin);
    y.push_str(&listener("startup", port, &filters));
    y.push_str("  clusters:\n");
    y.push_str(&cluster("upstream", 1));
    y.push_str(&cluster("sim_control", 1));
    y
}
