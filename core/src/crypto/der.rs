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

/// The key inside a SubjectPublicKeyInfo: the `subjectPublicKey` BIT STRING's bytes (an RSA
/// key's `RSAPublicKey` DER, a P-256 key's uncompressed point), as native verifiers take it.
pub fn spki_public_key(spki: &[u8]) -> Option<&[u8]> {
    let (0x30, info, _) = element(spki)? else {
        return None;
    };
    let (0x30, _algorithm, rest) = element(info)? else {
        return None;
    };
    let (0x03, bits, _) = element(rest)? else {
        return None;
    };
    // A key is whole bytes: no unused bits.
    match bits.split_first()? {
        (0, key) => Some(key),
        _ => None,
    }
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

/// A P-256 private key read from PKCS#8: its scalar, left-padded to 32 bytes, and the public
/// points the encoding carries (SEC1 bytes, up to two), which the caller must check against the
/// scalar.
#[derive(Debug, PartialEq, Eq)]
pub struct P256PrivateKey<'a> {
    pub scalar: [u8; 32],
    pub public_points: Vec<&'a [u8]>,
}

/// Parse a PKCS#8 (RFC 5208, or RFC 5958 version 2) P-256 private key wrapping an RFC 5915
/// ECPrivateKey; `None` if it is anything else, has fields out of order or trailing bytes.
/// Range checks on the scalar are left to the curve crate.
pub fn pkcs8_p256(pkcs8: &[u8]) -> Option<P256PrivateKey<'_>> {
    let (0x30, info, []) = element(pkcs8)? else {
        return None;
    };
    let (0x02, version, rest) = element(info)? else {
        return None;
    };
    let version_2 = match version {
        [0] => false,
        [1] => true,
        _ => return None,
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
    let (0x04, private_key, mut rest) = element(rest)? else {
        return None;
    };
    let mut public_points = Vec::new();
    // attributes [0] IMPLICIT (ignored), then in version 2 publicKey [1] IMPLICIT BIT STRING.
    if let Some((0xa0, _attributes, after)) = element(rest) {
        rest = after;
    }
    if let Some((0x81, bits, after)) = element(rest) {
        if !version_2 {
            return None;
        }
        public_points.push(bit_string_bytes(bits)?);
        rest = after;
    }
    if !rest.is_empty() {
        return None;
    }

    let (0x30, ec_key, []) = element(private_key)? else {
        return None;
    };
    let (0x02, [1], rest) = element(ec_key)? else {
        return None;
    };
    let (0x04, scalar, mut rest) = element(rest)? else {
        return None;
    };
    // Some encoders drop the scalar's leading zero bytes.
    if scalar.is_empty() || scalar.len() > 32 {
        return None;
    }
    let mut padded = [0u8; 32];
    padded[32 - scalar.len()..].copy_from_slice(scalar);
    // parameters [0] EXPLICIT (must name P-256 too), publicKey [1] EXPLICIT BIT STRING.
    if let Some((0xa0, params, after)) = element(rest) {
        let (0x06, PRIME256V1_OID, []) = element(params)? else {
            return None;
        };
        rest = after;
    }
    if let Some((0xa1, public_key, after)) = element(rest) {
        let (0x03, bits, []) = element(public_key)? else {
            return None;
        };
        public_points.push(bit_string_bytes(bits)?);
        rest = after;
    }
    if !rest.is_empty() {
        return None;
    }
    Some(P256PrivateKey {
        scalar: padded,
        public_points,
    })
}

