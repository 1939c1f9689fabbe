//! Envoy's dynamic-module ABI (v0.2.0, Envoy 1.40): the C types, the callbacks this module
//! calls, and the hooks Envoy calls. Every `unsafe` block of the crate is here; everything
//! outside sees safe handles ([`Stream`], [`ConfigHandle`]) and byte slices.
//!
//! Written by hand from `source/extensions/dynamic_modules/abi/abi.h` (the official Rust SDK
//! is a git dependency pinned to an Envoy tag; this project builds from crates.io only). Only
//! callbacks the 1.40 binary exports are bound: binding any other makes `dlopen` fail.
//!
//! Every hook runs its body under `catch_unwind`: a panic never unwinds into Envoy, and the
//! request it happened in is answered 500 and never forwarded.

use std::ffi::c_void;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::filter::{self, BodyStatus, HeadersStatus, StreamState};

/// Bytes Envoy owns (valid until the hook returns).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    ptr: *const c_char,
    length: usize,
}

/// Bytes this module owns (Envoy reads them during the call only).
#[repr(C)]
#[derive(Clone, Copy)]
struct ModuleBuffer {
    ptr: *const c_char,
    length: usize,
}

impl ModuleBuffer {
    fn of(bytes: &[u8]) -> Self {
        ModuleBuffer {
            ptr: bytes.as_ptr().cast(),
            length: bytes.len(),
        }
    }

    fn null() -> Self {
        ModuleBuffer {
            ptr: std::ptr::null(),
            length: 0,
        }
    }
}

#[repr(C)]
struct ModuleHttpHeader {
    key: ModuleBuffer,
    value: ModuleBuffer,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    key: EnvoyBuffer,
    value: EnvoyBuffer,
}

const EMPTY_ENVOY_BUFFER: EnvoyBuffer = EnvoyBuffer {
    ptr: std::ptr::null(),
    length: 0,
};

/// `envoy_dynamic_module_type_http_header_type`.
const REQUEST_HEADER: u32 = 0;
const RESPONSE_HEADER: u32 = 2;
/// `envoy_dynamic_module_type_http_body_type`.
const RECEIVED_REQUEST_BODY: u32 = 0;
const BUFFERED_REQUEST_BODY: u32 = 1;
/// `envoy_dynamic_module_type_attribute_id::ConnectionId`.
const ATTRIBUTE_CONNECTION_ID: u32 = 28;
/// `envoy_dynamic_module_type_http_callout_init_result::Success`, `..._result::Success`,
/// `envoy_dynamic_module_type_metrics_result::Success`.
const SUCCESS: u32 = 0;

/// The slice behind an Envoy buffer; empty for `{NULL, 0}`.
///
/// SAFETY (for callers): `ptr` must point to `length` readable bytes that stay valid for `'a`
/// (Envoy's buffers are valid until the current hook returns), or be null.
unsafe fn envoy_bytes<'a>(ptr: *const c_char, length: usize) -> &'a [u8] {
    if ptr.is_null() || length == 0 {
        return &[];
    }
    // SAFETY: non-null, and the caller vouches for `length` readable bytes for `'a`.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), length) }
}

extern "C" {
    fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;
    fn envoy_dynamic_module_callback_log_v2(
        level: u32,
        message: ModuleBuffer,
        source_file: ModuleBuffer,
        source_line: u32,
    );
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: *mut c_void, kind: u32)
        -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: *mut c_void,
        kind: u32,
        result: *mut EnvoyHttpHeader,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_header(
        filter: *mut c_void,
        kind: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: *mut c_void,
        kind: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: *mut c_void,
        status: u32,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_get_body_size(filter: *mut c_void, kind: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: *mut c_void,
        kind: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: *mut c_void,
        kind: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_received_buffered_request_body(
        filter: *mut c_void,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: *mut c_void);
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: *mut c_void,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: *mut c_void,
        id: u32,
        result: *mut u64,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        config: *mut c_void,
        name: ModuleBuffer,
        label_names: *mut ModuleBuffer,
        label_names_length: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        config: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: *mut c_void,
        callout_id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: *mut c_void,
    ) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_scheduler_new(filter: *mut c_void) -> *mut c_void;
    fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: *mut c_void,
        event_id: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: *mut c_void);
    fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_record_histogram_value(
        filter: *mut c_void,
        id: usize,
        label_values: *mut ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;
}

