//! The downstream-token cache in shared data: storing vault answers (and failures, briefly)
//! under each user's record, evicting after a disconnect or a backend 401, and the tenant-wide
//! back-off a vault 429 asks for.

use std::cell::Cell;

use super::Worker;
use crate::cache::{self, CachedFailure, Downstream, DownstreamMemo, Principal};
use crate::host::{update_shared, Host};
use crate::metrics::Counter;
use crate::secret::Secret;
use crate::vault::VaultOutcome;

/// How long a worker reuses a downstream token it read from shared data without reading it
/// again: a token evicted by another worker (a disconnect or a backend 401 handled there) is
/// still used here for at most this long. Evictions on this worker take effect at once. A
/// warm request then costs no shared-data read (in wasm a host call that allocates in the
/// VM).
pub const MEMO_MS: u64 = 100;

thread_local! {
    /// Downstream entries this worker (thread) evicted: a memo read before one is not used.
    static EVICTIONS: Cell<u64> = const { Cell::new(0) };
}

fn evictions() -> u64 {
    EVICTIONS.with(Cell::get)
}

/// A downstream entry is evicted on this worker: every memo read before it is dropped.
fn note_eviction() {
    EVICTIONS.with(|n| n.set(n.get().wrapping_add(1)));
}

/// The caller's downstream token from its memo, if still good at `now_ms`.
pub(super) fn memoized(principal: &Principal, now_ms: u64) -> Option<Secret> {
    let memo = principal.downstream_memo.borrow();
    // A clock that stepped back before the read does not stretch the memo.
    memo.as_ref()
        .filter(|m| (m.read_ms..m.until_ms).contains(&now_ms) && m.evictions == evictions())
        .map(|m| m.token.clone())
}

/// Remember the token read at `now_ms` (expiring at `expires_at_ms`) for [`MEMO_MS`].
pub(super) fn memoize(principal: &Principal, token: &Secret, now_ms: u64, expires_at_ms: u64) {
    *principal.downstream_memo.borrow_mut() = Some(DownstreamMemo {
        token: token.clone(),
        read_ms: now_ms,
        until_ms: now_ms.saturating_add(MEMO_MS).min(expires_at_ms),
        evictions: evictions(),
    });
}

/// Forget a cached downstream answer, so the next request asks the vault (after the user
/// connected the account). When the key was last evicted after a backend 401 is kept.
pub fn evict_downstream(host: &dyn Host, key: &str) {
    note_eviction();
    update_shared(host, key, |old| {
        Some(cache::encode_evicted(
            old.map_or(0, cache::downstream_evicted_at),
        ))
    });
}

/// Forget every cached answer of a user (all their login hints), and void the answers of
/// exchanges already in flight: after the user disconnected the account.
pub fn evict_user(host: &dyn Host, user_key: &str, now_ms: u64) {
    // Mark first, then evict what the record lists: a store indexed before the mark is
    // evicted here; one after it sees the mark (`store_downstream` checks both ways).
    // Every memo on this worker goes, even if the record lists no key (it may have been
    // evicted from a bounded store).
    note_eviction();
    let mut keys = Vec::new();
    update_shared(host, user_key, |old| {
        let mut record = old.and_then(cache::decode_user).unwrap_or_default();
        record.voided_at_ms = record.voided_at_ms.max(now_ms);
        keys = record.keys.clone();
        Some(cache::encode_user(&record))
    });
    for key in keys {
        evict_downstream(host, &key);
    }
}

/// Whether answers of an exchange that began at `started_ms` are void for this user record.
fn voided(record: &cache::UserRecord, started_ms: u64) -> bool {
    record.voided_at_ms != 0 && record.voided_at_ms >= started_ms
}

impl Worker {
    /// The backend answered a request forwarded with the token cached under `key`: when it
    /// refused it (401), evict it. True when a token was evicted. `status` is read only here,
    /// for forwarded requests (local replies cost nothing).
    pub fn backend_answered(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        key: &str,
        status: &dyn Fn() -> Option<u16>,
    ) -> bool {
        if status() != Some(401) {
            return false;
        }
        // At most once per key per interval: a backend that refuses every token must not
        // turn each request into a vault call.
        let now_ms = host.now_ms();
        let interval_ms = self
            .config
            .settings
            .vault_backoff_seconds
            .saturating_mul(1000);
        let tenant_id = &self.config.tenants[tenant].id;
        let (value, _) = host.shared_get(key);
        let last = value.as_deref().map_or(0, cache::downstream_evicted_at);
        if last != 0 && now_ms.saturating_sub(last) < interval_ms {
            host.count(tenant_id, Counter::DownstreamEvictLimited);
            return false;
        }
        note_eviction();
        update_shared(host, key, |_| Some(cache::encode_evicted(now_ms)));
        host.count(tenant_id, Counter::DownstreamEvicted);
        true
    }

