//! Untrusted JWS compact parsing and the claim checks of RFC 7519 / RFC 8725.
//!
//! Nothing here trusts the token: the header picks neither the key source nor the algorithm
//! family (the tenant's allow-list and JWKS do), and every field has one accepted type.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::jose::{Alg, B64URL};
use crate::secret::Redacted;

/// Why a token was refused. The variant is the stable reason code in logs; the description
/// sent to the client is fixed text and never echoes token content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    UnsupportedHeader,
    AlgNotAllowed,
    UnknownKey,
    BadSignature,
    WrongIssuer,
    WrongAudience,
    Expired,
    NotYetValid,
    /// The tenant asks for RFC 9068 access tokens and `typ` is not `at+jwt`.
    WrongType,
    MissingSubject,
    /// Valid here, but the token vault refused it (revoked, or expired by its clock).
    Rejected,
    /// The user's ID token (Okta "user access") is not in its request header.
    IdTokenMissing,
    /// The user's ID token fails a check: signature, issuer, `aud` (the agent's client),
    /// lifetime, or a `sub` other than the bearer token's.
    IdTokenInvalid,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed => "token_malformed",
            TokenError::UnsupportedHeader => "token_header_unsupported",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::UnknownKey => "unknown_kid",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongType => "wrong_token_type",
            TokenError::MissingSubject => "missing_sub",
            TokenError::Rejected => "token_rejected",
            TokenError::IdTokenMissing => "id_token_missing",
            TokenError::IdTokenInvalid => "id_token_invalid",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            TokenError::TooLarge => "The access token is too large.",
            TokenError::Malformed => "The access token is malformed.",
            TokenError::UnsupportedHeader => "The access token uses an unsupported JOSE header.",
            TokenError::AlgNotAllowed => {
                "The access token is signed with an algorithm this resource does not accept."
            }
            TokenError::UnknownKey => "The access token is signed with an unknown key.",
            TokenError::BadSignature => "The access token signature is invalid.",
            TokenError::WrongIssuer => {
                "The access token was not issued by the trusted issuer for this resource."
            }
            TokenError::WrongAudience => "The access token is not intended for this resource.",
            TokenError::Expired => "The access token has expired.",
            TokenError::NotYetValid => "The access token is not yet valid.",
            TokenError::WrongType => "The token is not a JWT access token (typ at+jwt).",
            TokenError::MissingSubject => "The access token has no subject.",
            TokenError::Rejected => "The authorization server no longer accepts this access token.",
            TokenError::IdTokenMissing => {
                "This resource needs the user's ID token for the agent in its request header."
            }
            TokenError::IdTokenInvalid => {
                "The user's ID token is invalid, expired, or not for this agent and user."
            }
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A structurally valid, not yet verified JWS.
pub struct UntrustedJwt<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// Whether the header says `typ: at+jwt` (RFC 9068 2.1).
    pub typ_at_jwt: bool,
    /// `base64url(header) . base64url(payload)`: the bytes the signature covers.
    pub signing_input: &'a [u8],
    pub signature: Vec<u8>,
    pub claims: Claims,
}

/// The signed bytes and the signature are the token itself: shown as lengths only.
impl fmt::Debug for UntrustedJwt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UntrustedJwt")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("typ_at_jwt", &self.typ_at_jwt)
            .field("signing_input", &Redacted(self.signing_input.len()))
            .field("signature", &Redacted(self.signature.len()))
            .field("claims", &self.claims)
            .finish()
    }
}

/// The claims scopes may come from: a tenant chooses which count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeClaim {
    Scope,
    Scp,
    Permissions,
}

