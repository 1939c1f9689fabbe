//! The dynamic-module filter: each hook reads its event from Envoy once, hands it to the core's
//! [`Gateway`] and applies the outcomes it returns. Nothing here decides.
//!
//! Envoy shares one configuration object across its workers; the core is single-threaded, so
//! every worker builds its own gateway for a configuration on its first stream, and the state
//! that must be shared (keys, downstream tokens, verified tokens, leases, the configuration
//! generation) lives in the process-wide [`crate::store`].

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use log::{error, info};

use tvp_core::cache::TokenDigest;
use tvp_core::callout::CalloutResponse;
use tvp_core::config;
use tvp_core::flow::Worker;
use tvp_core::gateway::{self, Effect, Gateway, Next, Outcome, RequestHead, Resolved};
use tvp_core::generation::{self, Generation};
use tvp_core::host::Host;
use tvp_core::reply::Reply;

use crate::abi::{CalloutAnswer, ConfigHandle, Stream};
use crate::crypto::{NativeSigner, NativeVerifier};
use crate::host::{Caller, MetricIds, NativeHost};
use crate::registry;

/// How often a worker's gateway publishes its configuration's standing and re-sends orphaned
/// call-outs (on the first stream after the period: an idle worker needs neither).
const TICK_MS: u64 = 1_000;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and trailers).
#[derive(Clone, Copy)]
pub enum HeadersStatus {
    Continue = 0,
    /// StopIteration: for trailers, and headers of a request answered locally.
    Stop = 1,
    /// Body and trailers wait with the headers (flow-controlled, not buffered without bound)
    /// until the request is resumed: nothing slips past a pending decision.
    StopAll = 4,
}

/// `envoy_dynamic_module_type_on_http_filter_request_body_status`.
#[derive(Clone, Copy)]
pub enum BodyStatus {
    Continue = 0,
    StopAndBuffer = 1,
    StopNoBuffer = 3,
}

/// One filter configuration, shared by every worker.
pub struct FilterConfig {
    id: u64,
    /// The plugin configuration (JSON), parsed again by each worker.
    bytes: Vec<u8>,
    /// `filter_name`: names the configuration generation record.
    name: String,
    metrics: Arc<MetricIds>,
    /// Dropped with the configuration: workers then drop their gateway for it.
    alive: Arc<()>,
    /// Workers share vault exchanges (a background ticker runs to wake waits that ran out).
    shared_flights: bool,
}

/// One stream's part. Hooks of a stream can run inside one another (resuming a request runs
/// its body hook at once), so it is only ever borrowed shared.
pub struct StreamState {
    ctx: u32,
    stream: Stream,
    worker: Option<Rc<WorkerGateway>>,
    metrics: Arc<MetricIds>,
}

/// A worker's gateway for one configuration.
struct WorkerGateway {
    gateway: RefCell<Gateway>,
    alive: Weak<()>,
    config_id: u64,
    next_tick_ms: Cell<u64>,
}

thread_local! {
    static GATEWAYS: RefCell<HashMap<u64, Rc<WorkerGateway>>> = RefCell::new(HashMap::new());
}

static NEXT_CONFIG_ID: AtomicU64 = AtomicU64::new(1);

pub fn program_init() {
    crate::logger::install();
}

/// Parse and check the plugin configuration; every problem is logged (naming the tenant and
/// field) and the configuration refused.
pub fn config_new(handle: ConfigHandle, name: &[u8], bytes: &[u8]) -> Option<FilterConfig> {
    let parsed = match config::parse(bytes, &config::process_env) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                error!("{e}");
            }
            return None;
        }
    };
    // RSA client assertions are signed natively here: every tenant can sign.
    let mut tenants: Vec<&str> = parsed.tenants.iter().map(|t| t.id.as_str()).collect();
    tenants.push(gateway::FILTER_REALM);
    let metrics = MetricIds::define(handle, &tenants);
    info!(
        "configured {} tenant(s); signature verification: host-native (aws-lc, in Envoy's process)",
        parsed.tenants.len()
    );
    let mut config = FilterConfig {
        id: NEXT_CONFIG_ID.fetch_add(1, Ordering::Relaxed),
        bytes: bytes.to_vec(),
        name: String::from_utf8_lossy(name).into_owned(),
        metrics: Arc::new(metrics),
        alive: Arc::new(()),
        shared_flights: false,
    };
    config.shared_flights = crate::background::start(&config, handle);
    Some(config)
}

