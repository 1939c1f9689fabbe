//! The proxy-wasm implementation of [`Host`] and thin, panic-free wrappers over the host calls
//! the filter makes. Every host status is turned into a value here; nothing unwraps.
//!
//! The SDK's own wrappers (`proxy_wasm::hostcalls`) panic, trapping the VM, on any status they
//! do not expect, so each call is made through the raw ABI instead. The one exception is
//! `dispatch_http_call`: the SDK must record the call-out's token to deliver its answer to this
//! context, and its wrapper panics only on a status other than Ok, BadArgument or
//! InternalFailure, which the host returns only for memory outside the module
//! (InvalidMemoryAccess, in proxy-wasm-cpp-host's `http_call`). `clippy.toml` refuses the others.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

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
        let mut nanos: u64 = 0;
        // SAFETY: the host writes only the out-parameter, a live local.
        let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
        // A clock the host will not give reads as the far future: every lifetime (tokens,
        // cached answers, sealed links) is then over, so every check fails closed.
        if status == OK {
            nanos / 1_000_000
        } else {
            u64::MAX
        }
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        let mut cas: u32 = 0;
        // SAFETY: the key pointer comes from a live string and its exact length; the host
        // writes only the three out-parameters, which are live locals.
        let status = unsafe {
            proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas)
        };
        if status != OK {
            return (None, None);
        }
        let cas = (cas != 0).then_some(cas);
        if data.is_null() {
            return (None, cas);
        }
        // SAFETY: on success the host hands over `size` bytes it allocated through this
        // module's own allocator (`proxy_on_memory_allocate`), as the SDK's wrapper assumes.
        (Some(unsafe { Vec::from_raw_parts(data, size, size) }), cas)
    }

    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        // SAFETY: both pointers come from live slices and their exact lengths; the host only
        // reads.
        let status = unsafe {
            proxy_set_shared_data(
                key.as_ptr(),
                key.len(),
                value.as_ptr(),
                value.len(),
                cas.unwrap_or(0),
            )
        };
        match status {
            OK => {
                if tvp_core::wake_list::is_watched(key) {
                    // Requests of other workers wait for this record: wake them.
                    crate::wake::written(self, key);
                }
                Ok(())
            }
            s if s == Status::CasMismatch as u32 => Err(SharedWriteError::CasMismatch),
            _ => Err(SharedWriteError::Refused),
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
            // SAFETY: no pointers. A refused value is a lost sample, never a trap.
            unsafe { proxy_record_metric(id, value) };
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
        // SAFETY: no pointers. A refused increment is a lost count, never a trap.
        unsafe { proxy_increment_metric(id, delta) };
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
        let name = format!("tvp.{tenant}.{metric}");
        let mut id: u32 = 0;
        // SAFETY: the name pointer comes from a live string and its exact length; the host
        // writes only the out-parameter, a live local.
        let status =
            unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) };
        if status != OK {
            return None;
        }
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
    foreign_function("clear_route_cache", &[]).is_ok()
}

/// Call one of Envoy's foreign functions through the raw ABI: its result (`None`: none), or
/// the host's status when it lacks the function or it failed.
fn foreign_function(name: &str, arguments: &[u8]) -> Result<Option<Vec<u8>>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: both input pointers come from live slices and their exact lengths; the host
    // writes only the two out-parameters, which are live locals.
    let status = unsafe {
        proxy_call_foreign_function(
            name.as_ptr(),
            name.len(),
            arguments.as_ptr(),
            arguments.len(),
            &mut data,
            &mut size,
        )
    };
    if status != OK {
        return Err(status);
    }
    if data.is_null() {
        return Ok(None);
    }
    // SAFETY: as for header maps: `size` bytes from this module's allocator, handed over.
    Ok(Some(unsafe { Vec::from_raw_parts(data, size, size) }))
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

