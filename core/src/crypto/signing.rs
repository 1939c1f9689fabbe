//! Signing client assertions (RFC 7523 `private_key_jwt`) with the tenant's private key:
//! through Envoy's `sign` foreign function (BoringSSL) when the host has it, pure Rust
//! otherwise. Keys are PKCS#8 PEM, parsed at configure: P-256 (signed by the host, or in pure
//! Rust), or RSA of 2048 bits or more (host only: RSA signing in Rust would add about 90 KB to
//! the module and take milliseconds per call in wasm).

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::der;
use super::native::{decode_fields, field, ForeignCall};

/// A JWS algorithm a client assertion can be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlg {
    Rs256,
    Es256,
}

impl SigningAlg {
    pub fn name(self) -> &'static str {
        match self {
            SigningAlg::Rs256 => "RS256",
            SigningAlg::Es256 => "ES256",
        }
    }
}

#[derive(Clone)]
enum PrivateKey {
    /// Signed by the host only.
    Rsa,
    P256(p256::ecdsa::SigningKey),
}

/// A private key and its `kid`. Never printed.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    /// PKCS#8 DER, for the host's signer.
    der: Vec<u8>,
    key: PrivateKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({} {}, [redacted])",
            self.alg.name(),
            self.kid
        )
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid && self.der == other.der
    }
}

impl Eq for SigningKey {}

impl SigningKey {
    /// Parse a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str, kid: &str) -> Result<SigningKey, &'static str> {
        let body: String = pem
            .lines()
            .map(str::trim)
            .skip_while(|l| *l != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| *l != "-----END PRIVATE KEY-----")
            .collect();
        if body.is_empty() {
            return Err("must be a PKCS#8 PEM private key (-----BEGIN PRIVATE KEY-----)");
        }
        let der = STANDARD
            .decode(body)
            .map_err(|_| "the PEM body is not valid base64")?;
        let key = if let Some(bits) = der::pkcs8_rsa_modulus_bits(&der) {
            if bits < 2048 {
                return Err("RSA keys must have at least 2048 bits");
            }
            PrivateKey::Rsa
        } else if let Some(k) = p256_signing_key(&der) {
            PrivateKey::P256(k)
        } else {
            return Err("must be an RSA or P-256 private key in PKCS#8");
        };
        let alg = match key {
            PrivateKey::Rsa => SigningAlg::Rs256,
            PrivateKey::P256(_) => SigningAlg::Es256,
        };
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            der,
            key,
        })
    }

    /// The PKCS#8 DER, for a native signer. A secret: never printed or logged.
    pub fn pkcs8(&self) -> &[u8] {
        &self.der
    }

    /// Whether only the host can sign with this key.
    pub fn needs_host(&self) -> bool {
        matches!(self.key, PrivateKey::Rsa)
    }

    /// The JWS signature over `input` in pure Rust (`None` for RSA keys).
    pub fn sign_pure(&self, input: &[u8]) -> Option<Vec<u8>> {
        match &self.key {
            PrivateKey::Rsa => None,
            PrivateKey::P256(k) => {
                use p256::ecdsa::signature::Signer;
                let signature: p256::ecdsa::Signature = k.try_sign(input).ok()?;
                Some(signature.to_bytes().to_vec())
            }
        }
    }
}

/// Signs client assertions.
pub trait AssertionSigner {
    /// The JWS signature (RS256: PKCS#1 v1.5; ES256: raw `r || s`) over `input`.
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Option<Vec<u8>>;
}

pub struct PureRustSigner;

impl AssertionSigner for PureRustSigner {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Option<Vec<u8>> {
        key.sign_pure(input)
    }
}

/// The host's `sign` foreign function, falling back to pure Rust when it is absent or fails.
pub struct NativeSigner {
    call: ForeignCall,
}

impl NativeSigner {
    pub fn new(call: ForeignCall) -> Self {
        NativeSigner { call }
    }

