//! `make bench`: side-by-side throughput and latency in one Envoy, as ratios to plain Envoy.
//!
//! One Envoy under test (pinned to CPU 1, one worker) carries a listener per variant, all
//! routing to the same upstream (a second Envoy answering with `direct_response`, on CPU 0 with
//! wrk): plain routing, a trivial wasm filter, native `jwt_authn` with and without its JWT
//! cache, and our filter warm, with a new token on every request, and with 10k users (plus
//! module B's warm and new-token listeners with `BENCH_MODULE_B`). Variants run in alternating
//! rounds and medians are reported. Then the forged-token flood scenario (`flood.rs`) and the
//! cold-users-over-two-workers scenario (`workers.rs`) run, each in an Envoy of its own. This
//! is a benchmark, not a test: it asserts nothing about speed or call counts.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use bench::measure::{cpu_ticks, perf_split, startup_cost};
use bench::*;

use serde_json::json;
use sim::{Endpoint, Mint};

const SECRET: &str = "bench-secret";

const USAGE: &str = "make bench, or: cargo run -q --release -p bench --bin bench

Runs in one Envoy, side by side: plain Envoy, a trivial wasm filter, native jwt_authn and this
filter; then the forged-token flood scenario; then cold users over two workers (vault calls
per user, wasm and the native module). Needs the release module, the trivial filter
(cargo build --release --target wasm32-wasip1 -p trivial-filter), wrk and Envoy (ENVOY_BIN or
.tools/envoy); the native module too when built (make native). Set by environment:

  BENCH_ONLY=side-by-side | flood | workers   run one scenario only (default: all three)
  BENCH_SECONDS=8                   length of each measured run
  BENCH_ROUNDS=3                    alternating rounds (medians are reported)
  BENCH_USERS=10000                 users of the cycling variant (side by side)
  BENCH_MODULE_B=other.wasm         add that build's warm and new-token variants (side by side)
  BENCH_PERF=1                      add a perf pass per variant (side by side; needs perf)
  BENCH_JUNK_RATE=2000              junk-signature tokens per second (flood)
  BENCH_WORKERS_USERS=300           cold users per host (workers)
  BENCH_WORKERS_REQUESTS=8          requests each user sends at once, one connection each (workers)
  BENCH_WORKERS_PARALLEL=8          users sending at the same time (workers)

