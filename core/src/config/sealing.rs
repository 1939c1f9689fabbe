//! The keys that seal what browsers and agents carry for the filter (connect links, sign-ins,
//! sessions, consents): configured, so every replica opens what any other sealed, also after a
//! restart. Rotation: put the new key first and keep the old one until what it sealed expired.

use std::fmt;

/// At least this many bytes of key material per key (256 bits if random).
const MIN_KEY_LEN: usize = 32;
/// A current key and a few previous ones are enough for any rotation.
const MAX_KEYS: usize = 4;

/// Configured sealing keys: the first seals, every one opens. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SealingKeys(Vec<Vec<u8>>);

impl SealingKeys {
    /// Keys separated by whitespace or commas, each at least 32 printable ASCII characters
    /// (e.g. `openssl rand -base64 32`).
    pub fn parse(text: &str) -> Result<SealingKeys, &'static str> {
        let keys: Vec<Vec<u8>> = text
            .split(|c: char| c.is_ascii_whitespace() || c == ',')
            .filter(|k| !k.is_empty())
            .map(|k| k.as_bytes().to_vec())
            .collect();
        if keys.is_empty() {
            return Err("holds no key");
        }
        if keys.len() > MAX_KEYS {
            return Err("holds more than 4 keys (the current one and up to 3 previous)");
        }
        if keys
            .iter()
            .any(|k| k.len() < MIN_KEY_LEN || !k.iter().all(|b| b.is_ascii_graphic()))
        {
            return Err(
                "every key must be at least 32 printable characters (openssl rand -base64 32)",
            );
        }
        Ok(SealingKeys(keys))
    }

    /// The key that seals.
    pub fn current(&self) -> &[u8] {
        self.0.first().map_or(&[], Vec::as_slice)
    }

    /// Every key that opens.
    pub fn all(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().map(Vec::as_slice)
    }
}

impl fmt::Debug for SealingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealingKeys([redacted; {}])", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_printable_and_few() {
        let k = SealingKeys::parse(
            " aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb ",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.current(), &[b'a'; 34][..]);
        assert_eq!(k.all().count(), 2);
        assert!(!format!("{k:?}").contains("aaa"));
        for bad in [
            "",
            " , ",
            "short",
            &format!("{} x", "a".repeat(40)),
            &vec!["k".repeat(32); 5].join(" "),
        ] {
            assert!(SealingKeys::parse(bad).is_err(), "{bad}");
        }
    }
}