/// Envoy dropped the configuration (main thread): its background work stops first.
pub fn config_destroy(config: FilterConfig) {
    crate::background::stop(config.id);
}

impl FilterConfig {
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn metrics(&self) -> &Arc<MetricIds> {
        &self.metrics
    }
}

/// The token digest's keys, the same on every worker (verified tokens are shared under them),
/// random per process.
fn process_token_digest() -> TokenDigest {
    static DIGEST: OnceLock<TokenDigest> = OnceLock::new();
    *DIGEST.get_or_init(TokenDigest::new)
}

/// This worker's gateway for `config`, built on its first stream.
fn worker_gateway(config: &FilterConfig) -> Option<Rc<WorkerGateway>> {
    GATEWAYS.with(|g| {
        let mut gateways = g.borrow_mut();
        if let Some(w) = gateways.get(&config.id) {
            return Some(Rc::clone(w));
        }
        // Configurations Envoy dropped since: their gateways go now.
        gateways.retain(|_, w| w.alive.strong_count() > 0);
        let parsed = config::parse(&config.bytes, &config::process_env).ok()?;
        let mut worker = Worker::new(Rc::new(parsed), Box::new(NativeVerifier::default()))
            .with_signer(Box::new(NativeSigner))
            // One store for every worker: a token's signature is checked once per process
            // (per configuration).
            .with_shared_verified_tokens(
                tvp_core::secret::hex(&generation::digest(&config.bytes)),
                process_token_digest(),
            );
        if config.shared_flights {
            // And schedulers to wake a stream from another thread: a user's vault exchange is
            // sent once per process.
            worker = worker.with_shared_flights();
        }
        let gateway =
            Gateway::new(worker).with_generation(Generation::new(&config.name, &config.bytes));
        let w = Rc::new(WorkerGateway {
            gateway: RefCell::new(gateway),
            alive: Arc::downgrade(&config.alive),
            config_id: config.id,
            next_tick_ms: Cell::new(0),
        });
        gateways.insert(config.id, Rc::clone(&w));
        Some(w)
    })
}

pub fn stream_new(config: &FilterConfig, stream: Stream) -> StreamState {
    StreamState {
        ctx: registry::register(stream, config.id),
        stream,
        worker: worker_gateway(config),
        metrics: Arc::clone(&config.metrics),
    }
}

impl StreamState {
    fn host(&self) -> NativeHost<'_> {
        NativeHost {
            caller: Caller::Stream(self.stream),
            metrics: &self.metrics,
        }
    }
}

/// A panic in a hook: the stream is answered 500 (never forwarded), unless it is gone.
pub fn answer_internal_error(stream: Stream) {
    if registry::is_live(stream) {
        send_reply(stream, &gateway::not_configured());
    }
}

/// A stream without state (its creation failed): answered 500, never forwarded.
pub fn answer_unconfigured(stream: Stream) {
    send_reply(stream, &gateway::not_configured());
}

pub fn request_headers(s: &StreamState, end_of_stream: bool) -> HeadersStatus {
    let Some(w) = &s.worker else {
        send_reply(s.stream, &gateway::not_configured());
        return HeadersStatus::Stop;
    };
    let host = s.host();
    tick_if_due(w, &host, s.ctx);
    let head = RequestHead::new(s.stream.request_headers());
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        send_reply(s.stream, &gateway::not_configured());
        return HeadersStatus::Stop;
    };
    let resolved = gateway.on_request_headers(&host, s.ctx, head, end_of_stream);
    drop(gateway);
    match apply_resolved(w, &host, resolved, s.ctx) {
        Some(Next::Continue) => HeadersStatus::Continue,
        _ => HeadersStatus::StopAll,
    }
}

pub fn request_body(s: &StreamState, end_of_stream: bool) -> BodyStatus {
    let Some(w) = &s.worker else {
        return BodyStatus::StopNoBuffer;
    };
    let host = s.host();
    let read = body_reader(s.stream);
    let size = s.stream.request_body_size();
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return BodyStatus::StopNoBuffer;
    };
    let outcome = gateway.on_request_body(&host, s.ctx, size, end_of_stream, &read);
    drop(gateway);
    match apply_outcome(w, &host, s.stream, s.ctx, &outcome) {
        Next::Continue => BodyStatus::Continue,
        Next::Stop => BodyStatus::StopAndBuffer,
    }
}