    /// Whether the host signs correctly: an ES256 signature of a fixed probe key must verify.
    pub fn host_works(call: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> bool {
        let Some(key) = p256_signing_key(&PROBE_KEY_PKCS8) else {
            return false;
        };
        let text = b"token-vault-proxy host signer probe";
        let signature = call(&sign_arguments(&PROBE_KEY_PKCS8, text))
            .as_deref()
            .and_then(decode_sign_result)
            .and_then(|s| der::ecdsa_raw(&s, 32));
        let verified = signature.and_then(|raw| {
            use p256::ecdsa::signature::Verifier;
            let signature = p256::ecdsa::Signature::from_slice(&raw).ok()?;
            key.verifying_key().verify(text, &signature).ok()
        });
        verified.is_some()
    }
}

/// A P-256 signing key from PKCS#8 DER, refused when a public key it carries is not the
/// scalar's own (corrupt key material would otherwise load and fail on every signature).
fn p256_signing_key(pkcs8: &[u8]) -> Option<p256::ecdsa::SigningKey> {
    let parsed = der::pkcs8_p256(pkcs8)?;
    let key = p256::ecdsa::SigningKey::from_slice(&parsed.scalar).ok()?;
    let matches = |point: &&[u8]| {
        p256::ecdsa::VerifyingKey::from_sec1_bytes(point).is_ok_and(|p| &p == key.verifying_key())
    };
    parsed.public_points.iter().all(matches).then_some(key)
}

/// The probe key (P-256, scalar 0x07 repeated; no other use), PKCS#8 DER.
const PROBE_KEY_PKCS8: [u8; 138] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07,
    0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07, 0x07,
    0x07, 0x07, 0x07, 0x07, 0xa1, 0x44, 0x03, 0x42, 0x00, 0x04, 0x1e, 0x18, 0x53, 0x2f, 0xd4, 0x75,
    0x4c, 0x02, 0xf3, 0x04, 0x1d, 0x9c, 0x75, 0xce, 0xb3, 0x3b, 0x83, 0xff, 0xd8, 0x1a, 0xc7, 0xce,
    0x4f, 0xe8, 0x82, 0xcc, 0xb1, 0xc9, 0x8b, 0xc5, 0x89, 0x6e, 0xa4, 0x6c, 0x31, 0x1c, 0x4e, 0x2f,
    0xf4, 0x0d, 0xd9, 0x6a, 0x36, 0x53, 0xe6, 0xe4, 0x54, 0x45, 0xd3, 0x2d, 0xfe, 0x48, 0x6e, 0xce,
    0xd7, 0x5c, 0x7a, 0x90, 0xc6, 0xa1, 0x88, 0x81, 0xc0, 0xa3,
];

impl AssertionSigner for NativeSigner {
    fn sign(&self, key: &SigningKey, input: &[u8]) -> Option<Vec<u8>> {
        let answer = (self.call)(&sign_arguments(&key.der, input));
        let signature = answer.as_deref().and_then(decode_sign_result);
        let jws = signature.and_then(|s| match key.alg {
            SigningAlg::Rs256 => Some(s),
            // BoringSSL gives DER; a JWS carries fixed-size r || s.
            SigningAlg::Es256 => der::ecdsa_raw(&s, 32),
        });
        jws.or_else(|| key.sign_pure(input))
    }
}

/// `SignArguments { string hash_function = 1; bytes private_key = 2; bytes text = 3 }`.
fn sign_arguments(pkcs8_der: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pkcs8_der.len() + text.len() + 16);
    field(1, b"sha256", &mut out);
    field(2, pkcs8_der, &mut out);
    field(3, text, &mut out);
    out
}

