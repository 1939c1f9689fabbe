//! Okta's AI agent token exchange, form-encoded, the filter authenticated by a client
//! assertion on every call:
//!
//! - Resource server (STS): the agent's token for the third-party token Okta keeps for the
//!   user; `interaction_required` + `interaction_uri` when the user has not consented yet.
//! - Cross App Access: the agent's token for an ID-JAG at the IdP (leg 0), then the ID-JAG for
//!   an access token at the resource's authorization server (leg 1, JWT bearer grant).

use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{Endpoint, ResourceAuth, SubjectTokenType, VaultBackend, VaultConfig};
use crate::crypto::signing::{AssertionSigner, SigningKey};
use crate::urlencoded::encode_pairs;
use crate::vault::assertion::{client_assertion, ASSERTION_TYPE};
use crate::vault::{error_answer, retry_after_seconds, token_answer, Issued, Step, VaultOutcome};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const STS_TOKEN_TYPE: &str = "urn:okta:params:oauth:token-type:oauth-sts";
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

fn form_request(endpoint: &Endpoint, pairs: &[(&str, &str)]) -> CalloutRequest {
    CalloutRequest {
        cluster: endpoint.cluster.clone(),
        method: "POST",
        authority: endpoint.authority.clone(),
        path: endpoint.path.clone(),
        headers: vec![
            (
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ),
            ("accept", "application/json".to_string()),
        ],
        body: Some(encode_pairs(pairs).into_bytes()),
    }
}

/// Could not sign a client assertion: nothing can be asked of the vault.
fn unsigned() -> VaultOutcome {
    VaultOutcome::Misconfigured {
        vault_error: "client_assertion_unsigned".into(),
    }
}

/// A client assertion for `audience` (what the receiving authorization server wants as `aud`).
fn assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
    now_s: u64,
    signer: &dyn AssertionSigner,
) -> Result<String, VaultOutcome> {
    client_assertion(key, client_id, audience, now_s, signer).ok_or_else(unsigned)
}

/// Leg 0: the token exchange at the IdP's org authorization server.
pub fn first_request(
    vault: &VaultConfig,
    subject_token: &str,
    signer: &dyn AssertionSigner,
    now_s: u64,
) -> Result<CalloutRequest, VaultOutcome> {
    let subject_type = match vault.subject_token_type {
        SubjectTokenType::IdToken => ID_TOKEN_TYPE,
        _ => ACCESS_TOKEN_TYPE,
    };
    match &vault.backend {
        VaultBackend::OktaSts {
            token,
            key,
            resource,
        } => {
            // Okta: the assertion's `aud` is the token endpoint it is posted to.
            let client_assertion = assertion(key, &vault.client_id, &token.url, now_s, signer)?;
            Ok(form_request(
                token,
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("requested_token_type", STS_TOKEN_TYPE),
                    ("subject_token", subject_token),
                    ("subject_token_type", subject_type),
                    ("resource", resource),
                    ("client_assertion_type", ASSERTION_TYPE),
                    ("client_assertion", &client_assertion),
                ],
            ))
        }
        VaultBackend::IdJag {
            token,
            key,
            audience,
            scopes,
            resource,
            ..
        } => {
            let client_assertion = assertion(key, &vault.client_id, &token.url, now_s, signer)?;
            let scope = scopes.join(" ");
            let mut pairs = vec![
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG_TOKEN_TYPE),
                ("subject_token", subject_token),
                ("subject_token_type", subject_type),
                ("audience", audience.as_str()),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &client_assertion),
            ];
            if !scope.is_empty() {
                pairs.push(("scope", &scope));
            }
            // draft-ietf-oauth-identity-assertion-authz-grant §4.3: `resource` (RFC 8707) names
            // the resource server; the IdP puts it in the ID-JAG's `resource` claim.
            if let Some(resource) = resource {
                pairs.push(("resource", resource));
            }
            Ok(form_request(token, &pairs))
        }
        VaultBackend::Auth0 { .. } => Err(VaultOutcome::Misconfigured {
            vault_error: "not_an_okta_backend".into(),
        }),
    }
}

