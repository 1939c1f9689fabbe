//! The forged-token flood scenario of `make bench`: legitimate warm traffic (wrk, saturating,
//! one cached token) measured alone and while junk-signature tokens (the real `kid`, the right
//! issuer and audience, a random signature, each one distinct) arrive at a fixed rate from a
//! second load generator: this binary re-run as `bench junk ...` under `taskset -c 0`, pacing
//! its requests on a fixed schedule (wrk2 is not available, and wrk's `delay()` waits after
//! each answer, so its rate would fall as latency rises).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What the junk generator sent and got back.
#[derive(Debug, Default, Clone, Copy)]
pub struct JunkStats {
    pub sent: u64,
    pub unauthorized: u64,
    pub unavailable: u64,
    pub other: u64,
    /// Requests per second actually sent, over the generator's whole run.
    pub rate: f64,
}

impl JunkStats {
    fn line(&self) -> String {
        format!(
            "JUNK {} {} {} {} {:.1}",
            self.sent, self.unauthorized, self.unavailable, self.other, self.rate
        )
    }

    fn parse(text: &str) -> Option<JunkStats> {
        let line = text.lines().find_map(|l| l.strip_prefix("JUNK "))?;
        let f: Vec<&str> = line.split_whitespace().collect();
        Some(JunkStats {
            sent: f.first()?.parse().ok()?,
            unauthorized: f.get(1)?.parse().ok()?,
            unavailable: f.get(2)?.parse().ok()?,
            other: f.get(3)?.parse().ok()?,
            rate: f.get(4)?.parse().ok()?,
        })
    }
}

/// Connections the generator spreads its rate over (each paced on its own schedule).
const JUNK_CONNECTIONS: u64 = 8;

/// `bench junk <port> <rate> <seconds> <token file> <path>`: send `rate` requests a second
/// for `seconds` to `path`, each with the file's token under a new random signature, and print
/// the counts.
pub fn junk_main(args: &[String]) -> Result<(), String> {
    let usage = || "usage: bench junk <port> <rate> <seconds> <token file> <path>".to_string();
    let port: u16 = args
        .first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(usage)?;
    let rate: u64 = args.get(1).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let seconds: f64 = args.get(2).and_then(|a| a.parse().ok()).ok_or_else(usage)?;
    let token = std::fs::read_to_string(args.get(3).ok_or_else(usage)?)
        .map_err(|e| e.to_string())?
        .trim()
        .to_string();
    let signed = token
        .rsplit_once('.')
        .map(|(s, _)| s.to_string())
        .ok_or("the token file holds no JWS")?;
    let path = args.get(4).ok_or_else(usage)?;
    let head = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {signed}.");
    let stats = generate(port, &head, rate, Duration::from_secs_f64(seconds));
    println!("{}", stats.line());
    Ok(())
}

/// `head` is the request up to the token's signature.
fn generate(port: u16, head: &str, rate: u64, length: Duration) -> JunkStats {
    let start = Instant::now() + Duration::from_millis(20);
    let interval = Duration::from_secs_f64(JUNK_CONNECTIONS as f64 / rate.max(1) as f64);
    let threads: Vec<_> = (0..JUNK_CONNECTIONS)
        .map(|c| {
            let head = head.to_string();
            std::thread::spawn(move || {
                // Connections start a fraction of the interval apart: an even stream overall.
                let offset = interval.mul_f64(c as f64 / JUNK_CONNECTIONS as f64);
                paced(port, &head, start + offset, interval, start + length, c)
            })
        })
        .collect();
    let mut total = JunkStats::default();
    for t in threads {
        if let Ok(s) = t.join() {
            total.sent += s.sent;
            total.unauthorized += s.unauthorized;
            total.unavailable += s.unavailable;
            total.other += s.other;
        }
    }
    let took = start.elapsed().as_secs_f64().max(length.as_secs_f64());
    total.rate = total.sent as f64 / took;
    total
}

