//! The gateway: every decision about a request, from its headers to its response, made here
//! and handed to the host as [`Outcome`]s (effects, then go on or not). A host reads each event
//! once (headers, body, a call-out's answer, a tick), calls in, and applies what comes back; it
//! decides nothing. The proxy-wasm filter is one such host.
//!
//! Per request the gateway keeps one record ([`Live`]) from its headers until the host forgets
//! it; the token pipeline itself (verification, single flight, the vault) is [`Worker`]'s.

mod connect_pages;
mod denial;
mod head;
mod mcp_hold;
mod outcome;
mod public_url;

use std::rc::Rc;

use log::{info, warn};

pub use denial::FILTER_REALM;
pub use head::RequestHead;
pub use outcome::{Effect, Next, Outcome, Resolved};
pub use public_url::public_base;

use crate::audit::Decision;
use crate::auth;
use crate::cache::Principal;
use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::Config;
use crate::endpoints::{self, Route};
use crate::flow::{FlightKey, RequestInput, Resolution, Step, Worker};
use crate::generation::Generation;
use crate::host::{ByHostId, Host};
use crate::mcp;
use crate::metrics::Counter;
use crate::reply::{Deny, Reply};

/// What one live request has: its headers, where it stands, and what its later events need.
struct Live {
    head: RequestHead,
    /// Its headers were stopped and it has not gone on: body and trailers wait too.
    stopped: bool,
    /// Request body bytes buffered so far (the trailers callback needs the size).
    body_size: usize,
    /// A connect page waiting for its call-out.
    connect_call: Option<connect_pages::ConnectCall>,
    /// An MCP request whose answer may depend on its body.
    mcp: Option<mcp::InFlight>,
    /// Forwarded with a downstream token: its tenant and caller, whose cache key a backend 401
    /// evicts.
    forwarded: Option<(usize, Rc<Principal>)>,
    /// The refusal to answer with if the host cannot apply the request edits of its outcome.
    if_edits_fail: Option<Failure>,
}

/// A refusal kept for later.
struct Failure {
    tenant: usize,
    deny: Deny,
    principal: Option<Rc<Principal>>,
}

pub struct Gateway {
    config: Rc<Config>,
    worker: Worker,
    live: ByHostId<Live>,
    /// Whether this configuration is the current one (none: not tracked).
    generation: Option<Generation>,
}

impl Gateway {
    pub fn new(worker: Worker) -> Self {
        Gateway {
            config: Rc::clone(&worker.config),
            worker,
            live: ByHostId::default(),
            generation: None,
        }
    }

    /// Refuse every request once another configuration of the same plugin is current: a
    /// push reaches keep-alive connections too ([`crate::generation`]).
    pub fn with_generation(mut self, generation: Generation) -> Self {
        self.generation = Some(generation);
        self
    }

    pub fn config(&self) -> &Rc<Config> {
        &self.config
    }

    /// A request's headers: answer it, forward it, or wait. Outcomes for other requests can
    /// come back too (a call-out that failed to start decides everyone waiting for it).
    pub fn on_request_headers(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        head: RequestHead,
        end_of_stream: bool,
    ) -> Resolved {
        self.live.insert(
            ctx,
            Live {
                head,
                stopped: true,
                body_size: 0,
                connect_call: None,
                mcp: None,
                forwarded: None,
                if_edits_fail: None,
            },
        );
        let now_ms = host.now_ms();
        let superseded = self
            .generation
            .as_mut()
            .is_some_and(|g| g.superseded(host, ctx, now_ms, &|| host.connection_id()));
        if superseded {
            return self.settled(vec![(ctx, superseded_refusal(host))]);
        }
        match self.start(host, ctx, end_of_stream) {
            Started::Decided(outcome) => self.settled(vec![(ctx, outcome)]),
            Started::Pipeline(input) => match self.worker.begin_at(host, ctx, input, now_ms) {
                // Only a call-out to start can decide other requests too (if it cannot start).
                step @ Step::Wait { start: Some(_), .. } => {
                    self.resolve(host, vec![(ctx, step)], ctx)
                }
                step => {
                    let outcome = self.finish(host, ctx, step);
                    self.settled(vec![(ctx, outcome)])
                }
            },
        }
    }

