//! Values the browser and agents carry for the filter, sealed with authenticated encryption
//! (XChaCha20-Poly1305) under keys every replica is configured with: a connect link, a sign-in
//! in progress, a signed-in session (with its My Account token), a provider consent in flight.
//! Whichever replica, and whether or not it restarted, the next step opens what the last one
//! sealed; nothing lives only in one process, and shared data does not grow with users.
//!
//! A sealed value names its key (rotation: the first configured key seals, every configured
//! key opens) and its purpose (additional data: a link never opens as a session).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::SealingKeys;
use crate::secret::sha256;

const VERSION: u8 = 1;
const KID_LEN: usize = 4;
const NONCE_LEN: usize = 24;
/// Sealed values larger than this are not opened (cookies and URLs are far smaller).
const MAX_SEALED_LEN: usize = 8 * 1024;

/// What a sealed value is for; bound into it, so one kind never opens as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Link,
    Login,
    Session,
    Consent,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Link => b"tvp/v1/link",
            Purpose::Login => b"tvp/v1/login",
            Purpose::Session => b"tvp/v1/session",
            Purpose::Consent => b"tvp/v1/consent",
        }
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
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

/// Equal without an early exit, so timing tells nothing about where two values differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cipher key derived from a configured key (which may be any high-entropy text), and the
/// id a sealed value names it by.
fn derive(master: &[u8]) -> ([u8; 32], [u8; KID_LEN]) {
    let key = hmac_sha256(master, b"tvp/v1/seal-key");
    let id = hmac_sha256(master, b"tvp/v1/seal-kid");
    let mut kid = [0u8; KID_LEN];
    kid.copy_from_slice(&id[..KID_LEN]);
    (key, kid)
}

/// `value` sealed with the current key and a fresh `nonce`: URL-safe base64 of
/// `version | key id | nonce | ciphertext and tag`.
pub fn seal<T: Serialize>(
    keys: &SealingKeys,
    purpose: Purpose,
    value: &T,
    nonce: [u8; NONCE_LEN],
) -> Option<String> {
    let plaintext = serde_json::to_vec(value).ok()?;
    let (key, kid) = derive(keys.current());
    let cipher = XChaCha20Poly1305::new((&key).into());
    let payload = Payload {
        msg: &plaintext,
        aad: purpose.label(),
    };
    let ciphertext = cipher.encrypt(&XNonce::from(nonce), payload).ok()?;
    let mut out = Vec::with_capacity(1 + KID_LEN + NONCE_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&kid);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Some(URL_SAFE_NO_PAD.encode(out))
}

/// The value sealed in `sealed` for `purpose` by any configured key; `None` for anything else
/// (forged, changed, another purpose, an unknown or retired key, not ours at all).
pub fn open<T: DeserializeOwned>(keys: &SealingKeys, purpose: Purpose, sealed: &str) -> Option<T> {
    if sealed.len() > MAX_SEALED_LEN {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let (&version, rest) = raw.split_first()?;
    if version != VERSION || rest.len() < KID_LEN + NONCE_LEN {
        return None;
    }
    let (kid, rest) = rest.split_at(KID_LEN);
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let key = keys
        .all()
        .map(derive)
        .find(|(_, id)| same(id, kid))
        .map(|(key, _)| key)?;
    let cipher = XChaCha20Poly1305::new((&key).into());
    let payload = Payload {
        msg: ciphertext,
        aad: purpose.label(),
    };
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let plaintext = cipher.decrypt(&XNonce::from(nonce), payload).ok()?;
    serde_json::from_slice(&plaintext).ok()
}

/// A short digest of a sealed value: the OAuth `state` that ties a callback to the cookie.
pub fn digest(sealed: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(sealed.as_bytes())[..24])
}

/// Whether `state` is the digest of `sealed`.
pub fn is_digest_of(state: &str, sealed: &str) -> bool {
    same(state.as_bytes(), digest(sealed).as_bytes())
}

/// A fresh nonce from the host's CSPRNG; `None` without randomness.
pub fn nonce() -> Option<[u8; NONCE_LEN]> {
    let mut bytes = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> SealingKeys {
        SealingKeys::parse(&list.join(" ")).unwrap_or_else(|e| panic!("{e}"))
    }

    const K1: &str = "first-key-with-at-least-thirty-two-characters";
    const K2: &str = "second-key-with-at-least-thirty-two-characters";

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::secret::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sealed_values_open_only_unchanged_for_their_purpose() {
        let k = keys(&[K1]);
        let sealed = seal(&k, Purpose::Session, &("alice", 7u64), [1; 24]).unwrap_or_default();
        assert_eq!(
            open::<(String, u64)>(&k, Purpose::Session, &sealed),
            Some(("alice".into(), 7))
        );
        // Nothing of the value shows.
        assert!(!sealed.contains("alice"));
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap_or_default();
        assert!(!raw.windows(5).any(|w| w == b"alice"));
        // Another purpose, any changed byte, garbage: nothing opens.
        assert_eq!(open::<(String, u64)>(&k, Purpose::Link, &sealed), None);
        for i in 0..raw.len() {
            let mut changed = raw.clone();
            changed[i] ^= 1;
            let text = URL_SAFE_NO_PAD.encode(&changed);
            assert_eq!(
                open::<(String, u64)>(&k, Purpose::Session, &text),
                None,
                "{i}"
            );
        }
        for junk in ["", "garbage", "AAAA", &"A".repeat(10_000)] {
            assert_eq!(open::<(String, u64)>(&k, Purpose::Session, junk), None);
        }
    }

    #[test]
    fn every_configured_key_opens_only_the_first_seals_and_retired_keys_open_nothing() {
        let old = keys(&[K1]);
        let sealed_before = seal(&old, Purpose::Link, &1u8, [2; 24]).unwrap_or_default();
        // Rotation: the new key first, the old one still configured.
        let rotated = keys(&[K2, K1]);
        assert_eq!(open::<u8>(&rotated, Purpose::Link, &sealed_before), Some(1));
        let sealed_after = seal(&rotated, Purpose::Link, &2u8, [3; 24]).unwrap_or_default();
        assert_eq!(
            open::<u8>(&keys(&[K2]), Purpose::Link, &sealed_after),
            Some(2)
        );
        assert_eq!(open::<u8>(&old, Purpose::Link, &sealed_after), None);
        // The old key retired: what it sealed no longer opens.
        assert_eq!(
            open::<u8>(&keys(&[K2]), Purpose::Link, &sealed_before),
            None
        );
    }

    #[test]
    fn state_is_a_digest_of_the_cookie() {
        let k = keys(&[K1]);
        let sealed = seal(&k, Purpose::Login, &0u8, [4; 24]).unwrap_or_default();
        assert!(is_digest_of(&digest(&sealed), &sealed));
        assert!(!is_digest_of(&digest(&sealed), &format!("{sealed}x")));
    }
}
