//! The proxy-wasm implementation of [`Host`] and thin, panic-free wrappers over the host calls
//! the filter makes. Every host status is turned into a value here; nothing unwraps.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, MapType, MetricType, Status, StreamType};

use crate::abi as wire;
use tvp_core::callout::{CalloutRequest, CalloutResponse};
use tvp_core::gateway::RequestHead;
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::metrics::{Counter, Histogram};
use tvp_core::reply::Reply;

pub struct ProxyWasmHost;

impl Host for ProxyWasmHost {
    fn now_ms(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SharedWriteError::CasMismatch),
            Err(_) => Err(SharedWriteError::Refused),
        }
    }

    fn count(&self, tenant: &str, counter: Counter) {
        let metric = counter.name();
        // Counted in memory and flushed to Envoy on the root's tick: no host call per request.
        if let Some(id) = metric_id(MetricType::Counter, tenant, metric) {
            PENDING.with(|p| *p.borrow_mut().entry(id).or_default() += 1);
        }
    }

    fn record(&self, tenant: &str, histogram: Histogram, value: u64) {
        let metric = histogram.name();
        if let Some(id) = metric_id(MetricType::Histogram, tenant, metric) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn connection_id(&self) -> Option<u64> {
        connection_id()
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

/// FNV-1a: the metric maps are keyed by configured tenant ids, static metric names and
/// Envoy's metric ids, never by request data, so they need no keyed (SipHash) hashing, and
/// three lookups run on every request.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

thread_local! {
    /// Metric ids by metric then tenant, defined on first use; looked up without allocating.
    static METRICS: RefCell<FnvMap<&'static str, FnvMap<String, u32>>> = RefCell::new(FnvMap::default());
    /// Counter increments not yet handed to Envoy.
    static PENDING: RefCell<FnvMap<u32, i64>> = RefCell::new(FnvMap::default());
}

/// Hand the counted increments to Envoy (called on every tick, about once a second).
pub fn flush_metrics() {
    let pending: Vec<(u32, i64)> = PENDING.with(|p| p.borrow_mut().drain().collect());
    for (id, delta) in pending {
        let _ = hostcalls::increment_metric(id, delta);
    }
}

/// The id of `tvp.<tenant>.<metric>`, defining it on first use.
fn metric_id(kind: MetricType, tenant: &str, metric: &'static str) -> Option<u32> {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        let by_tenant = m.entry(metric).or_default();
        if let Some(id) = by_tenant.get(tenant) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, &format!("tvp.{tenant}.{metric}")).ok()?;
        by_tenant.insert(tenant.to_string(), id);
        Some(id)
    })
}

/// Send a call-out. The SDK routes the answer to the context that is active now.
pub fn dispatch(request: &CalloutRequest, timeout_ms: u64) -> Result<u32, Status> {
    let headers = request.header_pairs(":authority");
    hostcalls::dispatch_http_call(
        &request.cluster,
        headers,
        request.body.as_deref(),
        vec![],
        Duration::from_millis(timeout_ms),
    )
}

/// Read the answer of the call-out being delivered now, refusing bodies over `max_body`.
pub fn callout_response(body_size: usize, max_body: usize) -> CalloutResponse {
    let header = |name: &str| header_text(MapType::HttpCallResponseHeaders, name);
    let status = header(":status").and_then(|s| s.parse::<u16>().ok());
    let body = if body_size > max_body {
        None
    } else if body_size == 0 {
        Some(Vec::new())
    } else {
        buffer(BufferType::HttpCallResponseBody, body_size)
    };
    CalloutResponse {
        status,
        retry_after: header("retry-after"),
        rate_limit_reset: header("x-ratelimit-reset"),
        body,
    }
}

/// The request's headers in one host call (values as bytes: they need not be UTF-8); none when
/// the host cannot give them (the request then fails its checks: no token).
pub fn request_head() -> RequestHead {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes only the two out-parameters, which are live locals.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != 0 || data.is_null() {
        return RequestHead::default();
    }
    // SAFETY: on success the host hands over `size` bytes it allocated through this module's
    // own allocator (`proxy_on_memory_allocate`), as the SDK's wrapper assumes.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    RequestHead::new(wire::decode(&bytes).unwrap_or_default())
}

/// `:status` of the response being processed.
pub fn response_status() -> Option<u16> {
    header_text(MapType::HttpResponseHeaders, ":status")?
        .parse()
        .ok()
}

/// The first `size` bytes of the request body buffered so far.
pub fn request_body(size: usize) -> Vec<u8> {
    buffer(BufferType::HttpRequestBody, size).unwrap_or_default()
}

