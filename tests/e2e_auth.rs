//! Every refusal reason, in real Envoy: status, challenge, and that nothing was forwarded and
//! the vault was not asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use sim::keys::b64;

fn mint(stack: &Stack, claims: Value) -> String {
    stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(claims),
        ..Mint::default()
    })
}

/// Assert a 401 invalid_token with the given description fragment, and no side effects.
fn assert_invalid_token(stack: &Stack, token: &str, fragment: &str) {
    let r = stack.call("GET", "/github/user", token);
    assert_eq!(r.status, 401, "{fragment}: {}", r.text());
    let body = r.json();
    assert_eq!(body["error"], "invalid_token", "{fragment}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains(fragment),
        "{fragment}: {body}"
    );
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"github\"")
            && challenge.contains("\", error=\"invalid_token\""),
        "{challenge}"
    );
    assert!(!r.text().contains(token), "the token is echoed back");
}

#[test]
fn missing_and_malformed_authorization() {
    let stack = Stack::start();
    let r = stack.request("GET", "/github/user", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"github\", scope=\"github:read\"")
    );
    let token = stack.token("github", "alice");
    // Another scheme is an unsupported method: 401 with the bare challenge (RFC 6750 3.1).
    for value in ["Basic dXNlcjpwYXNz", "Token abc"] {
        let r = stack.request("GET", "/github/user", &[("authorization", value)], b"");
        assert_eq!(r.status, 401, "{value}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"github\", scope=\"github:read\""),
            "{value}"
        );
    }
    for value in ["Bearer", "Bearer ", "Bearer  x.y.z", "Bearer a b"] {
        let r = stack.request("GET", "/github/user", &[("authorization", value)], b"");
        assert_eq!(r.status, 400, "{value}");
        assert!(r
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("error=\"invalid_request\""));
    }
    let auth = format!("Bearer {token}");
    let r = stack.request(
        "GET",
        "/github/user",
        &[("authorization", &auth), ("authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 400, "two Authorization headers");
    // The scheme is case-insensitive.
    let lower = format!("bearer {token}");
    assert_eq!(
        stack
            .request("GET", "/github/user", &[("authorization", &lower)], b"")
            .status,
        200
    );
    // A token in a cookie is not a credential; one in the query is refused outright, so a
    // request never goes on with a token in its URL.
    let r = stack.request(
        "GET",
        "/github/user",
        &[("cookie", &format!("token={token}"))],
        b"",
    );
    assert_eq!(r.status, 401);
    let r = stack.request(
        "GET",
        &format!("/github/user?access_token={token}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 400);
    assert_eq!(stack.sim.count(Endpoint::Backend), 1);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
}

#[test]
fn claim_failures() {
    let stack = Stack::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert_invalid_token(&stack, &mint(&stack, json!({"exp": now - 120})), "expired");
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"nbf": now + 600})),
        "not yet valid",
    );
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"aud": "https://elsewhere"})),
        "not intended for this resource",
    );
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"aud": []})),
        "not intended for this resource",
    );
    let issuer = format!("http://127.0.0.1:{}/issuers/github", stack.sim.port);
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"iss": issuer})),
        "trusted issuer",
    );
    assert_invalid_token(&stack, &mint(&stack, json!({"exp": null})), "malformed");
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"exp": "4000000000"})),
        "malformed",
    );
    assert_invalid_token(
        &stack,
        &mint(&stack, json!({"exp": 4000000000.5})),
        "malformed",
    );
    assert_invalid_token(&stack, &mint(&stack, json!({"sub": null})), "no subject");
    // aud as an array holding the audience among others is fine.
    let token = mint(
        &stack,
        json!({"aud": ["https://other", "http://localhost:3000/github/mcp"]}),
    );
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
}

#[test]
fn signature_and_algorithm_failures() {
    let stack = Stack::start();
    let good = stack.token("github", "alice");
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();
    // Signature of another token.
    let other = mint(&stack, json!({"jti": "other"}));
    let other_sig = other.rsplit('.').next().unwrap();
    assert_invalid_token(
        &stack,
        &format!("{head}.{payload}.{other_sig}"),
        "signature is invalid",
    );
    // Payload changed after signing (scope escalation attempt).
    let forged = b64(
        json!({"sub": "alice", "scope": "github:read github:write admin"})
            .to_string()
            .as_bytes(),
    );
    assert_invalid_token(&stack, &format!("{head}.{forged}.{sig}"), "");
    // alg none, in its spellings, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = b64(json!({"alg": alg, "typ": "JWT"}).to_string().as_bytes());
        assert_invalid_token(&stack, &format!("{h}.{payload}.{sig}"), "algorithm");
        assert_invalid_token(&stack, &format!("{h}.{payload}."), "malformed");
    }
    // HS256 "signed" with the RSA public key (algorithm confusion).
    let h = b64(json!({"alg": "HS256", "kid": "github-rsa-1"})
        .to_string()
        .as_bytes());
    assert_invalid_token(&stack, &format!("{h}.{payload}.{sig}"), "algorithm");
    // EdDSA is valid crypto from this issuer, but not on github's allow-list.
    let ed = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        alg: Some("EdDSA".into()),
        ..Mint::default()
    });
    assert_invalid_token(&stack, &ed, "algorithm");
    // ES256 is on the list and verifies: the filter takes it to the vault, which refuses it
    // as Auth0 does (Auth0 never signs ES256), so the agent hears its token is no longer
    // accepted, not that its signature is bad.
    let es = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        alg: Some("ES256".into()),
        ..Mint::default()
    });
    let vault = stack.sim.count(Endpoint::Vault);
    assert_invalid_token(&stack, &es, "no longer accepts");
    assert_eq!(stack.sim.count(Endpoint::Vault), vault + 1);
    // Unknown kid (after one allowed refetch), and JOSE headers we refuse.
    let unknown = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        header: Some(json!({"kid": "nope"})),
        ..Mint::default()
    });
    assert_invalid_token(&stack, &unknown, "unknown key");
    let crit = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        header: Some(json!({"crit": ["exp"], "exp": 1})),
        ..Mint::default()
    });
    assert_invalid_token(&stack, &crit, "unsupported JOSE header");
    let jku = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        header: Some(json!({"kid": "nope", "jku": "http://127.0.0.1:1/evil.json"})),
        ..Mint::default()
    });
    assert_invalid_token(&stack, &jku, "unknown key");
    for junk in ["x.y.z", "a.b", "a.b.c.d.e", "eyJ.eyJ.sig", "!!!.???.***"] {
        let r = stack.call("GET", "/github/user", junk);
        assert!(matches!(r.status, 400 | 401), "{junk}: {}", r.status);
    }
    let huge = format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c");
    assert_invalid_token(&stack, &huge, "too large");
    // Nothing reached the backend; the only exchange was the ES256 token's, refused.
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
}

