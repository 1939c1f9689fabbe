//! `make soak`: a bounded load run with thousands of users while the JWKS rotates and the vault
//! fails intermittently, with connect-flow churn mixed in (sign-in starts from an agent's link
//! and from the accounts page, links that are not ours, "connect your account" refusals that
//! seal a fresh link each). Reports Envoy's memory at the start, over time and at the end, and
//! every status seen; fails if a status outside the documented set appears or memory keeps
//! growing. Not part of `make test`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use bench::*;
use serde_json::{json, Value};
use sim::{Endpoint, Fault, Mint};

/// wrk script: cycle through tokens; one request in five is connect-flow churn. Answers are
/// counted by status, the connect flow's under their own names.
const SOAK_LUA: &str = r#"
local threads = {}
setup = function(thread) table.insert(threads, thread) end
local tokens = {}
local link, unconnected
local bad_link = "/connect/github/start?id=" .. string.rep("A", 100)
local i = 0
counts = {}
init = function(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  link = args[2]
  unconnected = args[3]
end
request = function()
  i = i + 1
  local k = i % 20
  if k == 3 then return wrk.format("GET", link) end
  if k == 8 then return wrk.format("GET", "/connect/github/accounts") end
  if k == 13 then return wrk.format("GET", bad_link) end
  if k == 18 then
    return wrk.format("GET", "/github/user", {["Authorization"] = "Bearer " .. unconnected})
  end
  return wrk.format("GET", "/github/user", {["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]})
end
response = function(status, headers, body)
  local key = tostring(status)
  local location = headers["location"] or headers["Location"]
  if status == 302 and location and string.find(location, "/authorize", 1, true) then
    key = "302-sign-in"
  elseif status == 403 and (headers["x-connect-required"] or headers["X-Connect-Required"]) then
    key = "403-connect-required"
  elseif status == 400 and body and string.find(body, "expired", 1, true) then
    key = "400-not-our-link"
  end
  counts[key] = (counts[key] or 0) + 1
end
-- done() runs in wrk's main Lua state: read each thread's counts from it.
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    for key, n in pairs(t:get("counts")) do io.write(string.format("STATUS %s %d\n", key, n)) end
  end
end
"#;

/// What the soak may answer: the API's statuses (200, and 502/503/504 while the vault fails)
/// and the connect flow's.
const EXPECTED: [&str; 7] = [
    "200",
    "502",
    "503",
    "504",
    "302-sign-in",
    "403-connect-required",
    "400-not-our-link",
];

/// The sealing key of the connect pages (any 32 bytes or more).
const SEALING_KEY: &str = "soak-sealing-key-soak-sealing-key-soak";

/// GET on the loopback, one request per connection: (status, body).
fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<(u16, String), String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or("no status")?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, body.to_string()));
    }
    let (mut rest, mut out) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    Ok((status, out))
}

/// Envoy's heap in use (`/memory` `allocated`), in KB.
fn heap_kb(admin: u16) -> u64 {
    get(admin, "/memory", &[])
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
        .and_then(|v| v["allocated"].as_str()?.parse::<u64>().ok())
        .map_or(0, |b| b / 1024)
}

/// The filter's Envoy configuration with the sealing key in the VM's environment.
fn filter_with_key(wasm: &std::path::Path, plugin: &Value, vm_id: &str) -> String {
    wasm_filter(wasm, plugin, vm_id).replace(
        &format!("vm_id: {vm_id}\n"),
        &format!(
            "vm_id: {vm_id}\n                  environment_variables: {{ key_values: {{ TVP_SEALING_KEY: \"{SEALING_KEY}\" }} }}\n"
        ),
    )
}

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
    // The connect pages of github, as the example has them (example_stack leaves them out).
    let example =
        std::fs::read_to_string(root().join("tenants.example.json")).map_err(|e| e.to_string())?;
    let ports = sim::envoy::Ports {
        listen: 0,
        admin: 0,
        sim: sim_port,
        backend: backend_port,
    };
    let full: Value = serde_json::from_str(&sim::envoy::plugin_config_for(&example, &ports))
        .map_err(|e| e.to_string())?;
    plugin["tenants"][0]["connect"] = full["tenants"][0]["connect"].clone();
    plugin["settings"]["sealing_key_env"] = json!("TVP_SEALING_KEY");
    // The pages' links point at the listener; github's resource (and so its tokens'
    // audience) moves with the public URL.
    let (listen, admin) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{listen}");
    plugin["settings"]["public_base_url"] = json!(base);
    sim.set_audience("github", &format!("{base}/github/mcp"));
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
    let mut yaml = bootstrap_head(admin);
    yaml.push_str(&listener(
        "soak",
        listen,
        &filter_with_key(&wasm, &plugin, "tvp-soak"),
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

    // A user without the account: each of their calls is refused with a fresh sealed link.
    let refused = sim
        .mint(&Mint {
            tenant: "github".into(),
            sub: "soak-unconnected".into(),
            ..Mint::default()
        })
        .and_then(|token| {
            let auth = format!("Bearer {token}");
            let (status, body) = get(listen, "/github/user", &[("authorization", &auth)])?;
            let link = serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["connect_uri"].as_str().map(str::to_string))
                .and_then(|u| {
                    u.split_once(&format!("127.0.0.1:{listen}"))
                        .map(|(_, p)| p.to_string())
                })
                .ok_or_else(|| {
                    format!("no connect link for an unconnected user: {status} {body}")
                })?;
            Ok((link, token))
        });
    let (link, unconnected) = match refused {
        Ok(found) => found,
        Err(e) => {
            stop(&mut under_test, &mut upstream);
            return Err(e);
        }
    };
    let start_rss = rss_kb(under_test.id());
    let start_heap = heap_kb(admin);
    let variant = Variant {
        name: "soak",
        port: listen,
        tokens: Some(token_file),
    };
    let extra = [link, unconnected];
    let step = 10u64;
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
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
        let out = run_wrk_counting(&script, &variant, &extra, step)?;
        for (s, n) in out {
            *statuses.entry(s).or_default() += n;
        }
        rss.push((t + step, rss_kb(under_test.id())));
    }
    let end_heap = heap_kb(admin);
    stop(&mut under_test, &mut upstream);

    let total: u64 = statuses.values().sum();
    let connect_flow: u64 = statuses
        .iter()
        .filter(|(k, _)| k.contains('-'))
        .map(|(_, n)| n)
        .sum();
    println!(
        "soak: {seconds} s, {users} users, 2 workers, {total} requests ({connect_flow} of them connect-flow churn)"
    );
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
    let last_rss = rss.last().map_or(0, |(_, kb)| *kb);
    println!(
        "Envoy RSS at the start {:.1} MB, at the end {:.1} MB; heap in use {:.1} MB -> {:.1} MB",
        start_rss as f64 / 1024.0,
        last_rss as f64 / 1024.0,
        start_heap as f64 / 1024.0,
        end_heap as f64 / 1024.0
    );
    let unexpected: Vec<_> = statuses
        .keys()
        .filter(|s| !EXPECTED.contains(&s.as_str()))
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
    extra: &[String],
    seconds: u64,
) -> Result<Vec<(String, u64)>, String> {
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
        cmd.arg("--").arg(t).args(extra);
    }
    let out = cmd.output().map_err(|e| format!("wrk: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("STATUS ")?.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect())
}
