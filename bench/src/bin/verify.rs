//! One signature check in native code, side by side in one run (interleaved rounds, medians):
//! `ring` (its API parses the key on every call) against `aws-lc-rs` per call and with the key
//! parsed once, as the native module keeps it. Why the module uses aws-lc-rs.
//!
//!   cargo run --release -p bench --bin verify

use std::time::Instant;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as lc, KeyPair as _, ParsedPublicKey};
use ring::signature as rg;

const ROUNDS: usize = 9;
const CALLS: u32 = 3_000;

/// Microseconds per call of `f` (which must succeed every time).
fn per_call(mut f: impl FnMut() -> bool) -> Result<f64, String> {
    let started = Instant::now();
    for _ in 0..CALLS {
        if !f() {
            return Err("a valid signature was refused".into());
        }
    }
    Ok(started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS))
}

fn main() -> Result<(), String> {
    let message = b"eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9";
    let rng = SystemRandom::new();
    let rsa = lc::RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
    let mut rsa_sig = vec![0u8; rsa.public_modulus_len()];
    rsa.sign(&lc::RSA_PKCS1_SHA256, &rng, message, &mut rsa_sig)
        .map_err(|e| e.to_string())?;
    let rsa_public = rsa.public_key().as_ref().to_vec();
    let ec = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|e| e.to_string())?;
    let ec_sig = ec.sign(&rng, message).map_err(|e| e.to_string())?;
    let ec_sig = ec_sig.as_ref().to_vec();
    let ec_public = ec.public_key().as_ref().to_vec();

    let rsa_parsed = ParsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, &rsa_public)
        .map_err(|e| e.to_string())?;
    let ec_parsed = ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, &ec_public)
        .map_err(|e| e.to_string())?;

    type Check<'a> = Box<dyn FnMut() -> bool + 'a>;
    let mut variants: Vec<(&str, Check, Vec<f64>)> = vec![
        (
            "RS256, ring (key parsed per call)",
            Box::new(|| {
                rg::UnparsedPublicKey::new(&rg::RSA_PKCS1_2048_8192_SHA256, &rsa_public)
                    .verify(message, &rsa_sig)
                    .is_ok()
            }),
            Vec::new(),
        ),
        (
            "RS256, aws-lc-rs (key parsed per call)",
            Box::new(|| {
                lc::UnparsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, &rsa_public)
                    .verify(message, &rsa_sig)
                    .is_ok()
            }),
            Vec::new(),
        ),
        (
            "RS256, aws-lc-rs (key parsed once: the module)",
            Box::new(|| rsa_parsed.verify_sig(message, &rsa_sig).is_ok()),
            Vec::new(),
        ),
        (
            "ES256, ring (key parsed per call)",
            Box::new(|| {
                rg::UnparsedPublicKey::new(&rg::ECDSA_P256_SHA256_FIXED, &ec_public)
                    .verify(message, &ec_sig)
                    .is_ok()
            }),
            Vec::new(),
        ),
        (
            "ES256, aws-lc-rs (key parsed once: the module)",
            Box::new(|| ec_parsed.verify_sig(message, &ec_sig).is_ok()),
            Vec::new(),
        ),
    ];
    for _ in 0..ROUNDS {
        for (_, check, samples) in variants.iter_mut() {
            samples.push(per_call(check)?);
        }
    }
    println!("| one signature check | µs (median of {ROUNDS} rounds) | vs ring |");
    println!("|---|---:|---:|");
    let medians: Vec<f64> = variants
        .iter_mut()
        .map(|(_, _, s)| {
            s.sort_by(|a, b| a.total_cmp(b));
            s[s.len() / 2]
        })
        .collect();
    for (i, (name, _, _)) in variants.iter().enumerate() {
        let ring = if name.starts_with("RS256") {
            medians[0]
        } else {
            medians[3]
        };
        println!("| {name} | {:.1} | {:.2} |", medians[i], medians[i] / ring);
    }
    Ok(())
}