/// The first `max` bytes of a host buffer, through the raw ABI (the SDK's wrapper panics on a
/// status but Ok or NotFound). `None` when the host has none or refuses.
fn buffer(kind: BufferType, max: usize) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes only the two out-parameters, which are live locals.
    let status = unsafe { proxy_get_buffer_bytes(kind as u32, 0, max, &mut data, &mut size) };
    if status != 0 {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: as for header maps: `size` bytes from this module's allocator, handed over.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Make Envoy pick the route again after the request's path changed.
pub fn clear_route_cache() -> bool {
    hostcalls::call_foreign_function("clear_route_cache", None).is_ok()
}

/// A response header, when it is UTF-8.
pub fn response_header(name: &str) -> Option<String> {
    header_text(MapType::HttpResponseHeaders, name)
}

/// A header's value as text, read through the raw ABI: the SDK's wrapper panics (trapping the
/// VM) on any status but Ok or NotFound, and Envoy refuses reads of request headers that
/// already went on down the chain. `None` for absent, unreadable or non-UTF-8 values.
fn header_text(map: MapType, name: &str) -> Option<String> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the name pointer comes from a live slice and its exact length; the host writes
    // only the two out-parameters, which are live locals.
    let status = unsafe {
        proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    if status != 0 || data.is_null() {
        return None;
    }
    // SAFETY: on success the host hands over `size` bytes it allocated through this module's
    // own allocator (`proxy_on_memory_allocate`), as the SDK's own wrapper assumes.
    let bytes = unsafe { Vec::from_raw_parts(data, size, size) };
    String::from_utf8(bytes).ok()
}

pub fn set_response_header(name: &str, value: &str) -> bool {
    replace_header(MapType::HttpResponseHeaders, name, value)
}

pub fn remove_response_header(name: &str) -> bool {
    remove_header(MapType::HttpResponseHeaders, name)
}

pub fn remove_request_header(name: &str) -> bool {
    remove_header(MapType::HttpRequestHeaders, name)
}

pub fn set_request_header(name: &str, value: &str) -> bool {
    replace_header(MapType::HttpRequestHeaders, name, value)
}

/// Set a header through the raw ABI: the SDK's wrapper panics (trapping the VM) on any status
/// but Ok, and Envoy refuses writes to headers that already went on down the chain.
fn replace_header(map: MapType, name: &str, value: &str) -> bool {
    // SAFETY: all pointers come from live slices and their exact lengths; the host only reads.
    let status = unsafe {
        proxy_replace_header_map_value(
            map as u32,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
    status == 0
}

/// Remove a header through the raw ABI (see [`replace_header`]).
fn remove_header(map: MapType, name: &str) -> bool {
    // SAFETY: the pointer comes from a live slice and its exact length; the host only reads.
    let status = unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) };
    status == 0
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        return_value: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        return_value: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}

/// Filter state `wasm.<name>` of the active request (readable by access logs). Called through
/// the raw ABI: the SDK's wrapper panics (trapping the VM) on any status but Ok, and Envoy
/// refuses a second write of the same read-only state.
pub fn set_filter_state(name: &str, value: &str) -> bool {
    // SAFETY: both pointers come from live slices and their exact lengths; the host only reads.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == 0
}

/// A property of the active context (`path` segments), through the raw ABI (the SDK's wrapper
/// panics on an unexpected status). `None` when absent or refused.
fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = path.join("\0");
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the path pointer comes from a live string and its exact length; the host writes
    // only the two out-parameters, which are live locals.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    if status != 0 || data.is_null() {
        return None;
    }
    // SAFETY: as for header maps: `size` bytes from this module's allocator, handed over.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

/// Envoy's id of the active request's downstream connection (`connection.id`): ids grow in
/// the order Envoy accepts connections.
pub fn connection_id() -> Option<u64> {
    let bytes = property(&["connection", "id"])?;
    Some(u64::from_le_bytes(bytes.as_slice().try_into().ok()?))
}

/// The plugin's name in Envoy's configuration (`plugin_name`).
pub fn plugin_name() -> Option<String> {
    String::from_utf8(property(&["plugin_name"])?).ok()
}

/// Answer the active request, through the raw ABI (the SDK's wrapper panics, trapping the VM,
/// when the host refuses, e.g. for a request already answered or gone).
pub fn send_reply(reply: &Reply) -> bool {
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(n, v)| (*n, v.as_str()))
        .collect();
    let headers = wire::encode(&headers);
    // SAFETY: every pointer comes from a live slice with its exact length; the host only reads.
    let status = unsafe {
        proxy_send_local_response(
            reply.status,
            std::ptr::null(),
            0,
            reply.body.as_ptr(),
            reply.body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    };
    status == 0
}

/// Let the active request go on, through the raw ABI (see [`send_reply`]).
pub fn resume_request() -> bool {
    // SAFETY: no pointers; the stream type is the ABI's HttpRequest (0).
    let status = unsafe { proxy_continue_stream(StreamType::HttpRequest as u32) };
    status == 0
}

/// Make later host calls act on `context_id`'s request; false if it is gone.
pub fn act_on(context_id: u32) -> bool {
    hostcalls::set_effective_context(context_id).is_ok()
}

pub fn set_tick_period(ms: u64) -> bool {
    hostcalls::set_tick_period(Duration::from_millis(ms)).is_ok()
}

/// Envoy's `verify_signature` foreign function: `None` if the host lacks it or failed.
pub fn verify_signature(arguments: &[u8]) -> Option<Vec<u8>> {
    hostcalls::call_foreign_function("verify_signature", Some(arguments))
        .ok()
        .flatten()
}

/// Envoy's `sign` foreign function: `None` if the host lacks it or failed.
pub fn sign(arguments: &[u8]) -> Option<Vec<u8>> {
    hostcalls::call_foreign_function("sign", Some(arguments))
        .ok()
        .flatten()
}

/// Log only what Envoy will print: skipping formatting and a host call per request when the
/// wasm log level is above `info`. Re-read on every tick, as `/logging` can change it.
pub fn follow_host_log_level() {
    if let Ok(level) = hostcalls::get_log_level() {
        proxy_wasm::set_log_level(level);
    }
}

pub fn plugin_configuration() -> Vec<u8> {
    buffer(BufferType::PluginConfiguration, usize::MAX).unwrap_or_default()
}
