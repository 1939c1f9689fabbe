//! This worker's live streams and call-outs. A stream gets a context id when it starts (the
//! core's name for a request); a call-out gets a token (the core's name for it) mapped from
//! Envoy's own id, which is only unique per stream. Every hook of a stream, and every call-out
//! answer, runs on the worker that created it, so one thread-local registry per worker is
//! exact.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::abi::{Stream, StreamScheduler, Waker};

/// A live stream, the id of its configuration, and its scheduler once it needed one.
struct Live {
    stream: Stream,
    config_id: u64,
    scheduler: Option<StreamScheduler>,
}

thread_local! {
    /// Each live stream by context id.
    static STREAMS: RefCell<HashMap<u32, Live>> = RefCell::new(HashMap::new());
    /// Token of each call-out in flight, by (sender's context, Envoy's call-out id).
    static CALLOUTS: RefCell<HashMap<(u32, u64), u32>> = RefCell::new(HashMap::new());
    /// Context ids and call-out tokens: one sequence per worker, never 0.
    static NEXT_ID: Cell<u32> = const { Cell::new(0) };
}

/// A new id (context or token) on this thread: never 0, never one a live stream holds (the
/// sequence wraps after 2^32 ids).
pub fn next_id() -> u32 {
    loop {
        let id = NEXT_ID.with(|n| {
            let id = n.get().wrapping_add(1).max(1);
            n.set(id);
            id
        });
        if STREAMS.with(|s| !s.borrow().contains_key(&id)) {
            return id;
        }
    }
}

/// Whether `stream` is still registered (not destroyed).
pub fn is_live(stream: Stream) -> bool {
    STREAMS.with(|s| s.borrow().values().any(|live| live.stream == stream))
}

/// A new stream of configuration `config_id`: its context id.
pub fn register(stream: Stream, config_id: u64) -> u32 {
    let ctx = next_id();
    let live = Live {
        stream,
        config_id,
        scheduler: None,
    };
    STREAMS.with(|s| s.borrow_mut().insert(ctx, live));
    ctx
}

/// The stream is destroyed: its pointer and its call-outs are forgotten (Envoy cancels them),
/// and its scheduler deleted once no wake-up can reach it.
pub fn unregister(ctx: u32) {
    let live = STREAMS.with(|s| s.borrow_mut().remove(&ctx));
    CALLOUTS.with(|c| c.borrow_mut().retain(|(owner, _), _| *owner != ctx));
    if let Some(scheduler) = live.and_then(|l| l.scheduler) {
        crate::wake::forget(scheduler.waker());
        drop(scheduler);
    }
}

/// The live stream of context `ctx`.
pub fn stream(ctx: u32) -> Option<Stream> {
    STREAMS.with(|s| s.borrow().get(&ctx).map(|live| live.stream))
}

/// What wakes stream `ctx` from another thread (its scheduler, made on first use).
pub fn waker(ctx: u32) -> Option<Waker> {
    STREAMS.with(|s| {
        let mut streams = s.borrow_mut();
        let live = streams.get_mut(&ctx)?;
        if live.scheduler.is_none() {
            live.scheduler = live.stream.scheduler();
        }
        live.scheduler.as_ref().map(StreamScheduler::waker)
    })
}

/// Another live stream of configuration `config_id` than `ctx` (to send orphaned call-outs
/// from).
pub fn live_other(ctx: u32, config_id: u64) -> Option<(u32, Stream)> {
    STREAMS.with(|s| {
        s.borrow()
            .iter()
            .find(|(c, live)| **c != ctx && live.config_id == config_id)
            .map(|(c, live)| (*c, live.stream))
    })
}

/// Record a call-out `owner` sent; its token.
pub fn callout_sent(owner: u32, envoy_id: u64) -> u32 {
    let token = next_id();
    CALLOUTS.with(|c| c.borrow_mut().insert((owner, envoy_id), token));
    token
}

/// The token of the call-out `owner` sent as `envoy_id`, now answered.
pub fn callout_answered(owner: u32, envoy_id: u64) -> Option<u32> {
    CALLOUTS.with(|c| c.borrow_mut().remove(&(owner, envoy_id)))
}
