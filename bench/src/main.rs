//! `make bench`: side-by-side throughput and latency in one Envoy, as ratios to plain Envoy.
//!
//! One Envoy under test (pinned to CPU 1, one worker) carries a listener per variant, all
//! routing to the same upstream (a second Envoy answering with `direct_response`, on CPU 0 with
//! wrk): plain routing, a trivial wasm filter, native `jwt_authn` with and without its JWT
//! cache, and our filter warm, with a new token on every request, and with 10k users (plus
//! module B's warm and new-token listeners with `BENCH_MODULE_B`, and native module B's with
//! `BENCH_NATIVE_B`; `BENCH_VARIANTS` keeps some). Variants run in alternating rounds and
//! medians are reported. Then the forged-token flood scenario (`flood.rs`) and the
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
  BENCH_NATIVE_B=other.so           add that build of the native module's warm and new-token
                                    variants, loaded next to target/native/libtvp_native.so
                                    (side by side; a copy, not the same file)
  BENCH_VARIANTS=a,b,...            run only these variants (side by side; plain Envoy always
                                    runs, as the anchor; start-up is then not measured): plain,
                                    trivial, jwt_authn, jwt_authn_nocache, wasm_warm, wasm_new,
                                    wasm_many, native_warm, native_new, native_many, b_warm,
                                    b_new, native_b_warm, native_b_new (default: all)
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

/// Every key `BENCH_VARIANTS` accepts, in the order the variants run.
const VARIANT_KEYS: [&str; 14] = [
    "plain",
    "trivial",
    "jwt_authn",
    "jwt_authn_nocache",
    "wasm_warm",
    "wasm_new",
    "wasm_many",
    "native_warm",
    "native_new",
    "native_many",
    "b_warm",
    "b_new",
    "native_b_warm",
    "native_b_new",
];

/// `BENCH_VARIANTS`: the keys to run (plain Envoy always, as the ratios' anchor), or `None`
/// for all of them.
fn selected_variants() -> Result<Option<Vec<String>>, String> {
    let Some(list) = std::env::var("BENCH_VARIANTS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    let mut keys = vec!["plain".to_string()];
    for key in list.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        if !VARIANT_KEYS.contains(&key) {
            return Err(format!(
                "BENCH_VARIANTS: unknown variant '{key}' (one of {})",
                VARIANT_KEYS.join(",")
            ));
        }
        if !keys.iter().any(|k| k == key) {
            keys.push(key.to_string());
        }
    }
    Ok(Some(keys))
}

/// `BENCH_MODULE_B` / `BENCH_NATIVE_B`: a second build's file, absolute (Envoy may resolve a
/// relative one elsewhere).
fn module_b_path(var: &str) -> Result<Option<PathBuf>, String> {
    match std::env::var(var).ok().filter(|p| !p.is_empty()) {
        Some(p) => std::fs::canonicalize(&p)
            .map(Some)
            .map_err(|e| format!("{var}={p}: {e}")),
        None => Ok(None),
    }
}

/// Whether two paths are one file (one inode): dlopen would load it once, with one set of
/// statics, so "module B" would share module A's store.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// What a variant's wrk sends.
#[derive(Clone, Copy, PartialEq)]
enum Tokens {
    /// No Authorization header.
    None,
    /// One token of alice, over and over.
    Warm,
    /// A new token of alice on every request.
    Fresh,
    /// One token per user of `BENCH_USERS`, cycling.
    Many,
}

/// One side-by-side variant before Envoy starts.
struct Planned {
    /// Its `BENCH_VARIANTS` key.
    key: &'static str,
    name: &'static str,
    /// Index of its listener (the warm and the cycling variants share one).
    listener: usize,
    tokens: Tokens,
    /// Where its users' downstream tokens are kept, each exchanged once there: a wasm VM's
    /// shared data (per vm_id) or a dynamic module's process-wide store (per loaded .so, which
    /// both of its configurations share). `None`: no vault.
    store: Option<&'static str>,
}

/// A listener of the Envoy under test.
struct ListenerSpec {
    name: &'static str,
    port: u16,
    filters: String,
}

