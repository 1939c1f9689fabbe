//! Okta as the vault, in real Envoy next to an Auth0 tenant: the STS exchange (stored token,
//! `interaction_required` then consent), Cross App Access (ID-JAG, two legs), client
//! assertions checked for real by the sim, and every error mapped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::browser::{enc, Browser};
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
        // The `slack` tenant's connect pages need the gateway's URL.
        public_base_is_stack: true,
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

/// Sign in at the sim's Okta org login form as `user`, from a link of ours.
fn okta_sign_in(
    browser: &mut Browser,
    stack: &Stack,
    link: &str,
    user: &str,
) -> (String, Response) {
    let (at, page) = browser.open(link);
    assert!(at.contains("/okta/oauth2/v1/authorize?"), "{at}");
    let q = Browser::field(&page.text(), "q").expect("login form");
    let login = format!(
        "http://127.0.0.1:{}/okta/oauth2/v1/authorize/login",
        stack.sim.port
    );
    browser.submit(&login, &format!("q={}&username={user}", enc(&q)))
}

fn reached_okta_consent(browser: &Browser) -> bool {
    browser.visited.iter().any(|u| u.contains("/okta/interact"))
}

#[test]
fn sts_consent_only_through_our_link_for_the_signed_in_user() {
    // "Not connected" is remembered for one second here, so the retry after consent is fresh.
    let stack = stack_with(json!({"not_connected_cache_seconds": 1}));
    let token = stack.token("slack", "bob");
    let r = stack.call("GET", "/slack/me", &token);
    assert_eq!(r.status, 403, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "connected_account_required");
    assert_eq!(body["connection"], "slack");
    let link = body["connect_uri"].as_str().unwrap().to_string();
    // Our link, opaque; Okta's interaction URL is nowhere in the answer.
    let ours = format!("http://127.0.0.1:{}/connect/slack/start?id=", stack.port);
    assert!(link.starts_with(&ours), "{link}");
    assert!(!r.text().contains("/okta/interact"), "{}", r.text());
    assert_opaque_link(&link);

    // MCP clients get the same link as a URL elicitation with their request's id.
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
    // No session declared URL elicitation: the tool error names our link.
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    let text = answer["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains(&ours), "{text}");
    assert!(!r.text().contains("/okta/interact"), "{}", r.text());
    let link = stack.call("GET", "/slack/me", &token).json()["connect_uri"]
        .as_str()
        .unwrap()
        .to_string();

    // Alice signs in at Okta with bob's link: refused, and never sent to Okta's consent.
    let mut other = Browser::new();
    let (at, page) = okta_sign_in(&mut other, &stack, &link, "alice");
    assert!(at.contains("/connect/slack/start?id="), "{at}");
    assert_eq!(page.status, 403, "{}", page.text());
    assert!(page.text().contains("signed in as a different user"));
    assert!(!reached_okta_consent(&other), "{:?}", other.visited);

    // Bob signs in: same user, so on to Okta's own consent page, and consents.
    let mut browser = Browser::new();
    let (at, page) = okta_sign_in(&mut browser, &stack, &link, "bob");
    let consent = format!("http://127.0.0.1:{}/okta/interact?session=", stack.sim.port);
    assert!(at.starts_with(&consent), "{at}");
    let session = Browser::field(&page.text(), "session").expect("consent form");
    let approve = format!("http://127.0.0.1:{}/okta/interact/approve", stack.sim.port);
    let (_, done) = browser.submit(&approve, &format!("session={session}&decision=allow"));
    assert!(done.text().contains("Connected"), "{}", done.text());
    std::thread::sleep(Duration::from_millis(1100));
    let r = stack.call("GET", "/slack/me", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(backend_auth(&stack).starts_with("Bearer sts_slack_bob_"));
    // The link lives on until it expires, but only for its user: another browser opening it
    // is asked to sign in at Okta first, never sent to Okta's consent.
    let mut fresh = Browser::new();
    let (at, _) = fresh.open(&link);
    assert!(at.contains("/okta/oauth2/v1/authorize?"), "{at}");
    assert!(!reached_okta_consent(&fresh), "{:?}", fresh.visited);
}

#[test]
fn an_sts_tenant_without_connect_gives_no_link() {
    // `slack-user` has no connect section: the plain answer, no Okta URL, no link.
    let stack = stack();
    let bearer = stack.token("slack-user", "bob");
    let id_token = id_token_for(&stack, "bob", "okta-agent-client");
    let r = with_id_token(&stack, &bearer, Some(&id_token));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "connected_account_required");
    assert!(r.json().get("connect_uri").is_none(), "{}", r.text());
    assert!(!r.text().contains("/okta/interact"), "{}", r.text());
}

#[test]
fn okta_errors_are_mapped() {
    // Each fault once, one after the other: no per-user back-off between them.
    let stack = stack_with(json!({"vault_backoff_seconds": 0}));
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
    // Healthy again: both work (once slack's tenant-wide 429 back-off, 1 s without a
    // Retry-After, has passed).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(stack.call("GET", "/slack/me", &slack).status, 200);
    assert_eq!(stack.call("GET", "/wiki/me", &wiki).status, 200);
}

/// The last form the sim's Okta or resource AS received that has `field`.
fn last_form_with(stack: &Stack, field: &str) -> HashMap<String, String> {
    let sent = stack.sim.okta_requests();
    sent.into_iter()
        .rev()
        .find(|f| f.contains_key(field))
        .expect("a recorded token request")
}

#[test]
fn id_jag_at_an_auth0_resource_as_by_secret_and_by_rs256_key() {
    let stack = stack();
    let issuer = format!("http://127.0.0.1:{}/", stack.sim.port);
    for tenant in ["wiki-auth0", "wiki-auth0-key"] {
        let token = stack.token(tenant, "alice");
        let r = stack.call("GET", &format!("/{tenant}/me"), &token);
        assert_eq!(r.status, 200, "{tenant}: {}", r.text());
        assert!(backend_auth(&stack).starts_with("Bearer xaa_wiki_alice_"));
        // The IdP leg asks for the resource too (draft §4.3), with Okta's assertion rule.
        let leg0 = last_form_with(&stack, "requested_token_type");
        assert_eq!(form_field(&leg0, "resource"), XAA_RESOURCE);
        assert_eq!(form_field(&leg0, "audience"), issuer);
        let leg1 = last_form_with(&stack, "assertion");
        assert_eq!(form_field(&leg1, "resource"), XAA_RESOURCE, "{tenant}");
        if tenant == "wiki-auth0" {
            // Auth0's documented client authentication for this grant: id and secret.
            assert_eq!(form_field(&leg1, "client_id"), "wiki-auth0-secret-client");
            assert!(form_field(&leg1, "client_secret") == XAA_SECRET);
            assert!(!leg1.contains_key("client_assertion"));
        } else {
            let assertion = form_field(&leg1, "client_assertion");
            let claims = sim::keys::claims_of(assertion).expect("a JWT");
            assert_eq!(
                claims["aud"],
                issuer.as_str(),
                "Auth0: aud = https://{{domain}}/"
            );
            assert_eq!(claims["iss"], "wiki-auth0-key-client");
            assert_eq!(
                sim::keys::header_of(assertion).expect("a JWT")["alg"],
                "RS256"
            );
            assert!(!leg1.contains_key("client_secret"));
        }
    }
    assert_eq!(stack.sim.count(Endpoint::ResourceAs), 2);
}

fn with_id_token(stack: &Stack, bearer: &str, id_token: Option<&str>) -> Response {
    let auth = format!("Bearer {bearer}");
    let mut headers = vec![("authorization", auth.as_str())];
    if let Some(t) = id_token {
        headers.push(("x-agent-id-token", t));
    }
    stack.request("GET", "/slack-user/me", &headers, b"")
}

fn id_token_for(stack: &Stack, sub: &str, aud: &str) -> String {
    stack.mint(Mint {
        tenant: "slack-user".into(),
        sub: sub.into(),
        claims: Some(json!({"aud": aud})),
        ..Mint::default()
    })
}

#[test]
fn sts_user_access_sends_the_id_token_and_machine_access_the_access_token() {
    let stack = stack();
    let bearer = stack.token("slack-user", "alice");
    // Fail closed: no ID token, one for another client, one of another user.
    let refusals = [
        (None, "id_token_missing"),
        (
            Some(id_token_for(
                &stack,
                "alice",
                "https://slack-user.tvp.example",
            )),
            "id_token_invalid",
        ),
        (
            Some(id_token_for(&stack, "bob", "okta-agent-client")),
            "id_token_invalid",
        ),
        (Some("not-a-jwt".to_string()), "id_token_invalid"),
    ];
    for (id_token, reason) in &refusals {
        let r = with_id_token(&stack, &bearer, id_token.as_deref());
        assert_eq!(r.status, 401, "{reason}: {}", r.text());
        assert_eq!(r.json()["error"], "invalid_token");
        let last = stack.decisions().last().cloned().unwrap_or_default();
        assert_eq!(last["reason"], *reason, "{last}");
    }
    assert_eq!(stack.sim.count(Endpoint::Okta), 0, "nothing was exchanged");
    let id_token = id_token_for(&stack, "alice", "okta-agent-client");
    let r = with_id_token(&stack, &bearer, Some(&id_token));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(backend_auth(&stack).starts_with("Bearer sts_slack_alice_"));
    let seen = stack.sim.backend_requests();
    assert_eq!(
        seen.last().unwrap().header("x-agent-id-token"),
        None,
        "stripped"
    );
    let sent = last_form_with(&stack, "subject_token_type");
    assert_eq!(
        form_field(&sent, "subject_token_type"),
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(form_field(&sent, "subject_token"), id_token);
    // Cached, but the ID token is still required.
    let r = with_id_token(&stack, &bearer, None);
    assert_eq!(r.status, 401, "{}", r.text());

    // Machine access: the agent's access token for its resource URL.
    let token = stack.token("slack", "alice");
    assert_eq!(stack.call("GET", "/slack/me", &token).status, 200);
    let sent = last_form_with(&stack, "subject_token_type");
    assert_eq!(
        form_field(&sent, "subject_token_type"),
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(form_field(&sent, "subject_token"), token);
}
