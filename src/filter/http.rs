//! One HTTP request: gather its inputs, run the pipeline, apply the outcome. Nothing is
//! resumed unless the pipeline returned `Forward`; every other path ends in one local reply.

use std::cell::RefCell;
use std::rc::Rc;

use log::{info, warn};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use super::connect_pages::{with_connect_link, ConnectCall};
use super::{handle_response, send};
use crate::audit::Decision;
use crate::auth;
use crate::cache::Principal;
use crate::config::{Config, Tenant};

use crate::endpoints::{self, Route};
use crate::flow::{Host, RequestInput, Step, Worker};
use crate::host::{self, ProxyWasmHost};
use crate::mcp;
use crate::reply::{deny_reply, Deny, Realm, Reply};

pub struct Request {
    pub(super) id: u32,
    pub(super) worker: Option<Rc<RefCell<Worker>>>,
    /// A connect-page step waiting for its call-out (by token).
    pub(super) connect_call: Option<(u32, ConnectCall)>,
    /// Request body bytes buffered so far.
    body_size: usize,
}

impl Request {
    pub fn new(id: u32, worker: Option<Rc<RefCell<Worker>>>) -> Self {
        Request {
            id,
            worker,
            connect_call: None,
            body_size: 0,
        }
    }

    pub(super) fn reply(&self, reply: &Reply) -> Action {
        host::send_reply(reply);
        Action::Pause
    }

    fn start(&mut self, worker: &Rc<RefCell<Worker>>, end_of_stream: bool) -> Action {
        let headers = host::RequestHeaders::read();
        let method = headers.get(":method").unwrap_or_default();
        let path = headers.get(":path").unwrap_or_default();
        let config = Rc::clone(&worker.borrow().config);
        // Before anything else: on a shared ingress another host's request must not get a
        // tenant's token because its path looks like one.
        let authority = headers.get(":authority").unwrap_or_default();
        if !endpoints::host_allowed(&config, &authority) {
            return self.deny(None, &Deny::UnknownHost);
        }
        let tenant_id = match endpoints::route(&method, &path) {
            Route::Health => {
                let reply = endpoints::health(&config, &|i| {
                    worker.borrow_mut().keys_loaded(&ProxyWasmHost, i)
                });
                return self.reply(&reply);
            }
            Route::Tenants => return self.reply(&endpoints::tenants(&config)),
            Route::TenantInfo(id) => {
                return match endpoints::tenant_info(&config, id) {
                    Some(reply) => self.reply(&reply),
                    None => self.deny(None, &Deny::UnknownTenant),
                }
            }
            Route::NoTenant => return self.deny(None, &Deny::NoTenant),
            Route::BadPath => return self.deny(None, &Deny::BadPath),
            Route::ProtectedResource { tenant, rest } => {
                let origin = public_base(&config);
                let path = format!("/{tenant}{rest}");
                let resource = config
                    .tenant(tenant)
                    .and_then(|t| Some((t, endpoints::resource_at(t, origin.as_deref(), &path)?)));
                return match resource {
                    Some((t, resource)) => self.reply(&endpoints::protected_resource(t, resource)),
                    None => self.deny(None, &Deny::UnknownTenant),
                };
            }
            Route::Connect { tenant, page } => {
                return self.connect_page(worker, &config, tenant, page, &method, &path, &headers)
            }
            Route::Proxy(id) => id,
        };
        let Some(tenant) = config.tenants.iter().position(|t| t.id == tenant_id) else {
            return self.deny(None, &Deny::UnknownTenant);
        };
        let token = match auth::check_no_query_token(&path)
            .and_then(|()| auth::bearer_token(&headers.all("authorization")))
        {
            Ok(t) => t,
            Err(d) => return self.deny(Some(tenant), &d),
        };
        let recognised = mcp::recognise(&method, &|name| headers.get_str(name));
        if let Some(request) = recognised.filter(|r| r.kind == mcp::Kind::Session || !end_of_stream)
        {
            // Remembered in case the account is missing: the answer then depends on it.
            let inflight = mcp::InFlight::new(tenant, request);
            worker.borrow_mut().mcp.insert(self.id, inflight);
        }
        let subject_token = config.tenants[tenant]
            .vault
            .subject_token_header
            .as_deref()
            .and_then(|h| headers.get(h));
        let input = RequestInput {
            tenant,
            method,
            token,
            subject_token,
        };
        self.run(worker, input)
    }

