//! JWKS parsing, key selection and the refetch policy. Pure: no host calls.

use base64::Engine;
use rsa::traits::PublicKeyParts;
use rsa::BigUint;
use serde_json::Value;

use crate::crypto::{Key, PublicKey, SignatureVerifier};
use crate::jose::{Alg, B64URL};
use crate::jwt::{TokenError, UntrustedJwt};

const MIN_RSA_BITS: usize = 2048;
const MAX_KEYS: usize = 64;
/// Without a `kid` the token could match several keys; try at most this many.
const MAX_KEYLESS_ATTEMPTS: usize = 4;

#[derive(Debug, Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Alg>,
    pub key: Key,
}

#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    NotJson,
    NoUsableKeys,
}

/// Parse a JWKS document. Keys that cannot be used safely (private material, weak RSA, unknown
/// type or curve, `use` other than `sig`, malformed numbers) are skipped, not fatal: one bad key
/// must not take the tenant's other keys down. A set with no usable key is an error.
pub fn parse_jwks(body: &[u8]) -> Result<KeySet, JwksError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| JwksError::NotJson)?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NotJson)?;
    let parsed: Vec<Jwk> = keys.iter().take(MAX_KEYS).filter_map(parse_jwk).collect();
    if parsed.is_empty() {
        return Err(JwksError::NoUsableKeys);
    }
    Ok(KeySet { keys: parsed })
}

fn parse_jwk(v: &Value) -> Option<Jwk> {
    let obj = v.as_object()?;
    let text = |name: &str| match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(()),
    };
    let bytes = |name: &str| -> Option<Vec<u8>> { B64URL.decode(text(name).ok()??).ok() };
    if let Some(u) = text("use").ok()? {
        if u != "sig" {
            return None;
        }
    }
    // `key_ops`, when present, must allow verification (RFC 7517 4.3).
    if let Some(ops) = obj.get("key_ops") {
        let ops = ops.as_array()?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return None;
        }
    }
    // A published private key is a leak, not a verification key.
    if ["d", "p", "q", "dp", "dq", "qi", "k"]
        .iter()
        .any(|f| obj.contains_key(*f))
    {
        return None;
    }
    let alg = match text("alg").ok()? {
        None => None,
        Some(name) => Some(Alg::from_name(name)?),
    };
    let key = match text("kty").ok()?? {
        "RSA" => {
            let n = bytes("n")?;
            let e = bytes("e")?;
            // Leading zero octets are not allowed in JWK integers (RFC 7518 6.3.1).
            if n.first() == Some(&0) || e.first() == Some(&0) || e.len() > 8 {
                return None;
            }
            let key =
                rsa::RsaPublicKey::new(BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e))
                    .ok()?;
            if key.size() * 8 < MIN_RSA_BITS {
                return None;
            }
            PublicKey::Rsa(key)
        }
        "EC" => {
            if text("crv").ok()?? != "P-256" {
                return None;
            }
            let (x, y) = (bytes("x")?, bytes("y")?);
            let x: [u8; 32] = x.try_into().ok()?;
            let y: [u8; 32] = y.try_into().ok()?;
            let point = p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
            PublicKey::P256(p256::ecdsa::VerifyingKey::from_encoded_point(&point).ok()?)
        }
        "OKP" => {
            if text("crv").ok()?? != "Ed25519" {
                return None;
            }
            PublicKey::Ed25519(ed25519_compact::PublicKey::from_slice(&bytes("x")?).ok()?)
        }
        _ => return None,
    };
    if let Some(a) = alg {
        if !key.fits(a) {
            return None;
        }
    }
    Some(Jwk {
        kid: text("kid").ok()?.map(str::to_string),
        alg,
        key: Key::new(key),
    })
}

impl KeySet {
    /// Keys that may verify a token with this `alg` and `kid`: matching `kid` (when the token
    /// names one), key type, and the JWK's own `alg` pin.
    pub fn matching(&self, alg: Alg, kid: Option<&str>) -> impl Iterator<Item = &Jwk> + '_ {
        let kid = kid.map(str::to_string);
        self.keys.iter().filter(move |k| {
            k.key.public.fits(alg)
                && k.alg.is_none_or(|a| a == alg)
                && match &kid {
                    Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                    None => true,
                }
        })
    }

    fn candidates<'s>(&'s self, jwt: &'s UntrustedJwt<'_>) -> impl Iterator<Item = &'s Jwk> + 's {
        self.matching(jwt.alg, jwt.kid.as_deref())
    }

    /// Whether this set has any key the token could have been signed with.
    pub fn knows(&self, jwt: &UntrustedJwt<'_>) -> bool {
        self.candidates(jwt).next().is_some()
    }

    /// Verify the token's signature with a matching key.
    pub fn verify(
        &self,
        jwt: &UntrustedJwt<'_>,
        verifier: &dyn SignatureVerifier,
    ) -> Result<(), TokenError> {
        let mut tried = false;
        for k in self.candidates(jwt).take(MAX_KEYLESS_ATTEMPTS) {
            tried = true;
            if verifier.verify(jwt.alg, &k.key, jwt.signing_input, &jwt.signature) {
                return Ok(());
            }
        }
        Err(if tried {
            TokenError::BadSignature
        } else {
            TokenError::UnknownKey
        })
    }
}

/// When to fetch a tenant's JWKS again (all times in ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefetchPolicy {
    pub refresh_ms: u64,
    pub min_refetch_ms: u64,
    pub max_stale_ms: u64,
}

impl RefetchPolicy {
    /// Background refresh: start when 80% of the freshness window has passed, so keys are
    /// renewed before they go stale and never on a request.
    pub fn due_for_refresh(&self, fetched_at: u64, last_attempt: u64, now: u64) -> bool {
        let age = now.saturating_sub(fetched_at);
        age >= self.refresh_ms / 5 * 4 && now.saturating_sub(last_attempt) >= self.min_refetch_ms
    }

    /// Whether a fetch may start now. With keys in hand (an unknown `kid` may mean rotation)
    /// at most once per interval; without any (cold start against an issuer not up yet) retry
    /// sooner, backing off from 1 s to that interval.
    pub fn may_fetch(
        &self,
        last_attempt: Option<u64>,
        have_keys: bool,
        failures: u32,
        now: u64,
    ) -> bool {
        let wait = if have_keys {
            self.min_refetch_ms
        } else {
            (1000u64 << failures.min(16)).min(self.min_refetch_ms)
        };
        last_attempt.is_none_or(|t| now.saturating_sub(t) >= wait)
    }

    /// Keys whose refreshes keep failing may be used for a bounded time, then never.
    pub fn usable(&self, fetched_at: u64, now: u64) -> bool {
        now.saturating_sub(fetched_at) <= self.refresh_ms.saturating_add(self.max_stale_ms)
    }
}

/// `jwks_uri` from an OIDC discovery document, accepted only on the issuer's own authority:
/// the filter reaches it through the issuer's cluster and must not be steered elsewhere.
pub fn jwks_path_from_discovery(body: &[u8], authority: &str) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let uri = crate::config::Url::parse(doc.get("jwks_uri")?.as_str()?).ok()?;
    (uri.authority == authority).then_some(uri.path_and_query)
}

#[cfg(test)]
mod tests;