    /// Everything decided from the headers alone, or the pipeline's input.
    fn start(&mut self, host: &dyn Host, ctx: u32, end_of_stream: bool) -> Started {
        let config = Rc::clone(&self.config);
        let Some(live) = self.live.get(&ctx) else {
            return Started::Decided(Outcome::stop());
        };
        let head = &live.head;
        let refuse = |tenant, deny: &Deny| {
            Started::Decided(denial::refuse(host, &config, head, tenant, deny, None))
        };
        // Before anything else: on a shared ingress another host's request must not get a
        // tenant's token because its path looks like one.
        if !endpoints::host_allowed(&config, head.authority()) {
            return refuse(None, &Deny::UnknownHost);
        }
        let tenant_id = match endpoints::route(head.method(), head.path()) {
            Route::Health => {
                let loaded: Vec<bool> = (0..config.tenants.len())
                    .map(|i| self.worker.keys_loaded(host, i))
                    .collect();
                let reply =
                    endpoints::health(&config, &|i| loaded.get(i).copied().unwrap_or(false));
                return Started::Decided(Outcome::reply(reply));
            }
            Route::Tenants => return Started::Decided(Outcome::reply(endpoints::tenants(&config))),
            Route::TenantInfo(id) => {
                return match endpoints::tenant_info(&config, id) {
                    Some(reply) => Started::Decided(Outcome::reply(reply)),
                    None => refuse(None, &Deny::UnknownTenant),
                }
            }
            Route::NoTenant => return refuse(None, &Deny::NoTenant),
            Route::BadPath => return refuse(None, &Deny::BadPath),
            Route::ProtectedResource { tenant, rest } => {
                let origin = public_base(&config.settings, head);
                let path = format!("/{tenant}{rest}");
                let resource = config
                    .tenant(tenant)
                    .and_then(|t| Some((t, endpoints::resource_at(t, origin.as_deref(), &path)?)));
                return match resource {
                    Some((t, resource)) => {
                        Started::Decided(Outcome::reply(endpoints::protected_resource(t, resource)))
                    }
                    None => refuse(None, &Deny::UnknownTenant),
                };
            }
            Route::Connect { tenant, page } => {
                let Some(index) = config.tenants.iter().position(|t| t.id == tenant) else {
                    return refuse(None, &Deny::UnknownTenant);
                };
                let page = page.to_string();
                return Started::Decided(self.connect_page(host, ctx, index, &page));
            }
            Route::Proxy(id) => id,
        };
        let Some(tenant) = config.tenants.iter().position(|t| t.id == tenant_id) else {
            return refuse(None, &Deny::UnknownTenant);
        };
        let token = match auth::check_no_query_token(head.path())
            .and_then(|()| auth::bearer_token(&head.all("authorization")))
        {
            Ok(t) => t,
            Err(d) => return refuse(Some(tenant), &d),
        };
        let recognised = mcp::recognise(head.method(), &|name| head.get_str(name));
        let subject_token = config.tenants[tenant]
            .vault
            .subject_token_header
            .as_deref()
            .and_then(|h| head.get(h));
        let input = RequestInput {
            tenant,
            method: head.method().to_string(),
            token,
            subject_token,
        };
        if let Some(request) = recognised.filter(|r| r.kind == mcp::Kind::Session || !end_of_stream)
        {
            // Remembered in case the account is missing: the answer then depends on it.
            if let Some(live) = self.live.get_mut(&ctx) {
                live.mcp = Some(mcp::InFlight::new(tenant, request));
            }
        }
        Started::Pipeline(input)
    }