/// Envoy's log levels (`envoy_dynamic_module_type_log_level`).
#[derive(Clone, Copy)]
pub enum LogLevel {
    Trace = 0,
    Debug = 1,
    Info = 2,
    Warn = 3,
    Error = 4,
}

pub fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: no pointers; callable from any thread.
    unsafe { envoy_dynamic_module_callback_log_enabled(level as u32) }
}

pub fn log(level: LogLevel, message: &str, file: &str, line: u32) {
    // SAFETY: both buffers point into live strings with their exact lengths; Envoy only
    // reads them during the call.
    unsafe {
        envoy_dynamic_module_callback_log_v2(
            level as u32,
            ModuleBuffer::of(message.as_bytes()),
            ModuleBuffer::of(file.as_bytes()),
            line,
        )
    }
}

/// Envoy's side of one filter configuration (`filter_config_envoy_ptr`): valid from
/// `config_new` until `config_destroy`, used only on the main thread (where Envoy calls every
/// configuration hook).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ConfigHandle(*mut c_void);

impl ConfigHandle {
    /// Define a counter (`<metrics_namespace>.<name>`); only during `config_new`.
    pub fn define_counter(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: the config pointer is Envoy's and live during config_new; the name buffer
        // points into a live string; `id` is a live local Envoy writes once.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_counter(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == SUCCESS).then_some(id)
    }

    /// Define a histogram; only during `config_new`.
    pub fn define_histogram(self, name: &str) -> Option<usize> {
        let mut id = 0usize;
        // SAFETY: as in `define_counter`.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_define_histogram(
                self.0,
                ModuleBuffer::of(name.as_bytes()),
                std::ptr::null_mut(),
                0,
                &mut id,
            )
        };
        (result == SUCCESS).then_some(id)
    }

    pub fn increment_counter(self, id: usize, value: u64) {
        // SAFETY: a live config pointer on the main thread; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        // SAFETY: a live config pointer on the main thread; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }

    /// Start a call-out from the configuration (answered in `config_http_callout_done` on
    /// the main thread); Envoy's id for it, or `None` when refused.
    pub fn callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: a live config pointer on the main thread; every buffer points into live
        // data for the call (Envoy copies the request); `id` is a live local Envoy writes.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_config_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        (result == SUCCESS).then_some(id)
    }

    /// A scheduler that runs `config_scheduled` on the main thread when committed.
    pub fn scheduler(self) -> Option<ConfigScheduler> {
        // SAFETY: a live config pointer on the main thread.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(ConfigScheduler(ptr))
    }
}

/// A configuration's scheduler: committed from a timer thread, deleted with the
/// configuration's background part (after that thread is joined).
pub struct ConfigScheduler(*mut c_void);

// SAFETY: Envoy documents `scheduler_commit` as safe to call from any thread; the pointer is
// only deleted in `Drop`, which needs the value itself.
unsafe impl Send for ConfigScheduler {}
// SAFETY: as above; `commit` takes `&self` and Envoy synchronises commits itself.
unsafe impl Sync for ConfigScheduler {}

impl ConfigScheduler {
    /// Have Envoy run `config_scheduled(event_id)` on the main thread.
    pub fn commit(&self, event_id: u64) {
        // SAFETY: a live scheduler (deleted only in Drop); callable from any thread.
        unsafe {
            envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event_id)
        }
    }
}