fn add_listener(listeners: &mut Vec<ListenerSpec>, name: &'static str, filters: String) -> usize {
    listeners.push(ListenerSpec {
        name,
        port: free_port(),
        filters,
    });
    listeners.len() - 1
}

/// The vault calls warm-up should make: per store, one per distinct user its variants send
/// (alice, and the cycling users). Returns (distinct users, stores, user-store pairs).
fn expected_exchanges(plan: &[Planned], users: usize) -> Exchanges {
    let mut stores: Vec<(&str, bool, bool)> = Vec::new();
    for p in plan {
        let Some(store) = p.store else { continue };
        let i = match stores.iter().position(|(s, _, _)| *s == store) {
            Some(i) => i,
            None => {
                stores.push((store, false, false));
                stores.len() - 1
            }
        };
        match p.tokens {
            Tokens::Many => stores[i].2 = true,
            Tokens::Warm | Tokens::Fresh => stores[i].1 = true,
            Tokens::None => {}
        }
    }
    let alice = stores.iter().any(|s| s.1);
    let many = stores.iter().any(|s| s.2);
    let distinct = usize::from(alice) + if many { users } else { 0 };
    let pairs = stores
        .iter()
        .map(|&(_, a, m)| u64::from(a) + if m { users as u64 } else { 0 })
        .sum();
    Exchanges {
        distinct_users: distinct,
        stores: stores.len(),
        pairs,
    }
}

