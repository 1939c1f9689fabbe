//! The happy path in real Envoy: brokering, header rewrite, pass-through, caching, local
//! endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

fn header_values(r: &Response, name: &str) -> Vec<String> {
    echoed_headers(r)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v)
        .collect()
}

#[test]
fn backend_gets_the_downstream_token_and_everything_else_untouched() {
    let mut settings = test_settings();
    settings["strip_headers"] = json!(["X-Api-Key"]);
    let stack = Stack::with(Options {
        settings,
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    let auth = format!("Bearer {token}");
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#;
    let r = stack.request(
        "POST",
        "/github/mcp?cursor=abc&x=%20y",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("mcp-session-id", "session-123"),
            ("mcp-protocol-version", "2025-11-25"),
            ("x-custom", "kept"),
            // The client's other credentials never reach the backend.
            ("proxy-authorization", "Basic cHJveHk6c2VjcmV0"),
            ("x-forwarded-authorization", "Bearer upstream-credential"),
            // ... nor does a header the configuration names (`settings.strip_headers`).
            ("x-api-key", "client-api-key"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    for name in [
        "proxy-authorization",
        "x-forwarded-authorization",
        "x-api-key",
    ] {
        assert!(
            header_values(&r, name).is_empty(),
            "{name} reached the backend"
        );
    }
    let seen = r.json();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/mcp");
    assert_eq!(seen["query"], "cursor=abc&x=%20y");
    assert_eq!(seen["body"], String::from_utf8_lossy(body).as_ref());
    let auth_seen = header_values(&r, "authorization");
    assert_eq!(auth_seen.len(), 1);
    assert!(
        auth_seen[0].starts_with("Bearer sim_github_alice_"),
        "{auth_seen:?}"
    );
    assert!(
        !r.text().contains(&token),
        "the agent token reached the backend"
    );
    assert_eq!(header_values(&r, "x-custom"), vec!["kept"]);
    assert_eq!(header_values(&r, "mcp-session-id"), vec!["session-123"]);
    assert_eq!(header_values(&r, "content-type"), vec!["application/json"]);
    // Response headers from the backend come back untouched.
    assert_eq!(r.header("mcp-session-id"), Some("session-123"));
    assert_eq!(r.header("mcp-protocol-version"), Some("2025-11-25"));
    // The vault saw the exact exchange, with the agent token as subject.
    let calls = stack.sim.vault_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["subject_token"], token);
    assert_eq!(calls[0]["connection"], "github");
    assert_eq!(calls[0]["client_secret"], GITHUB_SECRET);
}

#[test]
fn client_supplied_credential_headers_are_replaced_not_forwarded() {
    let stack = Stack::start();
    let token = stack.token("github", "alice");
    let auth = format!("Bearer {token}");
    // A client cannot smuggle its own downstream credential in a second Authorization value.
    let r = stack.request(
        "GET",
        "/github/user",
        &[("authorization", &auth), ("authorization", "Bearer forged")],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    // With a custom downstream header, client-supplied copies are removed.
    drop(stack);
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c| {
            c["tenants"][0]["downstream"] =
                json!({"header": "x-downstream-token", "format": "token {token}"})
        })),
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    let auth = format!("Bearer {token}");
    let r = stack.request(
        "GET",
        "/github/user",
        &[
            ("authorization", &auth),
            ("x-downstream-token", "token forged"),
            // Setting the header must replace every copy, not only the first.
            ("x-downstream-token", "token forged-again"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let values = header_values(&r, "x-downstream-token");
    assert_eq!(values.len(), 1);
    assert!(
        values[0].starts_with("token sim_github_alice_"),
        "{values:?}"
    );
    assert!(
        header_values(&r, "authorization").is_empty(),
        "the agent's Authorization must be removed"
    );
}

#[test]
fn repeat_requests_make_one_vault_call_per_user() {
    let stack = Stack::start();
    let alice = stack.token("github", "alice");
    for _ in 0..10 {
        assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
    }
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    // A new token for the same user reuses the cached downstream token too.
    let alice2 = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"jti": "2"})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &alice2).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    // Another user is another exchange; another tenant too.
    stack.sim.connect("carol", "github");
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "carol"))
            .status,
        200
    );
    assert_eq!(stack.sim.count(Endpoint::Vault), 2);
    let r = stack.call("GET", "/google/files", &stack.token("google", "alice"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(header_values(&r, "authorization")[0].starts_with("Bearer sim_googleoauth2_alice_"));
    assert_eq!(stack.sim.count(Endpoint::Vault), 3);
    // Each user got their own downstream token.
    let carol = stack.call("GET", "/github/user", &stack.token("github", "carol"));
    assert!(header_values(&carol, "authorization")[0].contains("_carol_"));
}

#[test]
fn concurrent_cold_requests_share_one_vault_call() {
    let stack = Stack::start();
    stack.sim.fail(
        Endpoint::Vault,
        Fault::Delay(Duration::from_millis(400)),
        Some(1),
    );
    let token = stack.token("github", "alice");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| stack.call("GET", "/github/user", &token).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; 8]);
    assert_eq!(
        stack.sim.count(Endpoint::Vault),
        1,
        "one call per worker (1 worker)"
    );
}

