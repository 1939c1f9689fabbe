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
    // Metadata only for a resource the tenant names (RFC 9728 section 3.3: `resource` is the
    // URL the metadata was fetched for): not for its root, nor for a tenant that names none.
    for path in [
        "/.well-known/oauth-protected-resource/github",
        "/.well-known/oauth-protected-resource/github/mcp/x",
        "/.well-known/oauth-protected-resource/google",
        "/.well-known/oauth-protected-resource/nope",
    ] {
        assert_eq!(stack.request("GET", path, &[], b"").status, 404, "{path}");
    }
    assert_eq!(
        stack
            .request("GET", "/.well-known/openid-configuration", &[], b"")
            .status,
        404
    );
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
}

#[test]
fn challenges_point_at_the_metadata_of_the_requested_resource_with_its_scopes() {
    let stack = Stack::start();
    let meta = "resource_metadata=\"http://localhost:3000/.well-known/oauth-protected-resource/github/mcp\"";
    let r = stack.request("POST", "/github/mcp?session=1", &[], b"{}");
    assert_eq!(r.status, 401);
    // MCP authorization: the scopes to ask for up front; for an MCP endpoint every scope, so
    // the session's GET and POST need one sign-in.
    let all = "scope=\"github:read github:write\"";
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer realm=\"github\", {meta}, {all}").as_str())
    );
    let expired = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"exp": 1})),
        ..Mint::default()
    });
    let r = stack.call("GET", "/github/mcp", &expired);
    let h = r.header("www-authenticate").unwrap();
    assert!(h.contains(meta) && h.ends_with(all), "{h}");
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
    // Below the resource: its metadata. Outside every resource (a REST path, a hostile path):
    // none, and the request path is never echoed.
    let r = stack.request("GET", "/github/mcp/sub", &[], b"");
    assert!(r.header("www-authenticate").unwrap().contains(meta));
    for path in ["/github/user", "/github/a%22b\"c", "/google/files"] {
        let r = stack.request("GET", path, &[], b"");
        let h = r.header("www-authenticate").unwrap_or_default();
        assert!(
            !h.contains("resource_metadata") && !h.contains("a%22b"),
            "{path}: {h}"
        );
    }
}

#[test]
fn with_the_public_url_from_the_request_only_named_resources_have_metadata() {
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c| {
            c["settings"]
                .as_object_mut()
                .unwrap()
                .remove("public_base_url");
            c["settings"]["resource_from_request"] = json!(true);
            c["tenants"][0]["resources"] = json!(["https://localhost/github/mcp"]);
        })),
        ..Options::default()
    });
    let https = [("x-forwarded-proto", "https")];
    let r = stack.request("GET", "/github/mcp", &https, b"");
    assert!(r.header("www-authenticate").unwrap().contains(
        "resource_metadata=\"https://localhost/.well-known/oauth-protected-resource/github/mcp\""
    ));
    let prm = "/.well-known/oauth-protected-resource/github/mcp";
    assert_eq!(
        stack.request("GET", prm, &https, b"").json()["resource"],
        "https://localhost/github/mcp"
    );
    // Another origin (plain http here) is not a resource the tenant named: no metadata.
    assert_eq!(stack.request("GET", prm, &[], b"").status, 404);
    let r = stack.request("GET", "/github/mcp", &[], b"");
    assert!(!r
        .header("www-authenticate")
        .unwrap()
        .contains("resource_metadata"));
}