/// The bytes of a BIT STRING's content with no unused bits.
fn bit_string_bytes(content: &[u8]) -> Option<&[u8]> {
    match content.split_first()? {
        (0, bytes) => Some(bytes),
        _ => None,
    }
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
    fn the_key_inside_an_spki_is_its_bit_string() {
        let point = [4u8; 65];
        assert_eq!(spki_public_key(&p256_spki(&point)), Some(&point[..]));
        let spki = rsa_spki(&[0xc5; 256], &[1, 0, 1]);
        let key = spki_public_key(&spki).unwrap_or_default();
        assert_eq!(
            key,
            sequence(&[
                &unsigned_integer(&[0xc5; 256]),
                &unsigned_integer(&[1, 0, 1])
            ])
        );
        assert_eq!(spki_public_key(&spki[..spki.len() - 1]), None);
        assert_eq!(spki_public_key(b"\x30\x00"), None);
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
    fn pkcs8_p256_matches_the_p256_crate() {
        use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
        let key = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        let der = key
            .to_pkcs8_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        let point = key.verifying_key().to_encoded_point(false);
        let parsed = pkcs8_p256(&der);
        assert_eq!(parsed.as_ref().map(|k| k.scalar), Some([9u8; 32]));
        assert_eq!(
            parsed.map(|k| k.public_points),
            Some(vec![point.as_bytes()])
        );
        let theirs = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map(|k| k.to_bytes().to_vec());
        assert_eq!(theirs.ok(), Some(vec![9u8; 32]));
        // Truncated, trailing bytes, another curve's OID, an RSA key: all refused.
        assert_eq!(pkcs8_p256(&der[..der.len() - 1]), None);
        let mut trailing = der.clone();
        trailing.push(0);
        assert_eq!(pkcs8_p256(&trailing), None);
        let mut other_curve = der.clone();
        if let Some(i) = other_curve
            .windows(PRIME256V1_OID.len())
            .position(|w| w == PRIME256V1_OID)
        {
            other_curve[i + PRIME256V1_OID.len() - 1] = 0x08;
        }
        assert_eq!(pkcs8_p256(&other_curve), None);
        let keys = sim::keys::IssuerKeys::generate("t");
        let rsa = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&keys.rsa[0].key)
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default();
        assert_eq!(pkcs8_p256(&rsa), None);
        assert_eq!(pkcs8_p256(b""), None);
    }

    /// Hand-built encodings: the optional fields each way round, v2 with its outer public key,
    /// and a scalar without its leading zero.
    #[test]
    fn pkcs8_p256_optional_fields() {
        let point = [&[4u8][..], &[1u8; 64]].concat();
        let bits = [&[0u8][..], &point].concat();
        let oid = tlv(0x06, PRIME256V1_OID);
        let algorithm = sequence(&[&tlv(0x06, EC_PUBLIC_KEY_OID), &oid]);
        let pkcs8 = |version: u8, scalar: &[u8], inner: &[&[u8]], outer: &[&[u8]]| {
            let ec_key = sequence(&[
                &[&[2u8, 1, 1][..], &tlv(0x04, scalar)].concat(),
                &inner.concat(),
            ]);
            sequence(&[
                &[2, 1, version],
                &algorithm,
                &tlv(0x04, &ec_key),
                &outer.concat(),
            ])
        };
        let params = tlv(0xa0, &oid);
        let inner_public = tlv(0xa1, &tlv(0x03, &bits));
        let attributes = tlv(0xa0, &[]);
        let outer_public = tlv(0x81, &bits);
        let scalar = [5u8; 32];
        let full = pkcs8(0, &scalar, &[&params, &inner_public], &[&attributes]);
        assert_eq!(
            pkcs8_p256(&full),
            Some(P256PrivateKey {
                scalar,
                public_points: vec![&point[..]],
            })
        );
        let v2 = pkcs8(1, &scalar, &[], &[&outer_public]);
        assert_eq!(pkcs8_p256(&v2).map(|k| k.public_points.len()), Some(1));
        // A v1 key may not carry the v2 public key; fields out of order are refused.
        assert_eq!(pkcs8_p256(&pkcs8(0, &scalar, &[], &[&outer_public])), None);
        assert_eq!(
            pkcs8_p256(&pkcs8(0, &scalar, &[&inner_public, &params], &[])),
            None
        );
        let short = pkcs8(0, &scalar[1..], &[], &[]);
        let mut padded = scalar;
        padded[0] = 0;
        assert_eq!(pkcs8_p256(&short).map(|k| k.scalar), Some(padded));
        assert_eq!(pkcs8_p256(&pkcs8(0, &[7u8; 33], &[], &[])), None);
        assert_eq!(pkcs8_p256(&pkcs8(2, &scalar, &[], &[])), None);
    }

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