#[test]
fn downstream_token_is_exchanged_again_after_it_expires() {
    let stack = Stack::start();
    // expires_in 61 with the 60 s margin: cached for one second.
    stack.sim.set_token_lifetime(61);
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 2);
    // A lifetime inside the margin is used once and not cached.
    stack.sim.set_token_lifetime(30);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 4);
}

#[test]
fn streaming_responses_pass_through() {
    let stack = Stack::start();
    let r = stack.call(
        "GET",
        "/github/events/stream",
        &stack.token("github", "alice"),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        r.text(),
        "data: event 1\n\ndata: event 2\n\ndata: event 3\n\n"
    );
}

#[test]
fn request_body_waits_for_the_decision() {
    let stack = Stack::start();
    // The body arrives while the vault call is pending; it must be held, then forwarded whole.
    stack.sim.fail(
        Endpoint::Vault,
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    let token = stack.token("github", "alice");
    let auth = format!("Bearer {token}");
    let body = vec![b'x'; 200_000];
    let r = stack.request("PUT", "/github/upload", &[("authorization", &auth)], &body);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body"].as_str().map(str::len), Some(200_000));
    // And when the vault then fails, neither headers nor body reach the backend.
    stack.sim.fail(
        Endpoint::Vault,
        Fault::Delay(Duration::from_millis(300)),
        Some(1),
    );
    let before = stack.sim.count(Endpoint::Backend);
    let bob = format!("Bearer {}", stack.token("github", "bob"));
    let r = stack.request("PUT", "/github/upload", &[("authorization", &bob)], &body);
    assert_eq!(r.status, 403);
    assert_eq!(stack.sim.count(Endpoint::Backend), before);
}

#[test]
fn user_without_connected_account_gets_an_actionable_error() {
    let stack = Stack::start();
    let bob = stack.token("github", "bob");
    let r = stack.call("GET", "/github/user", &bob);
    assert_eq!(r.status, 403);
    let body = r.json();
    assert_eq!(body["error"], "connected_account_required");
    assert_eq!(body["connection"], "github");
    assert!(
        r.header("www-authenticate").is_none(),
        "no Bearer challenge: it would loop the client"
    );
    assert_eq!(r.header("x-connect-required"), Some("github"));
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    // The answer is remembered briefly: a retry storm does not reach the vault.
    assert_eq!(stack.call("GET", "/github/user", &bob).status, 403);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
}

#[test]
fn local_endpoints() {
    let stack = Stack::start();
    let health = stack.request("GET", "/health", &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(
        health.json(),
        json!({"status": "ok", "tenants": {"github": {"keys_loaded": true}, "google": {"keys_loaded": true},
                                           "slack": {"keys_loaded": true}, "wiki": {"keys_loaded": true}}})
    );
    let tenants = stack.request("GET", "/tenants", &[], b"");
    assert_eq!(tenants.status, 200);
    let list = tenants.json()["tenants"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 4);
    assert_eq!(list[0]["id"], "github");
    assert_eq!(list[0]["connection"], "github");
    assert_eq!(list[0]["scopes"]["read"], json!(["github:read"]));
    let text = tenants.text();
    for secret in [
        GITHUB_SECRET,
        "google-demo-secret",
        "client_secret",
        "client_id",
    ] {
        assert!(!text.contains(secret), "/tenants shows {secret}");
    }
    let info = stack.request("GET", "/google/info", &[], b"");
    assert_eq!(info.status, 200);
    assert_eq!(
        info.json()["issuer"],
        format!("http://127.0.0.1:{}/issuers/google/", stack.sim.port)
    );
    assert!(!info.text().contains("google-demo-secret"));
    assert_eq!(stack.request("GET", "/nope/info", &[], b"").status, 404);
    let unknown = stack.request("GET", "/nope/user", &[], b"");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
    let root = stack.request("GET", "/", &[], b"");
    assert_eq!(root.status, 400);
    assert_eq!(root.json()["error"], "invalid_request");
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
}

#[test]
fn decisions_are_logged_without_tokens() {
    let stack = Stack::start();
    let alice = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
    let bob = stack.token("github", "bob");
    assert_eq!(stack.call("GET", "/github/user", &bob).status, 403);
    assert_eq!(stack.request("GET", "/github/user", &[], b"").status, 401);
    let decisions = stack.decisions();
    assert_eq!(decisions.len(), 3, "{decisions:#?}");
    let d = &decisions[0];
    assert_eq!(
        (
            d["tenant"].as_str(),
            d["decision"].as_str(),
            d["reason"].as_str()
        ),
        (Some("github"), Some("allow"), Some("ok"))
    );
    assert_eq!(d["client_id"], "sim-agent");
    assert_eq!(d["connection"], "github");
    assert_eq!(d["scopes"], json!(["github:read", "github:write"]));
    assert_eq!(
        d["downstream_host"],
        format!("127.0.0.1:{}", stack.sim.backend_port)
    );
    assert_eq!(
        d["sub"].as_str().map(str::len),
        Some(12),
        "sub is a short hash"
    );
    assert_eq!(
        (
            decisions[1]["decision"].as_str(),
            decisions[1]["reason"].as_str()
        ),
        (Some("deny"), Some("connect_required"))
    );
    assert_eq!(
        decisions[1]["sub"],
        d["sub"]
            .as_str()
            .map(|_| decisions[1]["sub"].clone())
            .unwrap_or_default()
    );
    assert_eq!(decisions[2]["reason"], "missing_token");
    assert!(decisions[2]["sub"].is_null());
    assert!(!stack.log_text().contains("alice"), "sub is hashed");
    // The same record reaches Envoy's access log through filter state.
    let ours = || -> Vec<serde_json::Value> {
        stack
            .access_log()
            .into_iter()
            .filter(|a| a["path"].as_str().is_some_and(|p| p.starts_with("/github")))
            .collect()
    };
    // Envoy flushes its access log about once a second.
    stack.eventually(3, || ours().len());
    let access = ours();
    assert_eq!(access.len(), 3, "{access:#?}");
    let tvp: serde_json::Value =
        serde_json::from_str(access[0]["tvp"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(tvp, decisions[0]);
    assert_eq!(access[1]["status"], 403);
    let log = stack.log_text();
    for secret in [
        alice.as_str(),
        bob.as_str(),
        GITHUB_SECRET,
        "sim_github_alice_",
    ] {
        assert!(!log.contains(secret), "Envoy log contains a secret");
    }
}

#[test]
fn refresh_token_exchange_and_login_hint() {
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c| {
            c["tenants"][0]["vault"]["subject_token_type"] = json!("refresh_token");
            c["tenants"][0]["vault"]["subject_token_header"] = json!("x-auth0-refresh-token");
            c["tenants"][0]["vault"]["login_hint_claim"] = json!("email");
        })),
        ..Options::default()
    });
    let token = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"email": "alice@work.example"})),
        ..Mint::default()
    });
    let auth = format!("Bearer {token}");
    // Without the refresh token header the exchange cannot be made.
    assert_eq!(
        stack
            .request("GET", "/github/user", &[("authorization", &auth)], b"")
            .status,
        400
    );
    let r = stack.request(
        "GET",
        "/github/user",
        &[
            ("authorization", &auth),
            ("x-auth0-refresh-token", "rt-alice"),
        ],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        header_values(&r, "x-auth0-refresh-token").is_empty(),
        "the refresh token must not reach the backend"
    );
    let calls = stack.sim.vault_requests();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["subject_token_type"],
        "urn:ietf:params:oauth:token-type:refresh_token"
    );
    assert_eq!(calls[0]["subject_token"], "rt-alice");
    assert_eq!(calls[0]["login_hint"], "alice@work.example");
}

