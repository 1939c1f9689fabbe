//! Auth0 Token Vault: the federated-connection access-token exchange (`POST /oauth/token`).

use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{SubjectTokenType, VaultBackend, VaultConfig};
use crate::vault::{error_answer, parse_retry_after, token_answer, VaultOutcome};

pub const GRANT_TYPE: &str =
    "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token";
pub const REQUESTED_TOKEN_TYPE: &str =
    "http://auth0.com/oauth/token-type/federated-connection-access-token";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// Errors that mean the filter's own client is wrong, not the user's account.
const MISCONFIGURATION_ERRORS: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "mfa_required",
    "access_denied",
    "unsupported_grant_type",
];

/// Build the exchange. `subject_token` is the agent's access token or the user's refresh token,
/// as the tenant's `subject_token_type` says. No `scope` is sent, as in Auth0's own SDKs.
pub fn exchange_request(
    vault: &VaultConfig,
    subject_token: &str,
    login_hint: Option<&str>,
) -> CalloutRequest {
    let client_secret = match &vault.backend {
        VaultBackend::Auth0 { client_secret } => client_secret.expose(),
        _ => "",
    };
    let mut body = serde_json::json!({
        "grant_type": GRANT_TYPE,
        "client_id": vault.client_id,
        "client_secret": client_secret,
        "subject_token": subject_token,
        "subject_token_type": match vault.subject_token_type {
            SubjectTokenType::RefreshToken => REFRESH_TOKEN_TYPE,
            SubjectTokenType::AccessToken | SubjectTokenType::IdToken => ACCESS_TOKEN_TYPE,
        },
        "requested_token_type": REQUESTED_TOKEN_TYPE,
        "connection": vault.connection,
    });
    if let (Some(hint), Some(obj)) = (login_hint, body.as_object_mut()) {
        obj.insert("login_hint".into(), hint.into());
    }
    CalloutRequest {
        cluster: vault.cluster.clone(),
        method: "POST",
        authority: vault.domain.clone(),
        path: "/oauth/token".into(),
        headers: vec![
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        body: Some(body.to_string().into_bytes()),
    }
}

/// Read the vault's answer.
pub fn parse_exchange(vault: &VaultConfig, response: &CalloutResponse) -> VaultOutcome {
    let Some(body) = &response.body else {
        return VaultOutcome::Failed(DependencyFailure::BadAnswer);
    };
    match response.status {
        Some(200) => match token_answer(body, "bearer", None) {
            Some((access_token, expires_in)) => VaultOutcome::Token {
                access_token,
                expires_in,
            },
            None => VaultOutcome::Failed(DependencyFailure::BadAnswer),
        },
        Some(429) => VaultOutcome::RateLimited {
            retry_after_seconds: parse_retry_after(response.retry_after.as_deref()),
        },
        Some(status @ (400 | 401 | 403)) => {
            let Some((error, code, _)) = error_answer(body) else {
                return VaultOutcome::Failed(DependencyFailure::BadAnswer);
            };
            let connect = |vault_error| VaultOutcome::ConnectRequired {
                vault_error,
                interaction_uri: None,
            };
            if vault.connect_required_errors.contains(&error) {
                connect(code)
            } else if status == 401 && !MISCONFIGURATION_ERRORS.contains(&error.as_str()) {
                // Auth0 documents 401 for "no identity matches the connection"; the subject
                // token already passed our own validation, so the account is what is missing.
                connect(code)
            } else {
                VaultOutcome::Misconfigured { vault_error: code }
            }
        }
        other => VaultOutcome::Failed(DependencyFailure::from_status(other)),
    }
}

#[cfg(test)]
mod tests;
