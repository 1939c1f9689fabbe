//! What the core needs from its host (the proxy-wasm filter, a test): a clock, shared data,
//! metrics and call-outs. Everything else a host does is applying outcomes.

use crate::callout::CalloutRequest;

/// The host services the core calls.
pub trait Host {
    fn now_ms(&self) -> u64;
    /// Value and CAS token of a shared-data entry.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Write a shared-data entry; false if the CAS check failed or the host refused.
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// Add one to the tenant's counter `metric` (`tvp.<tenant>.<metric>` in Envoy's stats).
    fn count(&self, _tenant: &str, _metric: &'static str) {}
    /// Record a value in the tenant's histogram `metric`.
    fn record(&self, _tenant: &str, _metric: &'static str, _value: u64) {}
    /// Send a call-out on behalf of context `owner` (its answer is delivered there): the call-out
    /// token, or `None` when it could not be started.
    fn dispatch(&self, owner: u32, request: &CalloutRequest, timeout_ms: u64) -> Option<u32>;
    /// The host's id of the active request's downstream connection, growing in the order
    /// connections were accepted (`None`: the host cannot tell).
    fn connection_id(&self) -> Option<u64> {
        None
    }
}
