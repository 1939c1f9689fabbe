//! The native implementation of the core's [`Host`]: the clock, the process-wide store, Envoy's
//! metrics and call-outs, for the stream whose hook is running.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tvp_core::callout::CalloutRequest;
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::metrics::{Counter, Histogram};

use crate::abi::{ConfigHandle, Stream};
use crate::{registry, store};

/// Envoy's metric ids of one configuration, by metric name then tenant: dynamic modules define
/// metrics only while a configuration loads, so every name the core can count is defined then,
/// as `tvp.<tenant>.<name>` (the wasm filter's names).
///
/// Counts are batched like the wasm filter's: a request adds to an atomic per counter, and the
/// configuration's main-thread tick hands the sums to Envoy once a second (measured: the three
/// counter calls of a warm request cost about 1.7 µs through the ABI).
#[derive(Default)]
pub struct MetricIds {
    counters: HashMap<&'static str, HashMap<String, usize>>,
    histograms: HashMap<&'static str, HashMap<String, usize>>,
    /// Counts not yet handed to Envoy, by counter id.
    pending: Vec<AtomicU64>,
    /// Set once the main-thread tick runs, which flushes `pending`; until then (or without a
    /// tick) every count goes to Envoy at once.
    batched: AtomicBool,
}

impl MetricIds {
    pub fn define(config: ConfigHandle, tenants: &[&str]) -> MetricIds {
        let mut ids = MetricIds::default();
        for name in tvp_core::metrics::counter_names() {
            let by_tenant = ids.counters.entry(name).or_default();
            for tenant in tenants {
                if let Some(id) = config.define_counter(&format!("tvp.{tenant}.{name}")) {
                    by_tenant.insert(tenant.to_string(), id);
                }
            }
        }
        let ids_defined = ids.counters.values().flat_map(HashMap::values);
        let slots = ids_defined.max().map_or(0, |max| max + 1);
        ids.pending = (0..slots).map(|_| AtomicU64::new(0)).collect();
        for histogram in tvp_core::metrics::HISTOGRAMS {
            let by_tenant = ids.histograms.entry(histogram.name()).or_default();
            for tenant in tenants {
                let name = format!("tvp.{tenant}.{}", histogram.name());
                if let Some(id) = config.define_histogram(&name) {
                    by_tenant.insert(tenant.to_string(), id);
                }
            }
        }
        ids
    }

    /// From now on counts wait for [`MetricIds::flush`] (the main-thread tick).
    pub fn batch(&self) {
        self.batched.store(true, Ordering::Release);
    }

    /// Hand the counts so far to Envoy (main thread, through the configuration).
    pub fn flush(&self, config: ConfigHandle) {
        for (id, pending) in self.pending.iter().enumerate() {
            let n = pending.swap(0, Ordering::Relaxed);
            if n > 0 {
                config.increment_counter(id, n);
            }
        }
    }

    /// Count one for counter `id` in the batch; false when not batching.
    fn add_to_batch(&self, id: usize) -> bool {
        if !self.batched.load(Ordering::Acquire) {
            return false;
        }
        match self.pending.get(id) {
            Some(pending) => {
                pending.fetch_add(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    fn counter(&self, tenant: &str, name: &str) -> Option<usize> {
        self.counters.get(name)?.get(tenant).copied()
    }

    fn histogram(&self, tenant: &str, name: &str) -> Option<usize> {
        self.histograms.get(name)?.get(tenant).copied()
    }
}

/// Whose hook is running: a stream's (on a worker), or the configuration's (main thread).
#[derive(Clone, Copy)]
pub enum Caller {
    Stream(Stream),
    Config(ConfigHandle),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub struct NativeHost<'a> {
    /// Metrics, call-outs and the connection id go through it.
    pub caller: Caller,
    pub metrics: &'a MetricIds,
}

impl Host for NativeHost<'_> {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        store::get(key)
    }

    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        store::set(key, value, cas)?;
        // Requests of other workers may wait for this record (an exchange lease released);
        // only lease records are ever watched, so no other write looks at the watch table.
        if tvp_core::wake_list::is_watched(key) {
            crate::wake::written(key);
        }
        Ok(())
    }

    fn count(&self, tenant: &str, counter: Counter) {
        if let Some(id) = self.metrics.counter(tenant, counter.name()) {
            if self.metrics.add_to_batch(id) {
                return;
            }
            match self.caller {
                Caller::Stream(s) => s.increment_counter(id, 1),
                Caller::Config(c) => c.increment_counter(id, 1),
            }
        }
    }

    fn record(&self, tenant: &str, histogram: Histogram, value: u64) {
        if let Some(id) = self.metrics.histogram(tenant, histogram.name()) {
            match self.caller {
                Caller::Stream(s) => s.record_histogram(id, value),
                Caller::Config(c) => c.record_histogram(id, value),
            }
        }
    }

    fn dispatch(&self, owner: u32, request: &CalloutRequest, timeout_ms: u64) -> Option<u32> {
        let headers = request.header_pairs("host");
        let body = request.body.as_deref().unwrap_or_default();
        // Envoy delivers the answer to the stream (or configuration) that sent it.
        let sent = match self.caller {
            Caller::Stream(_) => {
                registry::stream(owner)?.callout(&request.cluster, &headers, body, timeout_ms)
            }
            Caller::Config(c) => c.callout(&request.cluster, &headers, body, timeout_ms),
        };
        match sent {
            Some(envoy_id) => Some(registry::callout_sent(owner, envoy_id)),
            None => {
                log::warn!("call-out to cluster '{}' refused by Envoy", request.cluster);
                None
            }
        }
    }

    fn connection_id(&self) -> Option<u64> {
        match self.caller {
            Caller::Stream(s) => s.connection_id(),
            Caller::Config(_) => None,
        }
    }
}
