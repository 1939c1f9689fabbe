//! Okta as the vault, in real Envoy next to an Auth0 tenant: the STS exchange (stored token,
//! `interaction_required` then consent), Cross App Access (ID-JAG, two legs), client
//! assertions checked for real by the sim, and every error mapped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::browser::Browser;
use common::*;
use serde_json::{json, Value};

fn stack_with(settings: Value) -> Stack {
    let mut merged = test_settings();
    for (k, v) in settings.as_object().into_iter().flatten() {
        merged[k] = v.clone();
    }
    Stack::with(Options {
        settings: merged,
        extra_tenants: okta_tenants(),
        ..Options::default()
    })
}

fn stack() -> Stack {
    stack_with(json!({}))
}

fn backend_auth(stack: &Stack) -> String {
    let seen = stack.sim.backend_requests();
    let last = seen.last().expect("a forwarded request");
    last.header("authorization").unwrap_or_default().to_string()
}

fn form_field<'a>(form: &'a HashMap<String, String>, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

#[test]
fn auth0_sts_and_id_jag_tenants_side_by_side() {
    let stack = stack();
    let cases = [
        ("github", "Bearer sim_github_alice_"),
        ("slack", "Bearer sts_slack_alice_"),
        ("wiki", "Bearer xaa_wiki_alice_"),
    ];
    for (tenant, expected) in cases {
        let token = stack.token(tenant, "alice");
        let r = stack.call("GET", &format!("/{tenant}/me"), &token);
        assert_eq!(r.status, 200, "{tenant}: {}", r.text());
        let auth = backend_auth(&stack);
        assert!(auth.starts_with(expected), "{tenant}: {auth}");
        // Cached: the same call again asks no vault.
        let (okta, resource_as, vault) = (
            stack.sim.count(Endpoint::Okta),
            stack.sim.count(Endpoint::ResourceAs),
            stack.sim.count(Endpoint::Vault),
        );
        assert_eq!(
            stack.call("GET", &format!("/{tenant}/me"), &token).status,
            200
        );
        assert_eq!(backend_auth(&stack), auth);
        assert_eq!(
            (
                stack.sim.count(Endpoint::Okta),
                stack.sim.count(Endpoint::ResourceAs),
                stack.sim.count(Endpoint::Vault)
            ),
            (okta, resource_as, vault),
            "{tenant}: a cached token asks no vault"
        );
    }
    // The public tenant list shows neither the private key nor its variable's value.
    let tenants = stack.get("/tenants", &[]).unwrap().text();
    assert!(tenants.contains("\"slack\"") && !tenants.contains("PRIVATE KEY"));
    assert!(!tenants.contains(agent_key_pem().lines().nth(1).unwrap_or("-")));
    // One STS call and two ID-JAG legs in all; a token of one tenant is refused by another.
    assert_eq!(stack.sim.count(Endpoint::Okta), 2);
    assert_eq!(stack.sim.count(Endpoint::ResourceAs), 1);
    let slack_token = stack.token("slack", "alice");
    assert_eq!(stack.call("GET", "/wiki/me", &slack_token).status, 401);
}

