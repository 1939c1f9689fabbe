//! Cache layouts: shared-data keys and values (one copy across Envoy workers) and the
//! per-worker verified-token cache that makes the warm path cheap.

use std::cell::OnceCell;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::config::Tenant;
use crate::jwt::Claims;
use crate::secret::{hex, sha256, Secret};

const FORMAT_VERSION: u8 = 1;
const KIND_TOKEN: u8 = 0;
const KIND_NOT_CONNECTED: u8 = 1;

/// Shared-data key of a user's downstream token. Hashed: raw identifiers and tokens never
/// become keys. The issuer and client are part of it so a config change cannot reuse a token.
pub fn downstream_key(tenant: &Tenant, claims: &Claims) -> String {
    downstream_key_for(
        tenant,
        &claims.iss,
        &claims.sub,
        claims.login_hint.as_deref(),
    )
}

/// [`downstream_key`] from the user's identifiers (the connect pages know no token).
pub fn downstream_key_for(
    tenant: &Tenant,
    iss: &str,
    sub: &str,
    login_hint: Option<&str>,
) -> String {
    let v = &tenant.vault;
    let parts: [&str; 7] = [
        &tenant.id,
        iss,
        sub,
        &v.connection,
        &v.client_id,
        &v.domain,
        login_hint.unwrap_or(""),
    ];
    format!(
        "tvp/v1/dt/{}",
        hex(&sha256(parts.join("\u{0}").as_bytes())[..16])
    )
}

/// Shared-data key of a tenant's JWKS, tied to where the keys come from.
pub fn jwks_key(tenant: &Tenant) -> String {
    let source = format!("{}\u{0}{}\u{0}{:?}", tenant.id, tenant.issuer, tenant.jwks);
    format!("tvp/v1/jwks/{}", hex(&sha256(source.as_bytes())[..16]))
}

/// Shared-data key of the lease that lets one worker at a time refresh a tenant's JWKS.
pub fn jwks_lease_key(tenant: &Tenant) -> String {
    format!("{}/lease", jwks_key(tenant))
}

/// A cached vault answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Downstream {
    Token(Secret),
    /// The vault said "not connected": remembered briefly so a retry storm does not hit it.
    NotConnected {
        /// Where the vault sends the user to consent (Okta STS), if it said.
        interaction_uri: Option<String>,
    },
}

