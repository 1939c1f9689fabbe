//! Token Vault backends: each builds its exchange request and reads the answer, without I/O.

pub mod auth0;

use crate::callout::DependencyFailure;
use crate::secret::Secret;

/// Longest downstream token accepted from a vault (it becomes a request header).
pub const MAX_DOWNSTREAM_TOKEN_BYTES: usize = 16 * 1024;

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
    },
    /// The vault refused the filter itself (bad client, not allowed): an operator problem.
    Misconfigured {
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
            VaultOutcome::Misconfigured { .. } => "vault_misconfigured",
            VaultOutcome::RateLimited { .. } => "vault_rate_limited",
            VaultOutcome::Failed(DependencyFailure::Unavailable) => "vault_unavailable",
            VaultOutcome::Failed(DependencyFailure::Timeout) => "vault_timeout",
            VaultOutcome::Failed(DependencyFailure::BadAnswer) => "vault_bad_answer",
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

/// `Retry-After` in seconds (the HTTP-date form is not worth trusting from a vault), capped.
pub fn parse_retry_after(value: Option<&str>) -> Option<u64> {
    value?.trim().parse::<u64>().ok().map(|s| s.min(3600))
}
