//! The key store: each tenant's signing keys on this worker, synced with shared data (another
//! worker may have fetched them), refreshed in the background under a cross-worker lease, and
//! the tenant's budget of signature failures.

use std::rc::Rc;

use super::exchange_lease::Lease;
use super::flights::{keys_request, Flight};
use super::{failure_of, FlightKey, Host, Worker};
use crate::cache;
use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::jwks::{self, KeySet, RefetchPolicy};
use crate::metrics::Counter;

/// How often a worker looks at shared data for keys another worker fetched.
const KEY_SYNC_INTERVAL_MS: u64 = 1_000;

/// A tenant's budget of signature failures on one worker: a token bucket holding
/// `rate` failures that refills at `rate` per second. Kept as what has been spent, in
/// thousandths of a failure, so a new (default) budget is full whatever the rate.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct FailureBudget {
    spent_milli: u64,
    at_ms: u64,
}

impl FailureBudget {
    fn refill(&mut self, rate: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // `rate` per second is `rate` thousandths per millisecond.
        self.spent_milli = self
            .spent_milli
            .saturating_sub(elapsed.saturating_mul(rate));
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Seconds until one more failure may be risked: 0 when one may now.
    pub(in crate::flow) fn wait_seconds(&mut self, rate: u64, now_ms: u64) -> u64 {
        self.refill(rate, now_ms);
        let over = (self.spent_milli + 1000).saturating_sub(rate.saturating_mul(1000));
        if over == 0 {
            return 0;
        }
        over.div_ceil(rate.max(1)).div_ceil(1000).max(1)
    }

    pub(in crate::flow) fn spend(&mut self, rate: u64, now_ms: u64) {
        self.refill(rate, now_ms);
        self.spent_milli = (self.spent_milli + 1000).min(rate.saturating_mul(1000));
    }
}

#[derive(Default)]
pub(super) struct TenantKeys {
    pub(super) keys: Option<Rc<KeySet>>,
    pub(super) cas: Option<u32>,
    pub(super) fetched_at_ms: u64,
    pub(super) synced_at_ms: Option<u64>,
    pub(super) last_attempt_ms: Option<u64>,
    pub(super) last_failure: Option<DependencyFailure>,
    /// Consecutive failed fetches, for the cold-start retry backoff.
    pub(super) failures: u32,
    /// When this worker claimed the refresh lease it holds, if it holds one.
    pub(super) lease_claimed_ms: Option<u64>,
    /// Bumped whenever `keys` is replaced: a token that failed against older keys is checked
    /// again.
    pub(super) generation: u64,
    /// Signature failures this worker may still risk for the tenant.
    pub(super) failure_budget: FailureBudget,
}

impl Worker {
    pub(super) fn policy(&self) -> RefetchPolicy {
        let s = &self.config.settings;
        RefetchPolicy {
            refresh_ms: s.jwks_refresh_seconds.saturating_mul(1000),
            min_refetch_ms: s.jwks_min_refetch_seconds.saturating_mul(1000),
            max_stale_ms: s.jwks_max_stale_seconds.saturating_mul(1000),
        }
    }

    /// Keep a fetched JWKS, or record why it failed. Old keys stay in use after a failure.
    pub(super) fn store_jwks(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        response: &CalloutResponse,
        now_ms: u64,
    ) -> Option<DependencyFailure> {
        let parsed = match (response.status, &response.body) {
            (Some(200), Some(body)) => jwks::parse_jwks(body).ok().map(|k| (k, body)),
            _ => None,
        };
        let tenant_id = &self.config.tenants[tenant].id;
        host.count(tenant_id, Counter::JwksFetch);
        let Some((keys, body)) = parsed else {
            host.count(tenant_id, Counter::JwksFetchFailed);
            let failure = failure_of(response);
            self.keys[tenant].last_failure = Some(failure);
            self.keys[tenant].failures = self.keys[tenant].failures.saturating_add(1);
            return Some(failure);
        };
        let key = cache::jwks_key(&self.config.tenants[tenant]);
        let cas = host.shared_get(&key).1;
        // Best effort: other workers fetch for themselves if it does not land.
        let _ = host.shared_set(&key, &cache::encode_jwks(now_ms, body), cas);
        let state = &mut self.keys[tenant];
        state.keys = Some(Rc::new(keys));
        state.generation = state.generation.wrapping_add(1);
        state.fetched_at_ms = now_ms;
        state.cas = host.shared_get(&key).1;
        state.synced_at_ms = Some(now_ms);
        state.last_failure = None;
        state.failures = 0;
        None
    }