    /// Turn the pipeline's steps into outcomes: dispatch the call-outs they start (as `owner`),
    /// finish the requests they decide.
    fn resolve(&mut self, host: &dyn Host, steps: Vec<Resolution>, owner: u32) -> Resolved {
        let mut out = Vec::new();
        for (ctx, step) in steps {
            match step {
                Step::Wait {
                    flight,
                    start: Some(request),
                } => out.extend(self.send(host, &flight, &request, owner)),
                Step::Wait { start: None, .. } => out.push((ctx, Outcome::stop())),
                done => {
                    let outcome = self.finish(host, ctx, done);
                    out.push((ctx, outcome));
                }
            }
        }
        self.settled(out)
    }

    /// Dispatch one flight's call-out as `owner` (the context whose callback is running: the
    /// host delivers the answer to it), or fail the flight at once.
    fn send(
        &mut self,
        host: &dyn Host,
        flight: &FlightKey,
        request: &CalloutRequest,
        owner: u32,
    ) -> Resolved {
        let timeout = self.config.settings.callout_timeout_ms;
        match host.dispatch(owner, request, timeout) {
            Some(token) => {
                self.worker.dispatched(flight, token, owner, host.now_ms());
                Vec::new()
            }
            None => {
                warn!(
                    "token-vault-proxy: call-out to cluster '{}' failed to start",
                    request.cluster
                );
                let steps = self.worker.dispatch_failed(host, flight);
                self.resolve(host, steps, owner)
            }
        }
    }

    /// A decided request's outcome: forwarded with its new credential, relayed or held (MCP),
    /// or answered.
    fn finish(&mut self, host: &dyn Host, ctx: u32, step: Step) -> Outcome {
        let config = Rc::clone(&self.config);
        match step {
            Step::Forward(f) => {
                let tenant = &config.tenants[f.tenant];
                host.count(&tenant.id, Counter::Allow);
                if let Some(live) = self.live.get_mut(&ctx) {
                    live.forwarded = Some((f.tenant, Rc::clone(&f.principal)));
                    // Fail closed: a request whose credentials could not be replaced is never
                    // forwarded.
                    live.if_edits_fail = Some(Failure {
                        tenant: f.tenant,
                        deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
                        principal: Some(Rc::clone(&f.principal)),
                    });
                }
                self.brokered(ctx, &f.principal.claims.sub);
                let record =
                    denial::record(Some(tenant), Some(&f.principal), Decision::Allow, "ok");
                // The step's own strings move into the effects: nothing is copied per request.
                let mut effects = Vec::with_capacity(f.strip.len() + 2);
                effects.extend(f.strip.into_iter().map(Effect::RemoveHeader));
                effects.push(Effect::SetHeader(f.header, f.value));
                effects.push(record);
                Outcome {
                    effects,
                    next: Next::Continue,
                }
            }
            Step::Deny {
                deny,
                tenant,
                principal,
            } => {
                if matches!(deny, Deny::ConnectRequired { .. }) {
                    if let Some(outcome) =
                        self.unconnected(host, ctx, tenant, &deny, principal.clone())
                    {
                        return outcome;
                    }
                }
                let Some(live) = self.live.get(&ctx) else {
                    return Outcome::stop();
                };
                denial::refuse(
                    host,
                    &config,
                    &live.head,
                    Some(tenant),
                    &deny,
                    principal.as_deref(),
                )
            }
            Step::Wait { .. } => Outcome::stop(),
            Step::WaitElsewhere {
                watch,
                until_ms,
                seen,
            } => Outcome {
                effects: vec![Effect::WakeOnWrite {
                    key: watch,
                    by_ms: until_ms,
                    seen,
                }],
                next: Next::Stop,
            },
        }
    }

    /// Outcomes that let a request go on mark it so: its body follows from then on.
    fn settled(&mut self, resolved: Resolved) -> Resolved {
        for (ctx, outcome) in &resolved {
            if outcome.next == Next::Continue {
                if let Some(live) = self.live.get_mut(ctx) {
                    live.stopped = false;
                }
            }
        }
        resolved
    }

