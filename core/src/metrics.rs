//! Every metric the core counts or records, by name: `tvp.<tenant>.<name>` in Envoy's stats.
//! Hosts turn a [`Counter`] or [`Histogram`] into their own metric ids by [`Counter::name`]; the
//! names are part of the product's interface (dashboards and alerts use them) and change only
//! here.

/// A counter: one more of something per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Forwarded with the downstream credential.
    Allow,
    /// A refusal, by its stable name `deny.<reason code>` ([`crate::reply::Deny::metric`]).
    Deny(&'static str),
    /// A vault answer, by its stable name `vault.<outcome>`.
    Vault(&'static str),
    VerifiedCacheHit,
    VerifiedCacheMiss,
    DownstreamCacheHit,
    DownstreamCacheMiss,
    DownstreamEvicted,
    DownstreamEvictLimited,
    /// A vault call not made: the tenant's vault asked us to wait (429).
    VaultBackoff,
    JwksFetch,
    JwksFetchFailed,
    /// A token whose signature failed, refused again from the cache of failures.
    SignatureFailedCached,
    SignatureFailed,
    McpElicitation,
    McpRelayed,
    ConnectStarted,
    ConnectCompleted,
    ConnectDeclined,
    ConnectFailed,
    ConnectDisconnected,
    ConnectWrongUser,
    ConnectOktaInteraction,
    ConnectAccountsTooManyPages,
    ConnectDuplicateCookie,
    ConnectCrossOrigin,
    ConnectInsecureOrigin,
}

impl Counter {
    pub fn name(self) -> &'static str {
        match self {
            Counter::Allow => "allow",
            Counter::Deny(name) | Counter::Vault(name) => name,
            Counter::VerifiedCacheHit => "verified_cache.hit",
            Counter::VerifiedCacheMiss => "verified_cache.miss",
            Counter::DownstreamCacheHit => "downstream_cache.hit",
            Counter::DownstreamCacheMiss => "downstream_cache.miss",
            Counter::DownstreamEvicted => "downstream_evicted",
            Counter::DownstreamEvictLimited => "downstream_evict_limited",
            Counter::VaultBackoff => "vault.backoff",
            Counter::JwksFetch => "jwks.fetch",
            Counter::JwksFetchFailed => "jwks.fetch_failed",
            Counter::SignatureFailedCached => "signature.failed_cached",
            Counter::SignatureFailed => "signature.failed",
            Counter::McpElicitation => "mcp.elicitation",
            Counter::McpRelayed => "mcp.relayed",
            Counter::ConnectStarted => "connect.started",
            Counter::ConnectCompleted => "connect.completed",
            Counter::ConnectDeclined => "connect.declined",
            Counter::ConnectFailed => "connect.failed",
            Counter::ConnectDisconnected => "connect.disconnected",
            Counter::ConnectWrongUser => "connect.wrong_user",
            Counter::ConnectOktaInteraction => "connect.okta_interaction",
            Counter::ConnectAccountsTooManyPages => "connect.accounts_too_many_pages",
            Counter::ConnectDuplicateCookie => "connect.duplicate_cookie",
            Counter::ConnectCrossOrigin => "connect.cross_origin",
            Counter::ConnectInsecureOrigin => "connect.insecure_origin",
        }
    }
}

/// Every counter without a parameter.
const FIXED: &[Counter] = &[
    Counter::Allow,
    Counter::VerifiedCacheHit,
    Counter::VerifiedCacheMiss,
    Counter::DownstreamCacheHit,
    Counter::DownstreamCacheMiss,
    Counter::DownstreamEvicted,
    Counter::DownstreamEvictLimited,
    Counter::VaultBackoff,
    Counter::JwksFetch,
    Counter::JwksFetchFailed,
    Counter::SignatureFailedCached,
    Counter::SignatureFailed,
    Counter::McpElicitation,
    Counter::McpRelayed,
    Counter::ConnectStarted,
    Counter::ConnectCompleted,
    Counter::ConnectDeclined,
    Counter::ConnectFailed,
    Counter::ConnectDisconnected,
    Counter::ConnectWrongUser,
    Counter::ConnectOktaInteraction,
    Counter::ConnectAccountsTooManyPages,
    Counter::ConnectDuplicateCookie,
    Counter::ConnectCrossOrigin,
    Counter::ConnectInsecureOrigin,
];

/// The refusal of a request of a superseded configuration (counted under the filter's realm).
pub const SUPERSEDED: Counter = Counter::Deny("deny.superseded_configuration");

/// Every counter name the core can count: a host whose metrics must be defined up front
/// (Envoy's dynamic modules freeze them after configuration) defines these per tenant.
pub fn counter_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FIXED.iter().map(|c| c.name()).collect();
    names.extend_from_slice(crate::reply::DENY_METRICS);
    names.extend_from_slice(crate::flow::VAULT_METRICS);
    names.push(SUPERSEDED.name());
    names
}

/// Every histogram.
pub const HISTOGRAMS: &[Histogram] = &[Histogram::JwksLatencyMs, Histogram::VaultLatencyMs];

/// A histogram: one value per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Histogram {
    /// Milliseconds a JWKS (or discovery) call-out took.
    JwksLatencyMs,
    /// Milliseconds a vault call-out took.
    VaultLatencyMs,
}

impl Histogram {
    pub fn name(self) -> &'static str {
        match self {
            Histogram::JwksLatencyMs => "jwks.latency_ms",
            Histogram::VaultLatencyMs => "vault.latency_ms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_name_is_listed_once() {
        let names = counter_names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        for deny in crate::reply::DENY_METRICS {
            assert!(deny.starts_with("deny."));
        }
        assert!(names.contains(&"allow") && names.contains(&"deny.superseded_configuration"));
    }
}
