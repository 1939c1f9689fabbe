use super::*;
use crate::crypto::PureRustVerifier;
use crate::jwt;
use serde_json::{json, Value};
use sim::keys::IssuerKeys;

fn claims() -> Value {
    json!({"iss": "i", "sub": "alice", "aud": "a", "exp": 4_000_000_000u64})
}

fn set(keys: &IssuerKeys) -> KeySet {
    parse_jwks(keys.jwks().to_string().as_bytes()).unwrap_or_else(|e| panic!("{e:?}"))
}

fn sign(keys: &IssuerKeys, alg: &str, header: Value) -> String {
    keys.sign(alg, "current", &header, &claims())
        .unwrap_or_default()
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let keys = IssuerKeys::generate("t");
    let ks = set(&keys);
    assert_eq!(ks.keys.len(), 3);
    for (alg, kid) in [
        ("RS256", "t-rsa-1"),
        ("PS256", "t-rsa-1"),
        ("RS512", "t-rsa-1"),
        ("ES256", "t-ec-1"),
        ("EdDSA", "t-ed-1"),
    ] {
        let token = sign(&keys, alg, json!({"alg": alg, "kid": kid}));
        let parsed = jwt::parse(&token, 8192, None).unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(ks.verify(&parsed, &PureRustVerifier), Ok(()), "{alg}");
        // Flip one signature bit: refused.
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 5;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap_or_default();
        if let Ok(p) = jwt::parse(&tampered, 8192, None) {
            assert_eq!(
                ks.verify(&p, &PureRustVerifier),
                Err(TokenError::BadSignature),
                "{alg}"
            );
        }
    }
}

#[test]
fn key_selection() {
    let keys = IssuerKeys::generate("t");
    let ks = set(&keys);
    let token = sign(&keys, "RS256", json!({"alg": "RS256", "kid": "nope"}));
    let p = jwt::parse(&token, 8192, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(!ks.knows(&p));
    assert_eq!(
        ks.verify(&p, &PureRustVerifier),
        Err(TokenError::UnknownKey)
    );
    // No kid: the key is found by type.
    let token = sign(&keys, "RS256", json!({"alg": "RS256"}));
    let p = jwt::parse(&token, 8192, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ks.verify(&p, &PureRustVerifier), Ok(()));
    // An ES256 header naming the RSA key's kid: no key of the right type.
    let token = sign(&keys, "ES256", json!({"alg": "ES256", "kid": "t-rsa-1"}));
    let p = jwt::parse(&token, 8192, None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        ks.verify(&p, &PureRustVerifier),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn unsafe_or_unusable_keys_are_skipped() {
    let keys = IssuerKeys::generate("t");
    let good = keys.jwks()["keys"][0].clone();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut k = good.clone();
        edit(&mut k);
        parse_jwks(json!({"keys": [k]}).to_string().as_bytes())
    };
    assert!(with(&|_| {}).is_ok());
    assert_eq!(
        with(&|k| k["use"] = json!("enc")).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["d"] = json!("AAAA")).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["kty"] = json!("oct")).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["alg"] = json!("ES256")).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["n"] = json!("AQAB")).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["n"] = json!(5)).err(),
        Some(JwksError::NoUsableKeys)
    );
    assert_eq!(
        with(&|k| k["e"] = json!("AAEAAQ")).err(),
        Some(JwksError::NoUsableKeys)
    );
    let ec = keys.jwks()["keys"][1].clone();
    let mut bad_curve = ec.clone();
    bad_curve["crv"] = json!("P-384");
    let mut off_curve = ec.clone();
    off_curve["y"] = off_curve["x"].clone();
    for k in [bad_curve, off_curve] {
        assert_eq!(
            parse_jwks(json!({"keys": [k]}).to_string().as_bytes()).err(),
            Some(JwksError::NoUsableKeys)
        );
    }
    for doc in ["", "[]", "{}", "{\"keys\":{}}", "<html>"] {
        assert_eq!(
            parse_jwks(doc.as_bytes()).err(),
            Some(JwksError::NotJson),
            "{doc}"
        );
    }
    assert_eq!(
        parse_jwks(b"{\"keys\":[]}").err(),
        Some(JwksError::NoUsableKeys)
    );
}

#[test]
fn refetch_policy() {
    let p = RefetchPolicy {
        refresh_ms: 600_000,
        min_refetch_ms: 30_000,
        max_stale_ms: 60_000,
    };
    assert!(!p.due_for_refresh(0, 0, 479_999));
    assert!(p.due_for_refresh(0, 0, 480_000));
    assert!(!p.due_for_refresh(0, 470_000, 480_000));
    assert!(p.may_fetch(None, true, 0, 5));
    assert!(!p.may_fetch(Some(1_000), true, 0, 30_999));
    assert!(p.may_fetch(Some(1_000), true, 0, 31_000));
    // Without keys: 2 s after one failure, 8 s after three, never more than the interval.
    assert!(!p.may_fetch(Some(0), false, 1, 1_999));
    assert!(p.may_fetch(Some(0), false, 1, 2_000));
    assert!(!p.may_fetch(Some(0), false, 3, 7_999));
    assert!(p.may_fetch(Some(0), false, 30, 30_000));
    assert!(p.usable(0, 660_000));
    assert!(!p.usable(0, 660_001));
}

#[test]
fn discovery_stays_on_the_issuer_host() {
    let doc = json!({"jwks_uri": "https://issuer.example/keys"}).to_string();
    assert_eq!(
        jwks_path_from_discovery(doc.as_bytes(), "issuer.example"),
        Some("/keys".into())
    );
    assert_eq!(
        jwks_path_from_discovery(doc.as_bytes(), "other.example"),
        None
    );
    assert_eq!(jwks_path_from_discovery(b"{}", "issuer.example"), None);
}