    /// The host could not apply a request edit of `ctx`'s outcome (a header it could not set
    /// or remove): the request must not go on. Its refusal instead.
    pub fn edit_failed(&mut self, host: &dyn Host, ctx: u32) -> Outcome {
        let config = Rc::clone(&self.config);
        let Some(live) = self.live.get_mut(&ctx) else {
            return Outcome::stop();
        };
        live.stopped = true;
        live.forwarded = None;
        let failure = live.if_edits_fail.take().unwrap_or(Failure {
            tenant: usize::MAX,
            deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
            principal: None,
        });
        let tenant = (failure.tenant < config.tenants.len()).then_some(failure.tenant);
        warn!("#{ctx} could not rewrite the request; refused");
        denial::refuse(
            host,
            &config,
            &live.head,
            tenant,
            &failure.deny,
            failure.principal.as_deref(),
        )
    }

    /// A chunk of the request body (`size` bytes buffered so far; `body` reads them). Held
    /// and watched MCP requests read theirs; any other request's body waits while its headers
    /// do, so it can never carry stopped headers on.
    pub fn on_request_body(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        size: usize,
        end_of_stream: bool,
        body: &dyn Fn(usize) -> Vec<u8>,
    ) -> Outcome {
        if let Some(live) = self.live.get_mut(&ctx) {
            live.body_size = size;
        }
        let whole = end_of_stream || size > mcp::MAX_BODY_BYTES;
        let readable = || (size <= mcp::MAX_BODY_BYTES).then(|| body(size));
        if self.is_held(ctx) {
            if !whole {
                // Keep buffering: the hold route gets nothing while this filter has the body.
                return Outcome::stop();
            }
            let outcome = self.held_body_in(host, ctx, readable());
            return self
                .settled(vec![(ctx, outcome)])
                .pop()
                .map_or(Outcome::stop(), |(_, o)| o);
        }
        if self.is_watched(ctx) {
            if !whole {
                // Buffer the (small) message until it is whole; it goes on unchanged.
                return Outcome::stop();
            }
            self.watched_body_in(ctx, readable());
            return Outcome::go_on();
        }
        self.hold_until_decided(ctx)
    }

    /// The request's trailers: the body is whole.
    pub fn on_request_trailers(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        body: &dyn Fn(usize) -> Vec<u8>,
    ) -> Outcome {
        let size = self.live.get(&ctx).map_or(0, |l| l.body_size);
        let readable = || (size <= mcp::MAX_BODY_BYTES).then(|| body(size));
        if self.is_held(ctx) {
            let outcome = self.held_body_in(host, ctx, readable());
            return self
                .settled(vec![(ctx, outcome)])
                .pop()
                .map_or(Outcome::stop(), |(_, o)| o);
        }
        if self.is_watched(ctx) {
            self.watched_body_in(ctx, readable());
        }
        self.hold_until_decided(ctx)
    }

    /// Body and trailers of a request whose headers are stopped stay stopped until the
    /// decision lets the request go on: whether the pipeline or a connect page is still
    /// waiting for its call-out, or the filter answered the request itself.
    fn hold_until_decided(&self, ctx: u32) -> Outcome {
        match self.live.get(&ctx) {
            Some(live) if !live.stopped => Outcome::go_on(),
            // Unknown requests were never let through.
            _ => Outcome::stop(),
        }
    }

    /// The response's headers: a backend 401 evicts the downstream token it refused; an MCP
    /// answer may open a session or need its challenge removed. `status` and `header` read the
    /// response (only when needed).
    pub fn on_response_headers(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        status: &dyn Fn() -> Option<u16>,
        header: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Effect> {
        let effects = self.mcp_answered(host, ctx, status, header);
        let forwarded = self.live.get_mut(&ctx).and_then(|l| l.forwarded.take());
        if let Some((tenant, principal)) = forwarded {
            if self
                .worker
                .backend_answered(host, tenant, &principal.downstream_key, status)
            {
                info!(
                    "#{ctx} tenant={} backend refused the downstream token; evicted",
                    self.config.tenants[tenant].id
                );
            }
        }
        effects
    }

    /// A call-out answered, delivered to `current` (the context that sent it): a connect
    /// page's, or the pipeline's (deciding every request waiting for it).
    pub fn on_callout_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        response: &CalloutResponse,
        current: u32,
    ) -> Resolved {
        if let Some(outcome) = self.connect_answered(host, current, token, response) {
            return self.settled(vec![(current, outcome)]);
        }
        let steps = self.worker.on_response(host, token, response);
        let mut out = self.resolve(host, steps, current);
        out.extend(self.dispatch_orphans(host, current));
        out
    }

