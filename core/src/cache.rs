//! Cache layouts: shared-data keys and values (one copy across Envoy workers) and the
//! per-worker verified-token cache that makes the warm path cheap.

use std::cell::{OnceCell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use siphasher::sip128::{Hasher128, SipHasher13};

use crate::callout::DependencyFailure;
use crate::config::Tenant;
use crate::jwt::Claims;
use crate::secret::{hex, sha256, Secret};

const FORMAT_VERSION: u8 = 1;
/// Downstream entries: version 2 added the last-eviction time.
const DOWNSTREAM_VERSION: u8 = 2;
const KIND_TOKEN: u8 = 0;
const KIND_NOT_CONNECTED: u8 = 1;
const KIND_FAILED: u8 = 2;
/// An evicted entry: always a miss, kept for when it was evicted.
const KIND_EVICTED: u8 = 3;
/// Keys of one user's downstream entries kept in the user's record (one per login hint).
pub const MAX_USER_KEYS: usize = 16;

/// SHA-256 of fields, each length-prefixed: no two lists of fields hash alike, whatever
/// bytes they hold.
fn fields_hash(parts: &[&str]) -> String {
    let mut input = Vec::new();
    for part in parts {
        input.extend_from_slice(&(part.len() as u64).to_be_bytes());
        input.extend_from_slice(part.as_bytes());
    }
    hex(&sha256(&input)[..16])
}

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
    // "h" + hint vs "-": a hint that is empty is not the same as no hint.
    let hint = login_hint.map_or_else(|| "-".to_string(), |h| format!("h{h}"));
    let [a, b, c, d, e, f] = user_fields(tenant, iss, sub);
    format!("tvp/v1/dt/{}", fields_hash(&[a, b, c, d, e, f, &hint]))
}

/// Shared-data key of a user's record: when their cached answers were last voided, and the
/// keys of every downstream entry they have (one per login hint), so all can be evicted.
pub fn user_key_for(tenant: &Tenant, iss: &str, sub: &str) -> String {
    format!("tvp/v1/du/{}", fields_hash(&user_fields(tenant, iss, sub)))
}

/// What identifies a user's downstream account: the issuer and client are part of it so a
/// configuration change cannot reuse a token.
fn user_fields<'a>(tenant: &'a Tenant, iss: &'a str, sub: &'a str) -> [&'a str; 6] {
    let v = &tenant.vault;
    [&tenant.id, iss, sub, &v.connection, &v.client_id, &v.domain]
}

/// Shared-data key of the tenant's vault back-off: until when the vault asked not to be
/// called (429 `Retry-After`), for every user of the tenant.
pub fn vault_backoff_key(tenant: &Tenant) -> String {
    let v = &tenant.vault;
    let parts = [tenant.id.as_str(), &v.client_id, &v.domain];
    format!("tvp/v1/rl/{}", fields_hash(&parts))
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

/// A vault failure remembered briefly per user, so retries do not hammer the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachedFailure {
    Misconfigured,
    Forbidden,
    Dependency(DependencyFailure),
}

impl CachedFailure {
    fn code(self) -> u8 {
        match self {
            CachedFailure::Misconfigured => 0,
            CachedFailure::Forbidden => 1,
            CachedFailure::Dependency(DependencyFailure::Unavailable) => 2,
            CachedFailure::Dependency(DependencyFailure::Timeout) => 3,
            CachedFailure::Dependency(DependencyFailure::BadAnswer) => 4,
        }
    }

    fn from_code(code: u8) -> Option<CachedFailure> {
        Some(match code {
            0 => CachedFailure::Misconfigured,
            1 => CachedFailure::Forbidden,
            2 => CachedFailure::Dependency(DependencyFailure::Unavailable),
            3 => CachedFailure::Dependency(DependencyFailure::Timeout),
            4 => CachedFailure::Dependency(DependencyFailure::BadAnswer),
            _ => return None,
        })
    }
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
    /// The vault failed or refused the filter: remembered for `vault_backoff_seconds`.
    Failed(CachedFailure),
}

/// A downstream entry, with when its key was last evicted after a backend 401 (0: never),
/// carried over to the entry that replaces it so evictions can be rate-limited.
pub fn encode_downstream(value: &Downstream, expires_at_ms: u64, evicted_at_ms: u64) -> Vec<u8> {
    let code;
    let (kind, payload) = match value {
        Downstream::Token(t) => (KIND_TOKEN, t.expose().as_bytes()),
        Downstream::NotConnected { interaction_uri } => (
            KIND_NOT_CONNECTED,
            interaction_uri.as_deref().unwrap_or("").as_bytes(),
        ),
        Downstream::Failed(f) => {
            code = [f.code()];
            (KIND_FAILED, &code[..])
        }
    };
    encode_entry(kind, expires_at_ms, evicted_at_ms, payload)
}

