use super::*;
use crate::config;
use crate::secret::Secret;
use serde_json::{json, Value};

fn vault() -> VaultConfig {
    let doc = include_str!("../../../tenants.example.json");
    let cfg =
        config::parse(doc.as_bytes(), &|_| Some("s3cret".into())).unwrap_or_else(|e| panic!("{e}"));
    cfg.tenants[0].vault.clone()
}

fn answer(status: u16, body: Value) -> VaultOutcome {
    let r = CalloutResponse {
        status: Some(status),
        retry_after: Some("12".into()),
        body: Some(body.to_string().into_bytes()),
    };
    parse_exchange(&vault(), &r)
}

#[test]
fn request_uses_the_exact_literals() {
    let r = exchange_request(&vault(), "agent.jwt.token", Some("alice@work"));
    assert_eq!(
        (
            r.method,
            r.path.as_str(),
            r.authority.as_str(),
            r.cluster.as_str()
        ),
        ("POST", "/oauth/token", "127.0.0.1:9000", "sim_control")
    );
    assert!(r
        .headers
        .contains(&("content-type", "application/json".into())));
    let body: Value =
        serde_json::from_slice(r.body.as_deref().unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        body,
        json!({
            "grant_type": "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token",
            "client_id": "github-custom-api-client",
            "client_secret": "s3cret",
            "subject_token": "agent.jwt.token",
            "subject_token_type": "urn:ietf:params:oauth:token-type:access_token",
            "requested_token_type": "http://auth0.com/oauth/token-type/federated-connection-access-token",
            "connection": "github",
            "login_hint": "alice@work",
        })
    );
    let mut v = vault();
    v.subject_token_type = SubjectTokenType::RefreshToken;
    let body: Value = serde_json::from_slice(
        exchange_request(&v, "rt", None)
            .body
            .as_deref()
            .unwrap_or_default(),
    )
    .unwrap_or_default();
    assert_eq!(
        body["subject_token_type"],
        "urn:ietf:params:oauth:token-type:refresh_token"
    );
    assert!(body.get("login_hint").is_none() && body.get("scope").is_none());
}

#[test]
fn answers_map_to_outcomes() {
    assert_eq!(
        answer(
            200,
            json!({"access_token": "gho_x", "expires_in": 100, "token_type": "Bearer"})
        ),
        VaultOutcome::Token {
            access_token: Secret::new("gho_x"),
            expires_in: 100
        }
    );
    assert!(matches!(
        answer(200, json!({"access_token": "a b"})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(200, json!({"access_token": "x\r\nSet-Cookie: y"})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(200, json!({"access_token": ""})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(200, json!({"access_token": "x", "token_type": "DPoP"})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(200, json!({"access_token": "x", "expires_in": "soon"})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(200, json!([])),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    ));
    assert!(matches!(
        answer(
            401,
            json!({"error": "federated_connection_refresh_token_not_found"})
        ),
        VaultOutcome::ConnectRequired { .. }
    ));
    assert!(matches!(
        answer(401, json!({"error": "something_new"})),
        VaultOutcome::ConnectRequired { .. }
    ));
    assert!(matches!(
        answer(401, json!({"error": "invalid_client"})),
        VaultOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        answer(403, json!({"error": "access_denied"})),
        VaultOutcome::Misconfigured { .. }
    ));
    assert!(matches!(
        answer(400, json!({"error": "invalid_request"})),
        VaultOutcome::Misconfigured { .. }
    ));
    assert_eq!(
        answer(429, json!({"error": "too_many_requests"})),
        VaultOutcome::RateLimited {
            retry_after_seconds: Some(12)
        }
    );
    assert_eq!(
        answer(503, json!({})),
        VaultOutcome::Failed(DependencyFailure::Unavailable)
    );
    assert_eq!(
        answer(504, json!({})),
        VaultOutcome::Failed(DependencyFailure::Timeout)
    );
    assert_eq!(
        answer(500, json!({})),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
    let garbage = CalloutResponse {
        status: Some(401),
        retry_after: None,
        body: Some(b"<html>".to_vec()),
    };
    assert_eq!(
        parse_exchange(&vault(), &garbage),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
    let huge = CalloutResponse {
        status: Some(200),
        retry_after: None,
        body: None,
    };
    assert_eq!(
        parse_exchange(&vault(), &huge),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
}

#[test]
fn vault_error_code_is_sanitised_for_logs() {
    match answer(401, json!({"error": "bad\ncode\"<x>"})) {
        VaultOutcome::ConnectRequired { vault_error, .. } => assert_eq!(vault_error, "badcodex"),
        other => panic!("{other:?}"),
    }
}