#[test]
fn two_workers_share_keys_and_downstream_tokens() {
    let stack = Stack::with(Options {
        concurrency: 2,
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    // Many connections spread over both workers: the downstream token comes from shared data.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| s.spawn(|| stack.call("GET", "/github/user", &token).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; 20]);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    // Keys were fetched by at most one call per worker and tenant (github and google).
    assert!(
        stack.sim.count(Endpoint::Jwks) <= 4,
        "{}",
        stack.sim.count(Endpoint::Jwks)
    );
}

/// Connections each worker of the stack accepted so far.
fn connections_per_worker(stack: &Stack) -> Vec<u64> {
    let r = http(
        stack.admin,
        "GET",
        "/stats?filter=^listener\\..*\\.worker_[0-9]+\\.downstream_cx_total$",
        &[],
        b"",
    )
    .expect("admin stats");
    r.text()
        .lines()
        .filter_map(|l| l.split_once(": ").and_then(|(_, v)| v.trim().parse().ok()))
        .collect()
}

#[test]
fn a_cold_user_on_every_worker_at_once_is_exchanged_once() {
    let stack = Stack::with(Options {
        concurrency: 2,
        ..Options::default()
    });
    // Keys are loaded; the vault answers slowly, so every request below arrives while the
    // first exchange is in flight.
    let warm = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &warm).status, 200);
    stack.sim.connect("carol", "github");
    let before = stack.sim.count(Endpoint::Vault);
    stack.sim.fail(
        Endpoint::Vault,
        Fault::Delay(Duration::from_millis(600)),
        None,
    );
    let token = stack.token("github", "carol");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| s.spawn(|| stack.call("GET", "/github/user", &token).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, vec![200; 16]);
    let workers = connections_per_worker(&stack);
    assert!(
        workers.len() == 2 && workers.iter().all(|n| *n > 0),
        "both workers took connections: {workers:?}"
    );
    // One single flight for the process: the other worker's requests waited for the lease
    // holder's answer (woken through a store watch on native, a shared queue on wasm).
    assert_eq!(stack.sim.count(Endpoint::Vault) - before, 1);
}

