//! The process-wide shared store: what proxy-wasm calls shared data, here one map for every
//! worker of the process (the module is one library per process). Same contract as the
//! proxy-wasm host's: a value and a CAS number per key, writes refused on a stale CAS. Unlike
//! it, bounded: at [`MAX_ENTRIES`] the least recently written entries go first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tvp_core::host::SharedWriteError;

/// Entries kept before the oldest writes are evicted (every cache record is recomputable: an
/// evicted downstream token is exchanged again, an evicted key lease fetched again).
pub const MAX_ENTRIES: usize = 200_000;

struct Entry {
    value: Vec<u8>,
    cas: u32,
    /// Position in write order (the eviction queue's key).
    written: u64,
}

#[derive(Default)]
pub struct Store {
    entries: HashMap<String, Entry>,
    /// Keys by write order: the first is the least recently written.
    order: BTreeMap<u64, String>,
    writes: u64,
    capacity: usize,
}

impl Store {
    pub fn with_capacity(capacity: usize) -> Self {
        Store {
            capacity,
            ..Store::default()
        }
    }

    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.entries.get(key) {
            Some(e) => (Some(e.value.clone()), Some(e.cas)),
            None => (None, None),
        }
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
        self.writes = self.writes.wrapping_add(1);
        let written = self.writes;
        let next_cas = current.map_or(1, |c| c.wrapping_add(1).max(1));
        if let Some(old) = self.entries.insert(
            key.to_string(),
            Entry {
                value: value.to_vec(),
                cas: next_cas,
                written,
            },
        ) {
            self.order.remove(&old.written);
        }
        self.order.insert(written, key.to_string());
        while self.entries.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        Ok(())
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
    fn the_least_recently_written_entries_are_evicted_first() {
        let mut s = Store::with_capacity(3);
        for k in ["a", "b", "c"] {
            assert_eq!(s.set(k, k.as_bytes(), None), Ok(()));
        }
        // Rewriting "a" makes "b" the oldest.
        assert_eq!(s.set("a", b"a2", None), Ok(()));
        assert_eq!(s.set("d", b"d", None), Ok(()));
        assert_eq!(s.len(), 3);
        assert_eq!(s.get("b"), (None, None));
        assert_eq!(s.get("a").0.as_deref(), Some(&b"a2"[..]));
        assert!(s.get("c").0.is_some() && s.get("d").0.is_some());
    }
}
