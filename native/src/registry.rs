//! This worker's live streams and call-outs. A stream gets a context id when it starts (the
//! core's name for a request); a call-out gets a token (the core's name for it) mapped from
//! Envoy's own id, which is only unique per stream. Every hook of a stream, and every call-out
//! answer, runs on the worker that created it, so one thread-local registry per worker is
//! exact.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::abi::Stream;

thread_local! {
    /// Each live stream by context id, with the id of its configuration.
    static STREAMS: RefCell<HashMap<u32, (Stream, u64)>> = RefCell::new(HashMap::new());
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
    STREAMS.with(|s| s.borrow().values().any(|(live, _)| *live == stream))
}

/// A new stream of configuration `config_id`: its context id.
pub fn register(stream: Stream, config_id: u64) -> u32 {
    let ctx = next_id();
    STREAMS.with(|s| s.borrow_mut().insert(ctx, (stream, config_id)));
    ctx
}

/// The stream is destroyed: its pointer and its call-outs are forgotten (Envoy cancels them).
pub fn unregister(ctx: u32) {
    STREAMS.with(|s| s.borrow_mut().remove(&ctx));
    CALLOUTS.with(|c| c.borrow_mut().retain(|(owner, _), _| *owner != ctx));
}

/// The live stream of context `ctx`.
pub fn stream(ctx: u32) -> Option<Stream> {
    STREAMS.with(|s| s.borrow().get(&ctx).map(|(stream, _)| *stream))
}

/// Another live stream of configuration `config_id` than `ctx` (to send orphaned call-outs
/// from).
pub fn live_other(ctx: u32, config_id: u64) -> Option<(u32, Stream)> {
    STREAMS.with(|s| {
        s.borrow()
            .iter()
            .find(|(c, (_, config))| **c != ctx && *config == config_id)
            .map(|(c, (stream, _))| (*c, *stream))
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
