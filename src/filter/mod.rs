//! proxy-wasm glue: the root context (configuration, ticks) and one HTTP context per request.
//! Each reads its event from the host once, hands it to the core's [`Gateway`] and applies the
//! outcomes it returns ([`apply`]). Nothing here decides.

mod apply;
mod request;

use std::cell::RefCell;
use std::rc::Rc;

use log::{error, info};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::host::{self, ProxyWasmHost};
use crate::wake;
use tvp_core::config;
use tvp_core::crypto::signing::NativeSigner;
use tvp_core::crypto::{NativeVerifier, PureRustVerifier, SignatureVerifier};
use tvp_core::flow::Worker;
use tvp_core::gateway::Gateway;
use tvp_core::generation::Generation;
use tvp_core::host::Host;

/// How often the root context refreshes keys and re-sends orphaned call-outs.
const TICK_MS: u64 = 1_000;
const FIRST_TICK_MS: u64 = 50;

/// One plugin configuration on this worker: its gateway and the queue other workers wake its
/// requests through.
pub struct Plugin {
    pub gateway: RefCell<Gateway>,
    /// Present when this worker shares vault exchanges with the others.
    pub wake: Option<wake::Queue>,
}

pub type Shared = Rc<Plugin>;

pub struct Root {
    context_id: u32,
    plugin: Option<Shared>,
    ticks: u32,
}

impl Root {
    pub fn new(context_id: u32) -> Self {
        Root {
            context_id,
            plugin: None,
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
        if let Some(plugin) = &self.plugin {
            apply::callout_answered(plugin, token, body_size, self.context_id);
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
                let mut worker = Worker::new(Rc::new(cfg), verifier())
                    .with_signer(Box::new(NativeSigner::new(Box::new(host::sign))));
                // Another worker's request waiting for this worker's exchange (or the other
                // way round) is woken through shared queues; without one, exchanges stay
                // single flight per worker.
                let wake = wake::Queue::register();
                if wake.is_some() {
                    worker = worker.with_shared_flights();
                }
                // Claimed (or adopted) on the first tick or request, not here: Envoy's
                // configuration canary runs this too, for pushes it may still refuse.
                let name = host::plugin_name().unwrap_or_default();
                let gateway = Gateway::new(worker).with_generation(Generation::new(&name, &bytes));
                self.plugin = Some(Rc::new(Plugin {
                    gateway: RefCell::new(gateway),
                    wake,
                }));
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
        let Some(plugin) = &self.plugin else { return };
        if self.ticks == 0 {
            host::set_tick_period(TICK_MS);
        }
        self.ticks = self.ticks.saturating_add(1);
        host::follow_host_log_level();
        host::flush_metrics();
        let resolved = plugin
            .gateway
            .borrow_mut()
            .on_tick(&ProxyWasmHost, self.context_id);
        apply::resolved(plugin, resolved, self.context_id);
        // A request waiting for another worker whose wake-up never came goes on at its
        // deadline (the core takes the exchange over).
        if let Some(queue) = &plugin.wake {
            let now = ProxyWasmHost.now_ms();
            queue.keep_alive(now);
            if queue.deadline_passed(now) {
                self.woken(plugin);
            }
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(plugin) = &self.plugin else { return };
        let Some(queue) = plugin.wake.as_ref().filter(|q| q.id() == queue_id) else {
            return;
        };
        // One poll answers every message: each only says "look again".
        if queue.drain() > 0 {
            self.woken(plugin);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let plugin = self.plugin.as_ref().map(Rc::clone);
        Some(Box::new(request::Request::new(context_id, plugin)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

impl Root {
    /// Requests waiting for another worker may go on: the core decides, sends or keeps each
    /// waiting, acting on each request in its own context.
    fn woken(&self, plugin: &Shared) {
        let resolved = plugin
            .gateway
            .borrow_mut()
            .on_wake(&ProxyWasmHost, self.context_id);
        apply::resolved(plugin, resolved, self.context_id);
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