#[test]
fn a_waiting_request_is_answered_when_the_caller_that_started_the_exchange_hangs_up() {
    use std::io::Write;
    let stack = Stack::start();
    stack.sim.fail(
        Endpoint::Vault,
        Fault::Delay(Duration::from_millis(700)),
        Some(1),
    );
    let token = stack.token("github", "alice");
    // The first request starts the exchange, then its client goes away.
    let mut first = std::net::TcpStream::connect(("127.0.0.1", stack.port)).unwrap();
    write!(
        first,
        "GET /github/user HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(150));
    let second = std::thread::scope(|s| {
        let h = s.spawn(|| stack.call("GET", "/github/user", &token));
        std::thread::sleep(Duration::from_millis(100));
        drop(first);
        h.join().unwrap()
    });
    assert_eq!(second.status, 200, "{}", second.text());
    assert!(stack.sim.count(Endpoint::Vault) <= 2);
}

#[test]
fn a_downstream_token_the_backend_refuses_is_evicted_once() {
    let stack = Stack::start();
    let token = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    // The provider revoked the token: the backend's 401 goes back to the agent, unchanged...
    stack
        .sim
        .fail(Endpoint::Backend, Fault::status(401), Some(1));
    assert_eq!(stack.call("GET", "/github/user", &token).status, 401);
    assert_eq!(
        stack.sim.count(Endpoint::Vault),
        1,
        "no retry loop inside the request"
    );
    // ...and the next request exchanges again and gets a fresh downstream token.
    let r = stack.call("GET", "/github/user", &token);
    assert_eq!(r.status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 2);
    assert!(
        header_values(&r, "authorization")[0].ends_with("_2"),
        "{:?}",
        header_values(&r, "authorization")
    );
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 2);
}
