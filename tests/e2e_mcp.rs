//! MCP clients refused for a missing account get the answer in JSON-RPC, carrying their
//! request's id: the URL elicitation error (2025-11-25), an input_required result (2026-07-28)
//! or a tool error (older revisions). The refused request never reaches the backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::{enc, Browser};
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

#[test]
fn tools_call_without_account_gets_the_url_elicitation_with_its_id() {
    let stack = stack();
    let token = stack.token("github", "bob");
    // The first call waits for the vault (answered after a call-out), the second is refused
    // from the cache at once: both paths hold the request until its id is read.
    for id in [json!(42), json!("req-43")] {
        let r = mcp_call(&stack, &token, Some("2025-11-25"), &tools_call(id.clone()));
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(body["jsonrpc"], "2.0");
        assert_eq!(body["id"], id);
        assert_eq!(body["error"]["code"], -32042);
        let e = &body["error"]["data"]["elicitations"][0];
        assert_eq!(e["mode"], "url");
        let url = e["url"].as_str().unwrap();
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:{}/connect/github/start?id=",
                stack.port
            )),
            "{url}"
        );
        assert!(url.ends_with(e["elicitationId"].as_str().unwrap()));
        assert!(e["message"].as_str().unwrap().contains("github"));
    }
    assert_eq!(
        stack.sim.count(Endpoint::Backend),
        0,
        "nothing was forwarded"
    );
    assert_eq!(
        stack.eventually(2, || stack.stat("wasmcustom.tvp.github.mcp.elicitation")),
        2
    );
    let decisions = stack.decisions();
    assert!(
        decisions.iter().all(|d| d["reason"] == "connect_required"),
        "{decisions:?}"
    );

    // The user opens the elicitation's URL and connects; the client's retry then succeeds.
    let r = mcp_call(&stack, &token, Some("2025-11-25"), &tools_call(json!(44))).json();
    let url = r["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let mut browser = Browser::new();
    let (_, login) = browser.open(&url);
    let q = Browser::field(&login.text(), "q").expect("login form");
    let form = format!("q={}&username=bob", enc(&q));
    let sign_in = format!("http://127.0.0.1:{}/authorize/login", stack.sim.port);
    let (_, consent) = browser.submit(&sign_in, &form);
    let ticket = Browser::field(&consent.text(), "ticket").expect("consent form");
    let approve = format!(
        "http://127.0.0.1:{}/connected-accounts/approve",
        stack.sim.port
    );
    let (_, done) = browser.submit(&approve, &format!("ticket={}&decision=allow", enc(&ticket)));
    assert_eq!(done.status, 200, "{}", done.text());
    let r = mcp_call(&stack, &token, Some("2025-11-25"), &tools_call(json!(45)));
    assert_eq!(r.status, 200);
    assert_eq!(stack.sim.count(Endpoint::Backend), 1);
}

#[test]
fn each_revision_gets_its_own_form() {
    let stack = stack();
    let token = stack.token("github", "bob");
    let r = mcp_call(&stack, &token, Some("2026-07-28"), &tools_call(json!(7))).json();
    assert_eq!(r["id"], 7);
    assert_eq!(r["result"]["resultType"], "input_required");
    let input = &r["result"]["inputRequests"]["connect_github"];
    assert_eq!(input["params"]["mode"], "url");
    assert!(r["result"]["requestState"].is_string());

    let r = mcp_call(&stack, &token, Some("2025-06-18"), &tools_call(json!(8))).json();
    assert_eq!(r["id"], 8);
    assert_eq!(r["result"]["isError"], true);
    let text = r["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("/connect/github/start?id="), "{text}");

    // A new session's first message, `initialize`, is refused too (the user has no account):
    // it carries no version header, its params say what the client can do.
    let init = |caps: Value| {
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-11-25", "capabilities": caps,
                          "clientInfo": {"name": "e2e", "version": "1"}}})
    };
    let r = mcp_call(
        &stack,
        &token,
        None,
        &init(json!({"elicitation": {"url": {}}})),
    )
    .json();
    assert_eq!(
        (r["id"].clone(), r["error"]["code"].clone()),
        (json!(0), json!(-32042))
    );
    let r = mcp_call(&stack, &token, None, &init(json!({}))).json();
    assert_eq!(r["error"]["code"], -32000, "{r}");
    assert!(r["error"]["data"]["connect_uri"].is_string());

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
        0,
        "nothing was forwarded"
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
