//! MCP clients whose user has no account, on the wire: lifecycle and listing requests are
//! relayed with no credential; requests that need the account get the consent answer of
//! their revision with their JSON-RPC id (-32042 for sessions that declared URL elicitation,
//! input_required on the 2026-07-28 methods that allow it, a tool error otherwise) and never
//! reach the backend. The SDK-driven flows are in `e2e_mcp_sdk.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::Browser;
use common::*;
use serde_json::{json, Value};

fn mcp_call(stack: &Stack, token: &str, version: Option<&str>, body: &Value) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    if let Some(v) = version {
        headers.push(("mcp-protocol-version", v));
    }
    stack.request("POST", "/github/mcp", &headers, body.to_string().as_bytes())
}

fn tools_call(id: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
           "params": {"name": "list_repos", "arguments": {}}})
}

fn stack() -> Stack {
    Stack::with(Options {
        public_base_is_stack: true,
        ..Options::default()
    })
}

/// `initialize` as a 2025-11-25 client sends it.
fn initialize(capabilities: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
           "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                      "clientInfo": {"name": "e2e", "version": "1"}}})
}

/// A request with extra headers (session id, Mcp-Method).
fn mcp_with(stack: &Stack, token: &str, extra: &[(&str, &str)], body: &Value) -> Response {
    let auth = format!("Bearer {token}");
    let mut headers = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(extra);
    stack.request("POST", "/github/mcp", &headers, body.to_string().as_bytes())
}

/// A 2025-11-25 `initialize` declaring URL elicitation: the session id, and the request as
/// the backend saw it.
fn open_url_capable_session(stack: &Stack, token: &str) -> (String, sim::http::Request) {
    let init = mcp_with(
        stack,
        token,
        &[],
        &initialize(json!({"elicitation": {"url": {}}})),
    );
    assert_eq!(init.status, 200, "{}", init.text());
    let session = init.header("mcp-session-id").expect("session").to_string();
    let seen = stack.sim.backend_requests();
    (session, seen.last().expect("reached the backend").clone())
}

