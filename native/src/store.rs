//! The process-wide shared store: what proxy-wasm calls shared data, here one map for every
//! worker of the process (the module is one library per process). Same contract as the
//! proxy-wasm host's: a value and a CAS number per key, writes refused on a stale CAS. Unlike
//! it, bounded: the per-user records (downstream tokens, user records, exchange leases, verified
//! tokens, MCP sessions) are evicted least recently used first past [`MAX_ENTRIES`] (a write
//! is a use; a read is one once the entry is in the older half of the queue, so a hot entry
//! is moved about once per half a capacity of uses, not on every read; a user's record takes
//! the tokens it lists along); the records a configuration bounds (keys, key-refresh leases,
//! back-offs, the configuration generation) are never evicted, since losing the generation
//! record would let a replaced configuration serve again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tvp_core::host::SharedWriteError;

/// Per-user entries kept before the least recently used are evicted (each is recomputable: an evicted
/// downstream token is exchanged again).
pub const MAX_ENTRIES: usize = 200_000;

/// Keys a user's traffic creates: the only ones evicted.
const EVICTABLE: &[&str] = &[
    "tvp/v1/dt/",
    "tvp/v1/du/",
    "tvp/v1/dx/",
    "tvp/v1/vt/",
    "tvp/v1/mcp-sessions/",
];

/// Users' records (the core's `cache::user_key`).
const USER_RECORDS: &str = "tvp/v1/du/";

fn evictable(key: &str) -> bool {
    EVICTABLE.iter().any(|p| key.starts_with(p))
}

struct Entry {
    value: Vec<u8>,
    cas: u32,
    /// Position in use order (the eviction queue's key), for evictable entries.
    used: Option<u64>,
}

#[derive(Default)]
pub struct Store {
    entries: HashMap<String, Entry>,
    /// Evictable keys by use order: the first is the least recently used.
    order: BTreeMap<u64, String>,
    uses: u64,
    /// CAS numbers come from one sequence: one never repeats for a key after eviction.
    last_cas: u32,
    capacity: usize,
}

impl Store {
    pub fn with_capacity(capacity: usize) -> Self {
        Store {
            capacity,
            ..Store::default()
        }
    }

    pub fn get(&mut self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let Some(e) = self.entries.get_mut(key) else {
            return (None, None);
        };
        let stale = e
            .used
            .filter(|u| self.uses.saturating_sub(*u) > (self.capacity / 2) as u64);
        if let Some(old) = stale {
            // Read while in the older half: it moves to the young end (a use, not a write:
            // its CAS stays).
            self.order.remove(&old);
            self.uses = self.uses.wrapping_add(1);
            e.used = Some(self.uses);
            self.order.insert(self.uses, key.to_string());
        }
        (Some(e.value.clone()), Some(e.cas))
    }

    /// Write `key` if its CAS is still `cas` (none: unconditionally). A CAS given for an absent
    /// key is stale: the entry was evicted or never written since it was read.
    pub fn set(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        let current = self.entries.get(key).map(|e| e.cas);
        match (cas, current) {
            (Some(expected), Some(now)) if expected != now => {
                return Err(SharedWriteError::CasMismatch)
            }
            (Some(_), None) => return Err(SharedWriteError::CasMismatch),
            _ => {}
        }
        let pinned = !evictable(key);
        if pinned && current.is_none() && self.entries.len() - self.order.len() >= self.capacity {
            // Configuration-bound records past the whole capacity: something is wrong.
            return Err(SharedWriteError::Refused);
        }
        self.uses = self.uses.wrapping_add(1);
        self.last_cas = self.last_cas.wrapping_add(1).max(1);
        let used = (!pinned).then_some(self.uses);
        if let Some(old) = self.entries.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                cas: self.last_cas,
                used,
            },
        ) {
            if let Some(u) = old.used {
                self.order.remove(&u);
            }
        }
        if let Some(u) = used {
            self.order.insert(u, key.to_string());
        }
        while self.order.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.remove(&oldest) else {
                continue;
            };
            // A user's record lists their downstream tokens: they go with it. Reads keep a
            // busy user's token young while the record ages, and a disconnect evicts what the
            // record lists: without the record it would miss the token.
            if oldest.starts_with(USER_RECORDS) {
                let listed = tvp_core::cache::decode_user(&entry.value).map(|r| r.keys);
                for key in listed.unwrap_or_default() {
                    self.remove(&key);
                }
            }
        }
        Ok(())
    }

    fn remove(&mut self, key: &str) {
        if let Some(used) = self.entries.remove(key).and_then(|e| e.used) {
            self.order.remove(&used);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

static STORE: Mutex<Option<Store>> = Mutex::new(None);

/// Run `f` on the process's store. A poisoned lock (a panic while it was held) is recovered:
/// every write leaves the store consistent.
fn with<T>(f: impl FnOnce(&mut Store) -> T) -> T {
    let mut guard = STORE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(|| Store::with_capacity(MAX_ENTRIES)))
}

pub fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    with(|s| s.get(key))
}

pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedWriteError> {
    with(|s| s.set(key, value, cas))
}

/// The CAS number of `key` (its version), without copying its value.
pub fn version(key: &str) -> Option<u32> {
    with(|s| s.entries.get(key).map(|e| e.cas))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_writes_like_proxy_wasm_shared_data() {
        let mut s = Store::with_capacity(10);
        assert_eq!(s.get("k"), (None, None));
        assert_eq!(s.set("k", b"a", None), Ok(()));
        let (value, cas) = s.get("k");
        assert_eq!(value.as_deref(), Some(&b"a"[..]));
        assert_eq!(s.set("k", b"b", cas), Ok(()));
        // The first CAS is stale now.
        assert_eq!(s.set("k", b"c", cas), Err(SharedWriteError::CasMismatch));
        assert_eq!(s.get("k").0.as_deref(), Some(&b"b"[..]));
        // A CAS for an entry that is gone is stale too.
        assert_eq!(
            s.set("gone", b"x", Some(1)),
            Err(SharedWriteError::CasMismatch)
        );
    }

    #[test]
    fn the_least_recently_used_user_entries_are_evicted_first() {
        let mut s = Store::with_capacity(3);
        let k = |n: &str| format!("tvp/v1/dt/{n}");
        for n in ["a", "b", "c"] {
            assert_eq!(s.set(&k(n), n.as_bytes(), None), Ok(()));
        }
        // Rewriting "a" makes "b" the oldest.
        assert_eq!(s.set(&k("a"), b"a2", None), Ok(()));
        assert_eq!(s.set(&k("d"), b"d", None), Ok(()));
        assert_eq!(s.len(), 3);
        assert_eq!(s.get(&k("b")), (None, None));
        assert_eq!(s.get(&k("a")).0.as_deref(), Some(&b"a2"[..]));
        assert!(s.get(&k("c")).0.is_some() && s.get(&k("d")).0.is_some());
    }

    #[test]
    fn an_entry_read_while_old_outlives_newer_ones_nobody_reads() {
        let mut s = Store::with_capacity(4);
        let k = |n: &str| format!("tvp/v1/dt/{n}");
        for n in ["a", "b", "c", "d"] {
            assert_eq!(s.set(&k(n), n.as_bytes(), None), Ok(()));
        }
        let (_, cas) = s.get(&k("a"));
        // Two more: "b" and "c" go, "a" (read) stays, and reading did not change its CAS.
        assert_eq!(s.set(&k("e"), b"e", None), Ok(()));
        assert_eq!(s.set(&k("f"), b"f", None), Ok(()));
        assert_eq!(s.get(&k("b")), (None, None));
        assert_eq!(s.get(&k("c")), (None, None));
        assert_eq!(s.get(&k("a")).1, cas);
        assert_eq!(s.set(&k("a"), b"a2", cas), Ok(()));
    }

    #[test]
    fn a_users_tokens_go_with_their_record_however_recently_read() {
        let mut s = Store::with_capacity(4);
        let (record, token) = ("tvp/v1/du/alice", "tvp/v1/dt/alice");
        let listing = tvp_core::cache::encode_user(&tvp_core::cache::UserRecord {
            voided_at_ms: 0,
            keys: vec![token.to_string()],
        });
        assert_eq!(s.set(record, &listing, None), Ok(()));
        assert_eq!(s.set(token, b"t", None), Ok(()));
        for n in 0..6 {
            // Alice's token is read on every request; others come and go.
            let _ = s.get(token);
            assert_eq!(s.set(&format!("tvp/v1/dt/{n}"), b"x", None), Ok(()));
        }
        assert_eq!(s.get(record), (None, None));
        assert_eq!(s.get(token), (None, None));
    }

    #[test]
    fn configuration_records_are_never_evicted() {
        let mut s = Store::with_capacity(2);
        let generation = "tvp/v1/generation/token-vault-proxy";
        assert_eq!(s.set(generation, b"g", None), Ok(()));
        for n in 0..10 {
            assert_eq!(s.set(&format!("tvp/v1/du/{n}"), b"u", None), Ok(()));
        }
        assert_eq!(s.get(generation).0.as_deref(), Some(&b"g"[..]));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn a_cas_never_repeats_after_an_eviction() {
        let mut s = Store::with_capacity(1);
        let (a, b) = ("tvp/v1/dt/a", "tvp/v1/dt/b");
        assert_eq!(s.set(a, b"1", None), Ok(()));
        let (_, stale) = s.get(a);
        assert_eq!(s.set(b, b"2", None), Ok(()));
        assert_eq!(s.set(a, b"3", None), Ok(()));
        // `a` was evicted and written again: the CAS read before is stale.
        assert_eq!(s.set(a, b"4", stale), Err(SharedWriteError::CasMismatch));
    }
}
