//! The few DER structures the host verifier needs: SubjectPublicKeyInfo for RSA and P-256
//! keys, and the ECDSA signature SEQUENCE (JWS carries raw `r || s`).

fn length(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    length(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// A non-negative INTEGER from big-endian magnitude bytes (minimal encoding).
fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match magnitude.iter().position(|b| *b != 0) {
        Some(i) => &magnitude[i..],
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// SubjectPublicKeyInfo of an RSA key.
pub fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALGORITHM: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let key = sequence(&[&unsigned_integer(modulus), &unsigned_integer(exponent)]);
    let mut bits = vec![0u8];
    bits.extend_from_slice(&key);
    sequence(&[ALGORITHM, &tlv(0x03, &bits)])
}

/// SubjectPublicKeyInfo of a P-256 key from its uncompressed SEC1 point (65 bytes).
pub fn p256_spki(uncompressed_point: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(uncompressed_point);
    sequence(&[ALGORITHM, &tlv(0x03, &bits)])
}

/// `r || s` (each `half` bytes) as a DER `SEQUENCE { INTEGER r, INTEGER s }`.
pub fn ecdsa_signature(raw: &[u8], half: usize) -> Option<Vec<u8>> {
    if raw.len() != 2 * half {
        return None;
    }
    let (r, s) = raw.split_at(half);
    Some(sequence(&[&unsigned_integer(r), &unsigned_integer(s)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[0, 0, 1]), vec![2, 1, 1]);
        assert_eq!(unsigned_integer(&[0x80]), vec![2, 2, 0, 0x80]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![2, 1, 0]);
    }

    #[test]
    fn long_lengths() {
        let mut out = Vec::new();
        length(300, &mut out);
        assert_eq!(out, vec![0x82, 0x01, 0x2c]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
    }

    #[test]
    fn ecdsa_signature_layout() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80;
        raw[63] = 1;
        let der = ecdsa_signature(&raw, 32).unwrap_or_default();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert!(ecdsa_signature(&raw[..63], 32).is_none());
    }
}

#[cfg(test)]
mod spki_tests {
    use super::*;
    use rsa::pkcs8::EncodePublicKey;
    use rsa::traits::PublicKeyParts;

    #[test]
    fn rsa_spki_matches_the_rsa_crate() {
        let keys = sim::keys::IssuerKeys::generate("t");
        let public = keys.rsa[0].key.to_public_key();
        let expected = public
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(
            rsa_spki(&public.n().to_bytes_be(), &public.e().to_bytes_be()),
            expected
        );
    }
}
