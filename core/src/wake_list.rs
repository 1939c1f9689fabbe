//! Who to wake when a vault exchange's lease record is written, for a host that can reach
//! another worker only through a message queue that worker registered (proxy-wasm shared
//! queues). A worker whose request waits for another worker's exchange adds its queue's name
//! to the list beside the lease record; the worker that writes the lease record (taking or
//! releasing it) sends every listed queue a message and empties the list. The format, its
//! bound and the shared-data updates live here; the host sends the messages.

use crate::flow::exchange_lease::PREFIX as LEASE_PREFIX;
use crate::host::{update_shared, Host};

/// A list is not grown past this (a waiter then wakes at its deadline instead): one entry per
/// waiting worker is all it needs, so the record stays small.
pub const MAX_NAMES: usize = 64;

const LIST_PREFIX: &str = "tvp/v1/dw/";

/// Whether a write of `key` must wake the requests waiting on it: a lease record of a vault
/// exchange (the list itself is not one).
pub fn is_watched(key: &str) -> bool {
    key.starts_with(LEASE_PREFIX)
}

/// The key of the list beside lease record `watched` (`tvp/v1/dx/<h>` → `tvp/v1/dw/<h>`).
pub fn list_key(watched: &str) -> String {
    match watched.strip_prefix(LEASE_PREFIX) {
        Some(hash) => format!("{LIST_PREFIX}{hash}"),
        None => format!("{LIST_PREFIX}{watched}"),
    }
}

/// The names in a list record (one per line; a record that is not UTF-8 lists none).
pub fn names(list: &[u8]) -> Vec<&str> {
    std::str::from_utf8(list)
        .map(|text| text.split('\n').filter(|n| !n.is_empty()).collect())
        .unwrap_or_default()
}

/// The list with `name` added, or `None` when it is listed already, the list is full, or the
/// name cannot be listed (empty, or with a line break).
fn with_name(list: &[u8], name: &str) -> Option<Vec<u8>> {
    let listed = names(list);
    if name.is_empty() || name.contains('\n') || listed.contains(&name) {
        return None;
    }
    if listed.len() >= MAX_NAMES {
        return None;
    }
    let mut out = listed.join("\n").into_bytes();
    if !out.is_empty() {
        out.push(b'\n');
    }
    out.extend_from_slice(name.as_bytes());
    Some(out)
}

/// Add `name` to the list of `watched`: true when it is on the list (it was already, or now
/// is), false when the list is full or shared data refused it.
pub fn add(host: &dyn Host, watched: &str, name: &str) -> bool {
    let mut listed = false;
    let added = update_shared(host, &list_key(watched), |old| {
        let list = old.unwrap_or_default();
        listed = names(list).contains(&name);
        with_name(list, name)
    });
    added || listed
}

/// Empty the list of `watched` and return the names it held (each to be sent a message). A
/// name added concurrently is either returned or stays listed for the next write.
pub fn take(host: &dyn Host, watched: &str) -> Vec<String> {
    let mut listed = Vec::new();
    // Not emptied (refused, or contended by waiters listing themselves): still wake everyone
    // read; they stay listed, and a later write wakes them again.
    update_shared(host, &list_key(watched), |old| {
        listed = old
            .map(|list| names(list).into_iter().map(str::to_string).collect())
            .unwrap_or_default();
        (!listed.is_empty()).then(Vec::new)
    });
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    const LEASE: &str = "tvp/v1/dx/abc";

    #[test]
    fn the_list_sits_beside_the_lease_and_is_not_itself_watched() {
        assert_eq!(list_key(LEASE), "tvp/v1/dw/abc");
        assert!(is_watched(LEASE));
        assert!(!is_watched(&list_key(LEASE)));
        assert!(!is_watched("tvp/v1/dt/abc"));
    }

    #[test]
    fn workers_are_listed_once_and_taken_all_at_once() {
        let host = FakeHost::default();
        assert!(add(&host, LEASE, "q-a"));
        assert!(add(&host, LEASE, "q-b"));
        assert!(add(&host, LEASE, "q-a"));
        assert_eq!(take(&host, LEASE), ["q-a", "q-b"]);
        // Emptied: a second write wakes nobody.
        assert!(take(&host, LEASE).is_empty());
        assert!(add(&host, LEASE, "q-c"));
        assert_eq!(take(&host, LEASE), ["q-c"]);
    }

    #[test]
    fn a_full_or_unusable_entry_is_not_listed() {
        let host = FakeHost::default();
        for i in 0..MAX_NAMES {
            assert!(add(&host, LEASE, &format!("q-{i}")));
        }
        assert!(!add(&host, LEASE, "one-too-many"));
        assert!(add(&host, LEASE, "q-0"), "already listed");
        assert!(!add(&host, LEASE, "two\nlines"));
        assert!(!add(&host, LEASE, ""));
        assert_eq!(take(&host, LEASE).len(), MAX_NAMES);
    }

    #[test]
    fn a_record_that_is_not_a_list_lists_nobody() {
        let host = FakeHost::default();
        host.shared_set(&list_key(LEASE), &[0xff, 0xfe], None)
            .unwrap();
        assert!(take(&host, LEASE).is_empty());
    }

    #[test]
    fn refused_writes_leave_the_waiter_to_its_deadline() {
        let host = FakeHost::default();
        host.refuse_writes.set(true);
        assert!(!add(&host, LEASE, "q-a"));
    }
}
