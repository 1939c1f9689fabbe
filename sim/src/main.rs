//! `sim serve`: run the sim for the local stack. `sim token`: mint an agent token from a
//! running sim (what `make token` calls). `sim agent-key`: a key for the demo's Okta agent.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;

use serde_json::{json, Value};
use sim::{Sim, SimTenant};

const USAGE: &str = "usage:
  sim serve [--config tenants.example.json] [--port 9000] [--backend-port 9001]
  sim token [--port 9000] [--tenant github] [--sub alice] [--scope 'a b'] [--claims JSON] [--alg RS256]
  sim agent-key    (a fresh PKCS#8 PEM RSA key for the demo's Okta agent client, on stdout)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `sim token` also takes TENANT, SUB, SCOPE and CLAIMS from the environment (make token).
    let flag = |name: &str| {
        args.windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].clone())
            .or_else(|| {
                let env = name.trim_start_matches("--").to_ascii_uppercase();
                std::env::var(env)
                    .ok()
                    .filter(|v| !v.is_empty() && args.first().is_some_and(|a| a == "token"))
            })
    };
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(
            &flag("--config").unwrap_or_else(|| "tenants.example.json".into()),
            port(flag("--port"), 9000),
            port(flag("--backend-port"), 9001),
        ),
        Some("token") => token(port(flag("--port"), 9000), &flag),
        Some("agent-key") => sim::keys::agent_key_pem().map(|pem| print!("{pem}")),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sim: {e}");
            ExitCode::FAILURE
        }
    }
}

fn port(value: Option<String>, default: u16) -> u16 {
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn serve(config: &str, port: u16, backend_port: u16) -> Result<(), String> {
    let text = std::fs::read_to_string(config).map_err(|e| format!("{config}: {e}"))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{config}: {e}"))?;
    let tenants = SimTenant::from_filter_config(&doc)?;
    let ids: Vec<String> = tenants.iter().map(|t| t.id.clone()).collect();
    let sim = Sim::start(tenants, port, backend_port).map_err(|e| format!("cannot listen: {e}"))?;
    println!(
        "sim: issuers, vault and dev token endpoint on 127.0.0.1:{}, echo backend on 127.0.0.1:{}; tenants: {}",
        sim.port,
        sim.backend_port,
        ids.join(", ")
    );
    println!("sim: users: alice (accounts connected), bob (none connected)");
    loop {
        std::thread::park();
    }
}

fn token(port: u16, flag: &dyn Fn(&str) -> Option<String>) -> Result<(), String> {
    let claims = match flag("--claims").filter(|c| !c.trim().is_empty()) {
        Some(c) => {
            serde_json::from_str::<Value>(&c).map_err(|e| format!("--claims is not JSON: {e}"))?
        }
        None => Value::Null,
    };
    let body = json!({
        "tenant": flag("--tenant").unwrap_or_else(|| "github".into()),
        "sub": flag("--sub").unwrap_or_else(|| "alice".into()),
        "scope": flag("--scope").unwrap_or_default(),
        "claims": claims,
        "alg": flag("--alg"),
    })
    .to_string();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("no sim on port {port} ({e}); start the stack with `make run`"))?;
    let request = format!(
        "POST /dev/token HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let payload = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let answer: Value =
        serde_json::from_str(payload).map_err(|_| format!("unexpected answer: {response}"))?;
    match answer["access_token"].as_str() {
        Some(t) => {
            println!("{t}");
            Ok(())
        }
        None => Err(format!("the sim refused: {}", answer["error"])),
    }
}