#[test]
fn client_assertions_are_fresh_and_checked_for_real() {
    let stack = stack();
    for tenant in ["slack", "wiki"] {
        let token = stack.token(tenant, "alice");
        assert_eq!(
            stack.call("GET", &format!("/{tenant}/me"), &token).status,
            200
        );
    }
    let sent = stack.sim.okta_requests();
    assert_eq!(sent.len(), 3, "STS, then the two ID-JAG legs");
    let mut jtis = Vec::new();
    for form in &sent {
        assert_eq!(
            form_field(form, "client_assertion_type"),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        );
        let assertion = form_field(form, "client_assertion");
        let claims = sim::keys::claims_of(assertion).expect("a JWT");
        let header = sim::keys::header_of(assertion).expect("a JWT");
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "agent-key-1");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        jtis.push(claims["jti"].as_str().unwrap().to_string());
    }
    jtis.sort();
    jtis.dedup();
    assert_eq!(jtis.len(), 3, "every assertion has its own jti");

    // The sim refuses a replayed assertion and an expired one.
    let token_path = "/okta/oauth2/v1/token";
    let first = &sent[0];
    let replay: Vec<String> = first
        .iter()
        .map(|(k, v)| format!("{k}={}", common::browser::enc(v)))
        .collect();
    let post = |body: &str| {
        http(
            stack.sim.port,
            "POST",
            token_path,
            &[("content-type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
        .unwrap()
    };
    let r = post(&replay.join("&"));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_client");
    let aud = format!("http://127.0.0.1:{}{token_path}", stack.sim.port);
    let expired = sim::keys::client_assertion(
        agent_key_pem(),
        "agent-key-1",
        "okta-agent-client",
        &aud,
        -120,
    )
    .unwrap();
    let mut fields = first.clone();
    fields.insert("client_assertion".into(), expired);
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", common::browser::enc(v)))
        .collect();
    let r = post(&body.join("&"));
    assert_eq!(r.status, 401, "{}", r.text());
}

#[test]
fn sts_consent_needed_then_granted() {
    // "Not connected" is remembered for one second here, so the retry after consent is fresh.
    let stack = stack_with(json!({"not_connected_cache_seconds": 1}));
    let token = stack.token("slack", "bob");
    let r = stack.call("GET", "/slack/me", &token);
    assert_eq!(r.status, 403, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "connected_account_required");
    assert_eq!(body["connection"], "slack");
    let url = body["connect_uri"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.1:{}/okta/interact?session=",
            stack.sim.port
        )),
        "the user goes to Okta's own interaction page: {url}"
    );
    // MCP clients get it as a URL elicitation with their request's id.
    let auth = format!("Bearer {token}");
    let rpc = json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "x"}});
    let r = stack.request(
        "POST",
        "/slack/mcp",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        rpc.to_string().as_bytes(),
    );
    let answer = r.json();
    assert_eq!(answer["id"], 5, "{answer}");
    // No session declared URL elicitation: the tool error names Okta's link.
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains(url.as_str()), "{text}");

    // The user consents at Okta; the agent's retry gets the token.
    let mut browser = Browser::new();
    let (_, page) = browser.open(&url);
    let session = Browser::field(&page.text(), "session").expect("consent form");
    let approve = format!("http://127.0.0.1:{}/okta/interact/approve", stack.sim.port);
    let (_, done) = browser.submit(&approve, &format!("session={session}&decision=allow"));
    assert!(done.text().contains("Connected"), "{}", done.text());
    std::thread::sleep(Duration::from_millis(1100));
    let r = stack.call("GET", "/slack/me", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(backend_auth(&stack).starts_with("Bearer sts_slack_bob_"));
}

#[test]
fn okta_errors_are_mapped() {
    let stack = stack();
    let slack = stack.token("slack", "alice");
    let wiki = stack.token("wiki", "alice");
    let cases: Vec<(Endpoint, Fault, &str, u16, &str)> = vec![
        (
            Endpoint::Okta,
            Fault::body(401, "application/json", r#"{"error":"invalid_client"}"#),
            "slack",
            502,
            "vault_misconfigured",
        ),
        (
            Endpoint::Okta,
            Fault::body(429, "application/json", r#"{"error":"too_many_requests"}"#),
            "slack",
            503,
            "vault_rate_limited",
        ),
        (
            Endpoint::Okta,
            Fault::body(500, "text/html", "<html>oops</html>"),
            "wiki",
            502,
            "vault_bad_answer",
        ),
        (
            Endpoint::ResourceAs,
            Fault::body(
                400,
                "application/json",
                r#"{"error":"invalid_grant","error_description":"Assertion is invalid or has expired"}"#,
            ),
            "wiki",
            502,
            "vault_bad_answer",
        ),
        (
            Endpoint::ResourceAs,
            Fault::body(403, "application/json", r#"{"error":"access_denied"}"#),
            "wiki",
            403,
            "vault_forbidden",
        ),
        (
            Endpoint::ResourceAs,
            Fault::body(401, "application/json", r#"{"error":"invalid_client"}"#),
            "wiki",
            502,
            "vault_misconfigured",
        ),
    ];
    for (endpoint, fault, tenant, status, reason) in cases {
        stack.sim.fail(endpoint, fault, Some(1));
        let token = if tenant == "slack" { &slack } else { &wiki };
        let r = stack.call("GET", &format!("/{tenant}/me"), token);
        assert_eq!(r.status, status, "{tenant} {reason}: {}", r.text());
        let last = stack.decisions().last().cloned().unwrap_or_default();
        assert_eq!(last["reason"], reason, "{last}");
    }
    assert_eq!(
        stack.sim.count(Endpoint::Backend),
        0,
        "nothing was forwarded"
    );
    // Healthy again: both work.
    assert_eq!(stack.call("GET", "/slack/me", &slack).status, 200);
    assert_eq!(stack.call("GET", "/wiki/me", &wiki).status, 200);
}
