//! The VM and its contexts: the clock, properties, the effective context, the tick, and
//! Envoy's foreign functions.

use super::raw::*;

/// The host's clock in milliseconds since the epoch.
pub(super) fn now_ms() -> u64 {
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
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    // None handed over: present but empty (a blank `vm_id`, for one).
    Some(unsafe { owned(data, size) }.unwrap_or_default())
}

/// Envoy's id of the active request's downstream connection (`connection.id`): ids grow in
/// the order Envoy accepts connections.
pub(super) fn connection_id() -> Option<u64> {
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
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    Ok(unsafe { owned(data, size) })
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
