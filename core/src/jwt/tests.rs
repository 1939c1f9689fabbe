use super::*;
use crate::config::{self, Tenant};
use serde_json::{json, Value};
use sim::keys::{b64, IssuerKeys};

const NOW: i64 = 1_800_000_000;

fn tenant() -> Tenant {
    let doc = &crate::testing::example_json();
    let cfg = config::parse(
        doc.as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some("x".into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    cfg.tenants[0].clone()
}

fn rules(t: &Tenant) -> ClaimRules<'_> {
    ClaimRules {
        issuer: &t.issuer,
        audiences: &t.audiences,
        skew_s: 60,
    }
}

fn claims() -> Value {
    json!({"iss": tenant().issuer, "sub": "alice", "aud": tenant().audiences[0], "exp": NOW + 600, "iat": NOW, "scope": "github:read github:write"})
}

/// A token with hand-made segments (not signed).
fn raw(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(b"sig")
    )
}

fn parse_claims_err(c: Value) -> TokenError {
    let t = raw(r#"{"alg":"RS256"}"#, &c.to_string());
    match parse(&t, 8192, None) {
        Ok(jwt) => check_claims(&jwt.claims, &rules(&tenant()), NOW)
            .err()
            .unwrap_or(TokenError::BadSignature),
        Err(e) => e,
    }
}

#[test]
fn good_token_parses_and_checks() {
    let keys = IssuerKeys::generate("t");
    let token = keys
        .sign(
            "RS256",
            "current",
            &json!({"alg": "RS256", "kid": "t-rsa-1"}),
            &claims(),
        )
        .unwrap_or_default();
    let jwt = parse(&token, 8192, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((jwt.alg, jwt.kid.as_deref()), (Alg::Rs256, Some("t-rsa-1")));
    assert_eq!(jwt.claims.scope, vec!["github:read", "github:write"]);
    assert_eq!(check_claims(&jwt.claims, &rules(&tenant()), NOW), Ok(()));
    assert_eq!(
        jwt.signing_input,
        token
            .rsplit_once('.')
            .map(|(a, _)| a.as_bytes())
            .unwrap_or_default()
    );
}

#[test]
fn structure_is_strict() {
    let h = b64(br#"{"alg":"RS256"}"#);
    let p = b64(claims().to_string().as_bytes());
    for bad in [
        String::new(),
        "a.b".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.c.d"),
        format!("{h}.{p}.c.d.e"),
        format!("{h}..c"),
        format!("{h}.{p}."),
        format!("{h}=.{p}.c"),
        format!("{h}.{p}.c+/"),
        format!(" {h}.{p}.c"),
        format!("{h}.{p}.c\n"),
        format!("{}.{p}.c", b64(b"[1]")),
        format!("{}.{p}.c", b64(b"{\"alg\":\"RS256\"} x")),
        format!("{h}.{}.c", b64(b"\"str\"")),
    ] {
        assert!(parse(&bad, 8192, None).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse(&"a".repeat(9000), 8192, None).err(),
        Some(TokenError::TooLarge)
    );
}

#[test]
fn header_rules() {
    let p = claims().to_string();
    let err = |h: &str| parse(&raw(h, &p), 8192, None).err();
    assert_eq!(err(r#"{"alg":"none"}"#), Some(TokenError::AlgNotAllowed));
    assert_eq!(err(r#"{"alg":"None"}"#), Some(TokenError::AlgNotAllowed));
    assert_eq!(err(r#"{"alg":"HS256"}"#), Some(TokenError::AlgNotAllowed));
    assert_eq!(err(r#"{"alg":"rs256"}"#), Some(TokenError::AlgNotAllowed));
    assert_eq!(err(r#"{"kid":"x"}"#), Some(TokenError::Malformed));
    assert_eq!(err(r#"{"alg":256}"#), Some(TokenError::Malformed));
    assert_eq!(
        err(r#"{"alg":"RS256","alg":"RS256"}"#),
        Some(TokenError::Malformed)
    );
    assert_eq!(
        err(r#"{"alg":"RS256","crit":["exp"]}"#),
        Some(TokenError::UnsupportedHeader)
    );
    assert_eq!(
        err(r#"{"alg":"RS256","crit":[]}"#),
        Some(TokenError::UnsupportedHeader)
    );
    assert_eq!(
        err(r#"{"alg":"RS256","b64":false}"#),
        Some(TokenError::UnsupportedHeader)
    );
    assert_eq!(
        err(r#"{"alg":"RS256","zip":"DEF"}"#),
        Some(TokenError::UnsupportedHeader)
    );
    assert_eq!(
        err(r#"{"alg":"RS256","cty":"JWT"}"#),
        Some(TokenError::UnsupportedHeader)
    );
    assert_eq!(
        err(&format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(300))),
        Some(TokenError::Malformed)
    );
    // Key-carrying headers are ignored, never followed.
    assert!(err(
        r#"{"alg":"RS256","jku":"https://evil/jwks","x5u":"https://evil","jwk":{"kty":"RSA"}}"#
    )
    .is_none());
}

#[test]
fn claim_types_are_strict() {
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        parse_claims_err(c)
    };
    let without = |k: &str| {
        let mut c = claims();
        c.as_object_mut().map(|o| o.remove(k));
        parse_claims_err(c)
    };
    assert_eq!(with("exp", json!("1900000000")), TokenError::Malformed);
    assert_eq!(with("exp", json!(1900000000.5)), TokenError::Malformed);
    assert_eq!(with("exp", json!(1e30)), TokenError::Malformed);
    assert_eq!(with("exp", json!(-1)), TokenError::Expired);
    assert_eq!(without("exp"), TokenError::Malformed);
    assert_eq!(with("nbf", json!("x")), TokenError::Malformed);
    assert_eq!(with("iat", json!(1.5)), TokenError::Malformed);
    assert_eq!(with("sub", json!(1)), TokenError::Malformed);
    assert_eq!(with("sub", json!("")), TokenError::MissingSubject);
    assert_eq!(without("sub"), TokenError::MissingSubject);
    assert_eq!(with("aud", json!([])), TokenError::WrongAudience);
    assert_eq!(with("aud", json!(5)), TokenError::Malformed);
    assert_eq!(with("aud", json!(["other", 5])), TokenError::Malformed);
    assert_eq!(with("scope", json!(["a"])), TokenError::Malformed);
    assert_eq!(with("permissions", json!("a")), TokenError::Malformed);
    let dup = format!("{{\"sub\":\"a\",{}", &claims().to_string()[1..]);
    assert_eq!(
        parse(&raw(r#"{"alg":"RS256"}"#, &dup), 8192, None).err(),
        Some(TokenError::Malformed)
    );
}

#[test]
fn claim_values_are_checked() {
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        parse_claims_err(c)
    };
    assert_eq!(
        with("iss", json!("http://127.0.0.1:9000/issuers/github")),
        TokenError::WrongIssuer
    );
    assert_eq!(
        with("iss", json!("http://127.0.0.1:9000/issuers/github//")),
        TokenError::WrongIssuer
    );
    assert_eq!(
        with("iss", json!("http://127.0.0.1:9000/issuers/google/")),
        TokenError::WrongIssuer
    );
    assert_eq!(
        with("aud", json!("https://other")),
        TokenError::WrongAudience
    );
    assert_eq!(
        with("aud", json!(["https://other", tenant().audiences[0]])),
        TokenError::BadSignature
    );
    assert_eq!(with("exp", json!(NOW - 61)), TokenError::Expired);
    assert_eq!(with("exp", json!(NOW - 59)), TokenError::BadSignature);
    assert_eq!(with("exp", json!(NOW - 60)), TokenError::Expired);
    assert_eq!(with("nbf", json!(NOW + 61)), TokenError::NotYetValid);
    assert_eq!(with("nbf", json!(NOW + 59)), TokenError::BadSignature);
    // Issued in the future beyond the skew: refused like a token not yet valid.
    assert_eq!(with("iat", json!(NOW + 61)), TokenError::NotYetValid);
    assert_eq!(with("iat", json!(NOW + 59)), TokenError::BadSignature);
    assert_eq!(with("iat", json!("x")), TokenError::Malformed);
}

#[test]
fn scope_claims_and_login_hint() {
    let mut c = claims();
    c["scp"] = json!(["a", "b"]);
    c["permissions"] = json!(["p"]);
    c["azp"] = json!("agent");
    c["email"] = json!("alice@example.com");
    let t = raw(r#"{"alg":"ES256"}"#, &c.to_string());
    let jwt = parse(&t, 8192, Some("email")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(jwt.claims.scp, vec!["a", "b"]);
    assert_eq!(jwt.claims.permissions, vec!["p"]);
    assert_eq!(jwt.claims.client_id.as_deref(), Some("agent"));
    assert_eq!(jwt.claims.login_hint.as_deref(), Some("alice@example.com"));
    let all: Vec<&str> = jwt.claims.scopes(&[ScopeClaim::Scp]).collect();
    assert_eq!(all, vec!["a", "b"]);
}

#[test]
fn typ_at_jwt_is_read_as_a_media_type() {
    let typ_of = |typ: Value| {
        let header = json!({"alg": "RS256", "typ": typ}).to_string();
        parse(&raw(&header, &claims().to_string()), 8192, None).map(|j| j.typ_at_jwt)
    };
    for yes in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        assert_eq!(typ_of(json!(yes)), Ok(true), "{yes}");
    }
    for no in [
        "JWT",
        "jwt",
        "at+jwt ",
        "application/jwt",
        "text/at+jwt",
        "at+jwt;x=1",
        "",
    ] {
        assert_eq!(typ_of(json!(no)), Ok(false), "{no}");
    }
    assert_eq!(typ_of(json!(1)), Err(TokenError::Malformed));
    let untyped = raw(r#"{"alg":"RS256"}"#, &claims().to_string());
    assert!(parse(&untyped, 8192, None).is_ok_and(|j| !j.typ_at_jwt));
}

#[test]
fn lifetimes_at_the_integer_limits_saturate_instead_of_overflowing() {
    let lifetime = |exp: i64, nbf: Option<i64>, iat: Option<i64>| Claims {
        iss: "i".into(),
        sub: "s".into(),
        aud: vec!["a".into()],
        exp,
        nbf,
        iat,
        scope: Vec::new(),
        scp: Vec::new(),
        permissions: Vec::new(),
        client_id: None,
        login_hint: None,
        user: None,
    };
    // The largest skew configuration allows (600 s).
    let skew = 600;
    // `exp` at i64::MAX plus the skew: not expired, whenever now is, up to the very end.
    let forever = lifetime(i64::MAX, None, None);
    for now in [0, NOW, i64::MAX - skew, i64::MAX - 1] {
        assert_eq!(check_lifetime(&forever, now, skew), Ok(()), "{now}");
    }
    assert_eq!(
        check_lifetime(&forever, i64::MAX, skew),
        Err(TokenError::Expired)
    );
    // `nbf` and `iat` at i64::MAX: not yet valid at any ordinary time; now near the maximum
    // plus the skew reaches them without overflowing.
    let late = lifetime(i64::MAX, Some(i64::MAX), Some(i64::MAX));
    assert_eq!(
        check_lifetime(&late, NOW, skew),
        Err(TokenError::NotYetValid)
    );
    assert_eq!(check_lifetime(&late, i64::MAX - skew, skew), Ok(()));
    assert_eq!(check_lifetime(&late, i64::MAX - 1, skew), Ok(()));
    // At the other end: long expired, and a negative skew is no trouble either.
    let ancient = lifetime(i64::MIN, Some(i64::MIN), Some(i64::MIN));
    assert_eq!(
        check_lifetime(&ancient, NOW, skew),
        Err(TokenError::Expired)
    );
    assert_eq!(
        check_lifetime(&ancient, i64::MIN, -skew),
        Err(TokenError::Expired)
    );
    // Parsed from a token: i64::MAX is a date, anything beyond (u64) is malformed, not wrapped.
    let with_exp = |exp: Value| {
        let mut c = claims();
        c["exp"] = exp;
        parse_claims_err(c)
    };
    assert_eq!(with_exp(json!(i64::MAX)), TokenError::BadSignature);
    assert_eq!(with_exp(json!(i64::MAX as u64 + 1)), TokenError::Malformed);
    assert_eq!(with_exp(json!(u64::MAX)), TokenError::Malformed);
}