    /// Cache a vault answer under `key`, listed in the user's record, unless the user's
    /// answers were voided (a disconnect) after this exchange began at `started_ms`.
    pub(super) fn store_downstream(
        &self,
        host: &dyn Host,
        key: &str,
        user_key: &str,
        started_ms: u64,
        outcome: &VaultOutcome,
        now_ms: u64,
    ) {
        let Some((value, ttl_s)) = self.cached_answer(outcome) else {
            return;
        };
        if ttl_s == 0 {
            return;
        }
        let mut dropped = None;
        let indexed = update_shared(host, user_key, |old| {
            let mut record = match old {
                None => cache::UserRecord::default(),
                Some(bytes) => cache::decode_user(bytes)?,
            };
            if voided(&record, started_ms) {
                return None;
            }
            if !record.keys.iter().any(|k| k == key) {
                record.keys.push(key.to_string());
            }
            // Bounded: the oldest entry leaves the record and the cache together.
            dropped = (record.keys.len() > cache::MAX_USER_KEYS).then(|| record.keys.remove(0));
            Some(cache::encode_user(&record))
        });
        if let Some(old) = &dropped {
            evict_downstream(host, old);
        }
        if !indexed {
            return;
        }
        let expires_at_ms = now_ms.saturating_add(ttl_s.saturating_mul(1000));
        update_shared(host, key, |old| {
            let evicted_at = old.map_or(0, cache::downstream_evicted_at);
            Some(cache::encode_downstream(&value, expires_at_ms, evicted_at))
        });
        // A disconnect between indexing and writing may have missed this entry: check again.
        let kept = host
            .shared_get(user_key)
            .0
            .and_then(|b| cache::decode_user(&b))
            .is_some_and(|r| !voided(&r, started_ms) && r.keys.iter().any(|k| k == key));
        if !kept {
            evict_downstream(host, key);
        }
    }

    /// What to cache for a vault answer, and for how many seconds.
    fn cached_answer(&self, outcome: &VaultOutcome) -> Option<(Downstream, u64)> {
        let s = &self.config.settings;
        let failed = |f| Some((Downstream::Failed(f), s.vault_backoff_seconds));
        match outcome {
            VaultOutcome::Token {
                access_token,
                expires_in,
            } => Some((
                Downstream::Token(access_token.clone()),
                // Capped: a disconnect on another replica is seen within the cap.
                expires_in
                    .saturating_sub(s.downstream_expiry_margin_seconds)
                    .min(s.downstream_cache_max_seconds),
            )),
            VaultOutcome::ConnectRequired {
                interaction_uri, ..
            } => Some((
                Downstream::NotConnected {
                    interaction_uri: interaction_uri.clone(),
                },
                s.not_connected_cache_seconds,
            )),
            // Remembered per user so retries cannot turn into a call each.
            VaultOutcome::Misconfigured { .. } => failed(CachedFailure::Misconfigured),
            VaultOutcome::Forbidden { .. } => failed(CachedFailure::Forbidden),
            VaultOutcome::Failed(f) => failed(CachedFailure::Dependency(*f)),
            // Per token, not per user: a new token must be tried. Rate limits are tenant-wide.
            VaultOutcome::SubjectRejected { .. } | VaultOutcome::RateLimited { .. } => None,
        }
    }

    /// The vault answered 429: no call for any user of the tenant until its `Retry-After`
    /// (without one, `vault_backoff_seconds`, at least a second).
    pub(super) fn back_off(
        &self,
        host: &dyn Host,
        tenant: usize,
        retry_after_s: Option<u64>,
        now_ms: u64,
    ) {
        let seconds = retry_after_s
            .unwrap_or(self.config.settings.vault_backoff_seconds)
            .max(1);
        let until = now_ms.saturating_add(seconds.saturating_mul(1000));
        let key = cache::vault_backoff_key(&self.config.tenants[tenant]);
        update_shared(host, &key, |old| {
            let current = old.and_then(decode_ms).unwrap_or(0);
            (until > current).then(|| until.to_be_bytes().to_vec())
        });
    }

    /// Seconds the tenant's vault asked us to wait still, if any.
    pub(super) fn backing_off(&self, host: &dyn Host, tenant: usize, now_ms: u64) -> Option<u64> {
        let key = cache::vault_backoff_key(&self.config.tenants[tenant]);
        let until = host.shared_get(&key).0.as_deref().and_then(decode_ms)?;
        (until > now_ms).then(|| (until - now_ms).div_ceil(1000))
    }
}

fn decode_ms(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}