    /// The tenant's usable keys, refreshed from shared data at most once per sync interval.
    pub(super) fn keys_for(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        now_ms: u64,
    ) -> Option<Rc<KeySet>> {
        let policy = self.policy();
        let state = &mut self.keys[tenant];
        // Without keys, look every time: another worker may have just stored them.
        let due = state.keys.is_none()
            || state
                .synced_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= KEY_SYNC_INTERVAL_MS);
        if due {
            state.synced_at_ms = Some(now_ms);
            let key = cache::jwks_key(&self.config.tenants[tenant]);
            if let (Some(bytes), cas) = host.shared_get(&key) {
                if cas != state.cas || state.keys.is_none() {
                    if let Some((fetched_at, body)) = cache::decode_jwks(&bytes) {
                        if let Ok(keys) = jwks::parse_jwks(body) {
                            state.keys = Some(Rc::new(keys));
                            state.generation = state.generation.wrapping_add(1);
                            state.fetched_at_ms = fetched_at;
                            state.cas = cas;
                        }
                    }
                }
            }
        }
        let state = &self.keys[tenant];
        state
            .keys
            .as_ref()
            .filter(|_| policy.usable(state.fetched_at_ms, now_ms))
            .cloned()
    }

    /// Tenants whose keys should be refreshed in the background now, with the request to send.
    pub fn refresh_due(&mut self, host: &dyn Host) -> Vec<(FlightKey, CalloutRequest)> {
        let now_ms = host.now_ms();
        let policy = self.policy();
        let mut due = Vec::new();
        let config = Rc::clone(&self.config);
        for i in 0..config.tenants.len() {
            self.keys_for(host, i, now_ms);
            let state = &self.keys[i];
            let tenant = &config.tenants[i];
            let flight = FlightKey::Keys(i);
            if self.flights.contains_key(&flight) {
                continue;
            }
            let fetch_now = match state.keys {
                None => policy.may_fetch(state.last_attempt_ms, false, state.failures, now_ms),
                Some(_) => policy.due_for_refresh(
                    state.fetched_at_ms,
                    state.last_attempt_ms.unwrap_or(0),
                    now_ms,
                ),
            };
            // Every worker's root ticks; one of them fetches per window, the rest read the
            // result from shared data.
            if fetch_now && self.take_refresh_lease(host, i, now_ms) {
                let (purpose, request) = keys_request(i, &tenant.jwks);
                self.flights.insert(
                    flight.clone(),
                    Flight {
                        purpose,
                        request: request.clone(),
                        waiters: Vec::new(),
                        owner: None,
                        sent_ms: None,
                        started_ms: now_ms,
                        user_key: None,
                        lease: Lease::NotShared,
                    },
                );
                due.push((flight, request));
            }
        }
        due
    }

    /// Claim the right to refresh tenant `i`'s keys for one call-out window, across workers.
    /// Shared-data CAS makes exactly one claimant win a window.
    fn take_refresh_lease(&mut self, host: &dyn Host, i: usize, now_ms: u64) -> bool {
        let key = cache::jwks_lease_key(&self.config.tenants[i]);
        let window = self.config.settings.callout_timeout_ms + 1000;
        let (value, mut cas) = host.shared_get(&key);
        let held_since = value
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes);
        if held_since.is_some_and(|t| now_ms.saturating_sub(t) < window) {
            return false;
        }
        if cas.is_none() {
            // First claim ever: create the entry, then race for it with CAS like everyone.
            let _ = host.shared_set(&key, &0u64.to_be_bytes(), None);
            cas = host.shared_get(&key).1;
        }
        let claimed = cas.is_some() && host.shared_set(&key, &now_ms.to_be_bytes(), cas).is_ok();
        if claimed {
            self.keys[i].lease_claimed_ms = Some(now_ms);
        }
        claimed
    }

    /// A refresh this worker claimed succeeded: free the lease at once, so the next refresh
    /// (by any worker) is not held back by this one's window. A failed one keeps it: failures
    /// back off across workers.
    pub(super) fn release_refresh_lease(&mut self, host: &dyn Host, i: usize) {
        let Some(claimed) = self.keys[i].lease_claimed_ms.take() else {
            return;
        };
        let key = cache::jwks_lease_key(&self.config.tenants[i]);
        let (value, cas) = host.shared_get(&key);
        let held_since = value
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes);
        if held_since == Some(claimed) {
            let _ = host.shared_set(&key, &0u64.to_be_bytes(), cas);
        }
    }

    /// Whether signing keys are loaded for tenant `i` (for `/health`).
    pub fn keys_loaded(&mut self, host: &dyn Host, i: usize) -> bool {
        let now = host.now_ms();
        self.keys_for(host, i, now).is_some()
    }
}