fn side_by_side(seconds: u64, rounds: usize) -> Result<(), String> {
    let users: usize = env_or("BENCH_USERS", 10_000);
    let selection = selected_variants()?;
    let Paths { envoy, wasm, dir } = Paths::new("bench")?;
    // A second build of the module, measured side by side with the first (an optimisation's
    // A/B in one run): BENCH_MODULE_B=/path/to/other.wasm.
    let module_b = module_b_path("BENCH_MODULE_B")?;
    // The dynamic module, when built (`make native`): the same core, native.
    let native = Some(testkit::native_path()).filter(|p| p.exists());
    // The same for the dynamic module: BENCH_NATIVE_B=/path/to/other.so, loaded next to it.
    let native_b = module_b_path("BENCH_NATIVE_B")?;
    if let (Some(a), Some(b)) = (&native, &native_b) {
        if same_file(a, b) {
            return Err(format!(
                "BENCH_NATIVE_B={}: the same file as {} (Envoy would load it once; copy it)",
                b.display(),
                a.display()
            ));
        }
    }
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
    let audience = first_audience(&plugin);
    let jwks = sim.jwks("github").to_string();
    let mut cold_plugin = plugin.clone();
    cold_plugin["settings"]["verified_token_cache_size"] = json!(0);
    let trivial = root().join("target/wasm32-wasip1/release/trivial_filter.wasm");

    // Every variant this build can run, with its listener; BENCH_VARIANTS then keeps some.
    let mut listeners = Vec::new();
    let l = &mut listeners;
    let plain = add_listener(l, "plain", String::new());
    let trivial_l = add_listener(l, "trivial", trivial_filter(&trivial));
    let jwt_cached = add_listener(l, "jwt_cached", jwt_filter(&issuer, &audience, &jwks, true));
    let jwt_uncached = add_listener(
        l,
        "jwt_uncached",
        jwt_filter(&issuer, &audience, &jwks, false),
    );
    let ours = add_listener(l, "ours", wasm_filter(&wasm, &plugin, "tvp"));
    let ours_cold = add_listener(l, "ours_cold", wasm_filter(&wasm, &cold_plugin, "tvp-cold"));
    let planned = |key, name, listener, tokens, store| Planned {
        key,
        name,
        listener,
        tokens,
        store,
    };
    let mut plan = vec![
        planned("plain", "plain Envoy (no auth)", plain, Tokens::None, None),
        planned(
            "trivial",
            "trivial wasm filter (reads a header, sets a header)",
            trivial_l,
            Tokens::Warm,
            None,
        ),
        planned(
            "jwt_authn",
            "native jwt_authn, JWT cache",
            jwt_cached,
            Tokens::Warm,
            None,
        ),
        planned(
            "jwt_authn_nocache",
            "native jwt_authn, no cache, new token each request",
            jwt_uncached,
            Tokens::Fresh,
            None,
        ),
        planned(
            "wasm_warm",
            "token-vault-proxy warm (same user, cached)",
            ours,
            Tokens::Warm,
            Some("wasm vm tvp"),
        ),
        planned(
            "wasm_new",
            "token-vault-proxy new token each request",
            ours_cold,
            Tokens::Fresh,
            Some("wasm vm tvp-cold"),
        ),
        planned(
            "wasm_many",
            "token-vault-proxy 10k users cycling",
            ours,
            Tokens::Many,
            Some("wasm vm tvp"),
        ),
    ];
    if let Some(m) = &native {
        let warm = add_listener(l, "native", native_filter(m, &plugin, "tvp-native"));
        let cold = add_listener(
            l,
            "native_cold",
            native_filter(m, &cold_plugin, "tvp-native-cold"),
        );
        let store = Some("native module");
        plan.extend([
            planned(
                "native_warm",
                "native module warm (same user, cached)",
                warm,
                Tokens::Warm,
                store,
            ),
            planned(
                "native_new",
                "native module new token each request",
                cold,
                Tokens::Fresh,
                store,
            ),
            planned(
                "native_many",
                "native module 10k users cycling",
                warm,
                Tokens::Many,
                store,
            ),
        ]);
    }
    if let Some(b) = &module_b {
        let warm = add_listener(l, "ours_b", wasm_filter(b, &plugin, "tvp-b"));
        let cold = add_listener(l, "ours_b_cold", wasm_filter(b, &cold_plugin, "tvp-b-cold"));
        plan.extend([
            planned(
                "b_warm",
                "module B warm (same user, cached)",
                warm,
                Tokens::Warm,
                Some("wasm vm tvp-b"),
            ),
            planned(
                "b_new",
                "module B new token each request",
                cold,
                Tokens::Fresh,
                Some("wasm vm tvp-b-cold"),
            ),
        ]);
    }
    if let Some(b) = &native_b {
        // Filter names apart from module A's: configuration generations are per filter name.
        let warm = add_listener(l, "native_b", native_filter(b, &plugin, "tvp-native-b"));
        let cold = add_listener(
            l,
            "native_b_cold",
            native_filter(b, &cold_plugin, "tvp-native-b-cold"),
        );
        // Its own statics, so its own store.
        let store = Some("native module B");
        plan.extend([
            planned(
                "native_b_warm",
                "native B warm (same user, cached)",
                warm,
                Tokens::Warm,
                store,
            ),
            planned(
                "native_b_new",
                "native B new token each request",
                cold,
                Tokens::Fresh,
                store,
            ),
        ]);
    }
    if let Some(keys) = &selection {
        if let Some(missing) = keys.iter().find(|k| !plan.iter().any(|p| p.key == *k)) {
            return Err(format!(
                "BENCH_VARIANTS: '{missing}' cannot run here (native_*: needs {}; b_*: BENCH_MODULE_B; native_b_*: BENCH_NATIVE_B)",
                testkit::native_path().display()
            ));
        }
        plan.retain(|p| keys.iter().any(|k| k == p.key));
    }

    let needs = |t: Tokens| plan.iter().any(|p| p.tokens == t);
    let (fresh_count, many_count) = (
        if needs(Tokens::Fresh) { users } else { 0 },
        if needs(Tokens::Many) { users } else { 0 },
    );
    eprintln!("bench: minting tokens ({many_count} users, {fresh_count} one-use tokens)...");
    let warm = vec![sim.mint(&Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        ..Mint::default()
    })?];
    let mut fresh = Vec::with_capacity(fresh_count);
    for i in 0..fresh_count {
        fresh.push(sim.mint(&Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            claims: Some(json!({"jti": i.to_string()})),
            ..Mint::default()
        })?);
    }
    let mut many = Vec::with_capacity(many_count);
    for i in 0..many_count {
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

    // Only the listeners of the variants that run: a filter nobody measures costs start-up.
    let admin = free_port();
    // Stats off, as Envoy's benchmarking advice says.
    let mut yaml = "stats_config: { stats_matcher: { reject_all: true } }\n".to_string()
        + &bootstrap_head(admin);
    for (i, spec) in listeners.iter().enumerate() {
        if plan.iter().any(|p| p.listener == i) {
            yaml.push_str(&listener(spec.name, spec.port, &spec.filters));
        }
    }
    yaml.push_str("  clusters:\n");
    yaml.push_str(&cluster("upstream", upstream_port));
    yaml.push_str(&cluster("sim_control", sim_port));
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

    let variants: Vec<Variant> = plan
        .iter()
        .map(|p| Variant {
            name: p.name,
            port: listeners[p.listener].port,
            tokens: match p.tokens {
                Tokens::None => None,
                Tokens::Warm => Some(warm_file.clone()),
                Tokens::Fresh => Some(fresh_file.clone()),
                Tokens::Many => Some(many_file.clone()),
            },
        })
        .collect();
    let keys: Vec<&str> = plan.iter().map(|p| p.key).collect();

    // Warm every path once: keys fetched, every user's downstream token exchanged, V8 tiered up.
    eprintln!("bench: warming up...");
    for v in &variants {
        wrk(&script, v, 3)?;
    }
    // Every user must have been exchanged once in every store before measuring (the wasm VMs'
    // shared data and each module's store are apart): the cycling variants go on until the
    // vault has seen them all.
    let exchanges = expected_exchanges(&plan, users);
    let pairs = exchanges.pairs;
    let cycling: Vec<&Variant> = plan
        .iter()
        .zip(&variants)
        .filter(|(p, _)| p.tokens == Tokens::Many)
        .map(|(_, v)| v)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120 * cycling.len().max(1) as u64);
    while !cycling.is_empty() && sim.count(Endpoint::Vault) < pairs && Instant::now() < deadline {
        for v in &cycling {
            wrk(&script, v, 2)?;
        }
    }
    let vault_after_warmup = sim.count(Endpoint::Vault);
    let jwks_after_warmup = sim.count(Endpoint::Jwks);
    if vault_after_warmup != pairs {
        eprintln!(
            "bench: warning: {vault_after_warmup} vault calls after warm-up, {pairs} expected"
        );
    }

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
    if let Some(b) = &native_b {
        modules.push(("native module B and 50 tenants", b.clone()));
    }
    // Start-up takes three Envoy starts per module: skipped when only some variants run.
    let startup = match selection {
        Some(_) => {
            eprintln!("bench: BENCH_VARIANTS is set: start-up not measured");
            None
        }
        None => startup_cost(&envoy, &modules, &plugin, &dir),
    };
    cleanup(&mut under_test, &mut upstream);

    let out = report(&Report {
        variants: &variants,
        keys: &keys,
        samples: &samples,
        rounds,
        seconds,
        wasm: &wasm,
        module_b: module_b.as_deref(),
        native: native.as_deref(),
        native_b: native_b.as_deref(),
        selected: selection.is_some(),
        exchanges,
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

/// The vault exchanges warm-up should make (see `expected_exchanges`).
struct Exchanges {
    distinct_users: usize,
    stores: usize,
    /// One exchange per distinct user of each store.
    pairs: u64,
}

/// Everything one run measured, for the results table.
struct Report<'a> {
    variants: &'a [Variant],
    /// The variants' `BENCH_VARIANTS` keys, in the same order.
    keys: &'a [&'a str],
    samples: &'a [Vec<Sample>],
    rounds: usize,
    seconds: u64,
    wasm: &'a Path,
    module_b: Option<&'a Path>,
    native: Option<&'a Path>,
    native_b: Option<&'a Path>,
    /// Whether `BENCH_VARIANTS` chose the variants (start-up then is not measured).
    selected: bool,
    exchanges: Exchanges,
    /// Vault calls after warm-up and at the end.
    vault: (u64, u64),
    /// JWKS fetches after warm-up and at the end.
    jwks: (u64, u64),
    modules: &'a [(&'a str, PathBuf)],
    startup: Option<(f64, Vec<f64>)>,
    profiles: &'a [String],
}