#[test]
fn lifecycle_is_relayed_without_any_credential_and_sessions_remember_url_elicitation() {
    let stack = stack();
    let token = stack.token("github", "bob");
    // bob has no account, yet his session opens: `initialize` reaches the backend with no
    // credential at all (not his agent token, not a client-supplied downstream header).
    let (session, last) = open_url_capable_session(&stack, &token);
    assert_eq!(last.header("authorization"), None);
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let s = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    assert_eq!(mcp_with(&stack, &token, &s, &note).status, 200);
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    assert_eq!(mcp_with(&stack, &token, &s, &list).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Backend), 3);
    assert!(stack
        .sim
        .backend_requests()
        .iter()
        .all(|r| r.header("authorization").is_none()));
    let relays: Vec<Value> = stack
        .decisions()
        .into_iter()
        .filter(|d| d["decision"] == "relay")
        .collect();
    assert_eq!(relays.len(), 3, "{relays:?}");

    // The session declared URL elicitation: a tools/call in it gets -32042 with its id.
    let r = mcp_with(&stack, &token, &s, &tools_call(json!(42))).json();
    assert_eq!(r["id"], 42);
    assert_eq!(r["error"]["code"], -32042, "{r}");
    let e = &r["error"]["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url");
    let url = e["url"].as_str().unwrap().to_string();
    // The elicitation is named by a short digest of the sealed link it carries.
    let id = e["elicitationId"].as_str().unwrap();
    assert!(id.len() == 32 && !url.contains(id), "{id} {url}");
    assert!(url.contains("/connect/github/start?id="), "{url}");
    assert_eq!(
        stack.sim.count(Endpoint::Backend),
        3,
        "the call was not forwarded"
    );

    // Another user cannot borrow bob's session to change how he is answered, and a session
    // that declared nothing gets the tool error.
    let carol = stack.token("github", "carol");
    let r = mcp_with(&stack, &carol, &s, &tools_call(json!(43))).json();
    assert_eq!(r["result"]["isError"], true, "{r}");
    let plain = mcp_with(&stack, &token, &[], &initialize(json!({})));
    let other = plain.header("mcp-session-id").unwrap().to_string();
    let s2 = [
        ("mcp-session-id", other.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let r = mcp_with(&stack, &token, &s2, &tools_call(json!(44))).json();
    assert_eq!(r["result"]["isError"], true, "{r}");
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("/connect/github/start?id="), "{text}");

    // bob connects from the link; his retry in the same session is brokered.
    let done = Browser::new().connect_from_link(stack.sim.port, &url, "bob");
    assert_eq!(done.status, 200, "{}", done.text());
    let r = mcp_with(&stack, &token, &s, &tools_call(json!(45)));
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.sim.backend_requests();
    let last = seen.last().expect("forwarded");
    assert_eq!(last.header("mcp-session-id"), Some(session.as_str()));
    assert!(last
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer sim_github_bob_")));
    // Three JSON-RPC consent answers: the -32042, carol's and the other session's tool errors.
    assert_eq!(
        stack.eventually(3, || stack.stat("wasmcustom.tvp.github.mcp.elicitation")),
        3
    );
}

#[test]
fn each_revision_gets_its_own_form() {
    let stack = stack();
    let token = stack.token("github", "bob");
    let modern = |method: &str, capabilities: Value| {
        json!({"jsonrpc": "2.0", "id": 7, "method": method,
               "params": {"name": "list_repos", "arguments": {}, "_meta": {
                   "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                   "io.modelcontextprotocol/clientCapabilities": capabilities}}})
    };
    let v2026 = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "list_repos"),
    ];
    let url = json!({"elicitation": {"form": {}, "url": {}}});
    let r = mcp_with(&stack, &token, &v2026, &modern("tools/call", url.clone())).json();
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["resultType"], "input_required", "{r}");
    let input = &r["result"]["inputRequests"]["connect_github"];
    assert_eq!(input["params"]["mode"], "url");
    // Declared no URL elicitation: a readable tool error, with its resultType.
    let r = mcp_with(&stack, &token, &v2026, &modern("tools/call", json!({}))).json();
    assert_eq!(
        (
            r["result"]["isError"].clone(),
            r["result"]["resultType"].clone()
        ),
        (json!(true), json!("complete")),
        "{r}"
    );
    // input_required is not allowed on other methods; discovery is relayed.
    let other = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "completion/complete"),
    ];
    let r = mcp_with(
        &stack,
        &token,
        &other,
        &modern("completion/complete", url.clone()),
    )
    .json();
    assert_eq!(r["error"]["code"], -32000, "{r}");
    let discover = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let r = mcp_with(
        &stack,
        &token,
        &discover,
        &modern("server/discover", url.clone()),
    );
    assert_eq!(r.status, 200);
    assert_eq!(stack.sim.count(Endpoint::Backend), 1);
    // Headers that disagree with the body are refused before anything else.
    let lying = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/list"),
    ];
    let r = mcp_with(&stack, &token, &lying, &modern("tools/call", url));
    assert_eq!(r.status, 400, "{}", r.text());

    let r = mcp_call(&stack, &token, Some("2025-06-18"), &tools_call(json!(8))).json();
    assert_eq!(r["id"], 8);
    assert_eq!(r["result"]["isError"], true);
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("/connect/github/start?id="), "{text}");

    // Not a single JSON-RPC request: the plain HTTP refusal.
    let batch = json!([tools_call(json!(9))]);
    let r = mcp_call(&stack, &token, Some("2025-11-25"), &batch);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "connected_account_required");
    // Too large to read: the plain refusal too.
    let mut big = tools_call(json!(10));
    big["params"]["arguments"] = json!({"blob": "x".repeat(70 * 1024)});
    let r = mcp_call(&stack, &token, Some("2025-11-25"), &big);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        stack.sim.count(Endpoint::Backend),
        1,
        "only the discovery request was forwarded"
    );
}

#[test]
fn connected_users_mcp_calls_pass_through_untouched() {
    let stack = stack();
    let token = stack.token("github", "alice");
    let body = tools_call(json!(1));
    let r = mcp_call(&stack, &token, Some("2025-11-25"), &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = stack.sim.backend_requests();
    let last = seen.last().expect("forwarded");
    assert_eq!(last.path, "/mcp");
    assert_eq!(serde_json::from_slice::<Value>(&last.body).unwrap(), body);
    assert!(last
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer sim_github_alice_")));
}

#[test]
fn a_session_opened_while_connected_remembers_its_url_elicitation() {
    let stack = stack();
    // Downstream tokens cached for about a second, so the disconnect below is seen soon.
    stack.sim.set_token_lifetime(61);
    let token = stack.token("github", "alice");
    // alice is connected: her `initialize` is brokered, and its body read as it passes.
    let (session, last) = open_url_capable_session(&stack, &token);
    assert_eq!(
        serde_json::from_slice::<Value>(&last.body).unwrap()["method"],
        "initialize",
        "the body went on unchanged"
    );
    assert!(last
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer sim_github_alice_")));
    // She disconnects; in the same session, the next call gets -32042, as her session
    // declared URL elicitation.
    stack.sim.disconnect("alice", "github");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let s = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let r = mcp_with(&stack, &token, &s, &tools_call(json!(7)));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json();
    assert_eq!(answer["id"], 7, "{answer}");
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
}