/// The entry left by an eviction: a miss that remembers when it happened.
pub fn encode_evicted(evicted_at_ms: u64) -> Vec<u8> {
    encode_entry(KIND_EVICTED, 0, evicted_at_ms, b"")
}

fn encode_entry(kind: u8, expires_at_ms: u64, evicted_at_ms: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + payload.len());
    out.push(DOWNSTREAM_VERSION);
    out.push(kind);
    out.extend_from_slice(&expires_at_ms.to_be_bytes());
    out.extend_from_slice(&evicted_at_ms.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Kind, expiry, last eviction and payload of a well-formed entry.
fn split_entry(bytes: &[u8]) -> Option<(u8, u64, u64, &[u8])> {
    let (&version, rest) = bytes.split_first()?;
    let (&kind, rest) = rest.split_first()?;
    if version != DOWNSTREAM_VERSION || rest.len() < 16 {
        return None;
    }
    let (expiry, rest) = rest.split_at(8);
    let (evicted, payload) = rest.split_at(8);
    Some((
        kind,
        u64::from_be_bytes(expiry.try_into().ok()?),
        u64::from_be_bytes(evicted.try_into().ok()?),
        payload,
    ))
}

/// When the entry's key was last evicted after a backend 401 (0: never, or unreadable).
pub fn downstream_evicted_at(bytes: &[u8]) -> u64 {
    split_entry(bytes).map_or(0, |(_, _, evicted, _)| evicted)
}

/// The cached value if it is well-formed and still fresh at `now_ms`. Anything else (expired,
/// an older format, an eviction) is a miss.
pub fn decode_downstream(bytes: &[u8], now_ms: u64) -> Option<Downstream> {
    decode_downstream_until(bytes, now_ms).map(|(answer, _)| answer)
}

/// [`decode_downstream`], with when the answer expires.
pub fn decode_downstream_until(bytes: &[u8], now_ms: u64) -> Option<(Downstream, u64)> {
    let (kind, expires_at, _, payload) = split_entry(bytes)?;
    if now_ms >= expires_at {
        return None;
    }
    let answer = match kind {
        KIND_TOKEN => Some(Downstream::Token(Secret::new(
            std::str::from_utf8(payload).ok()?,
        ))),
        KIND_NOT_CONNECTED => {
            let uri = std::str::from_utf8(payload).ok()?;
            Some(Downstream::NotConnected {
                interaction_uri: (!uri.is_empty()).then(|| uri.to_string()),
            })
        }
        KIND_FAILED => match payload {
            [code] => CachedFailure::from_code(*code).map(Downstream::Failed),
            _ => None,
        },
        _ => None,
    };
    answer.map(|a| (a, expires_at))
}

/// A user's record: answers stored by exchanges that began before `voided_at_ms` are void,
/// and `keys` lists the user's downstream entries (oldest first, at most [`MAX_USER_KEYS`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRecord {
    pub voided_at_ms: u64,
    pub keys: Vec<String>,
}

pub fn encode_user(record: &UserRecord) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    out.extend_from_slice(&record.voided_at_ms.to_be_bytes());
    out.extend_from_slice(record.keys.join("\n").as_bytes());
    out
}

/// A user's record, if readable (an older format is not).
pub fn decode_user(bytes: &[u8]) -> Option<UserRecord> {
    let (&version, rest) = bytes.split_first()?;
    if version != FORMAT_VERSION || rest.len() < 8 {
        return None;
    }
    let (voided, keys) = rest.split_at(8);
    let keys = std::str::from_utf8(keys).ok()?;
    Some(UserRecord {
        voided_at_ms: u64::from_be_bytes(voided.try_into().ok()?),
        keys: keys
            .split('\n')
            .filter(|k| !k.is_empty())
            .map(str::to_string)
            .collect(),
    })
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
    /// Shared-data key of this user's record (evictions of all their entries).
    pub user_key: String,
    /// The audit record of an allowed request by this token, built on first use: it is the
    /// same for every request the token makes.
    pub allow_record: OnceCell<Rc<str>>,
    /// The downstream token last read from shared data for this caller, reused briefly
    /// (`flow::downstream`'s memo).
    pub downstream_memo: RefCell<Option<DownstreamMemo>>,
}

