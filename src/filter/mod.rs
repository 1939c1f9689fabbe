//! proxy-wasm glue: the root context (configuration, background key refresh) and the HTTP
//! context (one per request). They share one [`Worker`] per VM.

mod connect_pages;
mod http;
mod mcp;

use std::cell::RefCell;
use std::rc::Rc;

use log::{error, info, warn};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config;
use crate::crypto::signing::NativeSigner;
use crate::crypto::{NativeVerifier, PureRustVerifier, SignatureVerifier};
use crate::flow::{Resolution, Step, Worker};
use crate::host::{self, ProxyWasmHost};

/// How often the root context refreshes keys and re-sends orphaned call-outs.
const TICK_MS: u64 = 1_000;
const FIRST_TICK_MS: u64 = 50;

pub struct Root {
    context_id: u32,
    worker: Option<Rc<RefCell<Worker>>>,
    ticks: u32,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            worker: None,
            ticks: 0,
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        if let Some(worker) = &self.worker {
            handle_response(worker, token, body_size, self.context_id);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        host::follow_host_log_level();
        let bytes = host::plugin_configuration();
        match config::parse(&bytes, &config::process_env) {
            Ok(cfg) => {
                let host_signs = NativeSigner::host_works(&host::sign);
                if let Some(t) = cfg.unsignable_tenant(host_signs) {
                    let index = cfg.tenants.iter().position(|c| c.id == t.id).unwrap_or(0);
                    let e = config::ConfigError::in_tenant(
                        index,
                        &t.id,
                        "vault.private_key_env",
                        "an RSA key needs Envoy's sign function, which this host lacks; use a P-256 key",
                    );
                    error!("{e}");
                    return false;
                }
                info!(
                    "configured {} tenant(s); client assertions signed {}",
                    cfg.tenants.len(),
                    if host_signs {
                        "by the host"
                    } else {
                        "in pure Rust"
                    }
                );
                let worker = Worker::new(Rc::new(cfg), verifier())
                    .with_signer(Box::new(NativeSigner::new(Box::new(host::sign))));
                self.worker = Some(Rc::new(RefCell::new(worker)));
                // Clusters cannot be called yet during configuration: fetch keys on an early
                // first tick, then settle to the normal period.
                self.ticks = 0;
                host::set_tick_period(FIRST_TICK_MS);
                true
            }
            Err(errors) => {
                // One line per problem: Envoy's log shows them all, not only the first.
                for e in &errors {
                    error!("{e}");
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(worker) = &self.worker else { return };
        if self.ticks == 0 {
            host::set_tick_period(TICK_MS);
        }
        self.ticks = self.ticks.saturating_add(1);
        host::follow_host_log_level();
        host::flush_metrics();
        let due = worker.borrow_mut().refresh_due(&ProxyWasmHost);
        for (flight, request) in due {
            send(worker, &flight, &request, self.context_id);
        }
        dispatch_orphans(worker, self.context_id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let worker = self.worker.as_ref().map(Rc::clone);
        Some(Box::new(http::Request::new(context_id, worker)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// BoringSSL through the host when it verifies correctly (ten times faster than RSA in wasm),
/// pure Rust otherwise.
fn verifier() -> Box<dyn SignatureVerifier> {
    if NativeVerifier::host_works(&host::verify_signature) {
        info!(
            "signature verification: host-native (Envoy verify_signature), pure Rust for PS*/EdDSA"
        );
        Box::new(NativeVerifier::new(Box::new(host::verify_signature)))
    } else {
        info!("signature verification: pure Rust (the host has no working verify_signature)");
        Box::new(PureRustVerifier)
    }
}

/// Dispatch one flight's call-out as `owner` (the context whose callback is running: the SDK
/// delivers the answer to it), or fail the flight at once.
fn send(
    worker: &Rc<RefCell<Worker>>,
    flight: &str,
    request: &crate::callout::CalloutRequest,
    owner: u32,
) {
    let timeout = worker.borrow().config.settings.callout_timeout_ms;
    // Envoy ties a call-out to the effective context; keep it the SDK's owner.
    host::act_on(owner);
    match host::dispatch(request, timeout) {
        Ok(token) => {
            let now = crate::flow::Host::now_ms(&ProxyWasmHost);
            worker.borrow_mut().dispatched(flight, token, owner, now);
        }
        Err(status) => {
            warn!(
                "token-vault-proxy: call-out to cluster '{}' failed to start: {status:?}",
                request.cluster
            );
            let resolved = worker.borrow_mut().dispatch_failed(&ProxyWasmHost, flight);
            apply_all(worker, resolved, owner);
        }
    }
}

fn dispatch_orphans(worker: &Rc<RefCell<Worker>>, owner: u32) {
    let now = crate::flow::Host::now_ms(&ProxyWasmHost);
    let orphans = worker.borrow_mut().take_orphans(now);
    for (flight, request) in orphans {
        send(worker, &flight, &request, owner);
    }
}

/// A call-out answered (to whichever context sent it): finish every request it decides.
pub(crate) fn handle_response(
    worker: &Rc<RefCell<Worker>>,
    token: u32,
    body_size: usize,
    current: u32,
) {
    let max = worker.borrow().config.settings.max_callout_response_bytes;
    let response = host::callout_response(body_size, max);
    let resolved = worker
        .borrow_mut()
        .on_response(&ProxyWasmHost, token, &response);
    apply_all(worker, resolved, current);
    dispatch_orphans(worker, current);
    host::act_on(current);
}

/// Finish requests decided by a call-out; each is acted on in its own context.
fn apply_all(worker: &Rc<RefCell<Worker>>, resolved: Vec<Resolution>, current: u32) {
    for (context_id, step) in resolved {
        match step {
            Step::Wait {
                flight,
                start: Some(request),
            } => send(worker, &flight, &request, current),
            Step::Wait { start: None, .. } => {}
            done => {
                if !host::act_on(context_id) {
                    worker.borrow_mut().forget(context_id);
                    continue;
                }
                if http::apply_final(worker, context_id, done) {
                    worker.borrow_mut().resumed(context_id);
                    host::resume_request();
                }
            }
        }
    }
}