/// The native module's targets (issue "Native speed"), as ratios of this run's medians: a row
/// for each ratio whose variants ran, and module B's against module A's.
fn targets(
    keys: &[&str],
    rows: &[(f64, f64, f64, u64, f64)],
    startup: Option<&(f64, Vec<f64>)>,
    modules: &[(&str, std::path::PathBuf)],
) -> String {
    let rps = |key: &str| {
        keys.iter()
            .position(|k| *k == key)
            .map(|i| rows[i].0.max(1.0))
    };
    let ratio = |a: &str, b: &str| rps(a).zip(rps(b)).map(|(a, b)| a / b);
    let mut lines = String::new();
    let mut line = |what: &str, ratio: Option<f64>, goal: &str| {
        if let Some(r) = ratio {
            lines.push_str(&format!("| {what} | {r:.2} | {goal} |\n"));
        }
    };
    line(
        "native warm / jwt_authn with cache",
        ratio("native_warm", "jwt_authn"),
        "≥ 1.00",
    );
    line(
        "native new token / jwt_authn without cache",
        ratio("native_new", "jwt_authn_nocache"),
        "≥ 1.15",
    );
    line(
        "native 10k users / native warm",
        ratio("native_many", "native_warm"),
        "≥ 0.95",
    );
    line(
        "wasm warm / native warm",
        ratio("wasm_warm", "native_warm"),
        "(for reference)",
    );
    line(
        "native B warm / jwt_authn with cache",
        ratio("native_b_warm", "jwt_authn"),
        "≥ 1.00",
    );
    line(
        "native B new token / jwt_authn without cache",
        ratio("native_b_new", "jwt_authn_nocache"),
        "≥ 1.15",
    );
    line(
        "native B warm / native warm",
        ratio("native_b_warm", "native_warm"),
        "(B vs A)",
    );
    line(
        "native B new token / native new token",
        ratio("native_b_new", "native_new"),
        "(B vs A)",
    );
    if let Some((plain, with_modules)) = startup {
        let native = modules
            .iter()
            .position(|(label, _)| label.starts_with("the native module"))
            .and_then(|i| with_modules.get(i));
        if let Some(ms) = native {
            lines.push_str(&format!(
                "| native start-up with 50 tenants over plain Envoy | {:+.0} ms | < 50 ms |\n",
                ms - plain
            ));
        }
    }
    if lines.is_empty() {
        return lines;
    }
    "\n| target | ratio | goal |\n|---|---:|---:|\n".to_string() + &lines
}

