//! The active request and its answer: headers, bodies, edits, the local reply, resuming it,
//! and its filter state; the call-out answer being delivered; the plugin configuration.

use proxy_wasm::types::{BufferType, MapType, StreamType};

use super::raw::*;
use crate::abi as wire;
use tvp_core::callout::CalloutResponse;
use tvp_core::gateway::RequestHead;
use tvp_core::reply::Reply;

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
    if status != OK {
        return RequestHead::default();
    }
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    let Some(bytes) = (unsafe { owned(data, size) }) else {
        return RequestHead::default();
    };
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
    if status != OK {
        return None;
    }
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    Some(unsafe { owned(data, size) }.unwrap_or_default())
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
    if status != OK {
        return None;
    }
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    String::from_utf8(unsafe { owned(data, size) }?).ok()
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

/// Filter state `wasm.<name>` of the active request (readable by access logs). Called through
/// the raw ABI: the SDK's wrapper panics (trapping the VM) on any status but Ok, and Envoy
/// refuses a second write of the same read-only state.
pub fn set_filter_state(name: &str, value: &str) -> bool {
    // SAFETY: both pointers come from live slices and their exact lengths; the host only reads.
    let status =
        unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) };
    status == 0
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

pub fn plugin_configuration() -> Vec<u8> {
    buffer(BufferType::PluginConfiguration, usize::MAX).unwrap_or_default()
}
