//! The cross-worker single-flight scenario of `make bench` (issue "Native speed": "vault calls:
//! one per user across all workers"). One Envoy with two workers carries the wasm filter and,
//! when built, the native module, each on its own listener answering 200 itself. Cold users
//! each send several requests at once, every one on a new connection (the kernel spreads new
//! connections over both workers' sockets), while the sim's vault takes 50 ms to answer: every
//! request of a user arrives while its exchange is in flight. The sim counts vault calls per
//! host: both make one per user, the native module through a lease in its process-wide store
//! (waiters woken by their stream's scheduler), the wasm filter through a lease in shared data
//! (waiters woken through shared queues); one per worker would show as up to 2.00.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use sim::{Endpoint, Fault, Mint};

use crate::*;

/// What the sim's vault waits before answering: a real vault's latency over the network.
const VAULT_LATENCY: Duration = Duration::from_millis(50);

/// Workers of the Envoy under test (`--concurrency`).
const WORKERS: u32 = 2;

/// How the scenario is sized.
pub struct Options {
    /// Cold users per host.
    pub users: usize,
    /// Requests each user sends at once, each on a new connection.
    pub requests: usize,
    /// Users sending at the same time (a batch; the next starts when it is answered).
    pub parallel: usize,
}

/// One host's run.
struct HostRun {
    name: String,
    users: usize,
    requests: u64,
    vault_calls: u64,
    /// Connections each worker accepted during the run, by worker index.
    per_worker: Vec<u64>,
    non_2xx: u64,
    /// Requests that got no answer at all (counted in `non_2xx` too), and the first reason.
    no_answer: u64,
    first_error: Option<String>,
    seconds: f64,
}

/// A listener under test: the host's name, its port and the prefix of its users' names.
struct Host {
    name: &'static str,
    port: u16,
    users: &'static str,
}

