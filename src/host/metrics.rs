//! Envoy metrics by `tvp.<tenant>.<metric>`: defined on first use, counters batched in memory
//! and handed to Envoy on the root's tick.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::types::MetricType;

use super::raw::*;

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

/// One more of `metric` for `tenant`, counted in memory: no host call per request.
pub(super) fn count(tenant: &str, metric: &'static str) {
    if let Some(id) = metric_id(MetricType::Counter, tenant, metric) {
        PENDING.with(|p| *p.borrow_mut().entry(id).or_default() += 1);
    }
}

/// A sample of histogram `metric` for `tenant`.
pub(super) fn record(tenant: &str, metric: &'static str, value: u64) {
    if let Some(id) = metric_id(MetricType::Histogram, tenant, metric) {
        // SAFETY: no pointers. A refused value is a lost sample, never a trap.
        unsafe { proxy_record_metric(id, value) };
    }
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
