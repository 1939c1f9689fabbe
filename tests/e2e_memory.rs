//! Envoy's memory stays flat while an authenticated user churns: 10,000 `/start` calls (the
//! agent's connect link, each starting a sign-in), 10,000 mixed connect-flow calls (sign-in
//! starts from the agent's link and from the accounts page, a link that is not ours, an
//! unsigned POST, a forged session cookie, and the agent's own call refused with a fresh
//! sealed link each time), then 10,000 MCP sessions opened by one user. Nothing of a
//! connect-page call is kept (the flow's state is sealed into links and cookies), and the MCP
//! sessions a user opens are remembered in one bounded record per user, not one shared-data
//! entry per session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Growth allowed over 10,000 calls: 512 KiB, that is 52 bytes a call. A shared-data entry
/// costs Envoy more than that (its key of 50-odd bytes and a value, each a heap string, in a
/// hash-map node: about 150 bytes), so one entry kept per call, or any other state of 100
/// bytes a call, would exceed it twice over; the measured growth is a few KiB either way.
const BOUND: i64 = 512 * 1024;

/// Envoy's heap in use (tcmalloc `allocated`: shared data lives there) and its resident set
/// (which also counts the Wasm VM's linear memory).
fn memory(stack: &Stack) -> (i64, i64) {
    let r = http(stack.admin, "GET", "/memory", &[], b"").unwrap();
    let allocated = r.json()["allocated"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("allocated");
    let status = std::fs::read_to_string(format!("/proc/{}/status", stack.envoy_pid())).unwrap();
    let rss_kb: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    (allocated, rss_kb * 1024)
}

struct Call {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: u16,
}

fn call(method: &'static str, path: &str, headers: &[(&str, &str)], status: u16) -> Call {
    Call {
        method,
        path: path.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        body: Vec::new(),
        status,
    }
}

/// `calls` requests over four keep-alive clients, cycling through `requests`; every answer
/// must have the expected status.
fn churn(stack: &Stack, requests: &[Call], calls: usize) {
    let threads = 4;
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let client = testkit::http::Client::keep_alive(stack.port);
                for i in (t..calls).step_by(threads) {
                    let c = &requests[i % requests.len()];
                    let headers: Vec<(&str, &str)> = c
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    // Envoy closes the connection after a 400: the client opens a new one.
                    let r = client.send(c.method, &c.path, &headers, &c.body).unwrap();
                    assert_eq!(r.status, c.status, "{} {}: {}", c.method, c.path, r.text());
                }
            });
        }
    });
}

/// Memory after the calls settled (the filter's tick, Envoy's stats flush).
fn settled(stack: &Stack) -> (i64, i64) {
    std::thread::sleep(Duration::from_secs(2));
    memory(stack)
}

#[test]
fn churning_users_leave_envoy_memory_flat() {
    let stack = Stack::with(Options {
        public_base_is_stack: true,
        ..Options::default()
    });
    // bob has not connected GitHub: each call of his is refused with a fresh sealed link.
    let bob = stack.token("github", "bob");
    let r = stack.call("GET", "/github/user", &bob);
    assert_eq!(r.status, 403, "{}", r.text());
    let link = r.json()["connect_uri"].as_str().unwrap().to_string();
    let start = link
        .split_once(&format!("127.0.0.1:{}", stack.port))
        .unwrap()
        .1
        .to_string();
    let bearer = format!("Bearer {bob}");
    // The agent's link: each call starts a sign-in (302, a sealed sign-in cookie).
    let starts = vec![call("GET", &start, &[], 302)];
    let forged = format!("tvp_session={}", "B".repeat(200));
    let connect = vec![
        // The agent's link: sign-in starts (302, sealed sign-in cookie).
        call("GET", &start, &[], 302),
        // The accounts page without a session: sign-in starts.
        call("GET", "/connect/github/accounts", &[], 302),
        // A link that is not one of ours.
        call(
            "GET",
            &format!("/connect/github/start?id={}", "A".repeat(120)),
            &[],
            400,
        ),
        // Connecting for yourself without a session.
        call("POST", "/connect/github/start?csrf=x", &[], 401),
        // A forged session cookie: sign-in starts.
        call(
            "GET",
            "/connect/github/accounts",
            &[("cookie", &forged)],
            302,
        ),
        // The agent's call, refused with a new link each time.
        call("GET", "/github/user", &[("authorization", &bearer)], 403),
    ];
    // An MCP client opening a session that declares URL elicitation, again and again: the
    // backend gives each its own `Mcp-Session-Id`.
    let mut initialize = call(
        "POST",
        "/github/mcp",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        200,
    );
    initialize.body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25",
                   "capabilities": {"elicitation": {"url": {}}},
                   "clientInfo": {"name": "e2e", "version": "1"}}})
    .to_string()
    .into_bytes();
    let mcp = vec![initialize];

    let began = Instant::now();
    churn(&stack, &starts, 1_000);
    churn(&stack, &connect, 1_000);
    churn(&stack, &mcp, 1_000);
    let (heap_warm, rss_warm) = settled(&stack);
    churn(&stack, &starts, 10_000);
    let (heap0, rss0) = settled(&stack);
    churn(&stack, &connect, 10_000);
    let (heap1, rss1) = settled(&stack);
    churn(&stack, &mcp, 10_000);
    let (heap2, rss2) = settled(&stack);
    eprintln!(
        "after warm-up: heap {heap_warm} B, RSS {rss_warm} B; 10,000 /start calls: heap {:+} B, \
         RSS {:+} B; 10,000 connect calls: heap {:+} B, RSS {:+} B; 10,000 MCP sessions: heap \
         {:+} B, RSS {:+} B ({:?})",
        heap0 - heap_warm,
        rss0 - rss_warm,
        heap1 - heap0,
        rss1 - rss0,
        heap2 - heap1,
        rss2 - rss1,
        began.elapsed()
    );
    for (what, grew) in [
        ("heap, /start calls", heap0 - heap_warm),
        ("RSS, /start calls", rss0 - rss_warm),
        ("heap, connect calls", heap1 - heap0),
        ("RSS, connect calls", rss1 - rss0),
        ("heap, MCP sessions", heap2 - heap1),
        ("RSS, MCP sessions", rss2 - rss1),
    ] {
        assert!(grew < BOUND, "{what}: grew {grew} B over 10,000 calls");
    }
}
