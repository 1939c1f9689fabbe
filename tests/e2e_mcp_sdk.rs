//! The official MCP Python SDK (`mcp`, PyPI) as the client, and a real MCP server of the same
//! SDK as the tenant's backend, through real Envoy with the filter, on both revisions:
//!
//! - alice (connected) lists and calls tools; the backend sees only her downstream token;
//! - bob (not connected) opens a session all the same, gets the consent his revision defines
//!   (2026-07-28: the SDK's own `input_required` loop calls his elicitation handler;
//!   2025-11-25: `-32042`), a scripted browser connects the account from that link, and his
//!   retry in the same session is brokered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, Command, Stdio};

use common::browser::Browser;
use common::mcp::{debug_output, python, Backend};
use common::*;
use serde_json::{json, Value};

fn stack(backend: &Backend) -> Stack {
    Stack::with(backend.options())
}

/// Who the SDK client is: a bearer token it was handed, or a user it signs in as through the
/// SDK's own OAuth client, starting from nothing but the URL.
enum Who<'a> {
    Token(&'a str),
    OAuth(&'a str),
    /// Signing in with a Client ID Metadata Document URL as its client id.
    OAuthCimd(&'a str, &'a str),
}

/// One run of the SDK client: its JSON events and whether it exited cleanly, with
/// `on_elicitation` called (and stdin answered) whenever it reports a consent link.
fn run_client_as(
    stack: &Stack,
    who: Who<'_>,
    mode: &str,
    calls: u32,
    on_elicitation: &mut dyn FnMut(&Value),
) -> (Vec<Value>, bool) {
    let url = format!("http://127.0.0.1:{}/github/mcp", stack.port);
    let who: Vec<&str> = match who {
        Who::Token(t) => vec!["--token", t],
        Who::OAuth(user) => vec!["--oauth-user", user],
        Who::OAuthCimd(user, cimd) => vec!["--oauth-user", user, "--client-metadata-url", cimd],
    };
    let mut child = Command::new(python())
        .arg(root().join("tests/mcp/client.py"))
        .args(["--url", &url, "--mode", mode])
        .args(who)
        .args(["--calls", &calls.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(debug_output())
        .spawn()
        .expect("start the MCP client");
    let mut stdin: ChildStdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut events = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let event: Value = serde_json::from_str(&line.expect("line")).expect("JSON event");
        if event["event"] == "elicitation" {
            on_elicitation(&event);
            writeln!(stdin, "continue").expect("answer the client");
        }
        events.push(event);
    }
    let status = child.wait().expect("client exits");
    (events, status.success())
}

/// As `run_client_as`, for a run that must succeed.
fn run_client(
    stack: &Stack,
    who: Who<'_>,
    mode: &str,
    calls: u32,
    on_elicitation: &mut dyn FnMut(&Value),
) -> Vec<Value> {
    let (events, ok) = run_client_as(stack, who, mode, calls, on_elicitation);
    assert!(ok, "client failed: {events:?}");
    events
}

fn results(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["event"] == "result").collect()
}

/// Sign in as `user` and allow the provider's consent, from the link the client reported.
fn connect_from(stack: &Stack, url: &str, user: &str) {
    let prefix = format!("http://127.0.0.1:{}/connect/github/start?id=", stack.port);
    assert!(url.starts_with(&prefix), "{url}");
    let done = Browser::new().connect_from_link(stack.sim.port, url, user);
    assert_eq!(done.status, 200, "{}", done.text());
}

#[test]
fn a_connected_user_lists_and_calls_tools_on_both_revisions() {
    let backend = Backend::start();
    let stack = stack(&backend);
    let token = stack.token("github", "alice");
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        let events = run_client(&stack, Who::Token(&token), mode, 1, &mut |e| panic!("{e}"));
        assert_eq!(events[0]["protocol_version"], version, "{events:?}");
        assert_eq!(events[1]["names"], json!(["whoami", "echo"]), "{events:?}");
        let result = results(&events)[0];
        assert_eq!(result["is_error"], false);
        let text = result["text"].as_str().unwrap();
        assert!(
            text.starts_with("authorization=Bearer sim_github_alice_"),
            "{text}"
        );
    }
    // Every request the backend saw carried the downstream token, never the agent's.
    let seen = backend.authorizations();
    assert!(!seen.is_empty());
    for auth in seen {
        let auth = auth.unwrap_or_default();
        assert!(auth.starts_with("Bearer sim_github_alice_"), "{auth}");
    }
}

#[test]
fn a_user_without_the_account_is_asked_in_his_revisions_form_and_his_retry_succeeds() {
    let backend = Backend::start();
    let stack = stack(&backend);
    for (mode, user, via) in [("auto", "bob", "callback"), ("legacy", "carol", "error")] {
        let token = stack.token("github", user);
        let mut links = Vec::new();
        let events = run_client(&stack, Who::Token(&token), mode, 1, &mut |e| {
            assert_eq!(e["via"], via, "{e}");
            let url = e["url"].as_str().unwrap().to_string();
            connect_from(&stack, &url, user);
            links.push(url);
        });
        assert_eq!(links.len(), 1, "{mode}: {events:?}");
        // The session opened (lifecycle relayed), the tools were listed, and the call that
        // followed the consent ran on the backend with the user's new downstream token.
        assert_eq!(events[1]["names"], json!(["whoami", "echo"]), "{events:?}");
        let result = results(&events);
        assert_eq!(result.len(), 1, "{events:?}");
        let text = result[0]["text"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("authorization=Bearer sim_github_{user}_")),
            "{mode}: {text}"
        );
    }
    // Before connecting, the backend saw no credential at all; after, only downstream tokens.
    for auth in backend.authorizations().into_iter().flatten() {
        assert!(auth.starts_with("Bearer sim_github_"), "{auth}");
    }
    for minted in stack.sim.minted() {
        assert!(!std::fs::read_to_string(&backend.log)
            .unwrap_or_default()
            .contains(&minted));
    }
}