/// The first `size` bytes of the request body, read only when the core asks (an MCP body it
/// holds), not on every chunk.
fn body_reader(stream: Stream) -> impl Fn(usize) -> Vec<u8> {
    move |size| {
        let mut body = stream.request_body();
        body.truncate(size);
        body
    }
}

pub fn request_trailers(s: &StreamState) -> HeadersStatus {
    let Some(w) = &s.worker else {
        return HeadersStatus::Stop;
    };
    let host = s.host();
    let read = body_reader(s.stream);
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return HeadersStatus::Stop;
    };
    let outcome = gateway.on_request_trailers(&host, s.ctx, &read);
    drop(gateway);
    match apply_outcome(w, &host, s.stream, s.ctx, &outcome) {
        Next::Continue => HeadersStatus::Continue,
        Next::Stop => HeadersStatus::Stop,
    }
}

pub fn response_headers(s: &StreamState) {
    let Some(w) = &s.worker else { return };
    let host = s.host();
    let stream = s.stream;
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return;
    };
    let effects = gateway.on_response_headers(
        &host,
        s.ctx,
        &|| stream.response_header(":status")?.parse().ok(),
        &|name| stream.response_header(name),
    );
    drop(gateway);
    for effect in &effects {
        if registry::stream(s.ctx).is_none() {
            break;
        }
        apply_effect(stream, s.ctx, effect);
    }
}

pub fn callout_done(s: &StreamState, envoy_id: u64, answer: CalloutAnswer) {
    let Some(w) = &s.worker else { return };
    // Envoy answers a call-out it could not start inside the call that tried (the core
    // already counts that one as refused): only answers of registered call-outs go on.
    let Some(token) = registry::callout_answered(s.ctx, envoy_id) else {
        return;
    };
    let host = s.host();
    let max = w
        .gateway
        .try_borrow()
        .map_or(0, |g| g.config().settings.max_callout_response_bytes);
    let response = callout_response(&answer, max);
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return;
    };
    let resolved = gateway.on_callout_response(&host, token, &response, s.ctx);
    drop(gateway);
    apply_and_resume(w, &host, resolved, s.ctx, s.stream);
}

/// The stream was woken (its scheduler committed, [`crate::wake`]): the requests of this
/// worker waiting for another worker's exchange are decided, sent or wait on.
pub fn woken(s: &StreamState) {
    let Some(w) = &s.worker else { return };
    let host = s.host();
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        // Not expected (a wake-up runs as its own event); the lease's deadline wakes it again.
        log::warn!("#{} woken while its gateway was busy", s.ctx);
        return;
    };
    let resolved = gateway.on_wake(&host, s.ctx);
    drop(gateway);
    apply_and_resume(w, &host, resolved, s.ctx, s.stream);
}

pub fn stream_destroy(s: &StreamState) {
    registry::unregister(s.ctx);
    let Some(w) = &s.worker else { return };
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return;
    };
    gateway.forget(&s.host(), s.ctx);
    // Call-outs this stream sent for others are cancelled with it: another live stream of
    // the same configuration sends them again (or the next tick does).
    let Some((owner, stream)) = registry::live_other(s.ctx, w.config_id) else {
        return;
    };
    let host = NativeHost {
        caller: Caller::Stream(stream),
        metrics: &s.metrics,
    };
    let resolved = gateway.resend_orphans(&host, owner);
    drop(gateway);
    apply_and_resume(w, &host, resolved, owner, stream);
}

/// [`apply_resolved`] outside `current`'s headers hook: a request that goes on must be
/// resumed (if its stream is still there).
fn apply_and_resume(
    w: &WorkerGateway,
    host: &NativeHost,
    resolved: Resolved,
    current: u32,
    stream: Stream,
) {
    if apply_resolved(w, host, resolved, current) == Some(Next::Continue)
        && registry::stream(current).is_some()
    {
        stream.continue_decoding();
    }
}

/// The worker's tick, at most once per [`TICK_MS`], on a stream's headers: it publishes the
/// configuration's standing and sends orphaned call-outs again (keys are refreshed on the
/// main thread, [`crate::background`]).
fn tick_if_due(w: &WorkerGateway, host: &NativeHost, ctx: u32) {
    let now = host.now_ms();
    if now < w.next_tick_ms.get() {
        return;
    }
    w.next_tick_ms.set(now.saturating_add(TICK_MS));
    // Waits that ran out, also from here (the background ticker does it too).
    crate::wake::expired(now);
    let Ok(mut gateway) = w.gateway.try_borrow_mut() else {
        return;
    };
    let resolved = gateway.on_request_tick(host, ctx);
    drop(gateway);
    apply_resolved(w, host, resolved, ctx);
}