Results are printed and written to target/bench/results.md, target/bench-flood/results.md and
target/bench-workers/results.md.";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        // The flood scenario's junk generator, run as its own process on CPU 0.
        Some("junk") => bench::flood::junk_main(&args[1..]),
        Some(other) => Err(format!("unknown argument '{other}'\n\n{USAGE}")),
        None => run(),
    };
    if let Err(e) = result {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run() -> Result<(), String> {
    let seconds: u64 = env_or("BENCH_SECONDS", 8);
    let rounds: usize = env_or("BENCH_ROUNDS", 3);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    match only.as_str() {
        "" | "side-by-side" | "flood" | "workers" => {}
        other => {
            return Err(format!(
                "BENCH_ONLY={other}: side-by-side, flood or workers\n\n{USAGE}"
            ))
        }
    }
    let runs = |scenario: &str| only.is_empty() || only == scenario;
    if runs("side-by-side") {
        side_by_side(seconds, rounds)?;
    }
    if runs("flood") {
        let rate: u64 = env_or("BENCH_JUNK_RATE", 2000);
        println!("{}", bench::flood::scenario(seconds, rounds, rate, SECRET)?);
    }
    if runs("workers") {
        let opts = bench::workers::Options {
            users: env_or("BENCH_WORKERS_USERS", 300),
            requests: env_or("BENCH_WORKERS_REQUESTS", 8),
            parallel: env_or("BENCH_WORKERS_PARALLEL", 8),
        };
        println!("{}", bench::workers::scenario(&opts, SECRET)?);
    }
    Ok(())
}

fn side_by_side(seconds: u64, rounds: usize) -> Result<(), String> {
    let users: usize = env_or("BENCH_USERS", 10_000);
    let Paths { envoy, wasm, dir } = Paths::new("bench")?;
    // A second build of the module, measured side by side with the first (an optimisation's
    // A/B in one run): BENCH_MODULE_B=/path/to/other.wasm.
    let module_b = std::env::var("BENCH_MODULE_B")
        .ok()
        .filter(|p| !p.is_empty())
        .map(std::path::PathBuf::from);
    // The sim plays the issuer and the vault; the echo backend is not used (the upstream is an
    // Envoy direct_response, so the backend costs the same in every variant).
    let (sim_port, backend_port) = (free_port(), free_port());
    let (mut plugin, sim) = example_stack(sim_port, backend_port, SECRET)?;
    plugin["settings"]["verified_token_cache_size"] = json!(users * 2);
    // Every variant's rounds together outlast the default 5-minute cap on a cached downstream
    // token: measured rounds would then include re-exchanges.
    plugin["settings"]["downstream_cache_max_seconds"] = json!(3600);
    let issuer = plugin["tenants"][0]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    eprintln!("bench: minting tokens ({users} users, {users} one-use tokens)...");
    let warm = vec![sim.mint(&Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        ..Mint::default()
    })?];
    let audience = first_audience(&plugin);
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
    // The dynamic module, when built (`make native`): the same core, native.
    let native = Some(testkit::native_path()).filter(|p| p.exists());
    let native_ports = (free_port(), free_port());
    let yaml = match &native {
        Some(m) => yaml.replace(
            "  clusters:\n",
            &(listener(
                "native",
                native_ports.0,
                &native_filter(m, &plugin, "tvp-native"),
            ) + &listener(
                "native_cold",
                native_ports.1,
                &native_filter(m, &cold_plugin, "tvp-native-cold"),
            ) + "  clusters:\n"),
        ),
        None => yaml,
    };
    let b_ports = (free_port(), free_port());
    let yaml = match &module_b {
        Some(b) => yaml.replace(
            "  clusters:\n",
            &(listener("ours_b", b_ports.0, &wasm_filter(b, &plugin, "tvp-b"))
                + &listener(
                    "ours_b_cold",
                    b_ports.1,
                    &wasm_filter(b, &cold_plugin, "tvp-b-cold"),
                )
                + "  clusters:\n"),
        ),
        None => yaml,
    };
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

    let mut variants = vec![
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
    let many_users_index = variants.len() - 1;
    let mut native_many_index = None;
    if native.is_some() {
        variants.push(Variant {
            name: "native module warm (same user, cached)",
            port: native_ports.0,
            tokens: Some(warm_file.clone()),
        });
        variants.push(Variant {
            name: "native module new token each request",
            port: native_ports.1,
            tokens: Some(fresh_file.clone()),
        });
        variants.push(Variant {
            name: "native module 10k users cycling",
            port: native_ports.0,
            tokens: Some(many_file.clone()),
        });
        native_many_index = Some(variants.len() - 1);
    }
    if module_b.is_some() {
        variants.push(Variant {
            name: "module B warm (same user, cached)",
            port: b_ports.0,
            tokens: Some(warm_file.clone()),
        });
        variants.push(Variant {
            name: "module B new token each request",
            port: b_ports.1,
            tokens: Some(fresh_file.clone()),
        });
    }

    // Warm every path once: keys fetched, every user's downstream token exchanged, V8 tiered up.
    eprintln!("bench: warming up...");
    for v in &variants {
        wrk(&script, v, 3)?;
    }
    // Every one of the many users must have been exchanged once before measuring (by each
    // host: the wasm VM's shared data and the module's store are apart).
    let mut expected = users as u64 + 1;
    for index in std::iter::once(many_users_index).chain(native_many_index) {
        let many_users = &variants[index];
        let deadline = Instant::now() + Duration::from_secs(120);
        while sim.count(Endpoint::Vault) < expected && Instant::now() < deadline {
            wrk(&script, many_users, 2)?;
        }
        expected += users as u64 + 1;
    }
    let vault_after_warmup = sim.count(Endpoint::Vault);
    let jwks_after_warmup = sim.count(Endpoint::Jwks);

    let mut samples: Vec<Vec<Sample>> = variants.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (i, v) in variants.iter().enumerate() {
            eprintln!("bench: round {}/{rounds}: {}", round + 1, v.name);
            let cpu_before = cpu_ticks(under_test.id());
            let mut sample = wrk(&script, v, seconds)?;
            let ticks = cpu_ticks(under_test.id()).saturating_sub(cpu_before);
            // Clock ticks are 10 ms: CPU time of the Envoy under test per completed request.
            sample.cpu_us = ticks as f64 * 10_000.0 / (sample.rps * seconds as f64).max(1.0);
            samples[i].push(sample);
        }
    }
    // Opt-in (BENCH_PERF=1, needs `perf`): one more pass per variant under `perf record`
    // (cpu-clock samples; this machine has no hardware counters), outside the timed rounds.
    let profiles: Vec<String> = if std::env::var("BENCH_PERF").is_ok_and(|v| v == "1") {
        variants
            .iter()
            .enumerate()
            .map(|(i, v)| {
                eprintln!("bench: perf: {}", v.name);
                perf_split(
                    &script,
                    v,
                    under_test.id(),
                    &dir.join(format!("perf-{i}.data")),
                )
                .unwrap_or_else(|e| format!("perf failed: {e}"))
            })
            .collect()
    } else {
        Vec::new()
    };
    let vault_total = sim.count(Endpoint::Vault);
    let jwks_total = sim.count(Endpoint::Jwks);
    let mut modules = vec![
        ("the trivial wasm filter", trivial.clone()),
        ("this filter and 50 tenants", wasm.clone()),
    ];
    if let Some(b) = &module_b {
        modules.push(("module B and 50 tenants", b.clone()));
    }
    if let Some(m) = &native {
        modules.push(("the native module and 50 tenants", m.clone()));
    }
    let startup = startup_cost(&envoy, &modules, &plugin, &dir);
    cleanup(&mut under_test, &mut upstream);

    let out = report(&Report {
        variants: &variants,
        samples: &samples,
        rounds,
        seconds,
        wasm: &wasm,
        module_b: module_b.as_deref(),
        users,
        hosts: if native.is_some() { 2 } else { 1 },
        vault: (vault_after_warmup, vault_total),
        jwks: (jwks_after_warmup, jwks_total),
        modules: &modules,
        startup,
        profiles: &profiles,
    });
    println!("{out}");
    std::fs::write(dir.join("results.md"), &out).map_err(|e| e.to_string())?;
    Ok(())
}