#[test]
fn a_token_for_one_tenant_is_refused_by_another() {
    let stack = Stack::start();
    let github = stack.token("github", "alice");
    let google = stack.mint(Mint {
        tenant: "google".into(),
        sub: "alice".into(),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &github).status, 200);
    let r = stack.call("GET", "/google/files", &github);
    assert_eq!(r.status, 401, "{}", r.text());
    let r = stack.call("GET", "/github/user", &google);
    assert_eq!(r.status, 401, "{}", r.text());
    // Even with the other tenant's audience, the issuer does not match.
    let cross = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"aud": "https://google.tvp.example"})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/google/files", &cross).status, 401);
    assert_eq!(stack.sim.count(Endpoint::Backend), 1);
}

#[test]
fn scopes_by_method() {
    let stack = Stack::start();
    let scoped = |scope: &str| {
        stack.mint(Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            scope: Some(scope.into()),
            ..Mint::default()
        })
    };
    let read = scoped("github:read");
    let write = scoped("github:write");
    for method in ["GET", "HEAD", "OPTIONS"] {
        let r = stack.call(method, "/github/user", &read);
        assert_eq!(
            r.status,
            200,
            "{method}: {} {:?}\n{}",
            r.text(),
            r.headers,
            stack.log_tail()
        );
    }
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let r = stack.call(method, "/github/repos", &read);
        assert_eq!(r.status, 403, "{method}");
        if method != "HEAD" {
            assert_eq!(r.json()["error"], "insufficient_scope");
            assert_eq!(r.json()["scope"], "github:write");
        }
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains("scope=\"github:write\""),
            "{challenge}"
        );
        assert_eq!(
            stack.call(method, "/github/repos", &write).status,
            200,
            "{method}"
        );
    }
    // github: write does not imply read.
    let r = stack.call("GET", "/github/user", &write);
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["scope"], "github:read");
    // Exact tokens only: look-alikes do not count.
    assert_eq!(
        stack
            .call(
                "GET",
                "/github/user",
                &scoped("github:reader xgithub:read github")
            )
            .status,
        403
    );
    // google: write implies read, and scopes may come from `permissions`.
    let g = |claims: Value| {
        stack.mint(Mint {
            tenant: "google".into(),
            sub: "alice".into(),
            scope: Some(String::new()),
            claims: Some(claims),
            ..Mint::default()
        })
    };
    assert_eq!(
        stack
            .call("GET", "/google/files", &g(json!({"scope": "drive:write"})))
            .status,
        200
    );
    assert_eq!(
        stack
            .call(
                "POST",
                "/google/files",
                &g(json!({"scope": null, "permissions": ["drive:write"]}))
            )
            .status,
        200
    );
    // google does not trust `scp`.
    assert_eq!(
        stack
            .call(
                "GET",
                "/google/files",
                &g(json!({"scope": null, "scp": ["drive:read"]}))
            )
            .status,
        403
    );
}

#[test]
fn a_tenant_asking_for_rfc9068_tokens_refuses_other_jwts_of_its_issuer() {
    // `token_typ: at+jwt`: an ID token or any other JWT the issuer signs, with the right
    // `aud`, is not an access token (RFC 9068 4, RFC 8725 3.11).
    let stack = Stack::with(Options {
        edit: Some(Box::new(|c| c["tenants"][0]["token_typ"] = json!("at+jwt"))),
        ..Options::default()
    });
    let typed = |typ: Value| {
        stack.mint(Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            header: Some(json!({ "typ": typ })),
            ..Mint::default()
        })
    };
    assert_invalid_token(&stack, &typed(json!("JWT")), "typ at+jwt");
    assert_invalid_token(&stack, &typed(Value::Null), "typ at+jwt");
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    for typ in ["at+jwt", "application/at+jwt"] {
        let r = stack.call("GET", "/github/user", &typed(json!(typ)));
        assert_eq!(r.status, 200, "{typ}: {}", r.text());
    }
}
