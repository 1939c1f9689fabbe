//! What the core needs from its host (the proxy-wasm filter, a test): a clock, shared data,
//! metrics and call-outs. Everything else a host does is applying outcomes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::callout::CalloutRequest;
use crate::metrics::{Counter, Histogram};

/// The host services the core calls.
pub trait Host {
    fn now_ms(&self) -> u64;
    /// Value and CAS token of a shared-data entry.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Write a shared-data entry, only if it is still at `cas` when given.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>)
        -> Result<(), SharedWriteError>;
    /// Add one to the tenant's counter (`tvp.<tenant>.<name>` in Envoy's stats).
    fn count(&self, _tenant: &str, _counter: Counter) {}
    /// Record a value in the tenant's histogram.
    fn record(&self, _tenant: &str, _histogram: Histogram, _value: u64) {}
    /// Send a call-out on behalf of context `owner` (its answer is delivered there): the call-out
    /// token, or `None` when it could not be started.
    fn dispatch(&self, owner: u32, request: &CalloutRequest, timeout_ms: u64) -> Option<u32>;
    /// The host's id of the active request's downstream connection, growing in the order
    /// connections were accepted (`None`: the host cannot tell).
    fn connection_id(&self) -> Option<u64> {
        None
    }
}

/// A map keyed by the host's request context ids. They are the host's, never a client's, so
/// they need no keyed (SipHash) hashing, which in wasm costs more than the rest of a lookup;
/// these maps are read and written several times on every request.
pub type ByHostId<V> = HashMap<u32, V, BuildHasherDefault<HostIdHasher>>;

#[derive(Default)]
pub struct HostIdHasher(u64);

impl Hasher for HostIdHasher {
    fn finish(&self) -> u64 {
        // Fibonacci hashing: consecutive ids spread over the high bits the table also uses.
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id);
    }
}

/// Why a shared-data write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedWriteError {
    /// Another worker wrote the entry since it was read: read again and retry.
    CasMismatch,
    /// The host refused the write (out of room, or any other error): retrying will not help.
    Refused,
}

/// How often a read-modify-write is retried while other workers write in between.
pub(crate) const CAS_ATTEMPTS: usize = 4;

/// Read-modify-write of a shared-data entry under CAS, retried while other workers write in
/// between. `change` sees the entry (`None`: absent) and gives the new value, or `None` to leave
/// it. True when written.
pub fn update_shared(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> bool {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = host.shared_get(key);
        let Some(new) = change(value.as_deref()) else {
            return false;
        };
        match host.shared_set(key, &new, cas) {
            Ok(()) => return true,
            Err(SharedWriteError::CasMismatch) => continue,
            Err(SharedWriteError::Refused) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_host_ids_differ_in_the_bits_the_table_probes_with() {
        let build = BuildHasherDefault::<HostIdHasher>::default();
        // hashbrown takes the bucket from the low bits and a tag from the top seven.
        let tags: std::collections::HashSet<u64> =
            (1u32..=64).map(|id| build.hash_one(id) >> 57).collect();
        assert!(tags.len() > 32, "only {} distinct tags", tags.len());
        let buckets: std::collections::HashSet<u64> =
            (1u32..=64).map(|id| build.hash_one(id) & 63).collect();
        assert_eq!(buckets.len(), 64);
        let mut map: ByHostId<u32> = ByHostId::default();
        for id in 0..1000 {
            map.insert(id, id * 2);
        }
        assert!((0..1000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
}
