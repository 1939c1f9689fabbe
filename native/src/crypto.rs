//! Signatures in native code: JWT verification and client-assertion signing through `ring`
//! (BoringSSL's primitives), with no foreign-function round trip and no DER import per call as
//! in the wasm filter.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};

use tvp_core::crypto::der::spki_public_key;
use tvp_core::crypto::signing::{AssertionSigner, SigningAlg, SigningKey};
use tvp_core::crypto::{Key, PublicKey, SignatureVerifier};
use tvp_core::jose::Alg;

/// `ring`'s verification of every algorithm the core accepts (RSA keys of 2048 to 8192 bits).
pub struct RingVerifier;

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

impl SignatureVerifier for RingVerifier {
    fn verify(&self, alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        if !key.public.fits(alg) {
            return false;
        }
        let public: &[u8] = match &key.public {
            PublicKey::Ed25519(k) => &k[..],
            PublicKey::Rsa(_) | PublicKey::P256(_) => {
                match key.spki_der.as_deref().and_then(spki_public_key) {
                    Some(k) => k,
                    None => return false,
                }
            }
        };
        UnparsedPublicKey::new(algorithm(alg), public)
            .verify(message, signature)
            .is_ok()
    }
}

/// RS256 client assertions through `ring`; ES256 in pure Rust (as on every host).
pub struct RingSigner;

impl AssertionSigner for RingSigner {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Option<Vec<u8>> {
        match key.alg {
            SigningAlg::Es256 => key.sign_pure(input),
            SigningAlg::Rs256 => {
                let pair = signature::RsaKeyPair::from_pkcs8(key.pkcs8()).ok()?;
                let mut out = vec![0u8; pair.public().modulus_len()];
                let rng = ring::rand::SystemRandom::new();
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, input, &mut out)
                    .ok()?;
                Some(out)
            }
        }
    }
}
