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

/// The DER element at the start of `bytes`: its tag, its content and what follows it.
pub fn element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize)
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `rsaEncryption` (1.2.840.113549.1.1.1), as the content of a DER OID.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The modulus size in bits of a PKCS#8 RSA private key; `None` if it is not one.
pub fn pkcs8_rsa_modulus_bits(pkcs8: &[u8]) -> Option<usize> {
    let (0x30, info, _) = element(pkcs8)? else {
        return None;
    };
    let (0x02, _version, rest) = element(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = element(rest)? else {
        return None;
    };
    let (0x06, oid, _) = element(algorithm)? else {
        return None;
    };
    if oid != RSA_ENCRYPTION_OID {
        return None;
    }
    let (0x04, private_key, _) = element(rest)? else {
        return None;
    };
    let (0x30, fields, _) = element(private_key)? else {
        return None;
    };
    let (0x02, _version, rest) = element(fields)? else {
        return None;
    };
    let (0x02, modulus, _) = element(rest)? else {
        return None;
    };
    let magnitude = match modulus {
        [0, rest @ ..] => rest,
        other => other,
    };
    let first = *magnitude.first()?;
    Some(magnitude.len() * 8 - first.leading_zeros() as usize)
}

/// `id-ecPublicKey` (1.2.840.10045.2.1) and `prime256v1` (1.2.840.10045.3.1.7), OID contents.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1_OID: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The 32-byte private scalar of a PKCS#8 P-256 key (RFC 5208 wrapping an RFC 5915
/// ECPrivateKey); `None` if it is not one. Range checks are left to the curve crate.
pub fn pkcs8_p256_scalar(pkcs8: &[u8]) -> Option<[u8; 32]> {
    let (0x30, info, []) = element(pkcs8)? else {
        return None;
    };
    let (0x02, [0], rest) = element(info)? else {
        return None;
    };
    let (0x30, algorithm, rest) = element(rest)? else {
        return None;
    };
    let (0x06, EC_PUBLIC_KEY_OID, params) = element(algorithm)? else {
        return None;
    };
    let (0x06, PRIME256V1_OID, []) = element(params)? else {
        return None;
    };
    let (0x04, private_key, _attributes) = element(rest)? else {
        return None;
    };
    let (0x30, ec_key, []) = element(private_key)? else {
        return None;
    };
    let (0x02, [1], rest) = element(ec_key)? else {
        return None;
    };
    // Optional [0] parameters and [1] public key follow; the scalar is all signing needs.
    let (0x04, scalar, _) = element(rest)? else {
        return None;
    };
    scalar.try_into().ok()
}

/// A DER `SEQUENCE { INTEGER r, INTEGER s }` (what BoringSSL's ECDSA signing gives) as the
/// fixed-size `r || s` a JWS carries; `None` if it is not one, or an integer is too large.
pub fn ecdsa_raw(der: &[u8], half: usize) -> Option<Vec<u8>> {
    fn read_len(bytes: &[u8], i: &mut usize) -> Option<usize> {
        let first = *bytes.get(*i)?;
        *i += 1;
        if first < 0x80 {
            return Some(first as usize);
        }
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 2 {
            return None;
        }
        let mut len = 0usize;
        for _ in 0..n {
            len = (len << 8) | *bytes.get(*i)? as usize;
            *i += 1;
        }
        Some(len)
    }
    let mut i = 0;
    if *der.get(i)? != 0x30 {
        return None;
    }
    i += 1;
    let total = read_len(der, &mut i)?;
    if i + total != der.len() {
        return None;
    }
    let mut out = Vec::with_capacity(half * 2);
    for _ in 0..2 {
        if *der.get(i)? != 0x02 {
            return None;
        }
        i += 1;
        let len = read_len(der, &mut i)?;
        let int = der.get(i..i + len)?;
        i += len;
        let magnitude = match int {
            [0, rest @ ..] => rest,
            other => other,
        };
        if magnitude.len() > half {
            return None;
        }
        out.extend(std::iter::repeat_n(0, half - magnitude.len()));
        out.extend_from_slice(magnitude);
    }
    (i == der.len()).then_some(out)
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
    fn ecdsa_raw_inverts_ecdsa_signature() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a leading zero in DER
        raw[33] = 0x01; // s has leading zeros that DER drops
        raw[63] = 0x7f;
        let der = ecdsa_signature(&raw, 32).unwrap_or_default();
        assert_eq!(ecdsa_raw(&der, 32), Some(raw));
        assert_eq!(ecdsa_raw(&der[..der.len() - 1], 32), None);
        assert_eq!(ecdsa_raw(b"\x30\x00", 32), None);
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(ecdsa_raw(&trailing, 32), None);
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

    #[test]
    fn pkcs8_p256_scalar_matches_the_p256_crate() {
        use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        let der = key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(pkcs8_p256_scalar(&der), Some([9u8; 32]));
        let parsed = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map(|k| k.to_bytes().to_vec());
        assert_eq!(parsed.ok(), Some(vec![9u8; 32]));
        // Truncated, trailing bytes, another curve's OID, an RSA key: all refused.
        assert_eq!(pkcs8_p256_scalar(&der[..der.len() - 1]), None);
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(pkcs8_p256_scalar(&trailing), None);
        let mut p384 = der.clone();
        if let Some(i) = p384
            .windows(PRIME256V1_OID.len())
            .position(|w| w == PRIME256V1_OID)
        {
            p384[i + PRIME256V1_OID.len() - 1] = 0x08;
        }
        assert_eq!(pkcs8_p256_scalar(&p384), None);
        let keys = sim::keys::IssuerKeys::generate("t");
        let rsa = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&keys.rsa[0].key)
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(pkcs8_p256_scalar(&rsa), None);
        assert_eq!(pkcs8_p256_scalar(b""), None);
    }
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
