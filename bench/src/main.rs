//! `make bench`: side-by-side throughput and latency in one Envoy, as ratios to plain Envoy.
//!
//! One Envoy under test (pinned to CPU 1, one worker) carries six listeners that all route to
//! the same upstream (a second Envoy answering with `direct_response`, on CPU 0 with wrk):
//! plain routing, native `jwt_authn` with and without its JWT cache, and our filter warm, with
//! a new token on every request, and with 10k users. Variants run in alternating rounds and
//! medians are reported. This is a benchmark, not a test: it asserts nothing about speed.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sim::{Endpoint, Mint, Sim, SimTenant};

const SECRET: &str = "bench-secret";

struct Variant {
    name: &'static str,
    port: u16,
    /// File of tokens to cycle through (one per line); `None` sends no Authorization.
    tokens: Option<PathBuf>,
}

struct Sample {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn run() -> Result<(), String> {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let users: usize = std::env::var("BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let envoy = std::env::var("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".tools/envoy"));
    let wasm = root().join("target/wasm32-wasip1/release/token_vault_proxy.wasm");
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;

    // The sim plays the issuer and the vault; the echo backend is not used (the upstream is an
    // Envoy direct_response, so the backend costs the same in every variant).
    let (sim_port, backend_port) = (free_port(), free_port());
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
    plugin["tenants"][0]["vault"] = json!({
        "type": "auth0", "cluster": "sim_control", "domain": format!("127.0.0.1:{sim_port}"),
        "client_id": "github-custom-api-client", "client_secret": SECRET, "connection": "github"
    });
    plugin["settings"]["verified_token_cache_size"] = json!(users * 2);
    let mut sim_doc = plugin.clone();
    sim_doc["tenants"][1]["vault"]["client_secret"] = json!("google-demo-secret");
    let tenants = SimTenant::from_filter_config(&sim_doc)?;
    let sim = Sim::start(tenants, sim_port, backend_port).map_err(|e| e.to_string())?;
    let issuer = plugin["tenants"][0]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let audience = plugin["tenants"][0]["audience"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    eprintln!("bench: minting tokens ({users} users, {users} one-use tokens)...");
    let warm = vec![sim.mint(&Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        ..Mint::default()
    })?];
    let mut fresh = Vec::with_capacity(users);
    let mut many = Vec::with_capacity(users);
    for i in 0..users {
        fresh.push(sim.mint(&Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            claims: Some(json!({"jti": i.to_string()})),
            ..Mint::default()
        })?);
        let sub = format!("user-{i}");
        sim.connect(&sub, "github");
        many.push(sim.mint(&Mint {
            tenant: "github".into(),
            sub,
            ..Mint::default()
        })?);
    }
    let warm_file = write_lines(&dir.join("warm.txt"), &warm)?;
    let fresh_file = write_lines(&dir.join("fresh.txt"), &fresh)?;
    let many_file = write_lines(&dir.join("many.txt"), &many)?;
    let script = dir.join("tokens.lua");
    std::fs::write(&script, LUA).map_err(|e| e.to_string())?;

    // Upstream: a second Envoy answering 200 itself.
    let upstream_port = free_port();
    let upstream_cfg = dir.join("upstream.yaml");
    std::fs::write(&upstream_cfg, upstream_yaml(upstream_port, free_port()))
        .map_err(|e| e.to_string())?;
    let mut upstream = spawn(&envoy, &upstream_cfg, &dir.join("upstream.log"), "0")?;

    let p: Vec<u16> = (0..6).map(|_| free_port()).collect();
    let trivial = root().join("target/wasm32-wasip1/release/trivial_filter.wasm");
    let admin = free_port();
    let jwks = sim.jwks("github").to_string();
    let mut cold_plugin = plugin.clone();
    cold_plugin["settings"]["verified_token_cache_size"] = json!(0);
    let ports = BenchPorts {
        plain: p[0],
        trivial: p[5],
        jwt_cached: p[1],
        jwt_uncached: p[2],
        ours: p[3],
        ours_cold: p[4],
        admin,
        upstream: upstream_port,
        sim: sim_port,
    };
    let yaml = bench_yaml(
        &ports,
        &wasm,
        &plugin,
        &cold_plugin,
        &issuer,
        &audience,
        &jwks,
    )
    .replace(
        "  clusters:\n",
        &(listener("trivial", ports.trivial, &trivial_filter(&trivial)) + "  clusters:\n"),
    );
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
    let mut under_test = spawn(&envoy, &cfg, &dir.join("envoy.log"), "1")?;
    let cleanup = |a: &mut Child, b: &mut Child| {
        let _ = a.kill();
        let _ = b.kill();
        let _ = a.wait();
        let _ = b.wait();
    };
    if !wait_ready(admin) {
        cleanup(&mut under_test, &mut upstream);
        return Err(format!(
            "Envoy under test did not start; see {}",
            dir.join("envoy.log").display()
        ));
    }

    let variants = [
        Variant {
            name: "plain Envoy (no auth)",
            port: p[0],
            tokens: None,
        },
        Variant {
            name: "trivial wasm filter (reads a header, sets a header)",
            port: p[5],
            tokens: Some(warm_file.clone()),
        },
        Variant {
            name: "native jwt_authn, JWT cache",
            port: p[1],
            tokens: Some(warm_file.clone()),
        },
        Variant {
            name: "native jwt_authn, no cache, new token each request",
            port: p[2],
            tokens: Some(fresh_file.clone()),
        },
        Variant {
            name: "token-vault-proxy warm (same user, cached)",
            port: p[3],
            tokens: Some(warm_file.clone()),
        },
        Variant {
            name: "token-vault-proxy new token each request",
            port: p[4],
            tokens: Some(fresh_file.clone()),
        },
        Variant {
            name: "token-vault-proxy 10k users cycling",
            port: p[3],
            tokens: Some(many_file.clone()),
        },
    ];

    // Warm every path once: keys fetched, every user's downstream token exchanged, V8 tiered up.
    eprintln!("bench: warming up...");
    for v in &variants {
        wrk(&script, v, 3)?;
    }
    // Every one of the many users must have been exchanged once before measuring.
    let many_users = variants.last().ok_or("no variants")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sim.count(Endpoint::Vault) < users as u64 + 1 && Instant::now() < deadline {
        wrk(&script, many_users, 2)?;
    }
    let vault_after_warmup = sim.count(Endpoint::Vault);
    let jwks_after_warmup = sim.count(Endpoint::Jwks);

    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            eprintln!("bench: round {}/{rounds}: {}", round + 1, v.name);
            samples[i].push(wrk(&script, v, seconds)?);
        }
    }
    let vault_total = sim.count(Endpoint::Vault);
    let jwks_total = sim.count(Endpoint::Jwks);
    let startup = startup_cost(&envoy, &wasm, &plugin, &dir);
    cleanup(&mut under_test, &mut upstream);

    let median = |xs: Vec<f64>| {
        let mut xs = xs;
        xs.sort_by(|a, b| a.total_cmp(b));
        xs[xs.len() / 2]
    };
    let rows: Vec<(f64, f64, f64, u64)> = samples
        .iter()
        .map(|s| {
            (
                median(s.iter().map(|x| x.rps).collect()),
                median(s.iter().map(|x| x.p50_ms).collect()),
                median(s.iter().map(|x| x.p99_ms).collect()),
                s.iter().map(|x| x.non_2xx).sum(),
            )
        })
        .collect();
    let base = rows[0].0.max(1.0);
    let mut out = String::new();
    out.push_str(&format!(
        "Envoy 1.40, 1 worker pinned to CPU 1; wrk -t1 -c8 on CPU 0; {rounds} rounds x {seconds} s, medians\n\n"
    ));
    out.push_str("| variant | requests/s | vs plain | p50 ms | p99 ms | non-2xx |\n|---|---:|---:|---:|---:|---:|\n");
    for (v, (rps, p50, p99, bad)) in variants.iter().zip(&rows) {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |\n",
            v.name,
            rps,
            rps / base,
            p50,
            p99,
            bad
        ));
    }
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    out.push_str(&format!(
        "\nwasm module: {} KB ({} bytes)\n",
        size / 1024,
        size
    ));
    out.push_str(&format!(
        "vault calls: {vault_after_warmup} during warm-up for {} distinct users ({:.2} per user), {} during the measured rounds\n",
        users + 1,
        vault_after_warmup as f64 / (users + 1) as f64,
        vault_total - vault_after_warmup
    ));
    out.push_str(&format!(
        "JWKS fetches: {jwks_after_warmup} at start (2 tenants x listeners with the filter), {} during the measured rounds\n",
        jwks_total - jwks_after_warmup
    ));
    if let Some((plain_ms, ours_ms)) = startup {
        out.push_str(&format!(
            "start-up to ready: plain Envoy {plain_ms:.0} ms, with the filter and 50 tenants {ours_ms:.0} ms (+{:.0} ms for VM start and configure)\n",
            ours_ms - plain_ms
        ));
    }
    println!("{out}");
    std::fs::write(dir.join("results.md"), &out).map_err(|e| e.to_string())?;
    Ok(())
}

