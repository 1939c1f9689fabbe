//! MCP-style discovery in real Envoy: RFC 9728 protected resource metadata per tenant, and
//! `resource_metadata` in every challenge so a client can find the authorization server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::json;

#[test]
fn protected_resource_metadata_for_every_tenant() {
    let stack = Stack::start();
    let r = stack.request(
        "GET",
        "/.well-known/oauth-protected-resource/github/mcp",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "resource": "http://localhost:3000/github/mcp",
            "authorization_servers": [format!("http://127.0.0.1:{}/issuers/github/", stack.sim.port)],
            "scopes_supported": ["github:read", "github:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "GitHub via AI Relay",
        })
    );
    let g = stack
        .request(
            "GET",
            "/.well-known/oauth-protected-resource/google",
            &[],
            b"",
        )
        .json();
    assert_eq!(g["resource"], "http://localhost:3000/google");
    assert_eq!(
        g["authorization_servers"],
        json!([format!(
            "http://127.0.0.1:{}/issuers/google/",
            stack.sim.port
        )])
    );
    assert_eq!(
        stack
            .request(
                "GET",
                "/.well-known/oauth-protected-resource/nope",
                &[],
                b""
            )
            .status,
        404
    );
    assert_eq!(
        stack
            .request("GET", "/.well-known/openid-configuration", &[], b"")
            .status,
        404
    );
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
}

#[test]
fn challenges_point_at_the_metadata_of_the_requested_resource() {
    let stack = Stack::start();
    let meta = "resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/github/mcp\"";
    let r = stack.request("POST", "/github/mcp?session=1", &[], b"{}");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer realm=\"github\", {meta}").as_str())
    );
    let expired = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"exp": 1})),
        ..Mint::default()
    });
    let r = stack.call("GET", "/github/mcp", &expired);
    assert!(r.header("www-authenticate").unwrap().contains(meta));
    let read_only = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        scope: Some("github:read".into()),
        ..Mint::default()
    });
    let r = stack.call("POST", "/github/mcp", &read_only);
    let h = r.header("www-authenticate").unwrap();
    assert!(
        h.contains(meta)
            && h.contains("error=\"insufficient_scope\", ")
            && h.contains("scope=\"github:write\""),
        "{h}"
    );
    // A hostile path is quoted, never echoed raw into the header.
    let r = stack.request("GET", "/github/a%22b\"c", &[], b"");
    let h = r.header("www-authenticate").unwrap_or_default();
    assert!(h.contains("github/a%22b\\\"c\""), "{h}");
}

#[test]
fn resource_url_from_the_request_when_configured() {
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c| {
            c["settings"]
                .as_object_mut()
                .unwrap()
                .remove("public_base_url");
            c["settings"]["resource_from_request"] = json!(true);
        })),
        ..Options::default()
    });
    let r = stack.request("GET", "/github/mcp", &[("x-forwarded-proto", "https")], b"");
    assert!(r.header("www-authenticate").unwrap().contains(
        "resource_metadata=\"https://localhost/.well-known/oauth-protected-resource/github/mcp\""
    ));
    let prm = stack
        .request(
            "GET",
            "/.well-known/oauth-protected-resource/github/mcp",
            &[],
            b"",
        )
        .json();
    assert_eq!(prm["resource"], "http://localhost/github/mcp");
}
