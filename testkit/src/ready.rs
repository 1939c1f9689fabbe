//! Waiting for what was started: Envoy's admin saying ready, a port accepting, any probe.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::process::Process;

/// Probe every `every` until it holds or `within` passed; whether it held.
pub fn wait_until(within: Duration, every: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Envoy's admin answers `/ready` with 200 (every listener up, initial configuration done).
pub fn envoy_ready(admin: u16) -> bool {
    crate::http::request(admin, "GET", "/ready", &[], b"").is_ok_and(|r| r.status == 200)
}

/// Something accepts connections on this loopback port.
pub fn accepting(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Wait up to `within` for Envoy's admin on `admin` to say ready; an error if it did not, or
/// if the process ended first (a refused configuration).
pub fn wait_for_envoy(envoy: &mut Process, admin: u16, within: Duration) -> Result<(), String> {
    let mut ended = None;
    let ready = wait_until(within, Duration::from_millis(10), || {
        ended = envoy.exited();
        ended.is_some() || envoy_ready(admin)
    });
    match (ready, ended) {
        (_, Some(status)) => Err(format!("Envoy exited ({status}) before it was ready")),
        (true, None) => Ok(()),
        (false, None) => Err(format!("Envoy was not ready within {within:?}")),
    }
}
