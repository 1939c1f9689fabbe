//! What `make bench` reads off the Envoy under test besides wrk's numbers: CPU time, start-up
//! time, and (opt-in) where the CPU went by `perf` samples.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{json, Value};

use crate::{free_port, spawn, startup_yaml, wait_ready, wrk, Variant};

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may contain spaces) start after ") ".
            let rest = s.rsplit_once(") ")?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Median time from exec to ready: plain Envoy, then Envoy with each module (and 50 tenants;
/// the trivial filter ignores them). V8 compiles the whole module before ready, so this grows
/// with module size.
pub fn startup_cost(
    envoy: &Path,
    modules: &[(&str, PathBuf)],
    plugin: &Value,
    dir: &Path,
) -> Option<(f64, Vec<f64>)> {
    let mut fifty = plugin.clone();
    let template = fifty["tenants"][0].clone();
    fifty["tenants"] = Value::Array(
        (0..50)
            .map(|i| {
                let mut t = template.clone();
                t["id"] = json!(format!("tenant-{i}"));
                // A tenant's resources live under its own path.
                t["resources"] = json!([format!("/tenant-{i}/mcp")]);
                t
            })
            .collect(),
    );
    let measure = |module: Option<&Path>| -> Option<f64> {
        let mut times = Vec::new();
        for _ in 0..3 {
            let admin = free_port();
            let cfg = dir.join("startup.yaml");
            let yaml = startup_yaml(free_port(), admin, module.map(|w| (w, &fifty)));
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
    let with_modules = modules
        .iter()
        .map(|(_, m)| measure(Some(m)))
        .collect::<Option<Vec<f64>>>()?;
    Some((measure(None)?, with_modules))
}

/// Samples Envoy (`pid`) while wrk drives variant `v` for 4 s, and sums the samples by the
/// object they fell in: JIT (wasm compiled by V8), envoy (its own C++ and BoringSSL), libc,
/// kernel.
pub fn perf_split(script: &Path, v: &Variant, pid: u32, data: &Path) -> Result<String, String> {
    let mut perf = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "4999", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf: {e} (install with `apt-get install linux-perf`)"))?;
    let run = wrk(script, v, 4);
    // perf writes its data when interrupted.
    let _ = Command::new("kill")
        .args(["-INT", &perf.id().to_string()])
        .status();
    let _ = perf.wait();
    run?;
    let report = Command::new("perf")
        .args(["report", "--stdio", "--sort", "dso", "-i"])
        .arg(data)
        .output()
        .map_err(|e| e.to_string())?;
    let mut shares: Vec<(String, f64)> = Vec::new();
    for line in String::from_utf8_lossy(&report.stdout).lines() {
        let line = line.trim();
        let Some((percent, object)) = line.split_once('%') else {
            continue;
        };
        let Ok(percent) = percent.trim().parse::<f64>() else {
            continue;
        };
        let object = object.trim();
        let name = if object.starts_with("[JIT]") || object.starts_with("perf-") {
            "JIT (wasm)"
        } else if object.contains("kernel") {
            "kernel"
        } else if object.starts_with("libc") || object.starts_with("ld-linux") {
            "libc"
        } else if object == "envoy" {
            "envoy"
        } else {
            "other"
        };
        match shares.iter_mut().find(|(n, _)| n == name) {
            Some((_, p)) => *p += percent,
            None => shares.push((name.to_string(), percent)),
        }
    }
    if shares.is_empty() {
        return Err("no samples".into());
    }
    Ok(shares
        .iter()
        .map(|(n, p)| format!("{n} {p:.0}%"))
        .collect::<Vec<_>>()
        .join(", "))
}