/// One connection: a request at every `interval` from `first` until `end`. A request that
/// falls behind its time is sent at once (the schedule is kept, not shifted).
fn paced(
    port: u16,
    head: &str,
    first: Instant,
    interval: Duration,
    end: Instant,
    seed: u64,
) -> JunkStats {
    let mut stats = JunkStats::default();
    // Seeded by the clock, the process and the connection: no junk token of one run or
    // connection repeats another's (a repeat would be refused from the failed-token cache).
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = (clock ^ u64::from(std::process::id()) << 32)
        .wrapping_add((seed + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9))
        | 1;
    let mut signature = [0u8; 256];
    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
    let mut due = first;
    while due < end {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        due += interval;
        for b in signature.iter_mut() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = rng as u8;
        }
        let request = format!("{head}{}\r\n\r\n", URL_SAFE_NO_PAD.encode(signature));
        if conn.is_none() {
            conn = TcpStream::connect(("127.0.0.1", port)).ok().and_then(|s| {
                let _ = s.set_nodelay(true);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                Some((s.try_clone().ok()?, BufReader::new(s)))
            });
        }
        let Some((stream, reader)) = conn.as_mut() else {
            stats.other += 1;
            continue;
        };
        stats.sent += 1;
        let status = stream
            .write_all(request.as_bytes())
            .ok()
            .and_then(|_| read_response(reader));
        match status {
            Some(401) => stats.unauthorized += 1,
            Some(503) => stats.unavailable += 1,
            other => {
                if stats.other == 0 {
                    eprintln!("bench: junk: unexpected answer {other:?} (then counted only)");
                }
                stats.other += 1;
                if other.is_none() {
                    conn = None;
                }
            }
        }
    }
    stats
}

/// Status of one HTTP/1.1 response, its body read by `content-length`.
fn read_response(reader: &mut BufReader<TcpStream>) -> Option<u16> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// Run the generator as its own process on CPU 0 (with wrk and the upstream, away from the
/// Envoy under test on CPU 1) for `seconds`, in the background.
pub fn spawn_junk(
    port: u16,
    rate: u64,
    seconds: f64,
    token_file: &Path,
    path: &str,
) -> Result<std::process::Child, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    Command::new("taskset")
        .args(["-c", "0"])
        .arg(me)
        .args(["junk", &port.to_string(), &rate.to_string()])
        .arg(format!("{seconds}"))
        .arg(token_file)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the junk generator: {e}"))
}

/// Wait for a generator started by [`spawn_junk`] and read its counts.
pub fn junk_result(child: std::process::Child) -> Result<JunkStats, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    JunkStats::parse(&text).ok_or_else(|| format!("junk generator output: {text}"))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