fn report(r: &Report) -> String {
    let Report {
        variants,
        keys,
        samples,
        rounds,
        seconds,
        wasm,
        module_b,
        native,
        native_b,
        selected,
        exchanges:
            Exchanges {
                distinct_users,
                stores,
                pairs,
            },
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
    // Sizes of the builds whose variants ran.
    out.push('\n');
    let ran = |ks: &[&str]| keys.iter().any(|k| ks.contains(k));
    let size = |m: &Path| std::fs::metadata(m).map(|m| m.len()).unwrap_or(0);
    if ran(&["wasm_warm", "wasm_new", "wasm_many"]) {
        let size = size(wasm);
        out.push_str(&format!(
            "wasm module: {} KB ({} bytes)\n",
            size / 1024,
            size
        ));
    }
    let builds = [
        ("module B", module_b, &["b_warm", "b_new"][..]),
        (
            "native module",
            native,
            &["native_warm", "native_new", "native_many"][..],
        ),
        (
            "native module B",
            native_b,
            &["native_b_warm", "native_b_new"][..],
        ),
    ];
    for (label, path, its_keys) in builds {
        if let Some(m) = path.filter(|_| ran(its_keys)) {
            let size = size(m);
            out.push_str(&format!(
                "{label}: {} ({} KB, {} bytes)\n",
                m.display(),
                size / 1024,
                size
            ));
        }
    }
    // A store (a wasm VM's shared data, a loaded .so's store) exchanges each of its users once.
    let per_user = vault_after_warmup as f64 / pairs.max(1) as f64;
    out.push_str(&format!(
        "vault calls: {vault_after_warmup} during warm-up for {distinct_users} distinct user(s) over {stores} store(s), {pairs} user-store pairs ({per_user:.2} per user and store), {} during the measured rounds\n",
        vault_total - vault_after_warmup
    ));
    out.push_str(&targets(keys, &rows, startup.as_ref(), modules));
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
    } else if selected {
        out.push_str("start-up: not measured (BENCH_VARIANTS is set; unset it to measure)\n");
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