pub fn encode_downstream(value: &Downstream, expires_at_ms: u64) -> Vec<u8> {
    let (kind, payload) = match value {
        Downstream::Token(t) => (KIND_TOKEN, t.expose().as_bytes()),
        Downstream::NotConnected { interaction_uri } => (
            KIND_NOT_CONNECTED,
            interaction_uri.as_deref().unwrap_or("").as_bytes(),
        ),
    };
    let mut out = Vec::with_capacity(10 + payload.len());
    out.push(FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The cached value if it is well-formed and still fresh at `now_ms`. Anything else (expired,
/// an older format, a tombstone) is a miss.
pub fn decode_downstream(bytes: &[u8], now_ms: u64) -> Option<Downstream> {
    let (&version, rest) = bytes.split_first()?;
    let (&kind, rest) = rest.split_first()?;
    if version != FORMAT_VERSION || rest.len() < 8 {
        return None;
    }
    let (expiry, payload) = rest.split_at(8);
    let expires_at = u64::from_be_bytes(expiry.try_into().ok()?);
    if now_ms >= expires_at {
        return None;
    }
    match kind {
        KIND_TOKEN => Some(Downstream::Token(Secret::new(
            std::str::from_utf8(payload).ok()?,
        ))),
        KIND_NOT_CONNECTED => {
            let uri = std::str::from_utf8(payload).ok()?;
            Some(Downstream::NotConnected {
                interaction_uri: (!uri.is_empty()).then(|| uri.to_string()),
            })
        }
        _ => None,
    }
}

/// Shared JWKS entry: when it was fetched, and the raw document.
pub fn encode_jwks(fetched_at_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + body.len());
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&fetched_at_ms.to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn decode_jwks(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let (&version, rest) = bytes.split_first()?;
    if version != FORMAT_VERSION || rest.len() < 8 {
        return None;
    }
    let (fetched, body) = rest.split_at(8);
    Some((u64::from_be_bytes(fetched.try_into().ok()?), body))
}

/// A verified caller, with what every later request needs already derived, so a cache hit
/// costs no hashing of identities.
#[derive(Debug)]
pub struct Principal {
    pub claims: Claims,
    /// For logs: 12 hex digits of SHA-256(`sub`).
    pub sub_hash: String,
    /// Shared-data key of this user's downstream token for the tenant.
    pub downstream_key: String,
    /// The audit record of an allowed request by this token, built on first use: it is the
    /// same for every request the token makes.
    pub allow_record: OnceCell<String>,
}

impl Principal {
    /// A principal whose per-user hashes are already known.
    pub fn with_hashes(claims: Claims, sub_hash: String, downstream_key: String) -> Principal {
        Principal {
            claims,
            sub_hash,
            downstream_key,
            allow_record: OnceCell::new(),
        }
    }

    pub fn new(tenant: &Tenant, claims: Claims) -> Principal {
        Principal {
            allow_record: OnceCell::new(),
            sub_hash: crate::secret::short_hash(&claims.sub),
            downstream_key: downstream_key(tenant, &claims),
            claims,
        }
    }
}

/// A token that passed signature and claim checks for the tenant at `tenant` (an index into
/// the worker's configuration).
#[derive(Debug)]
pub struct Verified {
    pub tenant: usize,
    pub principal: Rc<Principal>,
}

/// 128-bit keyed digest of a token: one SipHash-1-3-128 pass with random per-worker keys (from
/// the host's CSPRNG). The digests never leave the worker, so serving one token as another
/// needs a blind second preimage of a keyed 128-bit function; it costs a fraction of SHA-256
/// in wasm, where it runs on every request.
pub struct TokenDigest {
    k0: u64,
    k1: u64,
}

impl TokenDigest {
    pub fn new() -> Self {
        // RandomState is seeded from the host's CSPRNG (WASI random_get in Envoy).
        let seed = RandomState::new();
        TokenDigest {
            k0: seed.hash_one(0u8),
            k1: seed.hash_one(1u8),
        }
    }

    pub fn of(&self, token: &str) -> u128 {
        self.of_parts(&[token.as_bytes()])
    }

    /// Digest of several fields, each length-prefixed so that no two lists of two or more share
    /// an input. A single field is hashed as is (equal to [`TokenDigest::of`]); single- and
    /// multi-field digests key different maps.
    pub fn of_parts(&self, parts: &[&[u8]]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        if let [only] = parts {
            h.write(only);
        } else {
            for part in parts {
                h.write(&(part.len() as u64).to_le_bytes());
                h.write(part);
            }
        }
        h.finish128().as_u128()
    }
}

impl Default for TokenDigest {
    fn default() -> Self {
        Self::new()
    }
}

/// Hash-map hasher for keys that already are keyed digests: their low 64 bits are the hash,
/// so a lookup costs no second SipHash.
#[derive(Default, Clone, Copy)]
pub(crate) struct DigestKey;

impl BuildHasher for DigestKey {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

#[derive(Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u128 digests are hashed with this; fold anything else in anyway.
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }
    fn write_u128(&mut self, digest: u128) {
        self.0 = digest as u64;
    }
}

/// A map keyed by [`TokenDigest`] values. Only for those: [`DigestHasher`] trusts its keys to
/// be keyed digests an attacker cannot choose, so it does no hashing of its own.
pub(crate) type DigestMap<V> = HashMap<u128, V, DigestKey>;

/// Bounded per-worker cache of verified tokens keyed by their [`TokenDigest`]. Lifetime is
/// re-checked on every hit by the caller; eviction is oldest-inserted first, enough for a set
/// of hot tokens that each live minutes.
pub struct VerifiedTokens {
    capacity: usize,
    entries: DigestMap<Verified>,
    order: VecDeque<u128>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        VerifiedTokens {
            capacity,
            entries: DigestMap::default(),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, digest: u128) -> Option<&Verified> {
        self.entries.get(&digest)
    }

    pub fn insert(&mut self, digest: u128, value: Verified) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.insert(digest, value).is_none() {
            self.order.push_back(digest);
        }
        while self.entries.len() > self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.entries.remove(&old);
                }
                None => break,
            }
        }
    }

    pub fn remove(&mut self, digest: u128) {
        if self.entries.remove(&digest).is_some() {
            self.order.retain(|h| *h != digest);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downstream_round_trip_and_expiry() {
        let v = Downstream::Token(Secret::new("gho_abc"));
        let bytes = encode_downstream(&v, 2_000);
        assert_eq!(decode_downstream(&bytes, 1_999), Some(v));
        assert_eq!(decode_downstream(&bytes, 2_000), None);
        let plain = Downstream::NotConnected {
            interaction_uri: None,
        };
        let nc = encode_downstream(&plain, 10);
        assert_eq!(decode_downstream(&nc, 5), Some(plain));
        let with_uri = Downstream::NotConnected {
            interaction_uri: Some("https://okta.example/interact?s=1".into()),
        };
        let nc = encode_downstream(&with_uri, 10);
        assert_eq!(decode_downstream(&nc, 5), Some(with_uri));
    }

    #[test]
    fn garbage_and_tombstones_are_misses() {
        for bad in [
            &b""[..],
            b"\x01",
            b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff",
            b"\x01\x07\x00\x00\x00\x00\x00\x00\x00\xff",
        ] {
            assert_eq!(decode_downstream(bad, 0), None);
        }
    }

    #[test]
    fn jwks_round_trip() {
        let bytes = encode_jwks(42, b"{\"keys\":[]}");
        assert_eq!(decode_jwks(&bytes), Some((42, &b"{\"keys\":[]}"[..])));
        assert_eq!(decode_jwks(b"\x01\x00"), None);
    }

    #[test]
    fn token_digests_are_stable_per_worker_and_distinct() {
        let d = TokenDigest::new();
        assert_eq!(d.of("a.b.c"), d.of("a.b.c"));
        assert_ne!(d.of("a.b.c"), d.of("a.b.d"));
        assert_ne!(
            TokenDigest::new().of("a.b.c"),
            d.of("a.b.c"),
            "keys are random per worker"
        );
    }

    #[test]
    fn digest_parts_are_unambiguous() {
        let d = TokenDigest::new();
        assert_ne!(d.of_parts(&[b"ab", b"c"]), d.of_parts(&[b"a", b"bc"]));
        assert_ne!(d.of_parts(&[b"a", b""]), d.of_parts(&[b"", b"a"]));
        assert_eq!(d.of_parts(&[b"a.b.c"]), d.of("a.b.c"));
        let mut map: DigestMap<u8> = DigestMap::default();
        map.insert(d.of("x"), 1);
        assert_eq!(map.get(&d.of("x")), Some(&1));
        assert_eq!(map.get(&d.of("y")), None);
    }

    #[test]
    fn verified_cache_is_bounded() {
        let mut c = VerifiedTokens::new(2);
        let claims = Claims {
            iss: "i".into(),
            sub: "s".into(),
            aud: vec![],
            exp: 0,
            nbf: None,
            scope: vec![],
            scp: vec![],
            permissions: vec![],
            client_id: None,
            login_hint: None,
            user: None,
        };
        let principal = Rc::new(Principal::with_hashes(claims, String::new(), String::new()));
        for i in 0..5u128 {
            c.insert(
                i,
                Verified {
                    tenant: 0,
                    principal: Rc::clone(&principal),
                },
            );
        }
        assert_eq!(c.len(), 2);
        assert!(c.get(4).is_some() && c.get(3).is_some() && c.get(0).is_none());
        c.remove(4);
        assert_eq!(c.len(), 1);
    }
}
