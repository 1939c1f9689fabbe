//! Wycheproof JWS vectors (tests/data, from C2SP/wycheproof): the pure-Rust verifier and the
//! host-native one must agree on every vector, and both with Wycheproof's verdict.
//!
//! The host-native verifier calls Envoy's `verify_signature` (BoringSSL) in production. Here
//! its foreign call is served by the `openssl` command line with the exact DER key, DER
//! signature and text the filter would hand to Envoy, so the encoding the filter produces is
//! checked against a real C implementation. (Envoy itself runs the same path in the e2e tests.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use tvp_core::crypto::{NativeVerifier, PureRustVerifier, SignatureVerifier};
use tvp_core::jose::Alg;
use tvp_core::jwks;

/// Decode `VerifySignatureArguments` (fields 1-4, all length-delimited).
fn decode_arguments(mut bytes: &[u8]) -> [Vec<u8>; 4] {
    let mut fields: [Vec<u8>; 4] = Default::default();
    while let Some((&tag, rest)) = bytes.split_first() {
        let (mut len, mut shift, mut i) = (0usize, 0, 0);
        loop {
            let b = rest[i];
            len |= usize::from(b & 0x7f) << shift;
            shift += 7;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
        }
        let field = usize::from(tag >> 3);
        fields[field - 1] = rest[i..i + len].to_vec();
        bytes = &rest[i + len..];
    }
    fields
}

/// The foreign function, played by `openssl dgst -verify`.
fn openssl_verify(arguments: &[u8]) -> Option<Vec<u8>> {
    let [hash, key, signature, text] = decode_arguments(arguments);
    let dir = std::env::temp_dir().join(format!("tvp-wycheproof-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (k, s, t) = (
        dir.join("key.der"),
        dir.join("sig.bin"),
        dir.join("text.bin"),
    );
    std::fs::write(&k, key).ok()?;
    std::fs::write(&s, signature).ok()?;
    std::fs::write(&t, text).ok()?;
    let out = Command::new("openssl")
        .args([
            "dgst",
            &format!("-{}", String::from_utf8_lossy(&hash)),
            "-verify",
        ])
        .arg(&k)
        .args(["-keyform", "DER", "-signature"])
        .arg(&s)
        .arg(&t)
        .output()
        .ok()?;
    let valid =
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK");
    Some(if valid {
        vec![0x08, 0x01]
    } else {
        vec![0x12, 0x01, b'x']
    })
}

#[test]
fn both_verifiers_agree_with_every_signature_vector() {
    let (checked, on_host) = run_vectors(include_str!("data/json_web_signature_test.json"));
    assert_eq!(checked, 401);
    assert!(
        on_host > 200,
        "only {on_host} vectors reached the host path"
    );
}

#[test]
fn key_vectors_weak_or_misused_keys_verify_nothing() {
    let (checked, _) = run_vectors(include_str!("data/json_web_key_test.json"));
    assert!(checked > 20);
}

/// Run every vector of a Wycheproof JOSE file; returns (vectors checked, vectors that went
/// through the host-native path).
fn run_vectors(file: &str) -> (usize, usize) {
    let doc: Value = serde_json::from_str(file).unwrap();
    let native = NativeVerifier::new(Box::new(openssl_verify));
    let (mut checked, mut native_checked) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        let keys = group
            .get("public")
            .and_then(|k| jwks::parse_jwks(json!({"keys": [k]}).to_string().as_bytes()).ok());
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].to_string();
            let jws = test["jws"].as_str().unwrap_or_default();
            let expected = test["result"].as_str().unwrap();
            // The signature layer only: header.payload.signature, strict base64url.
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
                let host = native.verify(alg, &key.key, input.as_bytes(), &signature);
                assert_eq!(pure, host, "tcId {id}: pure Rust and host-native disagree");
                Some((
                    pure,
                    matches!(alg, Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Es256),
                ))
            })();
            let accepted = verdict.is_some_and(|(ok, _)| ok);
            if verdict.is_some_and(|(_, on_host)| on_host) {
                native_checked += 1;
            }
            // We refuse what Wycheproof calls invalid; HMAC and `none` are refused by policy
            // even when their signature is right.
            if expected == "invalid" {
                assert!(!accepted, "tcId {id} ({}) accepted", test["comment"]);
            }
            if expected == "valid" && verdict.is_some() {
                assert!(accepted, "tcId {id} ({}) refused", test["comment"]);
            }
            checked += 1;
        }
    }
    (checked, native_checked)
}