/// `SignResult { bool result = 1; bytes signature = 2; string error = 3 }` -> the signature.
fn decode_sign_result(bytes: &[u8]) -> Option<Vec<u8>> {
    let answer = decode_fields(bytes)?;
    answer
        .flag
        .then_some(answer.bytes_field_2)
        .flatten()
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{PublicKey, PureRustVerifier, SignatureVerifier};
    use crate::jose::Alg;
    use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

    fn p256_pem() -> String {
        let key = p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        key.to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map(|p| p.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn p256_signatures_verify() {
        let key = SigningKey::from_pem(&p256_pem(), "k1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.alg, SigningAlg::Es256);
        assert_eq!(format!("{key:?}"), "SigningKey(ES256 k1, [redacted])");
        let signature = PureRustSigner.sign(&key, b"input").unwrap_or_default();
        assert_eq!(signature.len(), 64);
        let PrivateKey::P256(sk) = &key.key else {
            panic!("not P-256");
        };
        let public = crate::crypto::Key::new(PublicKey::P256(*sk.verifying_key()));
        assert!(PureRustVerifier.verify(Alg::Es256, &public, b"input", &signature));
        assert!(!PureRustVerifier.verify(Alg::Es256, &public, b"other", &signature));
    }

    #[test]
    fn host_signatures_are_converted_and_failures_fall_back() {
        let key = SigningKey::from_pem(&p256_pem(), "k1").unwrap_or_else(|e| panic!("{e}"));
        // A host that signs correctly (here: pure Rust, answered in the host's DER form).
        let der_key = key.clone();
        let host = NativeSigner::new(Box::new(move |args| {
            assert!(args.windows(6).any(|w| w == b"sha256"));
            let raw = der_key.sign_pure(b"input")?;
            let mut answer = Vec::new();
            answer.extend_from_slice(&[0x08, 0x01]);
            field(2, &der::ecdsa_signature(&raw, 32)?, &mut answer);
            Some(answer)
        }));
        let signature = host.sign(&key, b"input").unwrap_or_default();
        let PrivateKey::P256(sk) = &key.key else {
            panic!("not P-256");
        };
        let public = crate::crypto::Key::new(PublicKey::P256(*sk.verifying_key()));
        assert!(PureRustVerifier.verify(Alg::Es256, &public, b"input", &signature));
        // A host without the function: pure Rust signs.
        let absent = NativeSigner::new(Box::new(|_| None));
        let signature = absent.sign(&key, b"input").unwrap_or_default();
        assert!(PureRustVerifier.verify(Alg::Es256, &public, b"input", &signature));
        // A host that says it failed: pure Rust signs.
        let failing = NativeSigner::new(Box::new(|_| Some(vec![0x08, 0x00])));
        assert_eq!(failing.sign(&key, b"input").map(|s| s.len()), Some(64));
    }

    fn pem_of(der: &[u8]) -> String {
        let b64 = STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn rsa_keys_are_host_signed_and_small_ones_refused() {
        use rsa::pkcs8::EncodePrivateKey as _;
        let k =
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap_or_else(|e| panic!("{e}"));
        let der = k
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let key = SigningKey::from_pem(&pem_of(&der), "r1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key.alg, SigningAlg::Rs256);
        assert!(key.needs_host());
        assert_eq!(PureRustSigner.sign(&key, b"input"), None);
        // What the host gets is the key's own PKCS#8 DER.
        let host = NativeSigner::new(Box::new(move |args| {
            let ok = args.windows(der.len()).any(|w| w == der.as_slice());
            let mut answer = vec![0x08, u8::from(ok)];
            field(2, &[1u8; 256], &mut answer);
            Some(answer)
        }));
        assert_eq!(host.sign(&key, b"input"), Some(vec![1u8; 256]));
        let small =
            rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap_or_else(|e| panic!("{e}"));
        let der = small
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(
            SigningKey::from_pem(&pem_of(&der), "r0").err(),
            Some("RSA keys must have at least 2048 bits")
        );
    }

    #[test]
    fn a_p256_key_whose_public_half_is_not_its_own_is_refused() {
        let key =
            |b: u8| p256::ecdsa::SigningKey::from_slice(&[b; 32]).unwrap_or_else(|e| panic!("{e}"));
        let der = key(7)
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert!(SigningKey::from_pem(&pem_of(&der), "k").is_ok());
        let own = key(7).verifying_key().to_encoded_point(false);
        let other = key(8).verifying_key().to_encoded_point(false);
        let at = der.windows(own.len()).position(|w| w == own.as_bytes());
        let mut swapped = der.clone();
        if let Some(i) = at {
            swapped[i..i + other.len()].copy_from_slice(other.as_bytes());
        }
        assert!(at.is_some());
        assert_eq!(
            SigningKey::from_pem(&pem_of(&swapped), "k").err(),
            Some("must be an RSA or P-256 private key in PKCS#8")
        );
    }

    #[test]
    fn the_probe_detects_a_working_host() {
        let honest = |args: &[u8]| -> Option<Vec<u8>> {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(&PROBE_KEY_PKCS8).ok()?;
            use p256::ecdsa::signature::Signer;
            let text = b"token-vault-proxy host signer probe";
            assert!(args.windows(text.len()).any(|w| w == text));
            let signature: p256::ecdsa::Signature = key.sign(text);
            let mut answer = vec![0x08, 0x01];
            field(2, signature.to_der().as_bytes(), &mut answer);
            Some(answer)
        };
        assert!(NativeSigner::host_works(&honest));
        assert!(!NativeSigner::host_works(&|_| None));
        assert!(!NativeSigner::host_works(&|_| Some(vec![0x08, 0x01])));
        let liar = |_: &[u8]| -> Option<Vec<u8>> {
            let mut answer = vec![0x08, 0x01];
            field(2, &der::ecdsa_signature(&[1u8; 64], 32)?, &mut answer);
            Some(answer)
        };
        assert!(!NativeSigner::host_works(&liar));
        // The probe key is the verifier probe's key.
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&PROBE_KEY_PKCS8)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            key.verifying_key().to_encoded_point(false).as_bytes(),
            &PROBE_KEY_PKCS8[73..]
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SigningKey::from_pem("not a key", "k").is_err());
        assert!(SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----",
            "k"
        )
        .is_err());
        assert!(SigningKey::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "k"
        )
        .is_err());
    }
}
