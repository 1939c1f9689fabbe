//! The proxy-wasm implementation of [`Host`] and thin, panic-free wrappers over the host calls
//! the filter makes, one module per part of the host. Every host status is turned into a
//! value here; nothing unwraps.
//!
//! The SDK's own wrappers (`proxy_wasm::hostcalls`) panic, trapping the VM, on any status they
//! do not expect, so each call is made through the raw ABI ([`raw`]) instead. The one
//! exception is `dispatch_http_call`: the SDK must record the call-out's token to deliver its
//! answer to this context, and its wrapper panics only on a status other than Ok, BadArgument
//! or InternalFailure, which the host returns only for memory outside the module
//! (InvalidMemoryAccess, in proxy-wasm-cpp-host's `http_call`). `clippy.toml` refuses the
//! others.

mod context;
mod logging;
mod metrics;
mod queue;
mod raw;
mod shared;
mod stream;

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;

use tvp_core::callout::CalloutRequest;
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::metrics::{Counter, Histogram};

pub use context::{
    act_on, clear_route_cache, plugin_name, set_tick_period, sign, verify_signature, vm_id,
};
pub use logging::{follow_host_log_level, install_logger, write_log};
pub use metrics::flush_metrics;
pub use queue::{dequeue, enqueue, register_queue};
pub use stream::{
    callout_response, plugin_configuration, remove_request_header, remove_response_header,
    request_body, request_head, response_header, response_status, resume_request, send_reply,
    set_filter_state, set_request_header, set_response_header,
};

pub struct ProxyWasmHost;

impl Host for ProxyWasmHost {
    fn now_ms(&self) -> u64 {
        context::now_ms()
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        shared::get(key)
    }

    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        shared::set(key, value, cas)?;
        if tvp_core::wake_list::is_watched(key) {
            // Requests of other workers wait for this record: wake them.
            crate::wake::written(self, key);
        }
        Ok(())
    }

    fn count(&self, tenant: &str, counter: Counter) {
        metrics::count(tenant, counter.name());
    }

    fn record(&self, tenant: &str, histogram: Histogram, value: u64) {
        metrics::record(tenant, histogram.name(), value);
    }

    fn connection_id(&self) -> Option<u64> {
        context::connection_id()
    }

    fn dispatch(&self, owner: u32, request: &CalloutRequest, timeout_ms: u64) -> Option<u32> {
        // Envoy ties a call-out to the effective context; the SDK delivers the answer there.
        act_on(owner);
        match dispatch(request, timeout_ms) {
            Ok(token) => Some(token),
            Err(status) => {
                log::warn!(
                    "call-out to cluster '{}' refused: {status:?}",
                    request.cluster
                );
                None
            }
        }
    }
}

/// Send a call-out. The SDK routes the answer to the context that is active now.
fn dispatch(request: &CalloutRequest, timeout_ms: u64) -> Result<u32, Status> {
    let headers = request.header_pairs(":authority");
    hostcalls::dispatch_http_call(
        &request.cluster,
        headers,
        request.body.as_deref(),
        vec![],
        Duration::from_millis(timeout_ms),
    )
}
