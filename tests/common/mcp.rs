//! The official MCP Python SDK in the tests: a real MCP server as a tenant's backend.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::{free_port, root, Options, Process};

/// The project venv's Python, with the official MCP SDK (`make setup`).
pub fn python() -> PathBuf {
    let p = root().join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `make setup` (it installs the MCP SDK)",
        p.display()
    );
    p
}

/// With MCP_CLIENT_DEBUG set, the client's own logs go to the test's stderr.
pub fn debug_output() -> Stdio {
    if std::env::var_os("MCP_CLIENT_DEBUG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

/// The tenant backend: an MCP server of the official SDK at `/mcp` (any other path echoes the
/// request), logging what each request carried.
pub struct Backend {
    child: Process,
    pub port: u16,
    pub log: PathBuf,
}

impl Backend {
    pub fn start() -> Backend {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("tvp-mcp-backend-{port}.jsonl"));
        let mut child = Process::spawn(
            Command::new(python())
                .arg(root().join("tests/mcp/server.py"))
                .args([
                    "--port",
                    &port.to_string(),
                    "--log",
                    &log.display().to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        )
        .expect("start the MCP server");
        let mut ready = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout).read_line(&mut ready).expect("ready");
        assert_eq!(ready.trim(), "ready");
        Backend { child, port, log }
    }

    /// The `Authorization` header of every request the backend received.
    pub fn authorizations(&self) -> Vec<Option<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| r["authorization"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.child.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

impl Backend {
    /// Stack options with github's backend being this server and the public URL the stack's.
    pub fn options(&self) -> Options {
        let url = format!("http://127.0.0.1:{}", self.port);
        Options {
            public_base_is_stack: true,
            edit: Some(Box::new(move |config: &mut Value| {
                config["tenants"][0]["backend"] = json!(url.clone());
            })),
            ..Options::default()
        }
    }
}
