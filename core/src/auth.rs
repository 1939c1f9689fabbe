//! The per-request checks in order, as pure functions over already-read inputs.

use crate::config::{Settings, Tenant};
use crate::crypto::SignatureVerifier;
use crate::jwks::KeySet;
use crate::jwt::{self, Claims, TokenError, UntrustedJwt};
use crate::policy;
use crate::reply::Deny;

/// The one bearer token of a request, from all its `Authorization` values. The scheme is
/// case-insensitive (RFC 7235); exactly one space separates it from a token68 value.
pub fn bearer_token(values: &[&[u8]]) -> Result<String, Deny> {
    let value = match values {
        [] => return Err(Deny::MissingToken),
        [one] => *one,
        _ => {
            return Err(Deny::InvalidRequest(
                "Send exactly one Authorization header.",
            ))
        }
    };
    let bad = || Deny::InvalidRequest("The Authorization header must be 'Bearer <token>'.");
    let value = std::str::from_utf8(value).map_err(|_| bad())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        // Another scheme (Basic, ...) is no bearer token at all: 401 with the bare challenge,
        // as RFC 6750 3.1 says for an unsupported method.
        if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return Err(Deny::MissingToken);
        }
        return Err(bad());
    }
    if token.is_empty() || !token.bytes().all(is_token68_char) {
        return Err(bad());
    }
    Ok(token.to_string())
}

/// A bearer token may travel in one place only (RFC 6750 2): a request that also carries an
/// `access_token` query parameter is refused rather than forwarded with a token in its URL.
pub fn check_no_query_token(path: &str) -> Result<(), Deny> {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or("");
    // Names are compared decoded: `access%5Ftoken` is the same parameter to a backend. Only
    // an escaped name is decoded (no allocation for the usual plain query).
    let named = |p: &str| {
        let name = p.split('=').next().unwrap_or("");
        if name.contains(['%', '+']) {
            crate::urlencoded::decode(name).is_some_and(|n| n.eq_ignore_ascii_case("access_token"))
        } else {
            name.eq_ignore_ascii_case("access_token")
        }
    };
    if query.split('&').any(named) {
        return Err(Deny::InvalidRequest(
            "Send the token in the Authorization header only.",
        ));
    }
    Ok(())
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)
}

/// Everything that can be checked without keys: structure, algorithm allow-list, issuer,
/// audience and lifetime. Cheap refusals come first so forged tokens cost little.
pub fn precheck<'t>(
    tenant: &Tenant,
    token: &'t str,
    settings: &Settings,
    now: i64,
) -> Result<UntrustedJwt<'t>, TokenError> {
    let kept = jwt::Kept {
        login_hint: tenant.vault.login_hint_claim.as_deref(),
        user: tenant.connect.as_ref().and_then(|c| c.extra_user_claim()),
    };
    let jwt = jwt::parse_keeping(token, settings.max_token_bytes, kept)?;
    if !tenant.algorithms.contains(&jwt.alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    if tenant.require_at_jwt && !jwt.typ_at_jwt {
        return Err(TokenError::WrongType);
    }
    let rules = jwt::ClaimRules {
        issuer: &tenant.issuer,
        audiences: &tenant.audiences,
        skew_s: settings.clock_skew_seconds as i64,
    };
    jwt::check_claims(&jwt.claims, &rules, now)?;
    Ok(jwt)
}

/// Signature check with the tenant's keys.
pub fn verify(
    jwt: UntrustedJwt<'_>,
    keys: &KeySet,
    verifier: &dyn SignatureVerifier,
) -> Result<Claims, TokenError> {
    keys.verify(&jwt, verifier)?;
    Ok(jwt.claims)
}

/// The user's ID token for the agent's own client (Okta "user access",
/// https://developer.okta.com/docs/guides/ai-agent-token-exchange/resourceserver/main/):
/// the bearer's issuer, algorithms and keys, `aud` = the agent's client id, unexpired, and the
/// same user as the bearer token. Any failure is one reason: the agent must fetch a new one.
pub fn verify_id_token(
    tenant: &Tenant,
    token: Option<&str>,
    bearer: &Claims,
    keys: &KeySet,
    verifier: &dyn SignatureVerifier,
    settings: &Settings,
    now: i64,
) -> Result<(), TokenError> {
    let token = token.ok_or(TokenError::IdTokenMissing)?;
    let invalid = |_| TokenError::IdTokenInvalid;
    let jwt = jwt::parse(token, settings.max_token_bytes, None).map_err(invalid)?;
    let claims_ok = tenant.algorithms.contains(&jwt.alg)
        && jwt.claims.iss == tenant.issuer
        && jwt.claims.aud.contains(&tenant.vault.client_id)
        && jwt.claims.sub == bearer.sub;
    if !claims_ok {
        return Err(TokenError::IdTokenInvalid);
    }
    jwt::check_lifetime(&jwt.claims, now, settings.clock_skew_seconds as i64).map_err(invalid)?;
    keys.verify(&jwt, verifier).map_err(invalid)
}