/// The claims the filter uses, with their types already enforced. (Serialized only into the
/// process-wide verified-token record of the native host, `flow::shared_verified`.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub nbf: Option<i64>,
    /// When it was issued: a token from the future (beyond the skew) is refused.
    pub iat: Option<i64>,
    /// Scope tokens per claim they came from, so tenants choose which claims count.
    pub scope: Vec<String>,
    pub scp: Vec<String>,
    pub permissions: Vec<String>,
    /// `azp` or `client_id`: the agent's OAuth client, for audit logs.
    pub client_id: Option<String>,
    /// Every other top-level string claim is dropped, except the one a tenant names as its
    /// `login_hint_claim`, which is looked up by [`Claims::string_claim`] before parsing ends.
    pub login_hint: Option<String>,
    /// The claim a tenant's `connect.user_claim` names when it is not `sub` (e.g. Okta's
    /// `uid`); absent, or not a string, it is `None` (no connect link: fail closed).
    pub user: Option<String>,
}

impl Claims {
    /// Scope tokens from the claims the tenant trusts.
    pub fn scopes<'c>(&'c self, which: &'c [ScopeClaim]) -> impl Iterator<Item = &'c str> + 'c {
        which.iter().flat_map(move |c| {
            match c {
                ScopeClaim::Scope => &self.scope,
                ScopeClaim::Scp => &self.scp,
                ScopeClaim::Permissions => &self.permissions,
            }
            .iter()
            .map(String::as_str)
        })
    }
}

/// Parse a compact JWS without verifying it. `login_hint_claim` names an optional string claim
/// to keep for the vault exchange.
pub fn parse<'a>(
    token: &'a str,
    max_len: usize,
    login_hint_claim: Option<&str>,
) -> Result<UntrustedJwt<'a>, TokenError> {
    let kept = Kept {
        login_hint: login_hint_claim,
        user: None,
    };
    parse_keeping(token, max_len, kept)
}

/// Claims beyond the registered ones a tenant wants kept.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept<'a> {
    /// `vault.login_hint_claim` (a non-string value makes the token malformed).
    pub login_hint: Option<&'a str>,
    /// `connect.user_claim` when not `sub` (a non-string value is ignored).
    pub user: Option<&'a str>,
}

/// [`parse`], keeping the claims `kept` names.
pub fn parse_keeping<'a>(
    token: &'a str,
    max_len: usize,
    kept: Kept<'_>,
) -> Result<UntrustedJwt<'a>, TokenError> {
    let login_hint_claim = kept.login_hint;
    if token.len() > max_len {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(TokenError::Malformed);
    }
    let header_bytes = B64URL.decode(h).map_err(|_| TokenError::Malformed)?;
    let payload_bytes = B64URL.decode(p).map_err(|_| TokenError::Malformed)?;
    let signature = B64URL.decode(s).map_err(|_| TokenError::Malformed)?;

    let header = unique_object(&header_bytes, &|name| HEADER_MEMBERS.contains(&name))?;
    let JoseHeader {
        alg,
        kid,
        typ_at_jwt,
    } = check_header(&header)?;
    let wanted = |name: &str| {
        CLAIMS_READ.contains(&name) || Some(name) == login_hint_claim || Some(name) == kept.user
    };
    let claims = claims_from(unique_object(&payload_bytes, &wanted)?, kept)?;
    Ok(UntrustedJwt {
        alg,
        kid,
        typ_at_jwt,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        signature,
        claims,
    })
}

/// Header members the filter looks at; any other is checked for syntax only.
const HEADER_MEMBERS: &[&str] = &["alg", "kid", "typ", "crit", "b64", "zip", "enc", "cty"];
/// Claims the filter reads; any other is checked for syntax only.
const CLAIMS_READ: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "nbf",
    "iat",
    "scope",
    "scp",
    "permissions",
    "azp",
    "client_id",
];

/// What the filter takes from a JOSE header.
struct JoseHeader {
    alg: Alg,
    kid: Option<String>,
    typ_at_jwt: bool,
}

/// RFC 9068 4: `at+jwt` or `application/at+jwt`. Media types compare without case, and a
/// `typ` without a `/` means `application/` + it (RFC 7515 4.1.9).
fn is_at_jwt(typ: &str) -> bool {
    let prefix = "application/";
    let subtype = match typ.get(..prefix.len()) {
        Some(p) if p.eq_ignore_ascii_case(prefix) => &typ[prefix.len()..],
        _ => typ,
    };
    subtype.eq_ignore_ascii_case("at+jwt")
}