fn write_lines(path: &Path, lines: &[String]) -> Result<PathBuf, String> {
    std::fs::write(path, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    Ok(path.to_path_buf())
}

const LUA: &str = r#"
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

fn wrk(script: &Path, v: &Variant, seconds: u64) -> Result<Sample, String> {
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
    })
}

fn spawn(envoy: &Path, cfg: &Path, log: &Path, cpu: &str) -> Result<Child, String> {
    let log = std::fs::File::create(log).map_err(|e| e.to_string())?;
    Command::new("taskset")
        .args(["-c", cpu])
        .arg(envoy)
        .args([
            "-c",
            &cfg.display().to_string(),
            "--concurrency",
            "1",
            "--disable-hot-restart",
            "-l",
            "warning",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start Envoy: {e}"))
}

fn wait_ready(admin: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) {
            let _ = s.write_all(b"GET /ready HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
            let mut buf = [0u8; 64];
            if std::io::Read::read(&mut s, &mut buf)
                .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 200"))
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Median time from exec to ready, plain Envoy and Envoy with the filter and 50 tenants.
fn startup_cost(envoy: &Path, wasm: &Path, plugin: &Value, dir: &Path) -> Option<(f64, f64)> {
    let mut fifty = plugin.clone();
    let template = fifty["tenants"][0].clone();
    fifty["tenants"] = Value::Array(
        (0..50)
            .map(|i| {
                let mut t = template.clone();
                t["id"] = json!(format!("tenant-{i}"));
                t
            })
            .collect(),
    );
    let measure = |with_filter: bool| -> Option<f64> {
        let mut times = Vec::new();
        for _ in 0..3 {
            let admin = free_port();
            let cfg = dir.join("startup.yaml");
            let yaml = startup_yaml(free_port(), admin, with_filter.then_some((wasm, &fifty)));
            std::fs::write(&cfg, yaml).ok()?;
            let started = Instant::now();
            let mut child = spawn(envoy, &cfg, &dir.join("startup.log"), "1").ok()?;
            let ok = wait_ready(admin);
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            let _ = child.kill();
            let _ = child.wait();
            if ok {
                times.push(elapsed);
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        times.get(times.len() / 2).copied()
    };
    Some((measure(false)?, measure(true)?))
}

struct BenchPorts {
    plain: u16,
    trivial: u16,
    jwt_cached: u16,
    jwt_uncached: u16,
    ours: u16,
    ours_cold: u16,
    admin: u16,
    upstream: u16,
    sim: u16,
}

fn listener(name: &str, port: u16, filters: &str) -> String {
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
              - match: {{ prefix: "/github/" }}
                route: {{ cluster: upstream, prefix_rewrite: "/" }}
          http_filters:
{filters}          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              dynamic_stats: false
"#
    )
}

fn wasm_filter(wasm: &Path, plugin: &Value, vm_id: &str) -> String {
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

fn trivial_filter(wasm: &Path) -> String {
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

fn jwt_filter(issuer: &str, audience: &str, jwks: &str, cache: bool) -> String {
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

fn cluster(name: &str, port: u16) -> String {
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

#[allow(clippy::too_many_arguments)]
fn bench_yaml(
    p: &BenchPorts,
    wasm: &Path,
    plugin: &Value,
    cold_plugin: &Value,
    issuer: &str,
    audience: &str,
    jwks: &str,
) -> String {
    let mut y = format!("admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {} }} }}\nstats_config: {{ stats_matcher: {{ reject_all: true }} }}\nstatic_resources:\n  listeners:\n", p.admin);
    y.push_str(&listener("plain", p.plain, ""));
    y.push_str(&listener(
        "jwt_cached",
        p.jwt_cached,
        &jwt_filter(issuer, audience, jwks, true),
    ));
    y.push_str(&listener(
        "jwt_uncached",
        p.jwt_uncached,
        &jwt_filter(issuer, audience, jwks, false),
    ));
    y.push_str(&listener("ours", p.ours, &wasm_filter(wasm, plugin, "tvp")));
    y.push_str(&listener(
        "ours_cold",
        p.ours_cold,
        &wasm_filter(wasm, cold_plugin, "tvp-cold"),
    ));
    y.push_str("  clusters:\n");
    y.push_str(&cluster("upstream", p.upstream));
    y.push_str(&cluster("sim_control", p.sim));
    y
}

fn upstream_yaml(port: u16, admin: u16) -> String {
    format!(
        r#"admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
  - name: upstream
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream
          generate_request_id: false
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                direct_response: {{ status: 200, body: {{ inline_string: "ok" }} }}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#
    )
}

fn startup_yaml(port: u16, admin: u16, filter: Option<(&Path, &Value)>) -> String {
    let filters = filter
        .map(|(w, p)| wasm_filter(w, p, "tvp-startup"))
        .unwrap_or_default();
    let mut y = format!("admin:\n  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}\nstatic_resources:\n  listeners:\n");
    y.push_str(&listener("startup", port, &filters));
    y.push_str("  clusters:\n");
    y.push_str(&cluster("upstream", 1));
    y.push_str(&cluster("sim_control", 1));
    y
}
