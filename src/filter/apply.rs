//! Applying the core's outcomes through the proxy-wasm host: the only place effects happen.

use log::info;
use proxy_wasm::types::Action;

use super::Shared;
use crate::host::{self, ProxyWasmHost};
use tvp_core::gateway::{Effect, Next, Outcome, Resolved};

/// Apply the outcomes an event decided, while `current`'s callback runs. Other requests are
/// acted on in their own context (resumed when they go on); `current`'s outcome is returned as
/// the callback's action (`Pause` when it has none: it waits).
pub fn resolved(plugin: &Shared, resolved: Resolved, current: u32) -> Action {
    let mut action = Action::Pause;
    // Host calls act on `current` until another request is acted on: only then is it made
    // active again (a host call saved on every request, which decides only itself).
    let mut elsewhere = false;
    for (ctx, outcome) in resolved {
        if ctx == current {
            if std::mem::take(&mut elsewhere) {
                host::act_on(current);
            }
            action = this(plugin, ctx, outcome);
            continue;
        }
        elsewhere = true;
        if !host::act_on(ctx) {
            // Gone before its decision: nothing to answer.
            plugin.gateway.borrow_mut().forget(&ProxyWasmHost, ctx);
            continue;
        }
        if this(plugin, ctx, outcome) == Action::Continue {
            host::resume_request();
        }
    }
    if elsewhere {
        host::act_on(current);
    }
    action
}

/// Apply one request's outcome in its (active) context. A request edit that fails turns the
/// outcome into the refusal the core gives for it: nothing is forwarded unchanged.
pub fn this(plugin: &Shared, ctx: u32, outcome: Outcome) -> Action {
    for effect in &outcome.effects {
        if !apply(plugin, ctx, effect) && effect.is_request_edit() {
            let refusal = plugin.gateway.borrow_mut().edit_failed(&ProxyWasmHost, ctx);
            for effect in &refusal.effects {
                apply(plugin, ctx, effect);
            }
            return Action::Pause;
        }
    }
    match outcome.next {
        Next::Continue => Action::Continue,
        Next::Stop => Action::Pause,
    }
}

fn apply(plugin: &Shared, ctx: u32, effect: &Effect) -> bool {
    match effect {
        Effect::RemoveHeader(name) => host::remove_request_header(name),
        Effect::SetHeader(name, value) => host::set_request_header(name, value),
        Effect::ClearRouteCache => host::clear_route_cache(),
        Effect::Reply(reply) => host::send_reply(reply),
        Effect::Record(record) => {
            info!("#{ctx} decision {record}");
            host::set_filter_state("tvp_decision", record)
        }
        Effect::RemoveResponseHeader(name) => host::remove_response_header(name),
        Effect::SetResponseHeader(name, value) => host::set_response_header(name, value),
        Effect::WakeOnWrite { key, by_ms, seen } => match &plugin.wake {
            Some(queue) => {
                if !queue.watch(key, *by_ms, *seen) {
                    queue.wake_soon();
                }
                true
            }
            // Nothing could wake it (the core asks only a worker that shares flights, which
            // has a queue): answered now rather than left waiting.
            None => host::send_reply(&tvp_core::gateway::cannot_wait()),
        },
    }
}

/// A call-out answered, delivered to `current` (the context that sent it).
pub fn callout_answered(plugin: &Shared, token: u32, body_size: usize, current: u32) -> Action {
    let max = plugin
        .gateway
        .borrow()
        .config()
        .settings
        .max_callout_response_bytes;
    let response = host::callout_response(body_size, max);
    let decided =
        plugin
            .gateway
            .borrow_mut()
            .on_callout_response(&ProxyWasmHost, token, &response, current);
    resolved(plugin, decided, current)
}