/// Scopes for the method.
pub fn authorize(tenant: &Tenant, method: &str, claims: &Claims) -> Result<(), Deny> {
    match policy::missing_scope(&tenant.scopes, method, claims) {
        None => Ok(()),
        Some(needed) => Err(Deny::InsufficientScope(needed.to_vec())),
    }
}

/// The downstream credential header value.
pub fn downstream_value(tenant: &Tenant, token: &str) -> String {
    tenant.downstream.value(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tenant_asking_for_at_jwt_refuses_other_token_types_before_keys() {
        let mut doc: serde_json::Value =
            serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
        doc["tenants"][0]["token_typ"] = json!("at+jwt");
        let env = crate::testing::with_sealing_key(&|_| Some("x".into()));
        let cfg = crate::config::parse(doc.to_string().as_bytes(), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        let tenant = &cfg.tenants[0];
        let now = 1_800_000_000;
        let claims = json!({"iss": tenant.issuer, "sub": "alice", "aud": tenant.audiences[0],
            "exp": now + 600})
        .to_string();
        let token = |header: serde_json::Value| {
            let b64 = |s: String| sim::keys::b64(s.as_bytes());
            format!(
                "{}.{}.{}",
                b64(header.to_string()),
                b64(claims.clone()),
                b64("sig".into())
            )
        };
        let check = |header| precheck(tenant, &token(header), &cfg.settings, now).map(|_| ());
        assert_eq!(check(json!({"alg": "RS256", "typ": "at+jwt"})), Ok(()));
        assert_eq!(
            check(json!({"alg": "RS256", "typ": "application/at+jwt"})),
            Ok(())
        );
        for header in [
            json!({"alg": "RS256", "typ": "JWT"}),
            json!({"alg": "RS256"}),
        ] {
            assert_eq!(check(header), Err(TokenError::WrongType));
        }
        // Without the setting any `typ` is accepted (Okta and Auth0's default dialect).
        let tenant = &cfg.tenants[1];
        assert!(!tenant.require_at_jwt);
    }

    #[test]
    fn query_tokens_are_refused_however_the_name_is_spelled() {
        for path in [
            "/t/x?access_token=a",
            "/t/x?a=1&ACCESS_TOKEN=a",
            "/t/x?access%5Ftoken=a",
            "/t/x?access%5ftoken",
            "/t/x?%61ccess_token=a",
        ] {
            assert!(check_no_query_token(path).is_err(), "{path}");
        }
        for path in [
            "/t/x",
            "/t/x?token=a",
            "/t/x?access_tokens=a",
            "/t/x#access_token=a",
        ] {
            assert!(check_no_query_token(path).is_ok(), "{path}");
        }
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer_token(&[]), Err(Deny::MissingToken));
        assert_eq!(
            bearer_token(&[b"Bearer abc.def.ghi"]),
            Ok("abc.def.ghi".into())
        );
        assert_eq!(bearer_token(&[b"bearer abc"]), Ok("abc".into()));
        assert_eq!(bearer_token(&[b"BEARER abc"]), Ok("abc".into()));
        for bad in [
            &b"Bearer"[..],
            b"Bearer ",
            b"Bearer  abc",
            b"Bearer a b",
            b"Bearer a\tb",
            b"Bearer \xff",
        ] {
            assert!(
                matches!(bearer_token(&[bad]), Err(Deny::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        // Another scheme: no bearer token, answered like none (RFC 6750 3.1).
        for other in [&b"Basic YWxpY2U6cGFzcw=="[..], b"Token abc", b"basic x"] {
            assert!(matches!(bearer_token(&[other]), Err(Deny::MissingToken)));
        }
        assert!(matches!(
            bearer_token(&[b"Bearer a", b"Bearer a"]),
            Err(Deny::InvalidRequest(_))
        ));
    }
}