/// A downstream token read from shared data, usable on this worker until `until_ms` unless
/// this worker evicted any downstream entry since (`evictions` then differs).
#[derive(Debug)]
pub struct DownstreamMemo {
    pub token: Secret,
    pub read_ms: u64,
    pub until_ms: u64,
    pub evictions: u64,
}

/// The hashes derived from a user's identifiers, computed once per user and worker.
#[derive(Debug, Clone)]
pub struct UserHashes {
    pub sub_hash: String,
    pub downstream_key: String,
    pub user_key: String,
}

impl UserHashes {
    pub fn new(tenant: &Tenant, claims: &Claims) -> UserHashes {
        UserHashes {
            sub_hash: crate::secret::short_hash(&claims.sub),
            downstream_key: downstream_key(tenant, claims),
            user_key: user_key_for(tenant, &claims.iss, &claims.sub),
        }
    }
}

impl Principal {
    /// A principal whose per-user hashes are already known.
    pub fn with_hashes(claims: Claims, hashes: UserHashes) -> Principal {
        Principal {
            claims,
            sub_hash: hashes.sub_hash,
            downstream_key: hashes.downstream_key,
            user_key: hashes.user_key,
            allow_record: OnceCell::new(),
            downstream_memo: RefCell::new(None),
        }
    }

    pub fn new(tenant: &Tenant, claims: Claims) -> Principal {
        let hashes = UserHashes::new(tenant, &claims);
        Principal::with_hashes(claims, hashes)
    }
}

/// A token that passed signature and claim checks for the tenant at `tenant` (an index into
/// the worker's configuration).
#[derive(Debug)]
pub struct Verified {
    pub tenant: usize,
    pub principal: Rc<Principal>,
}

/// 128-bit keyed digest of a token: one SipHash-1-3-128 pass with random keys (from the host's
/// CSPRNG; per worker in wasm, per process on the native host, whose workers share verified
/// tokens). The digests never leave the process, so serving one token as another needs a
/// blind second preimage of a keyed 128-bit function; it costs a fraction of SHA-256 in wasm,
/// where it runs on every request.
#[derive(Clone, Copy)]
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

/// What a token's signature failed against: the tenant, and the generation of that tenant's
/// keys on this worker (new keys check it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAgainst {
    pub tenant: usize,
    pub keys: u64,
}

/// Bounded per-worker memory of tokens whose signature failed, keyed by the same
/// [`TokenDigest`] as [`VerifiedTokens`]: the digest is kept, never the token. A repeated
/// forged token is refused again without a signature check. A fixed ring of `capacity`
/// digests: the newest replaces the oldest, so memory stays fixed whatever is sent.
pub struct FailedTokens {
    capacity: usize,
    /// Each digest once; once the ring is full, the oldest is at `next`.
    ring: Vec<u128>,
    next: usize,
    entries: DigestMap<FailedAgainst>,
}

impl FailedTokens {
    pub fn new(capacity: usize) -> Self {
        FailedTokens {
            capacity,
            ring: Vec::new(),
            next: 0,
            entries: DigestMap::default(),
        }
    }

    /// Whether the token of `digest` already failed against these keys.
    pub fn failed(&self, digest: u128, against: FailedAgainst) -> bool {
        self.entries.get(&digest) == Some(&against)
    }

    pub fn insert(&mut self, digest: u128, against: FailedAgainst) {
        if self.capacity == 0 {
            return;
        }
        if let Some(entry) = self.entries.get_mut(&digest) {
            *entry = against;
            return;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(digest);
        } else if let Some(slot) = self.ring.get_mut(self.next) {
            self.entries.remove(slot);
            *slot = digest;
            self.next = (self.next + 1) % self.capacity;
        }
        self.entries.insert(digest, against);
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
        let bytes = encode_downstream(&v, 2_000, 7);
        assert_eq!(decode_downstream(&bytes, 1_999), Some(v));
        assert_eq!(decode_downstream(&bytes, 2_000), None);
        assert_eq!(downstream_evicted_at(&bytes), 7);
        for f in [
            CachedFailure::Misconfigured,
            CachedFailure::Forbidden,
            CachedFailure::Dependency(DependencyFailure::Unavailable),
            CachedFailure::Dependency(DependencyFailure::Timeout),
            CachedFailure::Dependency(DependencyFailure::BadAnswer),
        ] {
            let bytes = encode_downstream(&Downstream::Failed(f), 10, 0);
            assert_eq!(decode_downstream(&bytes, 5), Some(Downstream::Failed(f)));
        }
        let evicted = encode_evicted(42);
        assert_eq!(
            (
                decode_downstream(&evicted, 0),
                downstream_evicted_at(&evicted)
            ),
            (None, 42)
        );
        let plain = Downstream::NotConnected {
            interaction_uri: None,
        };
        let nc = encode_downstream(&plain, 10, 0);
        assert_eq!(decode_downstream(&nc, 5), Some(plain));
        let with_uri = Downstream::NotConnected {
            interaction_uri: Some("https://okta.example/interact?s=1".into()),
        };
        let nc = encode_downstream(&with_uri, 10, 0);
        assert_eq!(decode_downstream(&nc, 5), Some(with_uri));
    }

