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
//! [`Effect::WakeOnWrite`]: tvp_core::gateway::Effect::WakeOnWrite

use std::cell::RefCell;

use log::warn;
use tvp_core::host::Host;
use tvp_core::wake_list;

use crate::host::{self, ProxyWasmHost};

thread_local! {
    /// This VM's id: other workers resolve its queues by it (read once per VM).
    static VM_ID: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn vm_id() -> Option<String> {
    VM_ID.with(|v| {
        let mut v = v.borrow_mut();
        if v.is_none() {
            *v = host::vm_id();
        }
        v.clone()
    })
}

/// A root context's queue: the other workers' messages that one of its requests may go on.
pub struct Queue {
    id: u32,
    name: String,
    /// The deadlines of the requests waiting elsewhere (host clock, ms).
    deadlines: RefCell<Vec<u64>>,
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
        Some(Queue {
            id,
            name,
            deadlines: RefCell::new(Vec::new()),
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// A request waits until lease record `key` is written (its version is no longer `seen`),
    /// or until `by_ms`. False: wake at once (it changed already, or the deadline passed).
    pub fn watch(&self, key: &str, by_ms: u64, seen: Option<u32>) -> bool {
        let host = ProxyWasmHost;
        if by_ms <= host.now_ms() {
            return false;
        }
        self.deadlines.borrow_mut().push(by_ms);
        // Not listed (the list is full, or shared data refused): the deadline still holds.
        wake_list::add(&host, key, &self.name);
        host.shared_get(key).1 == seen
    }

    /// Have this root context's `on_queue_ready` run soon (after the current callback).
    pub fn wake_soon(&self) {
        if let Some(vm) = vm_id() {
            host::enqueue(&vm, &self.name, b"now");
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
        deadlines.retain(|d| *d > now_ms);
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
        // A queue that is gone (its configuration was replaced) has nobody left to wake.
        host::enqueue(&vm, &name, key.as_bytes());
    }
}