fn check_header(header: &[(Cow<'_, str>, Value)]) -> Result<JoseHeader, TokenError> {
    let mut alg = None;
    let mut kid = None;
    let mut typ_at_jwt = false;
    for (name, value) in header {
        match name.as_ref() {
            "alg" => {
                let name = value.as_str().ok_or(TokenError::Malformed)?;
                alg = Some(Alg::from_name(name).ok_or(TokenError::AlgNotAllowed)?);
            }
            "kid" => {
                let k = value.as_str().ok_or(TokenError::Malformed)?;
                if k.len() > 256 {
                    return Err(TokenError::Malformed);
                }
                kid = Some(k.to_string());
            }
            "typ" => {
                typ_at_jwt = is_at_jwt(value.as_str().ok_or(TokenError::Malformed)?);
            }
            // Extensions we do not implement make the JWS invalid (RFC 7515 4.1.11); b64=false
            // (RFC 7797), compression and encryption headers change what the signature covers.
            "crit" | "b64" | "zip" | "enc" | "cty" => return Err(TokenError::UnsupportedHeader),
            // jku, x5u, jwk, x5c and anything else: never dereferenced, never used.
            _ => {}
        }
    }
    Ok(JoseHeader {
        alg: alg.ok_or(TokenError::Malformed)?,
        kid,
        typ_at_jwt,
    })
}

fn claims_from(object: Vec<(Cow<'_, str>, Value)>, kept: Kept<'_>) -> Result<Claims, TokenError> {
    let mut iss = None;
    let mut sub = None;
    let mut aud = None;
    let mut exp = None;
    let mut nbf = None;
    let mut iat = None;
    let mut scope = Vec::new();
    let mut scp = Vec::new();
    let mut permissions = Vec::new();
    let mut azp = None;
    let mut client_id = None;
    let mut login_hint = None;
    let mut user = None;
    for (name, value) in object {
        if Some(name.as_ref()) == kept.user {
            user = value.as_str().filter(|u| !u.is_empty()).map(str::to_string);
        }
        if Some(name.as_ref()) == kept.login_hint {
            login_hint = Some(value.as_str().ok_or(TokenError::Malformed)?.to_string());
        }
        match name.as_ref() {
            "iss" => iss = Some(string(value)?),
            "sub" => sub = Some(string(value)?),
            "aud" => {
                aud = Some(match value {
                    Value::String(s) => vec![s],
                    Value::Array(items) => {
                        items.into_iter().map(string).collect::<Result<_, _>>()?
                    }
                    _ => return Err(TokenError::Malformed),
                })
            }
            "exp" => exp = Some(numeric_date(&value)?),
            "nbf" => nbf = Some(numeric_date(&value)?),
            "iat" => iat = Some(numeric_date(&value)?),
            "scope" => scope = split_scope(&string(value)?),
            "scp" => {
                scp = match value {
                    Value::String(s) => split_scope(&s),
                    Value::Array(items) => {
                        items.into_iter().map(string).collect::<Result<_, _>>()?
                    }
                    _ => return Err(TokenError::Malformed),
                }
            }
            "permissions" => {
                let Value::Array(items) = value else {
                    return Err(TokenError::Malformed);
                };
                permissions = items.into_iter().map(string).collect::<Result<_, _>>()?;
            }
            "azp" => azp = Some(string(value)?),
            "client_id" => client_id = Some(string(value)?),
            _ => {}
        }
    }
    let sub = sub.ok_or(TokenError::MissingSubject)?;
    if sub.is_empty() {
        return Err(TokenError::MissingSubject);
    }
    Ok(Claims {
        iss: iss.ok_or(TokenError::WrongIssuer)?,
        sub,
        aud: aud.ok_or(TokenError::WrongAudience)?,
        // A token without `exp` would be valid forever: refuse it (B3).
        exp: exp.ok_or(TokenError::Malformed)?,
        nbf,
        iat,
        scope,
        scp,
        permissions,
        client_id: azp.or(client_id),
        login_hint,
        user,
    })
}

fn string(value: Value) -> Result<String, TokenError> {
    match value {
        Value::String(s) => Ok(s),
        _ => Err(TokenError::Malformed),
    }
}

/// NumericDate as an integer number of seconds; floats and strings are refused so that every
/// verifier reading this token agrees on its lifetime.
fn numeric_date(value: &Value) -> Result<i64, TokenError> {
    match value {
        Value::Number(n) => n.as_i64().ok_or(TokenError::Malformed),
        _ => Err(TokenError::Malformed),
    }
}

fn split_scope(s: &str) -> Vec<String> {
    s.split(' ')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Check the claims against a tenant at time `now` (seconds). Signature checks happen elsewhere.
/// What a token's claims must say to be accepted: the issuer exactly, one of the audiences.
#[derive(Debug, Clone, Copy)]
pub struct ClaimRules<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub skew_s: i64,
}

pub fn check_claims(claims: &Claims, rules: &ClaimRules<'_>, now: i64) -> Result<(), TokenError> {
    if claims.iss != rules.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !rules.audiences.iter().any(|a| claims.aud.contains(a)) {
        return Err(TokenError::WrongAudience);
    }
    check_lifetime(claims, now, rules.skew_s)
}

/// `exp`, `nbf` and `iat` with clock skew; re-run on every verified-cache hit.
pub fn check_lifetime(claims: &Claims, now: i64, skew: i64) -> Result<(), TokenError> {
    if now >= claims.exp.saturating_add(skew) {
        return Err(TokenError::Expired);
    }
    // `nbf`, and an `iat` in the future: neither may be later than now plus the skew.
    let not_before = claims.nbf.into_iter().chain(claims.iat);
    if not_before.into_iter().any(|t| now.saturating_add(skew) < t) {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Most members a header or claims object may have (bounds the duplicate check).
const MAX_MEMBERS: usize = 64;

/// Decode a JSON object, refusing duplicate member names (RFC 7515 5.2: reject, so that we and
/// every other parser see the same token) and anything that is not an object. Only members
/// `wanted` says the filter reads are kept; the others are checked for syntax and skipped,
/// so a token costs no allocation for claims nobody uses.
fn unique_object<'de>(
    bytes: &'de [u8],
    wanted: &dyn Fn(&str) -> bool,
) -> Result<Vec<(Cow<'de, str>, Value)>, TokenError> {
    struct Seed<'w>(&'w dyn Fn(&str) -> bool);

    /// A member name, borrowed from the input unless it had escapes.
    struct Name<'de>(Cow<'de, str>);

    impl<'de> Deserialize<'de> for Name<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Name<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E: serde::de::Error>(
                    self,
                    v: &'de str,
                ) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Borrowed(v)))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                    Ok(Name(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(V)
        }
    }

    impl<'de> DeserializeSeed<'de> for Seed<'_> {
        type Value = Vec<(Cow<'de, str>, Value)>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de> Visitor<'de> for Seed<'_> {
        type Value = Vec<(Cow<'de, str>, Value)>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // A typical token has a dozen members, of which the filter keeps fewer: no regrowth.
            let mut names: Vec<Cow<'de, str>> = Vec::with_capacity(16);
            let mut kept = Vec::with_capacity(8);
            while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
                if names.len() >= MAX_MEMBERS || names.contains(&name) {
                    return Err(serde::de::Error::custom("duplicate or too many members"));
                }
                if (self.0)(&name) {
                    kept.push((name.clone(), map.next_value::<Value>()?));
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                names.push(name);
            }
            Ok(kept)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(bytes);
    let object = Seed(wanted)
        .deserialize(&mut de)
        .map_err(|_| TokenError::Malformed)?;
    de.end().map_err(|_| TokenError::Malformed)?;
    Ok(object)
}

#[cfg(test)]
mod tests;