impl Drop for ConfigScheduler {
    fn drop(&mut self) {
        // SAFETY: created by scheduler_new, deleted once here, after every committer stopped.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// A stream's scheduler: committed from any thread, it runs the stream's `scheduled` hook on
/// the stream's own worker. Owned by the stream's registry entry and deleted with it.
pub struct StreamScheduler(*mut c_void);

/// A handle that commits a [`StreamScheduler`]: valid while the scheduler is, which the
/// wake-up table guarantees by dropping a stream's handles before its scheduler.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Waker(*mut c_void);

// SAFETY: Envoy documents the filter scheduler's `commit` as safe to call from any thread
// (a no-op once the filter is destroyed); a `Waker` only ever commits.
unsafe impl Send for Waker {}
// SAFETY: as above; committing takes `&self` and Envoy synchronises commits itself.
unsafe impl Sync for Waker {}

impl Waker {
    /// Have Envoy run the stream's `scheduled` hook on its worker.
    pub fn wake(self) {
        // SAFETY: the scheduler is live (see the type's invariant); callable from any thread.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_commit(self.0, 0) }
    }
}

impl StreamScheduler {
    pub fn waker(&self) -> Waker {
        Waker(self.0)
    }
}

impl Drop for StreamScheduler {
    fn drop(&mut self) {
        // SAFETY: created by scheduler_new, deleted once here, on the stream's worker, after
        // the wake-up table dropped every `Waker` of it.
        unsafe { envoy_dynamic_module_callback_http_filter_scheduler_delete(self.0) }
    }
}

fn module_headers(headers: &[(&str, &str)]) -> Vec<ModuleHttpHeader> {
    headers
        .iter()
        .map(|(k, v)| ModuleHttpHeader {
            key: ModuleBuffer::of(k.as_bytes()),
            value: ModuleBuffer::of(v.as_bytes()),
        })
        .collect()
}

/// Envoy's side of one HTTP stream (`filter_envoy_ptr`). Valid from `http_filter_new` until
/// `http_filter_destroy`, and only on the worker thread that created it: the filter keeps
/// it in a thread-local registry and drops it at destroy.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stream(*mut c_void);

impl Stream {
    /// Every request header (name, value bytes), in order.
    pub fn request_headers(self) -> Vec<(String, Vec<u8>)> {
        // SAFETY: a live stream pointer on its own worker (see the type's invariant).
        let n =
            unsafe { envoy_dynamic_module_callback_http_get_headers_size(self.0, REQUEST_HEADER) };
        let mut raw = vec![
            EnvoyHttpHeader {
                key: EMPTY_ENVOY_BUFFER,
                value: EMPTY_ENVOY_BUFFER,
            };
            n
        ];
        // SAFETY: `raw` has room for the `n` entries Envoy writes.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_get_headers(self.0, REQUEST_HEADER, raw.as_mut_ptr())
        };
        if !ok {
            return Vec::new();
        }
        raw.iter()
            .map(|h| {
                // SAFETY: Envoy's header buffers stay valid until this hook returns; both are
                // copied here.
                let (k, v) = unsafe {
                    (
                        envoy_bytes(h.key.ptr, h.key.length),
                        envoy_bytes(h.value.ptr, h.value.length),
                    )
                };
                (String::from_utf8_lossy(k).to_ascii_lowercase(), v.to_vec())
            })
            .collect()
    }

    /// The first value of response header `name`, as text.
    pub fn response_header(self, name: &str) -> Option<String> {
        let mut out = EMPTY_ENVOY_BUFFER;
        let mut count = 0usize;
        // SAFETY: a live stream pointer; the key points into a live string; `out` and `count`
        // are live locals Envoy writes.
        let found = unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                RESPONSE_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                &mut out,
                0,
                &mut count,
            )
        };
        if !found || count == 0 {
            return None;
        }
        // SAFETY: Envoy's buffer is valid until this hook returns; copied here.
        let bytes = unsafe { envoy_bytes(out.ptr, out.length) };
        std::str::from_utf8(bytes).ok().map(str::to_string)
    }

    fn set_header(self, kind: u32, name: &str, value: Option<&str>) -> bool {
        let value = value.map_or(ModuleBuffer::null(), |v| ModuleBuffer::of(v.as_bytes()));
        // SAFETY: a live stream pointer; both buffers point into live strings (or null, which
        // removes the header); Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                kind,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    pub fn set_request_header(self, name: &str, value: &str) -> bool {
        self.set_header(REQUEST_HEADER, name, Some(value))
    }

    pub fn remove_request_header(self, name: &str) -> bool {
        self.set_header(REQUEST_HEADER, name, None)
    }

    pub fn set_response_header(self, name: &str, value: &str) -> bool {
        self.set_header(RESPONSE_HEADER, name, Some(value))
    }

    pub fn remove_response_header(self, name: &str) -> bool {
        self.set_header(RESPONSE_HEADER, name, None)
    }

    /// Answer the request locally.
    pub fn send_response(self, status: u16, headers: &[(&str, &str)], body: &[u8]) {
        let mut raw = module_headers(headers);
        let details = b"token_vault_proxy";
        // SAFETY: a live stream pointer; every buffer points into live data for the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                u32::from(status),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details),
            )
        }
    }

    /// The request body's parts so far: what is buffered, then what this event received. When
    /// Envoy hands the buffered body itself to this event (a request resumed after its
    /// headers waited), the two are one buffer, counted once.
    fn request_body_kinds(self) -> &'static [u32] {
        // SAFETY: a live stream pointer on its own worker.
        let one_buffer =
            unsafe { envoy_dynamic_module_callback_http_received_buffered_request_body(self.0) };
        if one_buffer {
            &[RECEIVED_REQUEST_BODY]
        } else {
            &[BUFFERED_REQUEST_BODY, RECEIVED_REQUEST_BODY]
        }
    }

    /// The size of the request body so far, without reading it.
    pub fn request_body_size(self) -> usize {
        self.request_body_kinds()
            .iter()
            // SAFETY: a live stream pointer on its own worker.
            .map(|&kind| unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, kind) })
            .sum()
    }

    /// The request body so far (see [`Stream::request_body_kinds`]).
    pub fn request_body(self) -> Vec<u8> {
        let mut body = Vec::new();
        for &kind in self.request_body_kinds() {
            // SAFETY: a live stream pointer.
            let n =
                unsafe { envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, kind) };
            if n == 0 {
                continue;
            }
            let mut chunks = vec![EMPTY_ENVOY_BUFFER; n];
            // SAFETY: `chunks` has room for the `n` entries Envoy writes.
            let ok = unsafe {
                envoy_dynamic_module_callback_http_get_body_chunks(
                    self.0,
                    kind,
                    chunks.as_mut_ptr(),
                )
            };
            if !ok {
                continue;
            }
            for c in &chunks {
                // SAFETY: chunk buffers are valid until this hook returns; copied here.
                body.extend_from_slice(unsafe { envoy_bytes(c.ptr, c.length) });
            }
        }
        body
    }

    /// A scheduler for this stream (see [`StreamScheduler`]).
    pub fn scheduler(self) -> Option<StreamScheduler> {
        // SAFETY: a live stream pointer on its own worker.
        let ptr = unsafe { envoy_dynamic_module_callback_http_filter_scheduler_new(self.0) };
        (!ptr.is_null()).then_some(StreamScheduler(ptr))
    }

    pub fn continue_decoding(self) {
        // SAFETY: a live stream pointer on its own worker.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    pub fn clear_route_cache(self) {
        // SAFETY: a live stream pointer on its own worker.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    pub fn set_filter_state(self, key: &str, value: &str) -> bool {
        // SAFETY: a live stream pointer; both buffers point into live strings.
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        }
    }

    pub fn connection_id(self) -> Option<u64> {
        let mut id = 0u64;
        // SAFETY: a live stream pointer; `id` is a live local Envoy writes.
        let ok = unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.0,
                ATTRIBUTE_CONNECTION_ID,
                &mut id,
            )
        };
        ok.then_some(id)
    }

    /// Start a call-out to `cluster`; Envoy's id for it (answered in `http_callout_done` of
    /// this stream), or `None` when Envoy refused to start it.
    pub fn callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        let mut raw = module_headers(headers);
        let mut id = 0u64;
        // SAFETY: a live stream pointer; every buffer points into live data for the call
        // (Envoy copies the request); `id` is a live local Envoy writes.
        let result = unsafe {
            envoy_dynamic_module_callback_http_filter_http_callout(
                self.0,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                raw.as_mut_ptr(),
                raw.len(),
                ModuleBuffer::of(body),
                timeout_ms,
            )
        };
        (result == SUCCESS).then_some(id)
    }

    pub fn increment_counter(self, id: usize, value: u64) {
        // SAFETY: a live stream pointer; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }

    pub fn record_histogram(self, id: usize, value: u64) {
        // SAFETY: a live stream pointer; no labels.
        unsafe {
            envoy_dynamic_module_callback_http_filter_record_histogram_value(
                self.0,
                id,
                std::ptr::null_mut(),
                0,
                value,
            );
        }
    }
}

