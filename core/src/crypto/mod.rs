//! Signature verification behind one small trait, so the host-native verifier (Envoy's
//! BoringSSL through a foreign function) and the pure-Rust one are interchangeable.

pub mod der;
pub mod native;
pub mod signing;

use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPublicKey, RsaSignature};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::traits::PublicKeyParts;

use crate::jose::Alg;

pub use native::NativeVerifier;

/// A verification key, with the DER form the host verifier needs built once.
#[derive(Debug, Clone)]
pub struct Key {
    pub public: PublicKey,
    /// SubjectPublicKeyInfo (RSA and P-256 keys).
    pub spki_der: Option<Vec<u8>>,
}

impl Key {
    pub fn new(public: PublicKey) -> Key {
        let spki_der = match &public {
            PublicKey::Rsa(k) => Some(der::rsa_spki(&k.n().to_bytes_be(), &k.e().to_bytes_be())),
            PublicKey::P256(k) => Some(der::p256_spki(k.to_encoded_point(false).as_bytes())),
            PublicKey::Ed25519(_) => None,
        };
        Key { public, spki_der }
    }
}

/// A public key from a JWKS, parsed once and kept per worker.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Rsa(RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
}

impl PublicKey {
    /// Whether this key may be used with `alg` (one key type per algorithm family, RFC 8725 3.1).
    pub fn fits(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                PublicKey::Rsa(_),
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ) | (PublicKey::P256(_), Alg::Es256)
                | (PublicKey::Ed25519(_), Alg::EdDsa)
        )
    }
}

pub trait SignatureVerifier {
    /// True only if `signature` is a valid `alg` signature of `message` under `key`.
    fn verify(&self, alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool;
}

/// Pure-Rust verification (RustCrypto through jwt-compact): works on every host.
pub struct PureRustVerifier;

impl SignatureVerifier for PureRustVerifier {
    fn verify(&self, alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        match (&key.public, alg) {
            (PublicKey::Rsa(k), _) => {
                let rsa = match alg {
                    Alg::Rs256 => Rsa::rs256(),
                    Alg::Rs384 => Rsa::rs384(),
                    Alg::Rs512 => Rsa::rs512(),
                    Alg::Ps256 => Rsa::ps256(),
                    Alg::Ps384 => Rsa::ps384(),
                    Alg::Ps512 => Rsa::ps512(),
                    Alg::Es256 | Alg::EdDsa => return false,
                };
                // PKCS#1 and PSS signatures are exactly as long as the modulus.
                if signature.len() != k.size() {
                    return false;
                }
                match RsaSignature::try_from_slice(signature) {
                    Ok(sig) => rsa.verify_signature(&sig, k, message),
                    Err(_) => false,
                }
            }
            (PublicKey::P256(k), Alg::Es256) => {
                match <Es256 as Algorithm>::Signature::try_from_slice(signature) {
                    Ok(sig) => Es256.verify_signature(&sig, k, message),
                    Err(_) => false,
                }
            }
            (PublicKey::Ed25519(k), Alg::EdDsa) => {
                match <Ed25519 as Algorithm>::Signature::try_from_slice(signature) {
                    Ok(sig) => Ed25519.verify_signature(&sig, k, message),
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }
}
