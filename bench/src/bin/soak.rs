//! `make soak`: a bounded load run with thousands of users while the JWKS rotates and the vault
//! fails intermittently. Reports Envoy's memory over time and every status seen; fails if a
//! status outside the documented set appears or memory keeps growing. Not part of `make test`.

use std::collections::BTreeMap;
use std::time::Duration;

use bench::*;
use serde_json::json;
use sim::{Endpoint, Fault, Mint};

/// wrk script: cycle through tokens, count answers by status.
const SOAK_LUA: &str = r#"
local threads = {}
setup = function(thread) table.insert(threads, thread) end
local tokens = {}
local i = 0
counts = {}
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
end
request = function()
  i = i + 1
  return wrk.format("GET", "/github/user", {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
response = function(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
-- done() runs in wrk's main Lua state: read each thread's counts from it.
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    for status, n in pairs(t:get("counts")) do io.write(string.format("STATUS %d %d\n", status, n)) end
  end
end
"#;

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("soak: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (seconds, users) = (env("SOAK_SECONDS", 300), env("SOAK_USERS", 3000) as usize);
    let Paths { envoy, wasm, dir } = Paths::new("soak")?;
    let (sim_port, backend_port) = (free_port(), free_port());
    let (mut plugin, sim) = example_stack(sim_port, backend_port, "soak-secret")?;
    plugin["settings"]["jwks_min_refetch_seconds"] = json!(5);
    plugin["settings"]["callout_timeout_ms"] = json!(1000);
    // Downstream tokens live 70 s, cached 10 s: users keep going back to the vault.
    sim.set_token_lifetime(70);

    eprintln!("soak: minting {users} users' tokens...");
    let mut tokens = Vec::with_capacity(users);
    for i in 0..users {
        let sub = format!("user-{i}");
        sim.connect(&sub, "github");
        tokens.push(sim.mint(&Mint {
            tenant: "github".into(),
            sub,
            ..Mint::default()
        })?);
    }
    let token_file = write_lines(&dir.join("tokens.txt"), &tokens)?;
    let script = dir.join("soak.lua");
    std::fs::write(&script, SOAK_LUA).map_err(|e| e.to_string())?;

    let upstream_port = free_port();
    let upstream_cfg = dir.join("upstream.yaml");
    std::fs::write(&upstream_cfg, upstream_yaml(upstream_port, free_port()))
        .map_err(|e| e.to_string())?;
    let mut upstream = spawn(&envoy, &upstream_cfg, &dir.join("upstream.log"), "0")?;
    let (listen, admin) = (free_port(), free_port());
    let mut yaml = bootstrap_head(admin);
    yaml.push_str(&listener(
        "soak",
        listen,
        &wasm_filter(&wasm, &plugin, "tvp-soak"),
    ));
    yaml.push_str("  clusters:\n");
    yaml.push_str(&cluster("upstream", upstream_port));
    yaml.push_str(&cluster("sim_control", sim_port));
    let cfg = dir.join("envoy.yaml");
    std::fs::write(&cfg, yaml).map_err(|e| e.to_string())?;
    let mut under_test = spawn_workers(&envoy, &cfg, &dir.join("envoy.log"), 2)?;
    let stop = |a: &mut std::process::Child, b: &mut std::process::Child| {
        let _ = a.kill();
        let _ = b.kill();
        let _ = a.wait();
        let _ = b.wait();
    };
    if !wait_ready(admin) {
        stop(&mut under_test, &mut upstream);
        return Err("Envoy did not start".into());
    }

    let variant = Variant {
        name: "soak",
        port: listen,
        tokens: Some(token_file),
    };
    let step = 10u64;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut rss = Vec::new();
    let mut events = Vec::new();
    for round in 0..seconds.div_ceil(step) {
        let t = round * step;
        // The dependencies misbehave on a schedule.
        if round % 6 == 3 {
            sim.fail(Endpoint::Vault, Fault::status(503), Some(200));
            events.push(format!(
                "{t:>4} s: vault answers 503 to the next 200 exchanges"
            ));
        }
        if round % 6 == 5 {
            sim.fail(
                Endpoint::Vault,
                Fault::Delay(Duration::from_millis(1500)),
                Some(20),
            );
            events.push(format!(
                "{t:>4} s: vault slower than the call-out timeout for 20 exchanges"
            ));
        }
        if round == seconds / step / 3 {
            let kid = sim.rotate("github", true);
            // From now on a third of the users present tokens signed with the new key.
            for (i, token) in tokens.iter_mut().enumerate().step_by(3) {
                let sub = format!("user-{i}");
                *token = sim.mint(&Mint {
                    tenant: "github".into(),
                    sub,
                    ..Mint::default()
                })?;
            }
            write_lines(&dir.join("tokens.txt"), &tokens)?;
            events.push(format!("{t:>4} s: JWKS rotated to {kid} (old key still published); a third of the tokens now use it"));
        }
        let out = run_wrk_counting(&script, &variant, step)?;
        for (s, n) in out {
            *statuses.entry(s).or_default() += n;
        }
        rss.push((t + step, rss_kb(under_test.id())));
    }
    stop(&mut under_test, &mut upstream);

    let total: u64 = statuses.values().sum();
    println!("soak: {seconds} s, {users} users, 2 workers, {total} requests");
    for e in &events {
        println!("  {e}");
    }
    println!("statuses: {statuses:?}");
    println!(
        "Envoy RSS (KB) every {step} s: {:?}",
        rss.iter().map(|(_, kb)| kb).collect::<Vec<_>>()
    );
    println!(
        "vault exchanges: {}, JWKS fetches: {}",
        sim.count(Endpoint::Vault),
        sim.count(Endpoint::Jwks)
    );
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|s| ![200, 502, 503, 504].contains(*s))
        .collect();
    if !unexpected.is_empty() {
        return Err(format!("unexpected statuses {unexpected:?}"));
    }
    // Flat: after the first third (all users cached), memory must not keep climbing.
    let settled = rss.get(rss.len() / 3).map_or(0, |(_, kb)| *kb);
    let last = rss.last().map_or(0, |(_, kb)| *kb);
    println!(
        "memory after warm-up {settled} KB, at the end {last} KB ({:+.1}%)",
        (last as f64 / settled.max(1) as f64 - 1.0) * 100.0
    );
    if settled > 0 && last > settled + settled / 5 {
        return Err("memory grew by more than 20% after warm-up".into());
    }
    Ok(())
}

fn run_wrk_counting(
    script: &std::path::Path,
    v: &Variant,
    seconds: u64,
) -> Result<Vec<(u16, u64)>, String> {
    let mut cmd = std::process::Command::new("taskset");
    cmd.args([
        "-c",
        "0",
        "wrk",
        "-t1",
        "-c16",
        &format!("-d{seconds}s"),
        "-s",
    ])
    .arg(script)
    .arg(format!("http://127.0.0.1:{}", v.port));
    if let Some(t) = &v.tokens {
        cmd.arg("--").arg(t);
    }
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("STATUS ")?.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect())
}