/// A call-out's answer as Envoy hands it to `http_callout_done`, copied.
pub struct CalloutAnswer {
    pub succeeded: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Run `body`; a panic becomes `fallback`, after answering the stream 500 when there is one.
fn guarded<T>(stream: Option<Stream>, fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            log(
                LogLevel::Error,
                "token-vault-proxy: panic in a hook; request refused",
                file!(),
                line!(),
            );
            if let Some(s) = stream {
                filter::answer_internal_error(s);
            }
            fallback
        }
    }
}

/// The module's per-stream state behind `filter_module_ptr`: an `Rc` of which each running
/// hook holds its own reference. Envoy can destroy a stream inside one of its hooks (a local
/// reply ends the stream at once); the state then outlives the destroy until the outer hooks
/// return, and the filter makes no more Envoy calls for a stream it has unregistered.
///
/// SAFETY (for callers): `ptr` must be null or a pointer `http_filter_new` returned whose
/// destroy hook has not yet run (Envoy calls no hook of a stream after its destroy), used on
/// the stream's worker thread.
unsafe fn state(ptr: *const c_void) -> Option<Rc<StreamState>> {
    if ptr.is_null() {
        return None;
    }
    let ptr = ptr.cast::<StreamState>();
    // SAFETY: the pointer came from `Rc::into_raw` and its creation reference is still held
    // (released only by the destroy hook), so the count is at least one: taking one more
    // reference for this hook keeps the state alive even if the stream is destroyed inside.
    unsafe {
        Rc::increment_strong_count(ptr);
        Some(Rc::from_raw(ptr))
    }
}