    #[test]
    fn garbage_and_tombstones_are_misses() {
        for bad in [
            &b""[..],
            b"\x01",
            b"\x02\x00\x00\x00\x00\x00\x00\x00\x00\xff",
            b"\x01\x07\x00\x00\x00\x00\x00\x00\x00\xff",
            // Version 1, before the eviction time was kept: a miss.
            b"\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff\x61",
        ] {
            assert_eq!(decode_downstream(bad, 0), None);
        }
    }

    #[test]
    fn key_fields_are_length_prefixed() {
        let doc = crate::testing::example_json();
        let cfg = crate::config::parse(
            doc.as_bytes(),
            &crate::testing::with_sealing_key(&|_| Some("secret".into())),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let t = &cfg.tenants[0];
        // Joined with a separator these collide; length-prefixed they do not.
        assert_ne!(
            downstream_key_for(t, "i\u{0}a", "b", None),
            downstream_key_for(t, "i", "a\u{0}b", None)
        );
        assert_ne!(
            downstream_key_for(t, "i", "a", None),
            downstream_key_for(t, "i", "a", Some(""))
        );
        assert_ne!(
            user_key_for(t, "i\u{0}a", "b"),
            user_key_for(t, "i", "a\u{0}b")
        );
    }

    #[test]
    fn user_records_round_trip() {
        let r = UserRecord {
            voided_at_ms: 9,
            keys: vec!["tvp/v1/dt/a".into(), "tvp/v1/dt/b".into()],
        };
        assert_eq!(decode_user(&encode_user(&r)), Some(r));
        assert_eq!(
            decode_user(&encode_user(&UserRecord::default())),
            Some(UserRecord::default())
        );
        assert_eq!(decode_user(b"\x09"), None);
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
            iat: None,
            scope: vec![],
            scp: vec![],
            permissions: vec![],
            client_id: None,
            login_hint: None,
            user: None,
        };
        let hashes = UserHashes {
            sub_hash: String::new(),
            downstream_key: String::new(),
            user_key: String::new(),
        };
        let principal = Rc::new(Principal::with_hashes(claims, hashes));
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

    #[test]
    fn failed_tokens_are_a_bounded_ring() {
        let mut c = FailedTokens::new(3);
        let at = |tenant, keys| FailedAgainst { tenant, keys };
        for i in 0..5u128 {
            c.insert(i, at(0, 1));
        }
        assert_eq!(c.len(), 3);
        assert!(!c.failed(0, at(0, 1)) && !c.failed(1, at(0, 1)));
        assert!(c.failed(2, at(0, 1)) && c.failed(4, at(0, 1)));
        // Another tenant, or other keys: not known to fail there.
        assert!(!c.failed(4, at(1, 1)) && !c.failed(4, at(0, 2)));
        // Seen again: updated in place, no second slot.
        c.insert(4, at(0, 2));
        assert_eq!(c.len(), 3);
        assert!(c.failed(4, at(0, 2)) && !c.failed(4, at(0, 1)));
        // The oldest (2) goes first, then 3.
        c.insert(9, at(0, 1));
        assert!(!c.failed(2, at(0, 1)) && c.failed(3, at(0, 1)) && c.failed(9, at(0, 1)));
        c.insert(10, at(0, 1));
        assert!(!c.failed(3, at(0, 1)) && c.failed(4, at(0, 2)));
        assert_eq!(c.len(), 3);
        let mut off = FailedTokens::new(0);
        off.insert(1, at(0, 1));
        assert!(off.is_empty());
    }
}
