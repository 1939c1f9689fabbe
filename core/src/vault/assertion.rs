//! RFC 7523 client assertions (`private_key_jwt`): a short-lived JWT, signed with the tenant's
//! key, that authenticates the filter as an OAuth client. A fresh `jti` every time: Okta
//! refuses a replayed assertion.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

use crate::crypto::signing::{AssertionSigner, SigningKey};
use crate::secret::random_token;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Long enough for one call, short enough that a leaked assertion is soon worthless.
pub const LIFETIME_SECONDS: u64 = 60;

/// A client assertion for `client_id` at the token endpoint `audience`; `None` when no random
/// `jti` or no signature could be made.
pub fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    audience: &str,
    now_s: u64,
    signer: &dyn AssertionSigner,
) -> Option<String> {
    let header = json!({"alg": key.alg.name(), "kid": key.kid, "typ": "JWT"});
    let claims = json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now_s,
        "exp": now_s + LIFETIME_SECONDS,
        "jti": random_token()?,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = signer.sign(key, input.as_bytes())?;
    Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}
