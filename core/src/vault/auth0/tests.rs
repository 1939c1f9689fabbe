use super::*;
use crate::config;
use crate::secret::Secret;
use serde_json::{json, Value};

fn vault() -> VaultConfig {
    let doc = &crate::testing::example_json();
    let cfg = config::parse(
        doc.as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some("s3cret".into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cfg.tenants[0].vault.clone()
}

fn answer(status: u16, body: Value) -> VaultOutcome {
    let r = CalloutResponse {
        status: Some(status),
        retry_after: Some("12".into()),
        rate_limit_reset: None,
        body: Some(body.to_string().into_bytes()),
    };
    parse_exchange(&vault(), &[], &r, NOW_S)
}

const NOW_S: u64 = 1_800_000_000;

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
    // As the auth0-ai SDKs read it: any other 4xx asks for authorization (connecting).
    assert!(matches!(
        answer(403, json!({"error": "access_denied"})),
        VaultOutcome::ConnectRequired { .. }
    ));
    assert!(matches!(
        answer(400, json!({"error": "mfa_required"})),
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
        rate_limit_reset: None,
        body: Some(b"<html>".to_vec()),
    };
    assert_eq!(
        parse_exchange(&vault(), &[], &garbage, NOW_S),
        VaultOutcome::Failed(DependencyFailure::BadAnswer)
    );
    let huge = CalloutResponse {
        status: Some(200),
        retry_after: None,
        rate_limit_reset: None,
        body: None,
    };
    assert_eq!(
        parse_exchange(&vault(), &[], &huge, NOW_S),
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

#[test]
fn a_rejected_subject_token_is_not_a_connect_prompt() {
    // The sim (like Auth0) answers 401 invalid_grant for an expired or revoked subject token.
    for error in ["invalid_grant", "invalid_token"] {
        assert!(
            matches!(
                answer(
                    401,
                    json!({"error": error, "error_description": "Invalid subject token"})
                ),
                VaultOutcome::SubjectRejected { .. }
            ),
            "{error}"
        );
    }
}

#[test]
fn missing_provider_scopes_ask_for_re_consent_naming_them() {
    let required = vec!["repo".to_string(), "gist".to_string()];
    let token = |scope: Option<&str>| {
        CalloutResponse {
        status: Some(200),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(
            json!({"access_token": "gho_x", "token_type": "Bearer", "expires_in": 600, "scope": scope})
                .to_string()
                .into_bytes(),
        ),
    }
    };
    match parse_exchange(&vault(), &required, &token(Some("repo read:user")), NOW_S) {
        VaultOutcome::ConnectRequired { missing_scopes, .. } => {
            assert_eq!(missing_scopes, vec!["gist".to_string()]);
        }
        other => panic!("{other:?}"),
    }
    // Scope tokens are compared whole, never as substrings.
    match parse_exchange(
        &vault(),
        &required,
        &token(Some("repo:status gists")),
        NOW_S,
    ) {
        VaultOutcome::ConnectRequired { missing_scopes, .. } => {
            assert_eq!(missing_scopes, required);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse_exchange(&vault(), &required, &token(Some("gist repo")), NOW_S),
        VaultOutcome::Token { .. }
    ));
    // No `scope` in the answer: the scopes granted at connection time, nothing missing.
    assert!(matches!(
        parse_exchange(&vault(), &required, &token(None), NOW_S),
        VaultOutcome::Token { .. }
    ));
}

#[test]
fn auth0_rate_limit_reset_becomes_retry_after() {
    let limited = |retry_after: Option<&str>, reset: Option<String>| CalloutResponse {
        status: Some(429),
        retry_after: retry_after.map(str::to_string),
        rate_limit_reset: reset,
        body: Some(b"{\"error\":\"too_many_requests\"}".to_vec()),
    };
    let wait = |r: CalloutResponse| match parse_exchange(&vault(), &[], &r, NOW_S) {
        VaultOutcome::RateLimited {
            retry_after_seconds,
        } => retry_after_seconds,
        other => panic!("{other:?}"),
    };
    assert_eq!(wait(limited(None, Some((NOW_S + 7).to_string()))), Some(7));
    // A reset already past still means "not now"; a far one is capped.
    assert_eq!(wait(limited(None, Some((NOW_S - 5).to_string()))), Some(1));
    assert_eq!(
        wait(limited(None, Some((NOW_S + 86_400).to_string()))),
        Some(3600)
    );
    assert_eq!(
        wait(limited(Some("3"), Some((NOW_S + 7).to_string()))),
        Some(3)
    );
    assert_eq!(wait(limited(None, Some("soon".into()))), None);
}