/// Run a stream hook's body on its state, guarded; `fallback` without a state (answered 500
/// first when `answer_if_missing`: a request must never hang) or on a panic.
///
/// SAFETY (for callers): as for [`state`].
unsafe fn on_stream<T: Copy>(
    stream: *mut c_void,
    state_ptr: *const c_void,
    fallback: T,
    answer_if_missing: bool,
    body: impl FnOnce(&StreamState, Stream) -> T,
) -> T {
    let stream = Stream(stream);
    guarded(Some(stream), fallback, || {
        // SAFETY: the caller vouches for `state_ptr`.
        match unsafe { state(state_ptr) } {
            Some(s) => body(&s, stream),
            None => {
                if answer_if_missing {
                    filter::answer_unconfigured(stream);
                }
                fallback
            }
        }
    })
}

/// The ABI version this module was written against.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    filter::program_init();
    c"v0.2.0".as_ptr()
}

/// A filter configuration: the plugin configuration (JSON) is parsed here and refused
/// (null: Envoy rejects the configuration) when invalid.
///
/// # Safety
/// Envoy passes its config pointer and two buffers valid during the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config_envoy: *mut c_void,
    name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    guarded(None, std::ptr::null(), || {
        // SAFETY: both buffers are valid for this call; they are copied before it returns.
        let (name, config) = unsafe {
            (
                envoy_bytes(name.ptr, name.length),
                envoy_bytes(config.ptr, config.length),
            )
        };
        match filter::config_new(ConfigHandle(config_envoy), name, config) {
            Some(cfg) => Box::into_raw(Box::new(cfg)).cast_const().cast(),
            None => std::ptr::null(),
        }
    })
}