/// The events of one sign-in through the SDK's OAuth client.
fn authorizations(events: &[Value]) -> Vec<&Value> {
    events
        .iter()
        .filter(|e| e["event"] == "authorized")
        .collect()
}

#[test]
fn from_the_bare_url_a_client_signs_in_and_its_calls_are_brokered_on_both_revisions() {
    let backend = Backend::start();
    let stack = stack(&backend);
    let issuer = format!("http://127.0.0.1:{}/issuers/github/", stack.sim.port);
    let resource = format!("http://127.0.0.1:{}/github/mcp", stack.port);
    for (mode, version) in [("auto", "2026-07-28"), ("legacy", "2025-11-25")] {
        // 401 with resource_metadata and scope -> metadata -> the issuer's metadata ->
        // dynamic registration -> code + PKCE with `resource` -> a token the filter accepts.
        let events = run_client(&stack, Who::OAuth("alice"), mode, 1, &mut |e| panic!("{e}"));
        let signed_in = authorizations(&events);
        assert_eq!(signed_in.len(), 1, "{events:?}");
        assert_eq!(signed_in[0]["iss"], issuer.as_str());
        let authorize = signed_in[0]["authorize_url"].as_str().unwrap();
        assert!(
            authorize.starts_with(&format!("{issuer}authorize?"))
                && authorize.contains(&format!("resource={}", sim::web::encode(&resource)))
                && authorize.contains("scope=github%3Aread+github%3Awrite"),
            "{authorize}"
        );
        assert_eq!(events[1]["protocol_version"], version, "{events:?}");
        assert_eq!(events[2]["names"], json!(["whoami", "echo"]), "{events:?}");
        let text = results(&events)[0]["text"].as_str().unwrap().to_string();
        assert!(
            text.starts_with("authorization=Bearer sim_github_alice_"),
            "{mode}: {text}"
        );
    }
    assert_eq!(stack.sim.registrations(), 2, "one registration per client");
    // A user without the account signs in the same way, gets his revision's consent, connects
    // from the link, and his retry in the same session is brokered.
    for (mode, user) in [("auto", "bob"), ("legacy", "carol")] {
        let mut links = 0;
        let events = run_client(&stack, Who::OAuth(user), mode, 1, &mut |e| {
            connect_from(&stack, e["url"].as_str().unwrap(), user);
            links += 1;
        });
        assert_eq!((links, authorizations(&events).len()), (1, 1), "{events:?}");
        let text = results(&events)[0]["text"].as_str().unwrap().to_string();
        assert!(
            text.starts_with(&format!("authorization=Bearer sim_github_{user}_")),
            "{mode}: {text}"
        );
    }
    // No token the authorization server issued ever reached the backend.
    let log = std::fs::read_to_string(&backend.log).unwrap_or_default();
    for minted in stack.sim.minted() {
        assert!(!log.contains(&minted));
    }
}

#[test]
fn a_tenant_that_ignores_resource_gives_a_token_the_gateway_refuses() {
    let backend = Backend::start();
    let stack = stack(&backend);
    // Auth0's default profile: `resource` is ignored, the token names no API (opaque), and the
    // filter refuses it; the client fails instead of reaching the backend.
    stack
        .sim
        .set_resource_profile(sim::authz::ResourceProfile::Audience);
    let (events, ok) = run_client_as(&stack, Who::OAuth("alice"), "auto", 1, &mut |e| {
        panic!("{e}")
    });
    assert!(!ok, "{events:?}");
    assert!(!authorizations(&events).is_empty(), "{events:?}");
    assert!(backend.authorizations().is_empty());
}

#[test]
fn a_client_with_a_metadata_document_url_signs_in_without_registering() {
    let backend = Backend::start();
    let stack = stack(&backend);
    // The tenant accepts Client ID Metadata Documents, and an administrator imported the
    // client's (Auth0's manual CIMD registration); the SDK then uses the URL as its client id.
    let cimd = "https://agent.example/oauth/client.json";
    stack.sim.set_cimd_supported(true);
    let document = json!({"client_id": cimd, "client_name": "e2e agent",
                          "redirect_uris": ["http://127.0.0.1:33418/callback"],
                          "token_endpoint_auth_method": "none"});
    stack.sim.import_cimd("github", cimd, &document).unwrap();
    let events = run_client(&stack, Who::OAuthCimd("alice", cimd), "auto", 1, &mut |e| {
        panic!("{e}")
    });
    let signed_in = authorizations(&events);
    assert_eq!(signed_in.len(), 1, "{events:?}");
    let authorize = signed_in[0]["authorize_url"].as_str().unwrap();
    assert!(
        authorize.contains(&format!("client_id={}", sim::web::encode(cimd))),
        "{authorize}"
    );
    assert_eq!(stack.sim.registrations(), 0, "no dynamic registration");
    let text = results(&events)[0]["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("authorization=Bearer sim_github_alice_"),
        "{text}"
    );
}