/// Everything one run measured, for the results table.
struct Report<'a> {
    variants: &'a [Variant],
    samples: &'a [Vec<Sample>],
    rounds: usize,
    seconds: u64,
    wasm: &'a Path,
    module_b: Option<&'a Path>,
    users: usize,
    /// Builds measured side by side (wasm, and the native module when built).
    hosts: u64,
    /// Vault calls after warm-up and at the end.
    vault: (u64, u64),
    /// JWKS fetches after warm-up and at the end.
    jwks: (u64, u64),
    modules: &'a [(&'a str, PathBuf)],
    startup: Option<(f64, Vec<f64>)>,
    profiles: &'a [String],
}

/// The results as Markdown: medians per variant as ratios to plain Envoy (the first variant),
/// module sizes, call counts, start-up and the optional perf split.
/// The native module's targets (issue "Native speed"), as ratios of this run's medians.
fn targets(
    variants: &[Variant],
    rows: &[(f64, f64, f64, u64, f64)],
    startup: Option<&(f64, Vec<f64>)>,
    modules: &[(&str, std::path::PathBuf)],
) -> String {
    let rps = |name: &str| {
        variants
            .iter()
            .position(|v| v.name == name)
            .map(|i| rows[i].0.max(1.0))
    };
    let Some(native_warm) = rps("native module warm (same user, cached)") else {
        return String::new();
    };
    let mut out = String::from("\n| target | ratio | goal |\n|---|---:|---:|\n");
    let mut line = |what: &str, ratio: Option<f64>, goal: &str| {
        if let Some(r) = ratio {
            out.push_str(&format!("| {what} | {r:.2} | {goal} |\n"));
        }
    };
    line(
        "native warm / jwt_authn with cache",
        rps("native jwt_authn, JWT cache").map(|j| native_warm / j),
        "≥ 1.00",
    );
    line(
        "native new token / jwt_authn without cache",
        rps("native module new token each request")
            .zip(rps("native jwt_authn, no cache, new token each request"))
            .map(|(n, j)| n / j),
        "≥ 1.15",
    );
    line(
        "native 10k users / native warm",
        rps("native module 10k users cycling").map(|m| m / native_warm),
        "≥ 0.95",
    );
    line(
        "wasm warm / native warm",
        rps("token-vault-proxy warm (same user, cached)").map(|w| w / native_warm),
        "(for reference)",
    );
    if let Some((plain, with_modules)) = startup {
        let native = modules
            .iter()
            .position(|(label, _)| label.starts_with("the native module"))
            .and_then(|i| with_modules.get(i));
        if let Some(ms) = native {
            out.push_str(&format!(
                "| native start-up with 50 tenants over plain Envoy | {:+.0} ms | < 50 ms |\n",
                ms - plain
            ));
        }
    }
    out
}