/// # Safety
/// `config` is a pointer `config_new` returned; Envoy destroys it once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guarded(None, (), || {
        if !config.is_null() {
            // SAFETY: created by Box::into_raw in config_new and destroyed only here, once.
            let cfg = unsafe { Box::from_raw(config.cast_mut().cast::<filter::FilterConfig>()) };
            filter::config_destroy(*cfg);
        }
    })
}

/// # Safety
/// `config` is a live pointer `config_new` returned; `stream` is Envoy's new stream.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    stream: *mut c_void,
) -> *const c_void {
    let stream = Stream(stream);
    // No reply from here on a panic: Envoy is still building the stream. Its headers hook
    // then finds no state and answers 500.
    guarded(None, std::ptr::null(), || {
        // SAFETY: a live config (Envoy destroys configs only after their streams).
        let Some(cfg) = (unsafe { config.cast::<filter::FilterConfig>().as_ref() }) else {
            return std::ptr::null();
        };
        let state = filter::stream_new(cfg, stream);
        Rc::into_raw(Rc::new(state)).cast()
    })
}

/// # Safety
/// Envoy's live stream and this module's state for it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    stream: *mut c_void,
    state_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    let stop = HeadersStatus::Stop as u32;
    // SAFETY: Envoy passes this stream's live state, on its worker.
    unsafe {
        on_stream(stream, state_ptr, stop, true, |s, _| {
            filter::request_headers(s, end_of_stream) as u32
        })
    }
}

/// # Safety
/// Envoy's live stream and this module's state for it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    stream: *mut c_void,
    state_ptr: *const c_void,
    end_of_stream: bool,
) -> u32 {
    let stop = BodyStatus::StopNoBuffer as u32;
    // SAFETY: Envoy passes this stream's live state, on its worker.
    unsafe {
        on_stream(stream, state_ptr, stop, false, |s, _| {
            filter::request_body(s, end_of_stream) as u32
        })
    }
}

/// # Safety
/// Envoy's live stream and this module's state for it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    stream: *mut c_void,
    state_ptr: *const c_void,
) -> u32 {
    let stop = HeadersStatus::Stop as u32;
    // SAFETY: Envoy passes this stream's live state, on its worker.
    unsafe {
        on_stream(stream, state_ptr, stop, false, |s, _| {
            filter::request_trailers(s) as u32
        })
    }
}

/// # Safety
/// Envoy's live stream and this module's state for it.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    stream: *mut c_void,
    state_ptr: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let go_on = HeadersStatus::Continue as u32;
    // SAFETY: Envoy passes this stream's live state, on its worker.
    unsafe {
        on_stream(
            stream,
            state_ptr,
            HeadersStatus::Stop as u32,
            false,
            |s, _| {
                filter::response_headers(s);
                go_on
            },
        )
    }
}

/// Response bodies and trailers pass untouched.
///
/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _stream: *mut c_void,
    _state: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    BodyStatus::Continue as u32
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _stream: *mut c_void,
    _state: *const c_void,
) -> u32 {
    HeadersStatus::Continue as u32
}

/// # Safety
/// No pointer is used: the stream is forgotten at destroy.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _stream: *mut c_void,
    _state: *const c_void,
) {
}

/// # Safety
/// `state_ptr` is this module's state for a stream Envoy destroys once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(state_ptr: *const c_void) {
    guarded(None, (), || {
        if state_ptr.is_null() {
            return;
        }
        // SAFETY: created by Rc::into_raw in http_filter_new; this releases that creation
        // reference, once. Hooks still running on this stream hold their own.
        let state = unsafe { Rc::from_raw(state_ptr.cast::<StreamState>()) };
        filter::stream_destroy(&state);
    })
}

/// # Safety
/// Envoy's live stream, this module's state for it, and the answer's buffers, valid during
/// the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    stream: *mut c_void,
    state_ptr: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: Envoy passes the answer's buffers valid during this call, and this stream's
    // live state, on its worker.
    unsafe {
        let answer = callout_answer(result, headers, headers_size, body_chunks, body_chunks_size);
        on_stream(stream, state_ptr, (), false, |s, _| {
            filter::callout_done(s, callout_id, answer)
        });
    }
}

