//! Signatures in native code: JWT verification and client-assertion signing through
//! `aws-lc-rs` (BoringSSL's primitives, in process). Each JWKS key is parsed once and kept,
//! unlike the wasm filter's foreign function, which imports the DER key on every call.

use std::cell::RefCell;
use std::collections::HashMap;

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

use tvp_core::crypto::der::spki_public_key;
use tvp_core::crypto::signing::{AssertionSigner, SigningAlg, SigningKey};
use tvp_core::crypto::{Key, PublicKey, SignatureVerifier};
use tvp_core::jose::Alg;

/// Parsed keys kept per verifier (one per worker): a tenant has a handful, rotations add a
/// few; past this many the cache starts over rather than grow.
const MAX_PARSED_KEYS: usize = 256;

/// Verification of every algorithm the core accepts (RSA keys of 2048 to 8192 bits), with
/// each key parsed on first use.
#[derive(Default)]
pub struct NativeVerifier {
    /// By algorithm and the key's bytes (never by address: a freed key's address is reused).
    parsed: RefCell<HashMap<(Alg, Vec<u8>), ParsedPublicKey>>,
}

fn algorithm(alg: Alg) -> &'static dyn VerificationAlgorithm {
    match alg {
        Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        // JWS ES256 signatures are the fixed-width `r || s` (RFC 7518 3.4).
        Alg::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
        Alg::EdDsa => &signature::ED25519,
    }
}

/// The key bytes the native API takes: RSAPublicKey DER, the P-256 point, the Ed25519 key.
fn public_bytes(key: &Key) -> Option<&[u8]> {
    match &key.public {
        PublicKey::Ed25519(k) => Some(&k[..]),
        PublicKey::Rsa(_) | PublicKey::P256(_) => key.spki_der.as_deref().and_then(spki_public_key),
    }
}

impl SignatureVerifier for NativeVerifier {
    fn verify(&self, alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        if !key.public.fits(alg) {
            return false;
        }
        let Some(public) = public_bytes(key) else {
            return false;
        };
        let Ok(mut parsed) = self.parsed.try_borrow_mut() else {
            return false;
        };
        let id = (alg, public.to_vec());
        if !parsed.contains_key(&id) {
            let Ok(p) = ParsedPublicKey::new(algorithm(alg), public) else {
                return false;
            };
            if parsed.len() >= MAX_PARSED_KEYS {
                parsed.clear();
            }
            parsed.insert(id.clone(), p);
        }
        parsed
            .get(&id)
            .is_some_and(|p| p.verify_sig(message, signature).is_ok())
    }
}

/// RS256 client assertions in native code; ES256 in pure Rust (as on every host).
pub struct NativeSigner;

impl AssertionSigner for NativeSigner {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Option<Vec<u8>> {
        match key.alg {
            SigningAlg::Es256 => key.sign_pure(input),
            SigningAlg::Rs256 => {
                let pair = signature::RsaKeyPair::from_pkcs8(key.pkcs8()).ok()?;
                let mut out = vec![0u8; pair.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut out)
                    .ok()?;
                Some(out)
            }
        }
    }
}
