//! Single flight across workers, for a host whose shared data is one store for every worker
//! and that can wake a waiting request when a record is written (the native module through a
//! stream's scheduler, the wasm filter through shared queues: [`crate::wake_list`]).
//!
//! The worker that starts a user's vault exchange holds a lease on it in shared data; a worker
//! whose request finds the lease held does not call the vault: its request waits for the answer
//! the holder caches, and the host wakes it when the lease record is written (the holder
//! releases it after caching the answer) or when the lease runs out. A lease outlives a holder
//! that went away only until it expires; then a waiter takes it over and calls the vault itself.
//! If shared data refuses the lease, the worker calls the vault itself: the answer is the same,
//! only the call is not shared.

use crate::host::{Host, SharedWriteError, CAS_ATTEMPTS};

/// What every lease record's key starts with.
pub const PREFIX: &str = "tvp/v1/dx/";

/// The lease record's key for a downstream-token key (`tvp/v1/dt/<h>` → `tvp/v1/dx/<h>`).
pub fn key(downstream_key: &str) -> String {
    match downstream_key.strip_prefix("tvp/v1/dt/") {
        Some(hash) => format!("{PREFIX}{hash}"),
        None => format!("{PREFIX}{downstream_key}"),
    }
}

/// How long a lease holds: an exchange is at most two calls (Okta's ID-JAG chain), each
/// bounded by the call-out timeout, plus a second for the answer to be cached.
pub fn duration_ms(callout_timeout_ms: u64) -> u64 {
    callout_timeout_ms.saturating_mul(2).saturating_add(1_000)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// This worker holds it until `until_ms`: it sends the exchange.
    Taken { until_ms: u64 },
    /// Another worker's exchange is in flight until `until_ms` at the latest; `seen` is the
    /// version of the record read (a write since means it changed).
    HeldElsewhere { until_ms: u64, seen: Option<u32> },
    /// Not shared: this worker sends it without a lease and has nothing to release (a key
    /// fetch, a host without shared flights, or shared data refused the lease or stayed
    /// contended).
    NotShared,
}

fn encode(until_ms: u64) -> [u8; 8] {
    until_ms.to_be_bytes()
}

fn decode(bytes: &[u8]) -> u64 {
    bytes.try_into().map_or(0, u64::from_be_bytes)
}

/// Take the lease at `key` for `duration_ms`, unless another worker holds it.
pub fn take(host: &dyn Host, key: &str, now_ms: u64, duration_ms: u64) -> Lease {
    let until_ms = now_ms.saturating_add(duration_ms);
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = host.shared_get(key);
        let held_until = value.as_deref().map_or(0, decode);
        if held_until > now_ms {
            return Lease::HeldElsewhere {
                until_ms: held_until,
                seen: cas,
            };
        }
        match host.shared_set(key, &encode(until_ms), cas) {
            Ok(()) => return Lease::Taken { until_ms },
            // Another worker wrote it first: read who holds it now.
            Err(SharedWriteError::CasMismatch) => continue,
            Err(SharedWriteError::Refused) => break,
        }
    }
    // Contended past every attempt, or refused: call the vault without sharing the call.
    Lease::NotShared
}

/// Release the lease taken until `until_ms` (unless it expired and another worker took it
/// since). The write itself is what wakes the requests waiting elsewhere, so a record the
/// store evicted meanwhile is written again (free) rather than left absent.
pub fn release(host: &dyn Host, key: &str, until_ms: u64) {
    crate::host::update_shared(host, key, |old| match old {
        None => Some(encode(0).to_vec()),
        Some(v) => (decode(v) == until_ms).then(|| encode(0).to_vec()),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    const KEY: &str = "tvp/v1/dx/abc";

    #[test]
    fn the_lease_key_sits_beside_the_downstream_key() {
        assert_eq!(key("tvp/v1/dt/0123"), "tvp/v1/dx/0123");
    }

    #[test]
    fn one_worker_takes_the_lease_the_others_find_it_held_until_released_or_expired() {
        let host = FakeHost::default();
        assert_eq!(
            take(&host, KEY, 1_000, 500),
            Lease::Taken { until_ms: 1_500 }
        );
        assert_eq!(
            take(&host, KEY, 1_200, 500),
            Lease::HeldElsewhere {
                until_ms: 1_500,
                seen: Some(1)
            }
        );
        // Expired: taken over.
        assert_eq!(
            take(&host, KEY, 1_500, 500),
            Lease::Taken { until_ms: 2_000 }
        );
        // The first holder's late release leaves the new holder's lease alone.
        release(&host, KEY, 1_500);
        assert!(matches!(
            take(&host, KEY, 1_600, 500),
            Lease::HeldElsewhere {
                until_ms: 2_000,
                ..
            }
        ));
        release(&host, KEY, 2_000);
        assert_eq!(
            take(&host, KEY, 1_600, 500),
            Lease::Taken { until_ms: 2_100 }
        );
    }

    #[test]
    fn a_release_writes_the_record_even_if_it_was_evicted_meanwhile() {
        let host = FakeHost::default();
        release(&host, KEY, 1_500);
        assert_eq!(host.shared_get(KEY).0, Some(encode(0).to_vec()));
    }

    #[test]
    fn a_refused_lease_is_not_shared() {
        let host = FakeHost::default();
        host.refuse_writes.set(true);
        assert_eq!(take(&host, KEY, 10, 5), Lease::NotShared);
    }

    #[test]
    fn garbage_in_the_record_is_no_lease() {
        let host = FakeHost::default();
        host.shared_set(KEY, b"junk", None).unwrap();
        assert_eq!(take(&host, KEY, 10, 5), Lease::Taken { until_ms: 15 });
    }
}