/// The scenario end to end: its own sim and Envoy, both hosts one after the other, and the
/// results as Markdown (also written to `target/bench-workers/results.md`).
pub fn scenario(opts: &Options, secret: &str) -> Result<String, String> {
    let Paths { envoy, wasm, dir } = Paths::new("bench-workers")?;
    let (sim_port, backend_port) = (free_port(), free_port());
    let (plugin, sim) = example_stack(sim_port, backend_port, secret)?;
    let native = Some(testkit::native_path()).filter(|p| p.exists());

    let (admin, wasm_port, native_port) = (free_port(), free_port(), free_port());
    // Only the listeners' counters: the per-worker connection counts are read from them.
    let mut yaml =
        "stats_config: { stats_matcher: { inclusion_list: { patterns: [ { prefix: \"listener.\" } ] } } }\n"
            .to_string()
            + &bootstrap_head(admin);
    yaml.push_str(&listener_with_route(
        "ours",
        wasm_port,
        ANSWER_200,
        &wasm_filter(&wasm, &plugin, "tvp"),
    ));
    let mut hosts = vec![Host {
        name: "wasm filter (woken through shared queues)",
        port: wasm_port,
        users: "wasm-user",
    }];
    if let Some(m) = &native {
        yaml.push_str(&listener_with_route(
            "native",
            native_port,
            ANSWER_200,
            &native_filter(m, &plugin, "tvp-native"),
        ));
        hosts.push(Host {
            name: "native module (woken by a stream's scheduler)",
            port: native_port,
            users: "native-user",
        });
    }
    yaml.push_str("  clusters:\n");
    yaml.push_str(&cluster("sim_control", sim_port));
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
    // Not pinned: both workers get a CPU of their own (the load is light: mostly waiting).
    let log = dir.join("envoy.log");
    let mut under_test = spawn_workers(&envoy, &cfg, &log, WORKERS)?;
    if !wait_ready(admin) {
        under_test.stop();
        return Err(format!(
            "Envoy under test did not start; see {}",
            log.display()
        ));
    }

    let result = (|| -> Result<Vec<HostRun>, String> {
        // Keys loaded on both workers of both hosts before counting, at the vault's own speed.
        let warm = mint(&sim, "alice")?;
        for h in &hosts {
            eprintln!("bench: workers: warming up {}...", h.name);
            warm_up(h.port, &warm, &log)?;
        }
        sim.fail(Endpoint::Vault, Fault::Delay(VAULT_LATENCY), None);
        let mut runs = Vec::new();
        for h in &hosts {
            eprintln!(
                "bench: workers: {}: {} users x {} requests...",
                h.name, opts.users, opts.requests
            );
            runs.push(run_host(&sim, h, admin, opts)?);
        }
        sim.heal(Endpoint::Vault);
        Ok(runs)
    })();
    under_test.stop();
    let runs = result?;
    let out = report(opts, &runs, native.is_some());
    std::fs::write(dir.join("results.md"), &out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn mint(sim: &sim::Sim, sub: &str) -> Result<String, String> {
    sim.mint(&Mint {
        tenant: "github".into(),
        sub: sub.into(),
        ..Mint::default()
    })
}

fn get(port: u16, token: &str) -> Result<u16, String> {
    let bearer = format!("Bearer {token}");
    testkit::http::request(
        port,
        "GET",
        "/github/user",
        &[("authorization", &bearer)],
        b"",
    )
    .map(|r| r.status)
    .map_err(|e| e.to_string())
}

/// Requests on new connections until a run of them all answer 200 (keys fetched on every
/// worker, the warm user exchanged), within 30 s.
fn warm_up(port: u16, token: &str, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses: Vec<Result<u16, String>> = (0..8).map(|_| get(port, token)).collect();
        if statuses.iter().all(|s| matches!(s, Ok(200))) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "warm-up on port {port} still answers {statuses:?}; see {}",
                log.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Connections each worker of the listener on `port` accepted so far, by worker index (from
/// `listener.127.0.0.1_<port>.worker_<N>.downstream_cx_total`).
fn connections_per_worker(admin: u16, port: u16) -> Result<BTreeMap<usize, u64>, String> {
    let r = testkit::http::request(admin, "GET", "/stats?filter=downstream_cx_total", &[], b"")
        .map_err(|e| format!("admin /stats: {e}"))?;
    let prefix = format!("listener.127.0.0.1_{port}.worker_");
    Ok(r.text()
        .lines()
        .filter_map(|l| {
            let (worker, value) = l
                .strip_prefix(&prefix)?
                .split_once(".downstream_cx_total:")?;
            Some((worker.parse().ok()?, value.trim().parse().ok()?))
        })
        .collect())
}

/// One host: cold users minted and connected, their requests sent, vault calls and each
/// worker's connections counted before and after.
fn run_host(sim: &sim::Sim, h: &Host, admin: u16, opts: &Options) -> Result<HostRun, String> {
    let mut tokens = Vec::with_capacity(opts.users);
    for i in 0..opts.users {
        let sub = format!("{}-{i}", h.users);
        sim.connect(&sub, "github");
        tokens.push(mint(sim, &sub)?);
    }
    let vault_before = sim.count(Endpoint::Vault);
    let cx_before = connections_per_worker(admin, h.port)?;
    let started = Instant::now();
    let mut statuses: Vec<Result<u16, String>> = Vec::with_capacity(opts.users * opts.requests);
    for batch in tokens.chunks(opts.parallel.max(1)) {
        // Every request of the batch leaves at once: a user's requests all arrive within the
        // vault's 50 ms, while its exchange is in flight.
        let barrier = Barrier::new(batch.len() * opts.requests);
        std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .flat_map(|token| std::iter::repeat_n(token, opts.requests))
                .map(|token| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        get(h.port, token)
                    })
                })
                .collect();
            for handle in handles {
                statuses.push(
                    handle
                        .join()
                        .unwrap_or_else(|_| Err("request thread panicked".into())),
                );
            }
        });
    }
    let seconds = started.elapsed().as_secs_f64();
    let vault_calls = sim.count(Endpoint::Vault).saturating_sub(vault_before);
    let cx_after = connections_per_worker(admin, h.port)?;
    let per_worker = (0..WORKERS as usize)
        .map(|w| {
            let after = cx_after.get(&w).copied().unwrap_or(0);
            after.saturating_sub(cx_before.get(&w).copied().unwrap_or(0))
        })
        .collect();
    let no_answer = statuses.iter().filter(|s| s.is_err()).count() as u64;
    Ok(HostRun {
        name: h.name.to_string(),
        users: opts.users,
        requests: statuses.len() as u64,
        vault_calls,
        per_worker,
        non_2xx: statuses
            .iter()
            .filter(|s| !matches!(s, Ok(200..=299)))
            .count() as u64,
        no_answer,
        first_error: statuses.iter().find_map(|s| s.as_ref().err().cloned()),
        seconds,
    })
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(opts: &Options, runs: &[HostRun], native_built: bool) -> String {
    let mut out = format!(
        "Cold users over two workers: Envoy 1.40 with --concurrency {WORKERS} (not pinned); each \
         user sends {} requests at once, each on a new connection (the kernel spreads them over \
         both workers), {} users at a time; the sim's vault answers after {} ms (standing for a \
         real vault's latency), so a user's requests all arrive while its exchange is in flight. \
         Vault calls as the sim counted them; connections per worker from Envoy's listener stats.\n\n",
        opts.requests,
        opts.parallel,
        VAULT_LATENCY.as_millis()
    );
    out.push_str(
        "| host | users | requests | vault calls | vault calls per user | connections per worker | non-2xx | seconds |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in runs {
        let per_worker: Vec<String> = r.per_worker.iter().map(|n| thousands(*n)).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {} | {} | {:.1} |\n",
            r.name,
            thousands(r.users as u64),
            thousands(r.requests),
            thousands(r.vault_calls),
            r.vault_calls as f64 / (r.users as f64).max(1.0),
            per_worker.join(" / "),
            r.non_2xx,
            r.seconds,
        ));
    }
    out.push_str(&format!(
        "\nExpected: 1.00 per user on both hosts (one exchange for the whole process); up to \
         {WORKERS}.00 would mean one per worker that took a request of the user.\n"
    ));
    for r in runs.iter().filter(|r| r.no_answer > 0) {
        out.push_str(&format!(
            "{}: {} requests without an answer (first: {})\n",
            r.name,
            r.no_answer,
            r.first_error.as_deref().unwrap_or("?")
        ));
    }
    // The target, in the side-by-side run's targets format.
    out.push_str("\n| target | ratio | goal |\n|---|---:|---:|\n");
    for r in runs {
        out.push_str(&format!(
            "| {} vault calls per user across {WORKERS} workers | {:.2} | 1 |\n",
            r.name.split(" (").next().unwrap_or(&r.name),
            r.vault_calls as f64 / (r.users as f64).max(1.0)
        ));
    }
    if !native_built {
        out.push_str("\nThe native module is not built (`make native`): wasm only.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_204), "1,204");
        assert_eq!(super::thousands(1_234_567), "1,234,567");
    }
}
