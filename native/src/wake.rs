//! Waking a request that waits for another worker: the core asks for it
//! ([`tvp_core::gateway::Effect::WakeOnWrite`]) when a user's vault exchange is in flight on
//! another worker. The request's stream is woken through its scheduler (its `scheduled` hook
//! runs on its own worker) when a store record it names is written, or once its deadline
//! passes (the background ticker and each worker's tick check deadlines).
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
/// Watches in the table, plus registrations in progress: a store write looks at the table
/// only when there are some.
static COUNT: AtomicUsize = AtomicUsize::new(0);

fn with_table<T>(f: impl FnOnce(&mut HashMap<String, Vec<Watch>>) -> T) -> T {
    let mut guard = WATCHES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(guard.get_or_insert_with(HashMap::new))
}

/// Wake `waker` when `key` is written, or at `by_ms` at the latest; at once if the record's
/// version is no longer `seen` (it was written between the core's read and now) or the
/// deadline passed.
pub fn watch(key: &str, by_ms: u64, seen: Option<u32>, waker: Waker, now_ms: u64) {
    // Counted before the version is read. A writer that then finds no watch (the count 0)
    // wrote before this read (the store's lock orders the two), so the read sees its write;
    // a writer after the read finds the count and waits for this table lock.
    COUNT.fetch_add(1, Ordering::SeqCst);
    let added = with_table(|t| {
        if crate::store::version(key) != seen || by_ms <= now_ms {
            waker.wake();
            return false;
        }
        let watches = t.entry(key.to_string()).or_default();
        if watches.iter().any(|w| w.waker == waker) {
            return false;
        }
        watches.push(Watch { waker, by_ms });
        true
    });
    if !added {
        COUNT.fetch_sub(1, Ordering::SeqCst);
    }
}

/// `key` was written (after the store's write): wake (once) every stream that watched it.
pub fn written(key: &str) {
    if COUNT.load(Ordering::SeqCst) == 0 {
        return;
    }
    let woken = with_table(|t| {
        let watches = t.remove(key).unwrap_or_default();
        for w in &watches {
            w.waker.wake();
        }
        watches.len()
    });
    COUNT.fetch_sub(woken, Ordering::SeqCst);
}

/// Wake (once) every stream whose deadline passed.
pub fn expired(now_ms: u64) {
    remove_where(|w| {
        let due = w.by_ms <= now_ms;
        if due {
            w.waker.wake();
        }
        due
    });
}

/// A stream's scheduler is about to be deleted: its watches go first. (Its own worker added
/// them, so a count of 0 seen here means it has none.)
pub fn forget(waker: Waker) {
    remove_where(|w| w.waker == waker);
}

/// Remove every watch `gone` picks, keeping the count.
fn remove_where(mut gone: impl FnMut(&Watch) -> bool) {
    if COUNT.load(Ordering::SeqCst) == 0 {
        return;
    }
    let removed = with_table(|t| {
        let mut removed = 0;
        for watches in t.values_mut() {
            let before = watches.len();
            watches.retain(|w| !gone(w));
            removed += before - watches.len();
        }
        t.retain(|_, watches| !watches.is_empty());
        removed
    });
    COUNT.fetch_sub(removed, Ordering::SeqCst);
}
