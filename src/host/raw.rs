//! The proxy-wasm ABI's host functions this crate calls itself, as the host exports them
//! (statuses as plain integers, so a status the SDK does not know cannot be an invalid enum).

use proxy_wasm::types::Status;

/// The ABI's `Ok` status.
pub(super) const OK: u32 = Status::Ok as u32;

/// The bytes a call that returned Ok handed over in its out-parameters; `None` when it handed
/// over none (a null pointer).
///
/// # Safety
///
/// `data` and `size` must be the out-parameters of a host call that returned Ok.
pub(super) unsafe fn owned(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    // SAFETY: on success the host hands over `size` bytes it allocated through this module's
    // own allocator (`proxy_on_memory_allocate`), as the SDK's own wrappers assume.
    Some(unsafe { Vec::from_raw_parts(data, size, size) })
}

#[link(wasm_import_module = "env")]
extern "C" {
    pub(super) fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    pub(super) fn proxy_get_log_level(return_level: *mut u32) -> u32;
    pub(super) fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    pub(super) fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    pub(super) fn proxy_set_effective_context(context_id: u32) -> u32;
    pub(super) fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    pub(super) fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    pub(super) fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub(super) fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    pub(super) fn proxy_register_shared_queue(
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub(super) fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    pub(super) fn proxy_enqueue_shared_queue(
        queue_id: u32,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    pub(super) fn proxy_dequeue_shared_queue(
        queue_id: u32,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    pub(super) fn proxy_call_foreign_function(
        function_name_data: *const u8,
        function_name_size: usize,
        arguments_data: *const u8,
        arguments_size: usize,
        results_data: *mut *mut u8,
        results_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_get_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        return_value: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_replace_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
    pub(super) fn proxy_remove_header_map_value(
        map_type: u32,
        key: *const u8,
        key_size: usize,
    ) -> u32;
    pub(super) fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    pub(super) fn proxy_continue_stream(stream_type: u32) -> u32;
    pub(super) fn proxy_get_property(
        path: *const u8,
        path_size: usize,
        return_value: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    pub(super) fn proxy_set_property(
        path: *const u8,
        path_size: usize,
        value: *const u8,
        value_size: usize,
    ) -> u32;
}
