//! Values the browser keeps for the filter, sealed with a MAC so it cannot change them: the
//! sign-in in progress lives in its cookie, not in shared data, so a request that never signs
//! in leaves nothing behind (shared data cannot be deleted from).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::flow::Host;
use crate::secret::{random_token, sha256};

/// Shared-data key of the MAC key every worker uses.
const MAC_KEY: &str = "tvp/v1/cx/mac-key";

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha256(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Vec::with_capacity(64 + message.len());
    inner.extend(block.iter().map(|b| b ^ 0x36));
    inner.extend_from_slice(message);
    let mut outer = Vec::with_capacity(96);
    outer.extend(block.iter().map(|b| b ^ 0x5c));
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer)
}

/// Equal without an early exit, so timing tells nothing about where a forged MAC differs.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The MAC key, created on first use. Two workers creating it at once both end up using the
/// one stored last (a seal made with the other fails once; the user starts again).
fn mac_key(host: &dyn Host) -> Option<Vec<u8>> {
    if let Some(key) = host.shared_get(MAC_KEY).0.filter(|k| k.len() >= 32) {
        return Some(key);
    }
    let fresh = random_token()?;
    host.shared_set(MAC_KEY, fresh.as_bytes(), None);
    host.shared_get(MAC_KEY).0.filter(|k| k.len() >= 32)
}

/// `value` as `payload.mac`, both URL-safe base64.
pub fn seal<T: Serialize>(host: &dyn Host, value: &T) -> Option<String> {
    let key = mac_key(host)?;
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).ok()?);
    let mac = URL_SAFE_NO_PAD.encode(hmac_sha256(&key, payload.as_bytes()));
    Some(format!("{payload}.{mac}"))
}

/// The value sealed in `sealed`, if its MAC is ours.
pub fn open<T: DeserializeOwned>(host: &dyn Host, sealed: &str) -> Option<T> {
    let (payload, mac) = sealed.split_once('.')?;
    let key = host.shared_get(MAC_KEY).0?;
    let expected = hmac_sha256(&key, payload.as_bytes());
    if !same(&URL_SAFE_NO_PAD.decode(mac).ok()?, &expected) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// A short digest of a sealed value: the OAuth `state` that ties a callback to the cookie.
pub fn digest(sealed: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(sealed.as_bytes())[..24])
}

/// Whether `state` is the digest of `sealed`.
pub fn is_digest_of(state: &str, sealed: &str) -> bool {
    same(state.as_bytes(), digest(sealed).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::secret::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sealed_values_open_only_unchanged() {
        let host = FakeHost::default();
        let sealed = seal(&host, &("alice", 7u64)).unwrap_or_default();
        assert_eq!(
            open::<(String, u64)>(&host, &sealed),
            Some(("alice".into(), 7))
        );
        let (payload, mac) = sealed.split_once('.').unwrap_or_default();
        let forged_payload = URL_SAFE_NO_PAD.encode(br#"["mallory",7]"#);
        assert_eq!(
            open::<(String, u64)>(&host, &format!("{forged_payload}.{mac}")),
            None
        );
        assert_eq!(
            open::<(String, u64)>(&host, &format!("{payload}.AAAA")),
            None
        );
        assert_eq!(open::<(String, u64)>(&host, "garbage"), None);
        // Another gateway's key (or a rotated one) opens nothing.
        let other = FakeHost::default();
        seal(&other, &0u8);
        assert_eq!(open::<(String, u64)>(&other, &sealed), None);
        assert_ne!(digest(&sealed), digest(&format!("{payload}.x")));
    }
}