    /// Verify, authorize and broker; continue, wait or answer.
    fn run(&mut self, worker: &Rc<RefCell<Worker>>, input: RequestInput) -> Action {
        let step = worker.borrow_mut().begin(&ProxyWasmHost, self.id, input);
        match step {
            Step::Wait { flight, start } => {
                if let Some(request) = start {
                    send(worker, &flight, &request, self.id);
                }
                // `send` may have failed the flight and answered this request already.
                Action::Pause
            }
            done => {
                if apply_final(worker, self.id, done) {
                    Action::Continue
                } else {
                    Action::Pause
                }
            }
        }
    }

    pub(super) fn deny(&self, tenant: Option<usize>, deny: &Deny) -> Action {
        match &self.worker {
            Some(w) => {
                let config = Rc::clone(&w.borrow().config);
                send_denial(&config, self.id, tenant, deny, None);
            }
            None => {
                host::send_reply(&deny_reply(deny, &Realm::named(FILTER_REALM)));
            }
        }
        Action::Pause
    }

    fn hold_while_waiting(&self) -> Action {
        // Body and trailers must not slip past headers still under check: Envoy would
        // forward the stopped headers along with them.
        match &self.worker {
            Some(w) if w.borrow().is_waiting(self.id) => Action::Pause,
            _ => Action::Continue,
        }
    }
}

const FILTER_REALM: &str = "token-vault-proxy";

fn go_on(continues: bool) -> Action {
    if continues {
        Action::Continue
    } else {
        Action::Pause
    }
}

/// The decision record: one JSON log line, and filter state `wasm.tvp_decision` for access logs.
pub(super) fn audit(
    context_id: u32,
    tenant: Option<&Tenant>,
    principal: Option<&Principal>,
    decision: Decision,
    reason: &str,
) {
    let built;
    let record: &str = match (decision, principal) {
        // Every allowed request of a token has the same record: build it once.
        (Decision::Allow, Some(p)) => p
            .allow_record
            .get_or_init(|| crate::audit::record(tenant, Some(p), decision, reason)),
        _ => {
            built = crate::audit::record(tenant, principal, decision, reason);
            &built
        }
    };
    host::set_filter_state("tvp_decision", record);
    info!("#{context_id} decision {record}");
}

/// Log the decision and answer the request whose context is active. Challenges point at the
/// protected resource metadata of the requested path when the public URL is known.
pub(super) fn send_denial(
    config: &Config,
    context_id: u32,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) {
    record_denial(config, context_id, tenant, deny, principal);
    host::send_reply(&denial_reply(config, tenant, deny, principal).0);
}

/// Count and log a refusal.
pub(super) fn record_denial(
    config: &Config,
    context_id: u32,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) {
    let tenant_id = tenant.map_or(FILTER_REALM, |i| config.tenants[i].id.as_str());
    ProxyWasmHost.count(tenant_id, deny.metric());
    audit(
        context_id,
        tenant.map(|i| &config.tenants[i]),
        principal,
        Decision::Deny,
        deny.code(),
    );
}

/// The HTTP answer to a refusal of the active request, and the refusal as answered (with its
/// connect link, if one was made).
pub(super) fn denial_reply(
    config: &Config,
    tenant: Option<usize>,
    deny: &Deny,
    principal: Option<&Principal>,
) -> (Reply, Deny) {
    let tenant_id = tenant.map_or(FILTER_REALM, |i| config.tenants[i].id.as_str());
    // Challenges name the metadata of the resource the request is for, and the scopes to ask
    // for (MCP authorization: "SHOULD include scope" on 401).
    let metadata = tenant.and_then(|i| {
        let path = host::request_header(":path").unwrap_or_default();
        let path = path.split(['?', '#']).next().unwrap_or("");
        let origin = public_base(config);
        endpoints::covering_resource(&config.tenants[i], origin.as_deref(), path)
            .map(endpoints::metadata_url)
    });
    let scope = tenant.map(|i| {
        let method = host::request_header(":method").unwrap_or_default();
        endpoints::challenge_scope(&config.tenants[i], &method, metadata.is_some())
    });
    let realm = Realm {
        name: tenant_id,
        resource_metadata: metadata.as_deref(),
        scope: scope.as_deref(),
    };
    let deny = match (deny, tenant, principal) {
        (Deny::ConnectRequired { .. }, Some(i), Some(p)) => with_connect_link(config, i, deny, p),
        _ => deny.clone(),
    };
    (deny_reply(&deny, &realm), deny)
}

/// The gateway's public URL: configured, or (when allowed) taken from the request.
pub(super) fn public_base(config: &Config) -> Option<String> {
    if let Some(base) = &config.settings.public_base_url {
        return Some(base.clone());
    }
    if !config.settings.resource_from_request {
        return None;
    }
    let authority = host::request_header(":authority")?;
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    let scheme = match host::request_header("x-forwarded-proto")
        .or_else(|| host::request_header(":scheme"))
    {
        Some(s) if s == "https" => "https",
        _ => "http",
    };
    valid.then(|| format!("{scheme}://{authority}"))
}

