//! What the end-to-end tests, the deploy tests and the benchmarks share: where the workspace,
//! Envoy and the release module are, free ports, processes that stop with their handle,
//! readiness, logs, and an HTTP client (a real one for ordinary requests, a raw sender for the
//! bytes no client library would send).
//!
//! Every step returns an error rather than panicking: a test turns it into a failure with its
//! own words, a benchmark into an exit code.

pub mod http;
pub mod log;
pub mod process;
pub mod raw;
pub mod ready;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use http::Response;
pub use process::{Envoy, Process};

/// The workspace root (this crate is one of its members).
pub fn root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().unwrap_or(kit).to_path_buf()
}

/// The Envoy binary: `ENVOY_BIN`, or `.tools/envoy` (what `make setup` installs).
pub fn envoy_bin() -> PathBuf {
    match std::env::var("ENVOY_BIN") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => root().join(".tools/envoy"),
    }
}

/// [`envoy_bin`], if it is there.
pub fn require_envoy() -> Result<PathBuf, String> {
    let bin = envoy_bin();
    match bin.exists() {
        true => Ok(bin),
        false => Err(format!(
            "Envoy not found at {}: run `make setup` or set ENVOY_BIN",
            bin.display()
        )),
    }
}

/// Where the release build puts the filter's module.
pub fn wasm_path() -> PathBuf {
    root().join("target/wasm32-wasip1/release/token_vault_proxy.wasm")
}

/// [`wasm_path`], if the module was built.
pub fn require_wasm() -> Result<PathBuf, String> {
    let p = wasm_path();
    match p.exists() {
        true => Ok(p),
        false => Err(format!(
            "{} is missing: run `make wasm` (make test does it)",
            p.display()
        )),
    }
}

/// Which build of the filter the tests run in Envoy: `TVP_HOST=native` for the dynamic module,
/// the wasm module otherwise. One switch for the whole end-to-end suite.
pub fn native_host() -> bool {
    std::env::var("TVP_HOST").is_ok_and(|h| h == "native")
}

/// Where `make native` puts the dynamic module.
pub fn native_path() -> PathBuf {
    root().join("target/native/libtvp_native.so")
}

/// The module the tests run: [`native_path`] or [`wasm_path`], if it was built.
pub fn require_module() -> Result<PathBuf, String> {
    match native_host() {
        true => require_native(),
        false => require_wasm(),
    }
}

/// [`native_path`], if the module was built.
pub fn require_native() -> Result<PathBuf, String> {
    let p = native_path();
    match p.exists() {
        true => Ok(p),
        false => Err(format!(
            "{} is missing: run `make native` (make test does it)",
            p.display()
        )),
    }
}

/// A loopback port free now and never handed out before in this process: the kernel may
/// offer a port again as soon as its probe socket closed, and two parts of one stack (Envoy's
/// listener and its admin, the sim and its backend) must differ.
pub fn free_port() -> std::io::Result<u16> {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(port) {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no loopback port left that was not handed out before",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_never_repeat_within_a_process() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| *p != 0));
    }

    #[test]
    fn the_root_is_the_workspace() {
        assert!(root().join("Cargo.toml").exists());
        assert!(root().join("testkit/Cargo.toml").exists());
        assert!(wasm_path().starts_with(root()));
    }
}