/// Read the answer to leg `leg`.
pub fn read_answer(
    vault: &VaultConfig,
    leg: u8,
    response: &CalloutResponse,
    signer: &dyn AssertionSigner,
    now_s: u64,
) -> Step {
    let Some(body) = response.body.as_deref() else {
        return Step::Done(VaultOutcome::Failed(DependencyFailure::BadAnswer));
    };
    match (&vault.backend, leg) {
        (VaultBackend::OktaSts { token, .. }, 0) => Step::Done(match response.status {
            Some(200) => token_outcome(body, Some(STS_TOKEN_TYPE)),
            _ => sts_error(response, body, token, now_s),
        }),
        (VaultBackend::IdJag { .. }, 0) => match response.status {
            // The ID-JAG is a bearer credential of its own: it only ever goes to the resource's
            // authorization server, never into a log or the cache.
            Some(200) => match token_answer(body, "N_A", Some(ID_JAG_TOKEN_TYPE)) {
                Some(Issued {
                    access_token: id_jag,
                    ..
                }) => match jwt_bearer_request(&vault.backend, id_jag.expose(), now_s, signer) {
                    Ok(request) => Step::Next(request),
                    Err(outcome) => Step::Done(outcome),
                },
                None => Step::Done(VaultOutcome::Failed(DependencyFailure::BadAnswer)),
            },
            _ => Step::Done(oauth_error(response, body, now_s)),
        },
        (VaultBackend::IdJag { .. }, 1) => Step::Done(match response.status {
            Some(200) => token_outcome(body, None),
            // The ID-JAG expired or was refused between the legs: the next request starts over.
            Some(400) if error_answer(body).is_some_and(|(e, _, _)| e == "invalid_grant") => {
                VaultOutcome::Failed(DependencyFailure::BadAnswer)
            }
            _ => oauth_error(response, body, now_s),
        }),
        _ => Step::Done(VaultOutcome::Failed(DependencyFailure::BadAnswer)),
    }
}

/// Leg 1: the ID-JAG for an access token at the resource's authorization server (RFC 7523 JWT
/// bearer grant), authenticated as the tenant says.
fn jwt_bearer_request(
    backend: &VaultBackend,
    id_jag: &str,
    now_s: u64,
    signer: &dyn AssertionSigner,
) -> Result<CalloutRequest, VaultOutcome> {
    let VaultBackend::IdJag {
        key,
        resource,
        resource_token,
        resource_client_id,
        resource_auth,
        ..
    } = backend
    else {
        return Err(VaultOutcome::Failed(DependencyFailure::BadAnswer));
    };
    let mut pairs = vec![("grant_type", JWT_BEARER), ("assertion", id_jag)];
    let client_assertion;
    match resource_auth {
        ResourceAuth::PrivateKeyJwt { audience } => {
            client_assertion = assertion(key, resource_client_id, audience, now_s, signer)?;
            pairs.push(("client_assertion_type", ASSERTION_TYPE));
            pairs.push(("client_assertion", &client_assertion));
        }
        ResourceAuth::ClientSecret(secret) => {
            pairs.push(("client_id", resource_client_id));
            pairs.push(("client_secret", secret.expose()));
        }
    }
    // Auth0 reads `resource` here (a `resource` claim in the ID-JAG wins over it):
    // https://auth0.com/docs/api/authentication/cross-app-access/get-token
    if let Some(resource) = resource {
        pairs.push(("resource", resource));
    }
    Ok(form_request(resource_token, &pairs))
}

fn token_outcome(body: &[u8], issued: Option<&str>) -> VaultOutcome {
    match token_answer(body, "bearer", issued) {
        Some(issued) => VaultOutcome::Token {
            access_token: issued.access_token,
            expires_in: issued.expires_in,
        },
        None => VaultOutcome::Failed(DependencyFailure::BadAnswer),
    }
}

/// STS errors: `interaction_required` means the user must consent at `interaction_uri`.
fn sts_error(
    response: &CalloutResponse,
    body: &[u8],
    token: &Endpoint,
    now_s: u64,
) -> VaultOutcome {
    if response.status == Some(400) {
        if let Some((error, code, uri)) = error_answer(body) {
            if error == "interaction_required" {
                return VaultOutcome::ConnectRequired {
                    vault_error: code,
                    interaction_uri: uri.filter(|u| same_origin(u, &token.url)),
                    missing_scopes: Vec::new(),
                };
            }
        }
    }
    oauth_error(response, body, now_s)
}

/// Only send users to the Okta org the filter talks to: an answer cannot redirect them
/// elsewhere.
fn same_origin(uri: &str, token_url: &str) -> bool {
    let origin = |u: &str| -> Option<String> {
        let (scheme, rest) = u.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        Some(format!("{scheme}://{authority}").to_ascii_lowercase())
    };
    let printable = uri.len() <= 2048 && uri.bytes().all(|b| (0x21..=0x7e).contains(&b));
    printable && origin(uri).is_some() && origin(uri) == origin(token_url)
}

/// Any other answer: 429 is rate limiting, 403 a refusal of this access, other 4xx the
/// filter's own client or configuration, 5xx the vault's trouble.
fn oauth_error(response: &CalloutResponse, body: &[u8], now_s: u64) -> VaultOutcome {
    match response.status {
        Some(429) => VaultOutcome::RateLimited {
            retry_after_seconds: retry_after_seconds(response, now_s),
        },
        Some(status @ (400 | 401 | 403)) => match error_answer(body) {
            Some((_, code, _)) if status == 403 => VaultOutcome::Forbidden { vault_error: code },
            Some((_, code, _)) => VaultOutcome::Misconfigured { vault_error: code },
            None => VaultOutcome::Failed(DependencyFailure::BadAnswer),
        },
        other => VaultOutcome::Failed(DependencyFailure::from_status(other)),
    }
}

#[cfg(test)]
mod tests;
