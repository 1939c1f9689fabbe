//! Token Vault backends: each builds its exchange request and reads the answer, without I/O.
//!
//! - `auth0`: Auth0 Token Vault, one call;
//! - `okta`: Okta's AI agent token exchange, a Resource server (STS) in one call, or Cross App
//!   Access in two (an ID-JAG from the IdP, then an access token from the resource's AS).

pub mod assertion;
pub mod auth0;
pub mod okta;

use serde::Deserialize;

use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{VaultBackend, VaultConfig};
use crate::crypto::signing::AssertionSigner;
use crate::secret::Secret;

/// Longest downstream token accepted from a vault (it becomes a request header).
pub const MAX_DOWNSTREAM_TOKEN_BYTES: usize = 16 * 1024;

/// Seconds to keep a token whose answer did not say how long it lives.
const DEFAULT_EXPIRES_IN: u64 = 300;

/// Longest lifetime believed from a vault answer (a day): a huge `expires_in` is not trusted.
const MAX_EXPIRES_IN: u64 = 86_400;

/// What a vault exchange produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultOutcome {
    Token {
        access_token: Secret,
        expires_in: u64,
    },
    /// The user has not connected the downstream account (or it needs re-consent).
    ConnectRequired {
        vault_error: String,
        /// Where the vault itself wants the user sent (Okta's `interaction_uri`).
        interaction_uri: Option<String>,
        /// Provider scopes the connection lacks (re-consent), when the vault's answer said.
        missing_scopes: Vec<String>,
    },
    /// The vault refused the agent's token itself (expired at the vault's clock, revoked):
    /// the agent needs a new token; connecting an account cannot help.
    SubjectRejected {
        vault_error: String,
    },
    /// The vault refused the filter itself (bad client, not allowed): an operator problem.
    Misconfigured {
        vault_error: String,
    },
    /// The resource's authorization server does not allow this access.
    Forbidden {
        vault_error: String,
    },
    RateLimited {
        retry_after_seconds: Option<u64>,
    },
    Failed(DependencyFailure),
}

impl VaultOutcome {
    pub fn code(&self) -> &'static str {
        match self {
            VaultOutcome::Token { .. } => "ok",
            VaultOutcome::ConnectRequired { .. } => "connect_required",
            VaultOutcome::SubjectRejected { .. } => "vault_subject_rejected",
            VaultOutcome::Misconfigured { .. } => "vault_misconfigured",
            VaultOutcome::Forbidden { .. } => "vault_forbidden",
            VaultOutcome::RateLimited { .. } => "vault_rate_limited",
            VaultOutcome::Failed(DependencyFailure::Unavailable) => "vault_unavailable",
            VaultOutcome::Failed(DependencyFailure::Timeout) => "vault_timeout",
            VaultOutcome::Failed(DependencyFailure::BadAnswer) => "vault_bad_answer",
        }
    }
}

/// After one call of an exchange: the result, or the next call to make.
#[derive(Debug)]
pub enum Step {
    Done(VaultOutcome),
    Next(CalloutRequest),
}

/// The first call of the tenant's exchange. `now_s` dates client assertions.
pub fn first_request(
    vault: &VaultConfig,
    subject_token: &str,
    login_hint: Option<&str>,
    signer: &dyn AssertionSigner,
    now_s: u64,
) -> Result<CalloutRequest, VaultOutcome> {
    match &vault.backend {
        VaultBackend::Auth0 { .. } => Ok(auth0::exchange_request(vault, subject_token, login_hint)),
        VaultBackend::OktaSts { .. } | VaultBackend::IdJag { .. } => {
            okta::first_request(vault, subject_token, signer, now_s)
        }
    }
}

/// Read the answer to call number `leg` (0 first) of the tenant's exchange. `required_scopes`
/// are the provider scopes the downstream token must carry (the tenant's `connect.scopes`).
pub fn read_answer(
    vault: &VaultConfig,
    required_scopes: &[String],
    leg: u8,
    response: &CalloutResponse,
    signer: &dyn AssertionSigner,
    now_s: u64,
) -> Step {
    match &vault.backend {
        VaultBackend::Auth0 { .. } => Step::Done(auth0::parse_exchange(
            vault,
            required_scopes,
            response,
            now_s,
        )),
        VaultBackend::OktaSts { .. } | VaultBackend::IdJag { .. } => {
            okta::read_answer(vault, leg, response, signer, now_s)
        }
    }
}

/// A token is sent as a header value: printable ASCII only, so a vault answer can never
/// inject a header line.
pub fn is_header_safe_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_DOWNSTREAM_TOKEN_BYTES
        && token.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

/// Longest wait ever passed on to a client.
const MAX_RETRY_AFTER_SECONDS: u64 = 3600;

/// Seconds until a rate-limited call may be retried: `Retry-After` in seconds (the HTTP-date
/// form is not worth trusting from a vault), else Auth0's standard `X-RateLimit-Reset` (epoch
/// seconds: <https://auth0.com/docs/troubleshoot/customer-support/operational-policies/rate-limit-policy>),
/// capped. At least one second: a reset already past still means "not now".
pub fn retry_after_seconds(response: &CalloutResponse, now_s: u64) -> Option<u64> {
    if let Some(seconds) = response
        .retry_after
        .as_deref()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Some(seconds.min(MAX_RETRY_AFTER_SECONDS));
    }
    let reset = response
        .rate_limit_reset
        .as_deref()?
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(
        reset
            .saturating_sub(now_s)
            .clamp(1, MAX_RETRY_AFTER_SECONDS),
    )
}

/// A successful token answer.
#[derive(Debug)]
struct Issued {
    access_token: Secret,
    expires_in: u64,
    /// The provider scopes the token carries, when the answer said (space-separated).
    scope: Option<String>,
}

#[derive(Deserialize)]
struct Success {
    access_token: String,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    issued_token_type: Option<String>,
}

/// A successful token answer: the token (header-safe), its lifetime and scopes. `token_type`
/// must be `expected_type` (case-insensitive) when given; `issued_token_type`, when the answer
/// has one, must be `issued`.
fn token_answer(body: &[u8], expected_type: &str, issued: Option<&str>) -> Option<Issued> {
    let s: Success = serde_json::from_slice(body).ok()?;
    let type_ok = s
        .token_type
        .as_deref()
        .is_none_or(|t| t.eq_ignore_ascii_case(expected_type));
    let issued_ok = match (issued, s.issued_token_type.as_deref()) {
        (Some(want), Some(got)) => want == got,
        _ => true,
    };
    (type_ok && issued_ok && is_header_safe_token(&s.access_token)).then(|| Issued {
        access_token: Secret::new(s.access_token),
        expires_in: s
            .expires_in
            .unwrap_or(DEFAULT_EXPIRES_IN)
            .min(MAX_EXPIRES_IN),
        scope: s.scope,
    })
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    interaction_uri: Option<String>,
}

/// An OAuth error answer: the raw `error`, a log-safe copy of it, and `interaction_uri`.
fn error_answer(body: &[u8]) -> Option<(String, String, Option<String>)> {
    let e: ErrorBody = serde_json::from_slice(body).ok()?;
    // Only an identifier-like code is kept: it goes into logs.
    let code: String = e
        .error
        .chars()
        .take(64)
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    Some((e.error, code, e.interaction_uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_capped() {
        let body = format!(r#"{{"access_token":"t","expires_in":{}}}"#, u64::MAX);
        let issued = token_answer(body.as_bytes(), "bearer", None);
        assert_eq!(issued.map(|i| i.expires_in), Some(MAX_EXPIRES_IN));
    }
}
