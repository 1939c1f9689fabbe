//! Waking a request that waits for another worker: the core asks for it
//! ([`tvp_core::gateway::Effect::WakeOnWrite`]) when a user's vault exchange is in flight on
//! another worker. The request's stream is woken through its scheduler (its `scheduled` hook
//! runs on its own worker) when a store record it names is written, or once its deadline
//! passes (the background ticker checks deadlines).
//!
//! One process-wide table, behind a mutex: a `Waker` is committed and dropped only under it,
//! and a stream's entries leave it before its scheduler is deleted ([`forget`]), so no thread
//! commits a deleted scheduler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::abi::Waker;

struct Watch {
    waker: Waker,
    by_ms: u64,
}

/// Watches by store key.
static WATCHES: Mutex<Option<HashMap<String, Vec<Watch>>>> = Mutex::new(None);
/// How many watches there are: a store write checks the table only when some exist.
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn with_table<T>(f: impl FnOnce(&mut HashMap<String, Vec<Watch>>) -> T) -> T {
    let mut guard = WATCHES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let table = guard.get_or_insert_with(HashMap::new);
    let out = f(table);
    COUNT.store(table.values().map(Vec::len).sum(), Ordering::Release);
    out
}

/// Wake `waker` when `key` is written, or at `by_ms` at the latest; at once if the record's
/// version is no longer `seen` (it was written between the core's read and now) or the
/// deadline passed.
pub fn watch(key: &str, by_ms: u64, seen: Option<u32>, waker: Waker, now_ms: u64) {
    with_table(|t| {
        // Checked under the table's lock: a write after this check finds the watch (writers
        // wake after their write, through this lock), one before it is seen here.
        if crate::store::version(key) != seen || by_ms <= now_ms {
            waker.wake();
            return;
        }
        let watches = t.entry(key.to_string()).or_default();
        if !watches.iter().any(|w| w.waker == waker) {
            watches.push(Watch { waker, by_ms });
        }
    });
}

/// `key` was written: wake (once) every stream that watched it. Always under the lock (no
/// shortcut on an empty table): a watch being added now must either see this write or be
/// found by it.
pub fn written(key: &str) {
    with_table(|t| {
        for w in t.remove(key).unwrap_or_default() {
            w.waker.wake();
        }
    });
}

/// Wake (once) every stream whose deadline passed.
pub fn expired(now_ms: u64) {
    if COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    with_table(|t| {
        for watches in t.values_mut() {
            watches.retain(|w| {
                let due = w.by_ms <= now_ms;
                if due {
                    w.waker.wake();
                }
                !due
            });
        }
        t.retain(|_, watches| !watches.is_empty());
    });
}

/// A stream's scheduler is about to be deleted: its watches go first.
pub fn forget(waker: Waker) {
    if COUNT.load(Ordering::Acquire) == 0 {
        return;
    }
    with_table(|t| {
        for watches in t.values_mut() {
            watches.retain(|w| w.waker != waker);
        }
        t.retain(|_, watches| !watches.is_empty());
    });
}
