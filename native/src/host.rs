//! The native implementation of the core's [`Host`]: the clock, the process-wide store, Envoy's
//! metrics and call-outs, for the stream whose hook is running.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tvp_core::callout::CalloutRequest;
use tvp_core::host::{Host, SharedWriteError};
use tvp_core::metrics::{Counter, Histogram};

use crate::abi::{ConfigHandle, Stream};
use crate::{registry, store};

/// Envoy's metric ids of one configuration, by metric name then tenant: dynamic modules define
/// metrics only while a configuration loads, so every name the core can count is defined then,
/// as `tvp.<tenant>.<name>` (the wasm filter's names).
#[derive(Default)]
pub struct MetricIds {
    counters: HashMap<&'static str, HashMap<String, usize>>,
    histograms: HashMap<&'static str, HashMap<String, usize>>,
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
        // Requests of other workers may wait for this record (an exchange lease released).
        crate::wake::written(key);
        Ok(())
    }

    fn count(&self, tenant: &str, counter: Counter) {
        if let Some(id) = self.metrics.counter(tenant, counter.name()) {
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