/// The ABI's `Ok` status.
const OK: u32 = Status::Ok as u32;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
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
/// panics on an unexpected status). `None` when absent or refused; empty when empty.
fn property(path: &[&str]) -> Option<Vec<u8>> {
    let path = path.join("\0");
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the path pointer comes from a live string and its exact length; the host writes
    // only the two out-parameters, which are live locals.
    let status = unsafe { proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) };
    if status != OK {
        return None;
    }
    if data.is_null() {
        // Present but empty (a blank `vm_id`, for one).
        return Some(Vec::new());
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

/// The id of the VM running this plugin (`plugin_vm_id`): shared queues are named within it.
pub fn vm_id() -> Option<String> {
    String::from_utf8(property(&["plugin_vm_id"])?).ok()
}

/// Register a shared queue of this VM, delivered to the active root context's
/// `on_queue_ready` on this worker's thread: its id.
pub fn register_queue(name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    // SAFETY: the name pointer comes from a live string and its exact length; the host writes
    // only the out-parameter, a live local.
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

/// Put `message` on the queue `name` of VM `vm_id` (another worker's): false if there is no
/// such queue or the host refused.
pub fn enqueue(vm_id: &str, name: &str, message: &[u8]) -> bool {
    let mut id: u32 = 0;
    // SAFETY: both pointers come from live strings and their exact lengths; the host writes
    // only the out-parameter, a live local.
    let status = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    if status != OK {
        return false;
    }
    // SAFETY: the pointer comes from a live slice and its exact length; the host only reads.
    unsafe { proxy_enqueue_shared_queue(id, message.as_ptr(), message.len()) == OK }
}

/// Take the next message off this VM's queue `id`; `None` when it is empty (or refused).
pub fn dequeue(id: u32) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes only the two out-parameters, which are live locals.
    let status = unsafe { proxy_dequeue_shared_queue(id, &mut data, &mut size) };
    if status != OK {
        return None;
    }
    if data.is_null() {
        return Some(Vec::new());
    }
    // SAFETY: as for header maps: `size` bytes from this module's allocator, handed over.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
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
    // SAFETY: no pointers.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

pub fn set_tick_period(ms: u64) -> bool {
    let ms = u32::try_from(ms).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    unsafe { proxy_set_tick_period_milliseconds(ms) == OK }
}

/// Envoy's `verify_signature` foreign function: `None` if the host lacks it or failed.
pub fn verify_signature(arguments: &[u8]) -> Option<Vec<u8>> {
    foreign_function("verify_signature", arguments)
        .ok()
        .flatten()
}

/// Envoy's `sign` foreign function: `None` if the host lacks it or failed.
pub fn sign(arguments: &[u8]) -> Option<Vec<u8>> {
    foreign_function("sign", arguments).ok().flatten()
}

/// Log only what Envoy will print: skipping formatting and a host call per request when the
/// wasm log level is above `info`. Re-read on every tick, as `/logging` can change it.
pub fn follow_host_log_level() {
    let mut level: u32 = 0;
    // SAFETY: the host writes only the out-parameter, a live local (a plain integer: a
    // level the host adds later cannot be an invalid enum value here).
    if unsafe { proxy_get_log_level(&mut level) } == OK {
        log::set_max_level(log_filter(level));
    }
}

/// The `log` crate's filter for a proxy-wasm log level (trace 0 .. critical 5).
fn log_filter(level: u32) -> log::LevelFilter {
    match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    }
}

/// The `log` crate's records, written to Envoy's log through the raw ABI (the SDK's logger
/// unwraps the host's status, trapping the VM on a refusal).
struct HostLogger;

static LOGGER: HostLogger = HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        write_log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Install [`HostLogger`] (everything passes until the first tick reads Envoy's level).
pub fn install_logger() {
    // Err only if a logger is already installed: then that one stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
}

/// One line in Envoy's log at a proxy-wasm level; a refusal loses the line, never traps.
pub fn write_log(level: u32, message: &str) {
    // SAFETY: the pointer comes from a live string and its exact length; the host only reads.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

pub fn plugin_configuration() -> Vec<u8> {
    buffer(BufferType::PluginConfiguration, usize::MAX).unwrap_or_default()
}