/// A counter of the filter's for `tenant` (both filter listeners add to it; one is flooded at
/// a time).
fn stat(admin: u16, tenant: &str, metric: &str) -> u64 {
    let name = format!("wasmcustom.tvp.{tenant}.{metric}");
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return 0;
    };
    let request =
        format!("GET /stats?filter=^{name}$ HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let mut text = String::new();
    if s.write_all(request.as_bytes()).is_err() || s.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// One round's numbers for one variant: legitimate traffic alone and under the flood.
struct FloodSample {
    alone: crate::Sample,
    flooded: crate::Sample,
    junk: JunkStats,
    /// Envoy CPU per junk request, estimated: the flood window's CPU less what the legitimate
    /// requests in it cost at the alone rate, over the junk requests sent.
    junk_cpu_us: f64,
    /// Signature checks that failed (the filter's `signature.failed`) during the flood.
    checks: u64,
}

/// A flooded variant: legitimate traffic to `port`, and junk for `tenant`'s path there.
struct Flood {
    name: String,
    variant: crate::Variant,
    tenant: &'static str,
    junk: std::path::PathBuf,
    /// Whether the filter's counters apply (not for `jwt_authn`).
    ours: bool,
}

/// The flood scenario end to end: its own sim, upstream and Envoy under test (our filter with
/// the default budget, our filter with the budget off, native `jwt_authn` with its cache), junk
/// for the RS256 tenant (verified by Envoy's BoringSSL) and for the PS256 one (pure Rust in
/// wasm), `rounds` alternating rounds of `seconds`, and the results as Markdown.
pub fn scenario(seconds: u64, rounds: usize, rate: u64, secret: &str) -> Result<String, String> {
    use crate::*;
    use serde_json::json;
    let Paths { envoy, wasm, dir } = Paths::new("bench-flood")?;
    let (sim_port, backend_port) = (free_port(), free_port());
    let (plugin, sim) = example_stack(sim_port, backend_port, secret)?;
    let issuer = plugin["tenants"][0]["issuer"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let audience = first_audience(&plugin);
    let mint = |tenant: &str, sub: &str| {
        sim.mint(&sim::Mint {
            tenant: tenant.into(),
            sub: sub.into(),
            ..sim::Mint::default()
        })
    };
    let warm_file = write_lines(&dir.join("warm.txt"), &[mint("github", "alice")?])?;
    // Junk is a token of a user of the tenant with its signature replaced each time.
    let junk_rs256 = write_lines(&dir.join("junk-github.txt"), &[mint("github", "mallory")?])?;
    let junk_ps256 = write_lines(&dir.join("junk-google.txt"), &[mint("google", "mallory")?])?;
    let script = dir.join("tokens.lua");
    std::fs::write(&script, LUA).map_err(|e| e.to_string())?;
    let budget = plugin["settings"]["signature_failures_per_second"]
        .as_u64()
        .unwrap_or(tvp_core::config::Settings::default().signature_failures_per_second);
    let mut unbudgeted = plugin.clone();
    unbudgeted["settings"]["signature_failures_per_second"] = json!(100_000);

    let upstream_port = free_port();
    let upstream_cfg = dir.join("upstream.yaml");
    std::fs::write(&upstream_cfg, upstream_yaml(upstream_port, free_port()))
        .map_err(|e| e.to_string())?;
    let mut upstream = spawn(&envoy, &upstream_cfg, &dir.join("upstream.log"), "0")?;
    let (admin, p) = (free_port(), [free_port(), free_port(), free_port()]);
    let jwks = sim.jwks("github").to_string();
    // Envoy's own stats off, as in the side-by-side run; the filter's kept, to count its
    // signature checks.
    let mut yaml = "stats_config: { stats_matcher: { inclusion_list: { patterns: [ { prefix: \"wasmcustom.tvp.\" } ] } } }\n"
        .to_string()
        + &bootstrap_head(admin);
    yaml.push_str(&listener("ours", p[0], &wasm_filter(&wasm, &plugin, "tvp")));
    yaml.push_str(&listener(
        "ours_unbudgeted",
        p[1],
        &wasm_filter(&wasm, &unbudgeted, "tvp-unbudgeted"),
    ));
    yaml.push_str(&listener(
        "jwt_cached",
        p[2],
        &jwt_filter(&issuer, &audience, &jwks, true),
    ));
    yaml.push_str("  clusters:\n");
    yaml.push_str(&cluster("upstream", upstream_port));
    yaml.push_str(&cluster("sim_control", sim_port));
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
    let mut under_test = spawn(&envoy, &cfg, &dir.join("envoy.log"), "1")?;
    let stop = |a: &mut std::process::Child, b: &mut std::process::Child| {
        let _ = a.kill();
        let _ = b.kill();
        let _ = a.wait();
        let _ = b.wait();
    };
    if !wait_ready(admin) {
        stop(&mut under_test, &mut upstream);
        return Err(format!(
            "Envoy under test did not start; see {}",
            dir.join("envoy.log").display()
        ));
    }
    let flood = |name: String, port: u16, tenant: &'static str, junk: &Path, ours: bool| Flood {
        name,
        variant: Variant {
            name: "",
            port,
            tokens: Some(warm_file.clone()),
        },
        tenant,
        junk: junk.to_path_buf(),
        ours,
    };
    let floods = [
        flood(
            format!("token-vault-proxy, budget {budget}/s (default); RS256 junk"),
            p[0],
            "github",
            &junk_rs256,
            true,
        ),
        flood(
            "token-vault-proxy, budget off (100000/s); RS256 junk".into(),
            p[1],
            "github",
            &junk_rs256,
            true,
        ),
        flood(
            "native jwt_authn, JWT cache; RS256 junk".into(),
            p[2],
            "github",
            &junk_rs256,
            false,
        ),
        flood(
            format!("token-vault-proxy, budget {budget}/s (default); PS256 junk (another tenant)"),
            p[0],
            "google",
            &junk_ps256,
            true,
        ),
        flood(
            "token-vault-proxy, budget off (100000/s); PS256 junk (another tenant)".into(),
            p[1],
            "google",
            &junk_ps256,
            true,
        ),
    ];

    let load_before = load_average();
    let result = (|| -> Result<Vec<Vec<FloodSample>>, String> {
        eprintln!("bench: flood: warming up...");
        for f in &floods {
            let path = format!("/{}/user", f.tenant);
            let junk = spawn_junk(f.variant.port, rate, 3.0, &f.junk, &path)?;
            wrk(&script, &f.variant, 3)?;
            junk_result(junk)?;
        }
        let mut samples: Vec<Vec<FloodSample>> = floods.iter().map(|_| Vec::new()).collect();
        for round in 0..rounds {
            for (i, f) in floods.iter().enumerate() {
                eprintln!("bench: flood: round {}/{rounds}: {}", round + 1, f.name);
                let v = &f.variant;
                let cpu = crate::measure::cpu_ticks(under_test.id());
                let mut alone = wrk(&script, v, seconds)?;
                alone.cpu_us = crate::measure::cpu_ticks(under_test.id()).saturating_sub(cpu)
                    as f64
                    * 10_000.0
                    / (alone.rps * seconds as f64).max(1.0);
                // The generator runs half a second on either side of wrk's window.
                let cpu = crate::measure::cpu_ticks(under_test.id());
                let checks = stat(admin, f.tenant, "signature.failed");
                let path = format!("/{}/user", f.tenant);
                let junk = spawn_junk(v.port, rate, seconds as f64 + 1.0, &f.junk, &path)?;
                std::thread::sleep(Duration::from_millis(500));
                let flooded = wrk(&script, v, seconds)?;
                let junk = junk_result(junk)?;
                let window_us = crate::measure::cpu_ticks(under_test.id()).saturating_sub(cpu)
                    as f64
                    * 10_000.0;
                // Counters reach Envoy on the filter's one-second tick.
                std::thread::sleep(Duration::from_millis(1100));
                let checks = stat(admin, f.tenant, "signature.failed").saturating_sub(checks);
                let legit_us = flooded.rps * seconds as f64 * alone.cpu_us;
                let junk_cpu_us = (window_us - legit_us).max(0.0) / (junk.sent as f64).max(1.0);
                samples[i].push(FloodSample {
                    alone,
                    flooded,
                    junk,
                    junk_cpu_us,
                    checks,
                });
            }
        }
        Ok(samples)
    })();
    stop(&mut under_test, &mut upstream);
    let samples = result?;

    let median = |mut xs: Vec<f64>| {
        xs.sort_by(|a, b| a.total_cmp(b));
        xs.get(xs.len() / 2).copied().unwrap_or(0.0)
    };
    let mut out = format!(
        "Forged-token flood: legitimate warm traffic (wrk -t1 -c8, one cached token) alone and while \
         junk-signature tokens (real kid, right iss/aud, random signature, each distinct) arrive at \
         {rate}/s from a paced generator on CPU 0; Envoy 1.40, 1 worker on CPU 1; {rounds} rounds x \
         {seconds} s, medians (ratios: median of each round's)\n\n"
    );
    out.push_str(
        "| variant | legit req/s alone | legit req/s flooded | legit p99 ms alone | legit p99 ms flooded | p99 flooded/alone | req/s flooded/alone | junk sent/s | junk 401 | junk 503 | junk other | failed signature checks/s (filter) | Envoy CPU µs per junk request (est.) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (flood, s) in floods.iter().zip(&samples) {
        let name = &flood.name;
        let f = |g: &dyn Fn(&FloodSample) -> f64| median(s.iter().map(g).collect());
        let p99_alone = f(&|x| x.alone.p99_ms);
        let p99_flooded = f(&|x| x.flooded.p99_ms);
        // Ratios per round (alone and flooded ran back to back), then their median: steadier
        // than a ratio of medians when other work comes and goes on the machine.
        let p99_ratio = f(&|x| x.flooded.p99_ms / x.alone.p99_ms.max(0.001));
        let rps_ratio = f(&|x| x.flooded.rps / x.alone.rps.max(1.0));
        let sum = |g: &dyn Fn(&JunkStats) -> u64| s.iter().map(|x| g(&x.junk)).sum::<u64>();
        out.push_str(&format!(
            "| {name} | {:.0} | {:.0} | {p99_alone:.2} | {p99_flooded:.2} | {p99_ratio:.2} | {rps_ratio:.2} | {:.0} | {} | {} | {} | {} | {:.1} |\n",
            f(&|x| x.alone.rps),
            f(&|x| x.flooded.rps),
            f(&|x| x.junk.rate),
            sum(&|j| j.unauthorized),
            sum(&|j| j.unavailable),
            sum(&|j| j.other),
            if !flood.ours {
                "-".to_string()
            } else {
                // Over the generator's own run (longer than asked when it fell behind).
                format!(
                    "{:.0}",
                    f(&|x| x.checks as f64 * x.junk.rate.max(1.0) / (x.junk.sent as f64).max(1.0))
                )
            },
            f(&|x| x.junk_cpu_us),
        ));
    }
    let bad: u64 = samples
        .iter()
        .flatten()
        .map(|x| x.alone.non_2xx + x.flooded.non_2xx)
        .sum();
    out.push_str(&format!(
        "\nlegitimate requests answered other than 2xx: {bad}\n\
         load average (1 min) before and after: {load_before} and {} (other work on the machine \
         shares CPU 1 with the Envoy under test)\n",
        load_average()
    ));
    std::fs::write(dir.join("results.md"), &out).map_err(|e| e.to_string())?;
    Ok(out)
}
