//! Wycheproof JWS vectors (the core's copy, from C2SP/wycheproof): the native module's
//! aws-lc verifier must agree with the core's pure-Rust verifier on every vector, and both with
//! Wycheproof's verdict.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tvp_core::crypto::{PureRustVerifier, SignatureVerifier};
use tvp_core::jose::Alg;
use tvp_core::jwks;
use tvp_native::crypto::NativeVerifier;

#[test]
fn aws_lc_agrees_with_every_signature_vector() {
    let checked = run_vectors(include_str!(
        "../../core/tests/data/json_web_signature_test.json"
    ));
    assert_eq!(checked, 401);
}

#[test]
fn key_vectors_weak_or_misused_keys_verify_nothing() {
    let checked = run_vectors(include_str!("../../core/tests/data/json_web_key_test.json"));
    assert!(checked > 20);
}

/// Run every vector of a Wycheproof JOSE file; the number checked.
fn run_vectors(file: &str) -> usize {
    let doc: Value = serde_json::from_str(file).unwrap();
    // One verifier for the whole file: parsed keys are kept across vectors, as in a worker.
    let verifier = NativeVerifier::default();
    let mut checked = 0;
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = group
            .get("public")
            .and_then(|k| jwks::parse_jwks(json!({"keys": [k]}).to_string().as_bytes()).ok());
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].to_string();
            let jws = test["jws"].as_str().unwrap_or_default();
            let expected = test["result"].as_str().unwrap();
            let parts: Vec<&str> = jws.split('.').collect();
            let verdict = (|| {
                let [h, p, s] = parts[..] else { return None };
                let header: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
                let alg = Alg::from_name(header["alg"].as_str()?)?;
                let key = keys
                    .as_ref()?
                    .matching(alg, header["kid"].as_str())
                    .next()?;
                let signature = URL_SAFE_NO_PAD.decode(s).ok()?;
                let input = format!("{h}.{p}");
                let pure = PureRustVerifier.verify(alg, &key.key, input.as_bytes(), &signature);
                let native = verifier.verify(alg, &key.key, input.as_bytes(), &signature);
                assert_eq!(pure, native, "tcId {id}: pure Rust and aws-lc disagree");
                Some(native)
            })();
            let accepted = verdict == Some(true);
            if expected == "invalid" {
                assert!(!accepted, "tcId {id} ({}) accepted", test["comment"]);
            }
            if expected == "valid" && verdict.is_some() {
                assert!(accepted, "tcId {id} ({}) refused", test["comment"]);
            }
            checked += 1;
        }
    }
    checked
}
