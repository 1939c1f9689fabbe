//! Waking a request that waits for another worker's vault exchange (the core asks for it with
//! [`Effect::WakeOnWrite`]). Each worker's root registers a shared queue under a random name;
//! a waiting request's worker lists that name beside the exchange's lease record
//! ([`tvp_core::wake_list`]), and whichever worker writes the lease record next (taking or
//! releasing it) puts a message on every listed queue. The message reaches the waiting
//! worker's root (`on_queue_ready`), which lets the core poll every request of that worker
//! waiting elsewhere. Each request also wakes at its deadline (the root's tick), so a lost
//! message costs time, never a hang.
//!
//! No wake-up is lost: the waiter lists itself, then reads the lease record again and wakes at
//! once if it changed since the core read it; a writer lists its waiters after its write. Shared
//! data is one store under one lock, so either the waiter's second read sees the write or the
//! writer's read of the list sees the waiter.
//!
//! A queue is only sent to while its root is alive: each root stamps a record with the time on
//! every tick (and marks it dead from the panic hook), and a writer skips a queue whose stamp is
//! older than three ticks. The host keeps a queue after its VM failed and delivers to the same
//! context id in the VM that replaces it, where the id may be another context, on which the
//! SDK would panic.
//!
//! [`Effect::WakeOnWrite`]: tvp_core::gateway::Effect::WakeOnWrite

use std::cell::RefCell;
use std::collections::HashMap;

use log::warn;
use tvp_core::host::Host;
use tvp_core::wake_list;

use crate::host::{self, ProxyWasmHost};

thread_local! {
    /// This VM's id: other workers resolve its queues by it (read once per VM).
    static VM_ID: RefCell<Option<String>> = const { RefCell::new(None) };
    /// The queues this VM registered, for the panic hook to mark dead.
    static OWN: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A queue whose root has not stamped it for this long is not sent to.
const ALIVE_MS: u64 = 3_000;

/// What a message says: only "look again" (the receiver polls every request waiting
/// elsewhere), so it carries nothing of the user.
const MESSAGE: &[u8] = b"w";

fn vm_id() -> Option<String> {
    VM_ID.with(|v| {
        let mut v = v.borrow_mut();
        if v.is_none() {
            *v = host::vm_id();
        }
        v.clone()
    })
}

fn stamp_key(name: &str) -> String {
    format!("tvp/v1/dq/{name}")
}

/// Stamp queue `name` alive at `now_ms` (0: dead).
fn stamp(name: &str, now_ms: u64) {
    // Refused: the queue looks dead to writers, and its requests wake at their deadlines.
    let _ = ProxyWasmHost.shared_set(&stamp_key(name), &now_ms.to_be_bytes(), None);
}

fn is_alive(host: &ProxyWasmHost, name: &str) -> bool {
    let stamped = host
        .shared_get(&stamp_key(name))
        .0
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_be_bytes);
    stamped.saturating_add(ALIVE_MS) > host.now_ms()
}

/// From the panic hook: this VM is about to trap, so no other worker may send to its queues.
pub fn mark_dead() {
    // `try_with` and `try_borrow`: the hook may run during teardown or inside a borrow.
    let _ = OWN.try_with(|own| {
        if let Ok(own) = own.try_borrow() {
            for name in own.iter() {
                stamp(name, 0);
            }
        }
    });
}

/// A root context's queue: the other workers' messages that one of its requests may go on.
pub struct Queue {
    id: u32,
    name: String,
    /// The latest deadline of the requests waiting on each lease record (host clock, ms).
    deadlines: RefCell<HashMap<String, u64>>,
}

impl Queue {
    /// Register a queue for the active root context, under a name no other worker picks.
    /// `None` when the host has no shared queues or randomness: the worker then keeps its
    /// exchanges to itself.
    pub fn register() -> Option<Queue> {
        vm_id()?;
        let name = format!("tvp/wake/{}", tvp_core::secret::random_token()?);
        let Some(id) = host::register_queue(&name) else {
            warn!(
                "no shared queue for waking requests: vault exchanges are single flight per worker"
            );
            return None;
        };
        stamp(&name, ProxyWasmHost.now_ms());
        OWN.with(|own| own.borrow_mut().push(name.clone()));
        Some(Queue {
            id,
            name,
            deadlines: RefCell::new(HashMap::new()),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// On every tick: other workers may send to this queue.
    pub fn keep_alive(&self, now_ms: u64) {
        stamp(&self.name, now_ms);
    }

    /// A request waits until lease record `key` is written (its version is no longer `seen`),
    /// or until `by_ms`. False: wake at once (it changed already, or the deadline passed).
    pub fn watch(&self, key: &str, by_ms: u64, seen: Option<u32>) -> bool {
        let host = ProxyWasmHost;
        // Registered first, whatever follows: the tick polls once it passed, so the request
        // goes on even if every message is lost.
        let now = host.now_ms();
        let deadline = by_ms.max(now);
        self.deadlines
            .borrow_mut()
            .entry(key.to_string())
            .and_modify(|d| *d = (*d).max(deadline))
            .or_insert(deadline);
        if by_ms <= now {
            return false;
        }
        // Not listed (the list is full, or shared data refused): the deadline still holds.
        wake_list::add(&host, key, &self.name);
        host.shared_get(key).1 == seen
    }

    /// Have this root context's `on_queue_ready` run soon (after the current callback); if the
    /// host refuses, the request's deadline wakes it on a tick.
    pub fn wake_soon(&self) {
        if let Some(vm) = vm_id() {
            host::enqueue(&vm, &self.name, MESSAGE);
        }
    }

    /// Take every message off the queue: how many there were.
    pub fn drain(&self) -> usize {
        let mut messages = 0;
        while host::dequeue(self.id).is_some() {
            messages += 1;
        }
        messages
    }

    /// Whether a waiting request's deadline has passed (each is reported once).
    pub fn deadline_passed(&self, now_ms: u64) -> bool {
        let mut deadlines = self.deadlines.borrow_mut();
        let before = deadlines.len();
        deadlines.retain(|_, d| *d > now_ms);
        deadlines.len() < before
    }
}

/// Lease record `key` was just written on this worker: message every worker waiting on it.
pub fn written(host: &ProxyWasmHost, key: &str) {
    let waiting = wake_list::take(host, key);
    if waiting.is_empty() {
        return;
    }
    let Some(vm) = vm_id() else { return };
    for name in waiting {
        // A queue that is gone (its configuration was replaced, its VM failed) has nobody
        // left to wake.
        if is_alive(host, &name) {
            host::enqueue(&vm, &name, MESSAGE);
        }
    }
}
