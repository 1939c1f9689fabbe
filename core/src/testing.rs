//! Test support shared by the unit tests of several modules.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::callout::CalloutRequest;
use crate::host::{Host, SharedWriteError};
use crate::metrics::Counter;

/// Shared data and a clock in memory, with the host's CAS semantics, and the counters.
#[derive(Default)]
pub struct FakeHost {
    pub now: Cell<u64>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Counters by (tenant, name).
    pub counts: RefCell<HashMap<(String, &'static str), u64>>,
    /// Call-outs sent: owner and request, in order; the token of each is its index + 1.
    pub sent: RefCell<Vec<(u32, CalloutRequest)>>,
    /// Call-outs fail to start while set.
    pub refuse_dispatch: Cell<bool>,
    /// Shared-data reads so far.
    pub reads: Cell<u64>,
    /// Shared-data writes are refused while set.
    pub refuse_writes: Cell<bool>,
}

impl FakeHost {
    /// How many times shared data was read.
    pub fn shared_reads(&self) -> u64 {
        self.reads.get()
    }

    /// The value of a tenant's counter.
    pub fn counter(&self, tenant: &str, metric: &'static str) -> u64 {
        self.counts
            .borrow()
            .get(&(tenant.to_string(), metric))
            .copied()
            .unwrap_or(0)
    }

    /// The counter `metric` of `tenant` (0 if never counted).
    pub fn counted(&self, tenant: &str, metric: &str) -> u64 {
        self.counts
            .borrow()
            .iter()
            .find(|((t, m), _)| t == tenant && *m == metric)
            .map_or(0, |(_, n)| *n)
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.now.get()
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.reads.set(self.reads.get() + 1);
        match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn shared_set(
        &self,
        key: &str,
        value: &[u8],
        cas: Option<u32>,
    ) -> Result<(), SharedWriteError> {
        if self.refuse_writes.get() {
            return Err(SharedWriteError::Refused);
        }
        let mut map = self.shared.borrow_mut();
        let current = map.get(key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return Err(SharedWriteError::CasMismatch);
        }
        map.insert(key.to_string(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn count(&self, tenant: &str, counter: Counter) {
        let metric = counter.name();
        *self
            .counts
            .borrow_mut()
            .entry((tenant.to_string(), metric))
            .or_default() += 1;
    }
    fn dispatch(&self, owner: u32, request: &CalloutRequest, _timeout_ms: u64) -> Option<u32> {
        if self.refuse_dispatch.get() {
            return None;
        }
        let mut sent = self.sent.borrow_mut();
        sent.push((owner, request.clone()));
        u32::try_from(sent.len()).ok()
    }
}

/// The local stack's tenants file, its Auth0 tenants only: the Okta ones need the agent's key
/// in their environment, which the unit tests that share this file do not care about.
pub fn example_json() -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(include_str!("../../tenants.example.json")).unwrap_or_default();
    if let Some(list) = doc["tenants"].as_array_mut() {
        list.retain(|t| t["vault"]["type"] == "auth0");
    }
    doc.to_string()
}

/// The example's sealing key (`settings.sealing_key_env` is `TVP_SEALING_KEY`).
pub const SEALING_KEY: &str = "unit-test-sealing-key-unit-test-sealing-key";

/// `env`, with the example's sealing key variable set.
pub fn with_sealing_key<'a>(
    env: &'a dyn Fn(&str) -> Option<String>,
) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        if name == "TVP_SEALING_KEY" {
            Some(SEALING_KEY.to_string())
        } else {
            env(name)
        }
    }
}
