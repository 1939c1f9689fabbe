//! Verification through Envoy's `verify_signature` foreign function (BoringSSL). This module
//! only builds the call's protobuf arguments and reads its answer; the call itself is injected,
//! so the encoding is unit-tested on the host and `host.rs` stays the only host-facing code.

use super::{der, Key, PublicKey, PureRustVerifier, SignatureVerifier};
use crate::jose::Alg;

/// Calls the foreign function: arguments in, answer out; `None` when the host lacks it or
/// failed to run it (as opposed to answering "invalid").
pub type ForeignCall = Box<dyn Fn(&[u8]) -> Option<Vec<u8>>>;

/// Host-native where it can, pure Rust where it cannot (PSS, EdDSA, or a failing host call).
pub struct NativeVerifier {
    call: ForeignCall,
}

impl NativeVerifier {
    pub fn new(call: ForeignCall) -> Self {
        NativeVerifier { call }
    }

    /// Whether the host verifies a known-good signature and refuses a bad one: run once at
    /// start to decide between this verifier and the pure-Rust one.
    pub fn host_works(call: &dyn Fn(&[u8]) -> Option<Vec<u8>>) -> bool {
        let (good, bad) = self_test_arguments();
        call(&good).and_then(|r| decode_result(&r)) == Some(true)
            && call(&bad).and_then(|r| decode_result(&r)) == Some(false)
    }
}

impl SignatureVerifier for NativeVerifier {
    fn verify(&self, alg: Alg, key: &Key, message: &[u8], signature: &[u8]) -> bool {
        let Some((hash, signature_der)) = native_form(alg, key, signature) else {
            return PureRustVerifier.verify(alg, key, message, signature);
        };
        let Some(spki) = key.spki_der.as_deref() else {
            return PureRustVerifier.verify(alg, key, message, signature);
        };
        let args = encode_arguments(hash, spki, &signature_der, message);
        match (self.call)(&args).and_then(|r| decode_result(&r)) {
            Some(valid) => valid,
            None => PureRustVerifier.verify(alg, key, message, signature),
        }
    }
}

/// Hash name and signature bytes as BoringSSL wants them, or `None` to verify in Rust.
fn native_form(alg: Alg, key: &Key, signature: &[u8]) -> Option<(&'static str, Vec<u8>)> {
    match (&key.public, alg) {
        (PublicKey::Rsa(k), Alg::Rs256 | Alg::Rs384 | Alg::Rs512) => {
            // Same rule as the pure verifier: exactly the modulus length.
            if signature.len() != rsa::traits::PublicKeyParts::size(k) {
                return Some(("sha256", Vec::new()));
            }
            let hash = match alg {
                Alg::Rs384 => "sha384",
                Alg::Rs512 => "sha512",
                _ => "sha256",
            };
            Some((hash, signature.to_vec()))
        }
        // Raw r||s of the wrong size can never verify; an empty DER makes the host say so.
        (PublicKey::P256(_), Alg::Es256) => Some((
            "sha256",
            der::ecdsa_signature(signature, 32).unwrap_or_default(),
        )),
        _ => None,
    }
}

pub(crate) fn varint(mut v: usize, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn field(number: u8, bytes: &[u8], out: &mut Vec<u8>) {
    out.push((number << 3) | 2);
    varint(bytes.len(), out);
    out.extend_from_slice(bytes);
}

/// `VerifySignatureArguments { hash_function = 1; public_key = 2; signature = 3; text = 4 }`.
pub fn encode_arguments(hash: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki_der.len() + signature.len() + text.len() + 16);
    field(1, hash.as_bytes(), &mut out);
    field(2, spki_der, &mut out);
    field(3, signature, &mut out);
    field(4, text, &mut out);
    out
}

/// `VerifySignatureResult { bool result = 1; string error = 2 }` -> `result`; `None` if the
/// answer is not such a message.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    decode_fields(bytes).map(|f| f.flag)
}

/// The fields of a host answer this filter reads: bool/varint field 1, bytes field 2.
pub(crate) struct HostAnswer<'a> {
    pub flag: bool,
    pub bytes_field_2: Option<&'a [u8]>,
}

/// Decode a protobuf answer; `None` if it is not well-formed.
pub(crate) fn decode_fields(bytes: &[u8]) -> Option<HostAnswer<'_>> {
    let mut answer = HostAnswer {
        flag: false,
        bytes_field_2: None,
    };
    let mut result = false;
    let mut i = 0;
    while i < bytes.len() {
        let tag = bytes[i];
        i += 1;
        let read_varint = |i: &mut usize| -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let b = *bytes.get(*i)?;
                *i += 1;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        };
        match tag & 7 {
            0 => {
                let v = read_varint(&mut i)?;
                if tag >> 3 == 1 {
                    result = v != 0;
                }
            }
            2 => {
                let len = usize::try_from(read_varint(&mut i)?).ok()?;
                let end = i.checked_add(len).filter(|end| *end <= bytes.len())?;
                if tag >> 3 == 2 {
                    answer.bytes_field_2 = Some(&bytes[i..end]);
                }
                i = end;
            }
            _ => return None,
        }
    }
    answer.flag = result;
    Some(answer)
}

