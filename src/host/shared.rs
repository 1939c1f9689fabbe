//! Envoy's shared data: one store for every worker of the VM id, versioned for CAS.

use proxy_wasm::types::Status;
use tvp_core::host::SharedWriteError;

use super::raw::*;

/// A record and its version; `(None, None)` when absent or refused.
pub(super) fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: the key pointer comes from a live string and its exact length; the host writes
    // only the three out-parameters, which are live locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    if status != OK {
        return (None, None);
    }
    let cas = (cas != 0).then_some(cas);
    // SAFETY: the host returned Ok, so these are the out-parameters it wrote.
    (unsafe { owned(data, size) }, cas)
}

/// Write a record if its version is still `cas` (`None`: whatever it is).
pub(super) fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SharedWriteError> {
    // SAFETY: both pointers come from live slices and their exact lengths; the host only reads.
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
        OK => Ok(()),
        s if s == Status::CasMismatch as u32 => Err(SharedWriteError::CasMismatch),
        _ => Err(SharedWriteError::Refused),
    }
}