pub fn callout_response(answer: &CalloutAnswer, max_body: usize) -> CalloutResponse {
    let header = |name: &str| {
        answer
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let status = if answer.succeeded {
        header(":status").and_then(|s| s.parse::<u16>().ok())
    } else {
        None
    };
    CalloutResponse {
        status,
        retry_after: header("retry-after"),
        rate_limit_reset: header("x-ratelimit-reset"),
        body: (answer.body.len() <= max_body).then(|| answer.body.clone()),
    }
}

/// Apply the outcomes an event decided while `current`'s hook runs. Other requests are acted
/// on through their own streams (resumed when they go on); `current`'s next step is returned
/// (`None`: it has no outcome yet, it waits).
fn apply_resolved(
    w: &WorkerGateway,
    host: &NativeHost,
    resolved: Resolved,
    current: u32,
) -> Option<Next> {
    let mut next = None;
    for (ctx, outcome) in resolved {
        if ctx == current {
            let Caller::Stream(stream) = host.caller else {
                continue;
            };
            next = Some(apply_outcome(w, host, stream, ctx, &outcome));
            continue;
        }
        let Some(stream) = registry::stream(ctx) else {
            // Gone before its decision: nothing to answer.
            if let Ok(mut g) = w.gateway.try_borrow_mut() {
                g.forget(host, ctx);
            }
            continue;
        };
        if apply_outcome(w, host, stream, ctx, &outcome) == Next::Continue
            && registry::stream(ctx).is_some()
        {
            stream.continue_decoding();
        }
    }
    next
}

/// Apply one request's outcome on its stream. A request edit that fails turns the outcome into
/// the refusal the core gives for it: nothing is forwarded unchanged.
fn apply_outcome(
    w: &WorkerGateway,
    host: &dyn Host,
    stream: Stream,
    ctx: u32,
    outcome: &Outcome,
) -> Next {
    for effect in &outcome.effects {
        // A reply can end (and destroy) the stream at once: nothing more is sent to it.
        if registry::stream(ctx).is_none() {
            return Next::Stop;
        }
        if !apply_effect(stream, ctx, effect) && effect.is_request_edit() {
            let refusal = match w.gateway.try_borrow_mut() {
                Ok(mut g) => g.edit_failed(host, ctx),
                Err(_) => Outcome::reply(gateway::not_configured()),
            };
            for effect in &refusal.effects {
                if registry::stream(ctx).is_some() {
                    apply_effect(stream, ctx, effect);
                }
            }
            return Next::Stop;
        }
    }
    outcome.next
}

fn apply_effect(stream: Stream, ctx: u32, effect: &Effect) -> bool {
    match effect {
        Effect::RemoveHeader(name) => stream.remove_request_header(name),
        Effect::SetHeader(name, value) => stream.set_request_header(name, value),
        Effect::ClearRouteCache => {
            stream.clear_route_cache();
            true
        }
        Effect::Reply(reply) => {
            send_reply(stream, reply);
            true
        }
        Effect::Record(record) => {
            info!("#{ctx} decision {record}");
            // The wasm filter's key (Envoy prefixes its properties with `wasm.`): access
            // logs read `%FILTER_STATE(wasm.tvp_decision:PLAIN)%` on either host.
            stream.set_filter_state("wasm.tvp_decision", record)
        }
        Effect::RemoveResponseHeader(name) => stream.remove_response_header(name),
        Effect::SetResponseHeader(name, value) => stream.set_response_header(name, value),
        Effect::WakeOnWrite { key, by_ms, seen } => {
            match registry::waker(ctx) {
                Some(waker) => crate::wake::watch(key, *by_ms, *seen, waker, crate::host::now_ms()),
                // Nothing could wake it: answered now rather than left waiting.
                None => send_reply(stream, &gateway::cannot_wait()),
            }
            true
        }
    }
}

fn send_reply(stream: Stream, reply: &Reply) {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let status = u16::try_from(reply.status).unwrap_or(500);
    stream.send_response(status, &headers, &reply.body);
}