    /// The periodic tick (as `root`): refresh keys in the background, resend call-outs whose
    /// sender went away.
    pub fn on_tick(&mut self, host: &dyn Host, root: u32) -> Resolved {
        let mut out = Vec::new();
        for (flight, request) in self.worker.refresh_due(host) {
            out.extend(self.send(host, &flight, &request, root));
        }
        out.extend(self.on_request_tick(host, root));
        out
    }

    /// The tick of a host whose background refresh runs elsewhere (the native host refreshes
    /// keys on Envoy's main thread, for every worker): publish this configuration's standing,
    /// send orphaned call-outs again (as `owner`).
    pub fn on_request_tick(&mut self, host: &dyn Host, owner: u32) -> Resolved {
        if let Some(g) = self.generation.as_mut() {
            g.tick(host);
        }
        self.dispatch_orphans(host, owner)
    }

    /// Send again, as `owner`, the call-outs whose sender went away while others waited for
    /// them (a host without a periodic tick calls this when a request ends).
    pub fn resend_orphans(&mut self, host: &dyn Host, owner: u32) -> Resolved {
        self.dispatch_orphans(host, owner)
    }

    fn dispatch_orphans(&mut self, host: &dyn Host, owner: u32) -> Resolved {
        let mut out = Vec::new();
        for (flight, request) in self.worker.take_orphans(host.now_ms()) {
            out.extend(self.send(host, &flight, &request, owner));
        }
        out
    }

    /// A request that waits for another worker was woken ([`Effect::WakeOnWrite`]), as
    /// `current`: every request of this worker waiting elsewhere is decided, sent or waits on.
    pub fn on_wake(&mut self, host: &dyn Host, current: u32) -> Resolved {
        let steps = self.worker.poll_elsewhere(host, host.now_ms());
        let mut out = self.resolve(host, steps, current);
        out.extend(self.dispatch_orphans(host, current));
        out
    }

    /// The request is gone (finished, or the client went away); the host will not deliver
    /// call-outs it sent.
    pub fn forget(&mut self, host: &dyn Host, ctx: u32) {
        self.live.remove(&ctx);
        self.worker.forget(host, ctx);
    }
}

/// A request of a superseded configuration: counted, recorded and refused before anything
/// else (503: the client retries on a new connection, which the current one serves).
fn superseded_refusal(host: &dyn Host) -> Outcome {
    host.count(denial::FILTER_REALM, crate::metrics::SUPERSEDED);
    Outcome {
        effects: vec![
            denial::record(None, None, Decision::Deny, "superseded_configuration"),
            Effect::Reply(crate::generation::superseded_reply()),
        ],
        next: Next::Stop,
    }
}

/// The answer to a request that would wait for another worker's exchange on a host that
/// cannot wake it (it is answered rather than left waiting).
pub fn cannot_wait() -> Reply {
    let mut reply = Reply::json(
        503,
        &serde_json::json!({"error": "temporarily_unavailable", "error_description": "The gateway could not wait for this request's credential. Retry."}),
    );
    reply.headers.push(("retry-after", "1".into()));
    reply
}

/// The answer to every request while the filter has no valid configuration.
pub fn not_configured() -> Reply {
    Reply::json(
        500,
        &serde_json::json!({"error": "server_error", "error_description": "The filter is not configured."}),
    )
}

enum Started {
    Decided(Outcome),
    Pipeline(RequestInput),
}

#[cfg(test)]
mod tests;