fn report(r: &Report) -> String {
    let Report {
        variants,
        samples,
        rounds,
        seconds,
        wasm,
        module_b,
        users,
        hosts,
        vault: (vault_after_warmup, vault_total),
        jwks: (jwks_after_warmup, jwks_total),
        modules,
        ref startup,
        profiles,
    } = *r;
    let median = |xs: Vec<f64>| {
        let mut xs = xs;
        xs.sort_by(|a, b| a.total_cmp(b));
        xs[xs.len() / 2]
    };
    let rows: Vec<(f64, f64, f64, u64, f64)> = samples
        .iter()
        .map(|s| {
            (
                median(s.iter().map(|x| x.rps).collect()),
                median(s.iter().map(|x| x.p50_ms).collect()),
                median(s.iter().map(|x| x.p99_ms).collect()),
                s.iter().map(|x| x.non_2xx).sum(),
                median(s.iter().map(|x| x.cpu_us).collect()),
            )
        })
        .collect();
    let base_cpu = rows[0].4;
    let base = rows[0].0.max(1.0);
    let mut out = String::new();
    out.push_str(&format!(
        "Envoy 1.40, 1 worker pinned to CPU 1; wrk -t1 -c8 on CPU 0; {rounds} rounds x {seconds} s, medians\n\n"
    ));
    out.push_str("| variant | requests/s | vs plain | p50 ms | p99 ms | Envoy CPU µs/request | added µs | non-2xx |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (v, (rps, p50, p99, bad, cpu)) in variants.iter().zip(&rows) {
        out.push_str(&format!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.1} | {:+.1} | {} |\n",
            v.name,
            rps,
            rps / base,
            p50,
            p99,
            cpu,
            cpu - base_cpu,
            bad
        ));
    }
    let size = std::fs::metadata(wasm).map(|m| m.len()).unwrap_or(0);
    out.push_str(&format!(
        "\nwasm module: {} KB ({} bytes)\n",
        size / 1024,
        size
    ));
    if let Some(b) = module_b {
        let size_b = std::fs::metadata(b).map(|m| m.len()).unwrap_or(0);
        out.push_str(&format!(
            "module B: {} ({} KB, {} bytes)\n",
            b.display(),
            size_b / 1024,
            size_b
        ));
    }
    let per_user = vault_after_warmup as f64 / ((users + 1) as u64 * hosts) as f64;
    out.push_str(&format!(
        "vault calls: {vault_after_warmup} during warm-up for {} distinct users on {hosts} host(s) ({per_user:.2} per user and host), {} during the measured rounds\n",
        users + 1,
        vault_total - vault_after_warmup
    ));
    out.push_str(&targets(variants, &rows, startup.as_ref(), modules));
    out.push_str(&format!(
        "JWKS fetches: {jwks_after_warmup} at start (2 tenants x listeners with the filter), {} during the measured rounds\n",
        jwks_total - jwks_after_warmup
    ));
    if let Some((plain_ms, with_modules)) = startup {
        let plain_ms = *plain_ms;
        out.push_str(&format!(
            "start-up to ready (median of 3): plain Envoy {plain_ms:.0} ms"
        ));
        for ((label, module), ms) in modules.iter().zip(with_modules) {
            let kb = std::fs::metadata(module)
                .map(|m| m.len() / 1024)
                .unwrap_or(0);
            out.push_str(&format!(
                "; {label} ({kb} KB) {ms:.0} ms (+{:.0} ms)",
                ms - plain_ms
            ));
        }
        out.push('\n');
    }
    if !profiles.is_empty() {
        out.push_str(
            "\nWhere the Envoy under test spends its CPU (perf cpu-clock samples by object; V8's wasm code is the JIT):\n\n| variant | split |\n|---|---|\n",
        );
        for (v, split) in variants.iter().zip(profiles) {
            out.push_str(&format!("| {} | {split} |\n", v.name));
        }
    }
    out
}
