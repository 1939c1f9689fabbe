//! The sim's Token Vault exchange refuses what Auth0's refuses.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use sim::http::fetch;
use sim::{Mint, Sim, SimTenant, ACCESS_TOKEN_TYPE, FEDERATED_GRANT, FEDERATED_TOKEN_TYPE};

fn start() -> Sim {
    let doc = json!({"tenants": [{
        "id": "github", "issuer": "https://tenant.example/", "audience": "https://api.example",
        "algorithms": ["RS256", "ES256"], "scopes": {"read": ["r"], "write": ["w"]},
        "vault": {"type": "auth0", "domain": "tenant.example", "client_id": "cac",
                  "client_secret": "s", "connection": "github"},
    }]});
    Sim::start(SimTenant::from_filter_config(&doc).unwrap(), 0, 0).unwrap()
}

fn exchange(sim: &Sim, subject: &str) -> (u16, Value) {
    let body = json!({
        "grant_type": FEDERATED_GRANT, "client_id": "cac", "client_secret": "s",
        "subject_token": subject, "subject_token_type": ACCESS_TOKEN_TYPE,
        "requested_token_type": FEDERATED_TOKEN_TYPE, "connection": "github",
    });
    let headers = [("content-type", "application/json")];
    let r = fetch(
        sim.port,
        "POST",
        "/oauth/token",
        &headers,
        body.to_string().as_bytes(),
    )
    .unwrap();
    (r.status, r.json())
}

#[test]
fn only_tokens_auth0_could_have_signed_are_exchanged() {
    let sim = start();
    let token = |alg: &str| {
        sim.mint(&Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            alg: Some(alg.into()),
            ..Mint::default()
        })
        .unwrap()
    };
    let (status, body) = exchange(&sim, &token("RS256"));
    assert_eq!(status, 200, "{body}");
    // Valid, unexpired, for the right API, but ES256: not an Auth0 access token.
    let (status, body) = exchange(&sim, &token("ES256"));
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_grant")),
        "{body}"
    );
}