/// The start-up probe: an ES256 signature (P-256 key from a fixed scalar, no other use) over
/// [`PROBE_TEXT`], checked as given and with one bit flipped.
const PROBE_TEXT: &[u8] = b"token-vault-proxy host verifier probe";
const PROBE_POINT: [u8; 65] = [
    0x04, 0x1e, 0x18, 0x53, 0x2f, 0xd4, 0x75, 0x4c, 0x02, 0xf3, 0x04, 0x1d, 0x9c, 0x75, 0xce, 0xb3,
    0x3b, 0x83, 0xff, 0xd8, 0x1a, 0xc7, 0xce, 0x4f, 0xe8, 0x82, 0xcc, 0xb1, 0xc9, 0x8b, 0xc5, 0x89,
    0x6e, 0xa4, 0x6c, 0x31, 0x1c, 0x4e, 0x2f, 0xf4, 0x0d, 0xd9, 0x6a, 0x36, 0x53, 0xe6, 0xe4, 0x54,
    0x45, 0xd3, 0x2d, 0xfe, 0x48, 0x6e, 0xce, 0xd7, 0x5c, 0x7a, 0x90, 0xc6, 0xa1, 0x88, 0x81, 0xc0,
    0xa3,
];
const PROBE_SIGNATURE: [u8; 64] = [
    0xf5, 0x1f, 0x5b, 0x09, 0xbb, 0xb5, 0xd2, 0x06, 0x0c, 0x5e, 0x9e, 0xdb, 0x0f, 0xb3, 0x11, 0x1e,
    0x0b, 0xde, 0x7c, 0x63, 0xe2, 0xbc, 0x57, 0x91, 0x4c, 0x68, 0xee, 0x73, 0x1a, 0xf0, 0xad, 0x0a,
    0xce, 0xa1, 0x42, 0x24, 0xed, 0x76, 0x6d, 0x06, 0xae, 0xcb, 0x5a, 0x63, 0xb2, 0x9d, 0x86, 0x94,
    0x31, 0xee, 0xb2, 0x3c, 0xdc, 0x46, 0xa4, 0x00, 0x2e, 0x40, 0xb1, 0x27, 0x3e, 0x7a, 0x7b, 0xca,
];

fn self_test_arguments() -> (Vec<u8>, Vec<u8>) {
    let spki = der::p256_spki(&PROBE_POINT);
    let good = der::ecdsa_signature(&PROBE_SIGNATURE, 32).unwrap_or_default();
    let mut tampered = PROBE_SIGNATURE;
    tampered[40] ^= 1;
    let bad = der::ecdsa_signature(&tampered, 32).unwrap_or_default();
    (
        encode_arguments("sha256", &spki, &good, PROBE_TEXT),
        encode_arguments("sha256", &spki, &bad, PROBE_TEXT),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_decoding() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(decode_result(&[]), Some(false));
        assert_eq!(decode_result(&[0x12, 0x03, b'b', b'a', b'd']), Some(false));
        assert_eq!(decode_result(&[0x08, 0x01, 0x12, 0x01, b'x']), Some(true));
        assert_eq!(decode_result(&[0x12, 0x09, b'x']), None);
        assert_eq!(decode_result(&[0x0d, 0, 0, 0, 0]), None);
        assert_eq!(decode_result(&[0x08, 0xff]), None);
    }

    #[test]
    fn argument_encoding() {
        let a = encode_arguments("sha256", &[1, 2], &[3], &[0; 200]);
        assert_eq!(&a[..8], &[0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6']);
        assert_eq!(&a[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(&a[12..15], &[0x1a, 1, 3]);
        assert_eq!(&a[15..18], &[0x22, 0xc8, 0x01]);
    }

    #[test]
    fn the_probe_signature_is_valid_in_pure_rust() {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&PROBE_POINT)
            .map(|k| Key::new(PublicKey::P256(k)));
        let key = key.unwrap_or_else(|e| panic!("{e}"));
        assert!(PureRustVerifier.verify(Alg::Es256, &key, PROBE_TEXT, &PROBE_SIGNATURE));
        assert_eq!(
            key.spki_der.as_deref(),
            Some(&der::p256_spki(&PROBE_POINT)[..])
        );
    }

    #[test]
    fn a_host_that_lies_or_is_missing_is_not_used() {
        assert!(!NativeVerifier::host_works(&|_| None));
        assert!(!NativeVerifier::host_works(&|_| Some(vec![0x08, 0x01])));
        assert!(!NativeVerifier::host_works(&|_| Some(vec![])));
    }
}
