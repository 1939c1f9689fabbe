//! Pure encodings of the proxy-wasm ABI, so the host calls in `host/` stay thin.
//!
//! The ABI's encoding of a header map: a little-endian pair count, then each pair's
//! name and value lengths, then each name and value followed by a NUL. Pure and total: a
//! malformed map from the host is `None`, never a panic (the SDK's own decoder unwraps).

/// Encode `pairs` for the host.
pub fn encode(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| n.len() + v.len() + 10)
        .sum::<usize>();
    let mut bytes = Vec::with_capacity(size);
    bytes.extend_from_slice(&len32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        bytes.extend_from_slice(&len32(name.len()).to_le_bytes());
        bytes.extend_from_slice(&len32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(value.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// Lengths the ABI carries as u32; header names and values are far shorter.
fn len32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Decode a map from the host: names as text, values as bytes. `None` when malformed (or a
/// name is not UTF-8: Envoy's header names are tokens).
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = read_u32(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 10));
    for n in 0..count {
        let sizes = 4 + n * 8;
        let (name_len, value_len) = (read_u32(sizes)?, read_u32(sizes + 4)?);
        let name = bytes.get(at..at.checked_add(name_len)?)?;
        at = at.checked_add(name_len)?.checked_add(1)?;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at = at.checked_add(value_len)?.checked_add(1)?;
        pairs.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_round_trips() {
        let pairs = [
            (":path", "/github/user"),
            ("authorization", "Bearer x"),
            ("e", ""),
        ];
        let decoded = decode(&encode(&pairs)).unwrap_or_default();
        let expected: Vec<(String, Vec<u8>)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(decode(&[]), Some(vec![]));
        assert_eq!(decode(&encode(&[])), Some(vec![]));
    }

    #[test]
    fn malformed_maps_decode_to_nothing() {
        let good = encode(&[("a", "b")]);
        for cut in 1..good.len() - 1 {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        // A count or a length that points past the end.
        assert_eq!(decode(&[255, 255, 255, 255]), None);
        let mut long = good.clone();
        long[4] = 200;
        assert_eq!(decode(&long), None);
        // A name that is not UTF-8.
        let mut bad = good;
        bad[12] = 0xff;
        assert_eq!(decode(&bad), None);
    }
}