/// Apply a final step to the request whose context is active. True when the request continues
/// down the filter chain: forwarded with its new credentials, or sent to the hold route.
pub(crate) fn apply_final(worker: &Rc<RefCell<Worker>>, context_id: u32, step: Step) -> bool {
    let config = Rc::clone(&worker.borrow().config);
    match step {
        Step::Forward(f) => {
            let tenant = &config.tenants[f.tenant];
            let mut ok = true;
            for name in &f.strip {
                ok &= host::remove_request_header(name);
            }
            ok &= host::set_request_header(&f.header, &f.value);
            if !ok {
                // Fail closed: never forward a request whose credentials were not replaced.
                warn!(
                    "#{context_id} tenant={} could not rewrite request headers",
                    tenant.id
                );
                let failure = Deny::VaultFailed(crate::callout::DependencyFailure::BadAnswer);
                send_denial(
                    &config,
                    context_id,
                    Some(f.tenant),
                    &failure,
                    Some(&f.principal),
                );
                return false;
            }
            ProxyWasmHost.count(&tenant.id, "allow");
            worker.borrow_mut().forwarded(context_id, &f);
            super::mcp::brokered(worker, context_id, &f.principal.claims.sub);
            audit(
                context_id,
                Some(tenant),
                Some(&f.principal),
                Decision::Allow,
                "ok",
            );
            true
        }
        Step::Deny {
            deny,
            tenant,
            principal,
        } => {
            if matches!(deny, Deny::ConnectRequired { .. }) {
                let p = principal.clone();
                if let Some(continues) =
                    super::mcp::unconnected(worker, &config, context_id, tenant, &deny, p)
                {
                    return continues;
                }
            }
            send_denial(
                &config,
                context_id,
                Some(tenant),
                &deny,
                principal.as_deref(),
            );
            false
        }
        Step::Wait { .. } => false,
    }
}

impl Context for Request {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        match self.connect_call.take() {
            Some((t, call)) if t == token => {
                host::act_on(self.id);
                self.connect_answered(&worker, call, body_size);
            }
            other => {
                self.connect_call = other;
                handle_response(&worker, token, body_size, self.id);
            }
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if let Some(refusal) = super::generation::refusal(self.id, self.worker.as_ref()) {
            return self.reply(&refusal);
        }
        match self.worker.clone() {
            Some(worker) => self.start(&worker, end_of_stream),
            None => self.reply(&Reply::json(
                500,
                &serde_json::json!({"error": "server_error", "error_description": "The filter is not configured."}),
            )),
        }
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        // Remember the size for the trailers callback.
        self.body_size = size;
        if let Some(worker) = &self.worker {
            if super::mcp::is_held(worker, self.id) {
                if end_of_stream || size > mcp::MAX_BODY_BYTES {
                    return go_on(super::mcp::held_body_in(worker, self.id, size));
                }
                // Keep buffering: the hold route gets nothing while this filter has the body.
                return Action::Pause;
            }
            if super::mcp::is_watched(worker, self.id) {
                if end_of_stream || size > mcp::MAX_BODY_BYTES {
                    super::mcp::watched_body_in(worker, self.id, size);
                    return Action::Continue;
                }
                // Buffer the (small) message until it is whole; it goes on unchanged.
                return Action::Pause;
            }
        }
        self.hold_while_waiting()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if let Some(worker) = &self.worker {
            if super::mcp::is_held(worker, self.id) {
                return go_on(super::mcp::held_body_in(worker, self.id, self.body_size));
            }
            if super::mcp::is_watched(worker, self.id) {
                super::mcp::watched_body_in(worker, self.id, self.body_size);
            }
        }
        self.hold_while_waiting()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(worker) = &self.worker {
            super::mcp::answered(worker, self.id);
            // Bind first: a RefMut alive in an `if let` scrutinee would make the borrow below
            // panic, and a panic traps the VM.
            let evicted = worker.borrow_mut().backend_answered(
                &ProxyWasmHost,
                self.id,
                host::response_status,
            );
            if let Some(tenant) = evicted {
                let id = &worker.borrow().config.tenants[tenant].id;
                info!(
                    "#{} tenant={id} backend refused the downstream token; evicted",
                    self.id
                );
            }
        }
        Action::Continue
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            if let Ok(mut w) = worker.try_borrow_mut() {
                w.forget(self.id);
            }
        }
    }
}
