#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn alice_reaches_the_backend_with_her_downstream_token() {
    let stack = Stack::start();
    let token = stack.token("github", "alice");
    let r = stack.call("GET", "/github/user?x=1", &token);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), stack.log_tail());
    let headers = echoed_headers(&r);
    let auth: Vec<&String> = headers
        .iter()
        .filter(|(n, _)| n == "authorization")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(auth.len(), 1);
    assert!(auth[0].starts_with("Bearer sim_github_alice_"), "{auth:?}");
    assert_eq!(r.json()["path"], "/user");
    assert_eq!(r.json()["query"], "x=1");
}

#[test]
fn envoy_verifies_signatures_natively() {
    let stack = Stack::start();
    let rs = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        alg: Some("RS256".into()),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &rs).status, 200);
    let log = stack.log_text();
    assert!(
        log.contains("signature verification: host-native"),
        "{}",
        stack.log_tail()
    );
}