/// A call-out's answer, copied out of Envoy's buffers.
///
/// SAFETY (for callers): `headers` and `body_chunks` point to that many entries (or are null),
/// valid during the call.
unsafe fn callout_answer(
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> CalloutAnswer {
    let headers: &[EnvoyHttpHeader] = if headers.is_null() || headers_size == 0 {
        &[]
    } else {
        // SAFETY: the caller vouches for `headers_size` entries.
        unsafe { std::slice::from_raw_parts(headers, headers_size) }
    };
    let chunks: &[EnvoyBuffer] = if body_chunks.is_null() || body_chunks_size == 0 {
        &[]
    } else {
        // SAFETY: the caller vouches for `body_chunks_size` entries.
        unsafe { std::slice::from_raw_parts(body_chunks, body_chunks_size) }
    };
    let mut body = Vec::new();
    for c in chunks {
        // SAFETY: each chunk is valid during the call; copied.
        body.extend_from_slice(unsafe { envoy_bytes(c.ptr, c.length) });
    }
    CalloutAnswer {
        succeeded: result == SUCCESS,
        headers: headers
            .iter()
            .map(|h| {
                // SAFETY: valid during the call; copied.
                let (k, v) = unsafe {
                    (
                        envoy_bytes(h.key.ptr, h.key.length),
                        envoy_bytes(h.value.ptr, h.value.length),
                    )
                };
                (
                    String::from_utf8_lossy(k).to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect(),
        body,
    }
}

/// The configuration's scheduler fired (main thread): the background tick.
///
/// # Safety
/// `config` is a live pointer `config_new` returned.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _config_envoy: *mut c_void,
    config: *const c_void,
    _event_id: u64,
) {
    guarded(None, (), || {
        // SAFETY: a live config, on the main thread.
        if let Some(cfg) = unsafe { config.cast::<filter::FilterConfig>().as_ref() } {
            crate::background::tick(cfg);
        }
    })
}

/// A configuration call-out answered (main thread).
///
/// # Safety
/// `config` is a live pointer `config_new` returned; the answer's buffers are valid during
/// the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _config_envoy: *mut c_void,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    guarded(None, (), || {
        // SAFETY: Envoy passes the answer's buffers valid during this call.
        let answer =
            unsafe { callout_answer(result, headers, headers_size, body_chunks, body_chunks_size) };
        // SAFETY: a live config, on the main thread.
        if let Some(cfg) = unsafe { config.cast::<filter::FilterConfig>().as_ref() } {
            crate::background::callout_done(cfg, callout_id, answer);
        }
    })
}

// Hooks Envoy 1.40 requires but this filter does not use (streamed call-outs, watermarks), and
// the scheduler hook, which wakes a request waiting for another worker ([`crate::wake`]).

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _stream: *mut c_void,
    _state: *const c_void,
    _stream_id: u64,
    _headers: *const EnvoyHttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _stream: *mut c_void,
    _state: *const c_void,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _stream: *mut c_void,
    _state: *const c_void,
    _stream_id: u64,
    _trailers: *const EnvoyHttpHeader,
    _trailers_size: usize,
) {
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _stream: *mut c_void,
    _state: *const c_void,
    _stream_id: u64,
) {
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _stream: *mut c_void,
    _state: *const c_void,
    _stream_id: u64,
    _reason: u32,
) {
}

/// # Safety
/// Envoy passes the stream and the state this module returned for it, on its worker.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    stream: *mut c_void,
    state_ptr: *const c_void,
    _event_id: u64,
) {
    // SAFETY: Envoy passes this stream's live state, on its worker.
    unsafe { on_stream(stream, state_ptr, (), false, |s, _| filter::woken(s)) }
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _stream: *mut c_void,
    _state: *const c_void,
) {
}

/// # Safety
/// No pointer is used.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _stream: *mut c_void,
    _state: *const c_void,
) {
}
