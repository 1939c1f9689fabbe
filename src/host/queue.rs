//! Shared queues: how one worker wakes another's root context.

use super::raw::*;

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
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    Some(unsafe { owned(data, size) }.unwrap_or_default())
}
