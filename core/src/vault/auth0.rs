//! Auth0 Token Vault: the federated-connection access-token exchange (`POST /oauth/token`).

use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{SubjectTokenType, VaultBackend, VaultConfig};
use crate::vault::{error_answer, retry_after_seconds, token_answer, VaultOutcome};

pub const GRANT_TYPE: &str =
    "urn:auth0:params:oauth:grant-type:token-exchange:federated-connection-access-token";
pub const REQUESTED_TOKEN_TYPE: &str =
    "http://auth0.com/oauth/token-type/federated-connection-access-token";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";

/// Errors that mean the filter's own client or the Auth0 tenant's settings are wrong, not the
/// user's account: connecting cannot help, so the agent gets a 502 and the operator a log line.
/// (`mfa_required`: the tenant's MFA policy must be "Never" for Token Vault, see
/// <https://auth0.com/docs/secure/call-apis-on-users-behalf/token-vault/configure-token-vault>.)
const MISCONFIGURATION_ERRORS: &[&str] = &[
    "invalid_client",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_request",
    "mfa_required",
];

/// Errors that mean Auth0 refused the subject token itself (expired by its clock, revoked).
/// The filter already checked the token, so this is the vault's word against it: the agent
/// must get a new token (401 `invalid_token`), not be sent round a connect flow.
const SUBJECT_REJECTED_ERRORS: &[&str] = &["invalid_grant", "invalid_token", "expired_token"];

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

/// Read the vault's answer. Auth0 publishes statuses, not error codes, for this grant: 401
/// covers an invalid subject token, a wrong client and a missing connected account alike
/// (<https://auth0.com/docs/api/authentication/token-vault-token-exchange/get-token>). The
/// auth0-ai SDKs treat every 4xx as "authorization required" and re-consent when the answer's
/// `scope` lacks a required scope (auth0-ai-js `TokenVaultAuthorizerBase.ts`, auth0-ai-python
/// `token_vault_authorizer.py`). So: the codes where connecting cannot help are told apart
/// (the filter's client, the subject token), every other 4xx asks the user to connect.
pub fn parse_exchange(
    vault: &VaultConfig,
    required_scopes: &[String],
    response: &CalloutResponse,
    now_s: u64,
) -> VaultOutcome {
    let Some(body) = &response.body else {
        return VaultOutcome::Failed(DependencyFailure::BadAnswer);
    };
    match response.status {
        Some(200) => match token_answer(body, "bearer", None) {
            Some(issued) => {
                let missing = missing_scopes(required_scopes, issued.scope.as_deref());
                if missing.is_empty() {
                    VaultOutcome::Token {
                        access_token: issued.access_token,
                        expires_in: issued.expires_in,
                    }
                } else {
                    VaultOutcome::ConnectRequired {
                        vault_error: "insufficient_scope".into(),
                        interaction_uri: None,
                        missing_scopes: missing,
                    }
                }
            }
            None => VaultOutcome::Failed(DependencyFailure::BadAnswer),
        },
        Some(429) => VaultOutcome::RateLimited {
            retry_after_seconds: retry_after_seconds(response, now_s),
        },
        Some(400..=499) => {
            let Some((error, code, _)) = error_answer(body) else {
                return VaultOutcome::Failed(DependencyFailure::BadAnswer);
            };
            if vault.connect_required_errors.contains(&error) {
                connect_required(code)
            } else if SUBJECT_REJECTED_ERRORS.contains(&error.as_str()) {
                VaultOutcome::SubjectRejected { vault_error: code }
            } else if MISCONFIGURATION_ERRORS.contains(&error.as_str()) {
                VaultOutcome::Misconfigured { vault_error: code }
            } else {
                connect_required(code)
            }
        }
        other => VaultOutcome::Failed(DependencyFailure::from_status(other)),
    }
}

fn connect_required(vault_error: String) -> VaultOutcome {
    VaultOutcome::ConnectRequired {
        vault_error,
        interaction_uri: None,
        missing_scopes: Vec::new(),
    }
}

/// Required scopes the answer's `scope` lacks. An answer without `scope` carries the scopes
/// granted when the account was connected (Auth0 sends it only when they differ), so nothing
/// is missing.
fn missing_scopes(required: &[String], granted: Option<&str>) -> Vec<String> {
    let Some(granted) = granted else {
        return Vec::new();
    };
    required
        .iter()
        .filter(|r| !granted.split(' ').any(|g| g == r.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
