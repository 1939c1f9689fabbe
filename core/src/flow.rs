//! The per-worker request pipeline: what to do with a request now, and with the requests that
//! were waiting when a call-out answers. Host access goes through [`Host`], so this runs and is
//! tested on the host target; `filter/` only applies the returned [`Step`]s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use crate::auth;
use crate::cache::VerifiedTokens;
use crate::cache::{DigestMap, FailedTokens, Principal, TokenDigest};
use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{Config, JwksSource, Tenant};
use crate::crypto::signing::{AssertionSigner, PureRustSigner};
use crate::crypto::SignatureVerifier;
use crate::jwks;
use crate::jwt::TokenError;
use crate::reply::Deny;
use crate::secret::Redacted;
use crate::vault::{self, VaultOutcome};

use crate::host::{ByHostId, Host};
use crate::metrics::{Counter, Histogram};
use exchange_lease::Lease;
pub use flights::FlightKey;
use flights::{Flight, Purpose};
use identity::Identity;
use keys::TenantKeys;

mod downstream;
pub(crate) mod exchange_lease;
mod flights;
mod id_token;
mod identity;
mod keys;
mod pipeline;
mod shared_verified;

pub use downstream::{evict_downstream, evict_user};

/// Tokens whose signature failed, remembered per worker (digests only, about 50 bytes each):
/// enough for a client retrying a bad token, or a replayed forgery. Distinct forgeries are
/// held back by the failure budget instead.
const FAILED_TOKENS_CAPACITY: usize = 1024;

/// What a request needs next.
#[derive(Debug)]
pub enum Step {
    /// Refuse with this reason (the request goes no further).
    Deny {
        deny: Deny,
        tenant: usize,
        /// Who was refused, when the token was verified far enough to know.
        principal: Option<Rc<Principal>>,
    },
    /// Every check passed: rewrite headers and forward.
    Forward(Forward),
    /// Wait for a call-out; `start` is set when this request must dispatch it.
    Wait {
        flight: FlightKey,
        start: Option<CalloutRequest>,
    },
    /// Wait for another worker's vault exchange: the host wakes the request
    /// ([`Worker::poll_elsewhere`]) when shared-data record `watch` is written (at once if it
    /// changed since version `seen`), or at `until_ms` at the latest.
    WaitElsewhere {
        watch: String,
        until_ms: u64,
        seen: Option<u32>,
    },
}

#[derive(Clone)]
pub struct Forward {
    pub tenant: usize,
    pub principal: Rc<Principal>,
    /// Headers to remove before setting the downstream credential.
    pub strip: Vec<String>,
    pub header: String,
    pub value: String,
}

/// The downstream credential is never printed.
impl fmt::Debug for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forward")
            .field("tenant", &self.tenant)
            .field("principal", &self.principal)
            .field("strip", &self.strip)
            .field("header", &self.header)
            .field("value", &Redacted(self.value.len()))
            .finish()
    }
}

/// A request's inputs, kept while it waits so any context can finish it.
#[derive(Clone)]
pub struct RequestInput {
    pub tenant: usize,
    pub method: String,
    pub token: String,
    /// The refresh token for refresh-token exchanges (from the configured header).
    pub subject_token: Option<String>,
}

/// Neither token is printed.
impl fmt::Debug for RequestInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestInput")
            .field("tenant", &self.tenant)
            .field("method", &self.method)
            .field("token", &Redacted(self.token.len()))
            .field(
                "subject_token",
                &self.subject_token.as_ref().map(|t| Redacted(t.len())),
            )
            .finish()
    }
}

/// Per-worker state shared by the root context and every HTTP context of one VM.
pub struct Worker {
    pub config: Rc<Config>,
    verifier: Box<dyn SignatureVerifier>,
    /// Signs client assertions (Okta backends).
    signer: Box<dyn AssertionSigner>,
    digest: TokenDigest,
    verified: VerifiedTokens,
    /// Tokens whose signature failed (digests), refused again without a check.
    failed: FailedTokens,
    keys: Vec<TenantKeys>,
    flights: HashMap<FlightKey, Flight>,
    callouts: HashMap<u32, FlightKey>,
    /// Requests waiting for their tenant's keys (then the whole pipeline runs again).
    waiting_keys: ByHostId<RequestInput>,
    /// Verified, authorized requests waiting for their user's downstream token.
    waiting_token: ByHostId<(RequestInput, Rc<Principal>)>,
    orphans: HashSet<FlightKey>,
    /// Per user: (iss, sub, login hint) and the hashes derived from them.
    identities: DigestMap<Identity>,
    /// Vault exchanges are single flight across workers ([`exchange_lease`]).
    shared_flights: bool,
    /// The namespace of verified tokens shared with the other workers ([`shared_verified`]).
    shared_verified: Option<String>,
}

/// A request that a call-out answer has decided, to be applied in its own context.
pub type Resolution = (u32, Step);

impl Worker {
    pub fn new(config: Rc<Config>, verifier: Box<dyn SignatureVerifier>) -> Self {
        let n = config.tenants.len();
        Worker {
            verified: VerifiedTokens::new(config.settings.verified_token_cache_size),
            failed: FailedTokens::new(FAILED_TOKENS_CAPACITY),
            digest: TokenDigest::new(),
            config,
            verifier,
            signer: Box::new(PureRustSigner),
            keys: (0..n).map(|_| TenantKeys::default()).collect(),
            flights: HashMap::new(),
            callouts: HashMap::new(),
            waiting_keys: ByHostId::default(),
            waiting_token: ByHostId::default(),
            orphans: HashSet::new(),
            identities: DigestMap::default(),
            shared_flights: false,
            shared_verified: None,
        }
    }

    /// Share verified tokens with the other workers through shared data, under `namespace`
    /// (the configuration's digest: another configuration never trusts this one's checks),
    /// digested with `digest` (the same keys on every worker). For a host whose shared data is
    /// one store for all workers.
    /// A `verified_token_cache_size` of 0 turns the shared level off too.
    pub fn with_shared_verified_tokens(mut self, namespace: String, digest: TokenDigest) -> Self {
        if self.config.settings.verified_token_cache_size > 0 {
            self.shared_verified = Some(namespace);
        }
        self.digest = digest;
        self
    }

    /// Share vault exchanges with the other workers through leases in shared data: for a host
    /// whose shared data is one store for all workers and that wakes the requests a
    /// [`Step::WaitElsewhere`] names.
    pub fn with_shared_flights(mut self) -> Self {
        self.shared_flights = true;
        self
    }

    /// Sign client assertions with `signer` instead of pure Rust.
    pub fn with_signer(mut self, signer: Box<dyn AssertionSigner>) -> Self {
        self.signer = signer;
        self
    }

    pub fn is_waiting(&self, context_id: u32) -> bool {
        self.waiting_keys.contains_key(&context_id) || self.waiting_token.contains_key(&context_id)
    }

    /// Start on a new request for `context_id`.
    pub fn begin(&mut self, host: &dyn Host, context_id: u32, input: RequestInput) -> Step {
        self.begin_at(host, context_id, input, host.now_ms())
    }

    fn complete_flight(
        &mut self,
        host: &dyn Host,
        key: &FlightKey,
        response: &CalloutResponse,
    ) -> Vec<Resolution> {
        let Some(flight) = self.flights.remove(key) else {
            return Vec::new();
        };
        self.orphans.remove(key);
        let now_ms = host.now_ms();
        let (Purpose::Discovery { tenant }
        | Purpose::Jwks { tenant }
        | Purpose::Vault { tenant, .. }) = flight.purpose;
        let tenant_id = self.config.tenants[tenant].id.clone();
        let kind = if matches!(flight.purpose, Purpose::Vault { .. }) {
            Histogram::VaultLatencyMs
        } else {
            Histogram::JwksLatencyMs
        };
        if let Some(sent_ms) = flight.sent_ms {
            host.record(&tenant_id, kind, now_ms.saturating_sub(sent_ms));
        }
        let mut out = Vec::new();
        // Every request waiting for the keys: decided, or the pipeline runs again.
        let mut after_keys = |worker: &mut Worker, failure: Option<DependencyFailure>| {
            for ctx in &flight.waiters {
                if let Some(input) = worker.waiting_keys.remove(ctx) {
                    let step = worker.after_keys(host, *ctx, input, failure);
                    out.push((*ctx, step));
                }
            }
        };
        match flight.purpose {
            Purpose::Discovery { tenant } => {
                let authority = match &self.config.tenants[tenant].jwks {
                    JwksSource::Discovery { authority, .. }
                    | JwksSource::Direct { authority, .. } => authority.clone(),
                };
                let path = (response.status == Some(200))
                    .then(|| {
                        response
                            .body
                            .as_deref()
                            .and_then(|b| jwks::jwks_path_from_discovery(b, &authority))
                    })
                    .flatten();
                match path {
                    Some(path) => {
                        // Second leg: the same waiters now wait for the JWKS itself.
                        let request =
                            CalloutRequest::get(&flight.request.cluster, &authority, &path);
                        self.flights.insert(
                            key.clone(),
                            Flight {
                                purpose: Purpose::Jwks { tenant },
                                request: request.clone(),
                                waiters: flight.waiters,
                                owner: None,
                                sent_ms: None,
                                started_ms: flight.started_ms,
                                user_key: None,
                                lease: Lease::NotShared,
                            },
                        );
                        // Dispatched at once by the caller through `take_orphans`.
                        self.orphans.insert(key.clone());
                        return Vec::new();
                    }
                    None => {
                        let failure = failure_of(response);
                        self.keys[tenant].last_failure = Some(failure);
                        self.keys[tenant].failures = self.keys[tenant].failures.saturating_add(1);
                        after_keys(self, Some(failure));
                    }
                }
            }
            Purpose::Jwks { tenant } => {
                let failure = self.store_jwks(host, tenant, response, now_ms);
                if failure.is_none() {
                    self.release_refresh_lease(host, tenant);
                } else {
                    self.keys[tenant].lease_claimed_ms = None;
                }
                after_keys(self, failure);
            }
            Purpose::Vault { tenant, leg } => {
                let t = &self.config.tenants[tenant];
                let step = match &response.body {
                    Some(_) => vault::read_answer(
                        &t.vault,
                        t.provider_scopes(),
                        leg,
                        response,
                        self.signer.as_ref(),
                        now_ms / 1000,
                    ),
                    None => vault::Step::Done(VaultOutcome::Failed(DependencyFailure::BadAnswer)),
                };
                let outcome = match step {
                    vault::Step::Done(outcome) => outcome,
                    vault::Step::Next(request) => {
                        // Next leg: the same waiters wait for the following call.
                        self.flights.insert(
                            key.clone(),
                            Flight {
                                purpose: Purpose::Vault {
                                    tenant,
                                    leg: leg.saturating_add(1),
                                },
                                request,
                                waiters: flight.waiters,
                                owner: None,
                                // Not sent yet: `dispatched` dates it.
                                sent_ms: None,
                                started_ms: flight.started_ms,
                                user_key: flight.user_key.clone(),
                                lease: flight.lease,
                            },
                        );
                        self.orphans.insert(key.clone());
                        return Vec::new();
                    }
                };
                host.count(&tenant_id, Counter::Vault(vault_metric(&outcome)));
                if let VaultOutcome::RateLimited {
                    retry_after_seconds,
                } = outcome
                {
                    self.back_off(host, tenant, retry_after_seconds, now_ms);
                }
                if let (FlightKey::Token(cache_key), Some(user_key)) = (key, &flight.user_key) {
                    self.store_downstream(
                        host,
                        cache_key,
                        user_key,
                        flight.started_ms,
                        &outcome,
                        now_ms,
                    );
                }
                // After the answer is cached: releasing wakes the other workers' requests.
                Self::release_lease(host, key, &flight);
                let config = Rc::clone(&self.config);
                for ctx in &flight.waiters {
                    if let Some((input, principal)) = self.waiting_token.remove(ctx) {
                        let t = &config.tenants[input.tenant];
                        let headers = &config.settings.credential_headers;
                        let step = vault_step(t, input.tenant, headers, &principal, &outcome);
                        out.push((*ctx, step));
                    }
                }
            }
        }
        out
    }

    fn after_keys(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        input: RequestInput,
        failure: Option<DependencyFailure>,
    ) -> Step {
        let tenant = input.tenant;
        let have_keys = self.keys[tenant].keys.is_some();
        if !have_keys {
            return Step::Deny {
                deny: Deny::KeysUnavailable(failure.unwrap_or(DependencyFailure::BadAnswer)),
                tenant,
                principal: None,
            };
        }
        // Keys are present now (fresh or still-usable stale ones): rerun. A still-unknown
        // `kid` is refused there because the refetch interval has not passed.
        self.begin_at(host, ctx, input, host.now_ms())
    }
}

/// Every vault outcome's counter name (what [`vault_metric`] gives).
pub const VAULT_METRICS: &[&str] = &[
    "vault.ok",
    "vault.connect_required",
    "vault.subject_rejected",
    "vault.misconfigured",
    "vault.forbidden",
    "vault.rate_limited",
    "vault.unavailable",
    "vault.timeout",
    "vault.bad_answer",
];

fn vault_metric(outcome: &VaultOutcome) -> &'static str {
    match outcome {
        VaultOutcome::Token { .. } => "vault.ok",
        VaultOutcome::ConnectRequired { .. } => "vault.connect_required",
        VaultOutcome::SubjectRejected { .. } => "vault.subject_rejected",
        VaultOutcome::Misconfigured { .. } => "vault.misconfigured",
        VaultOutcome::Forbidden { .. } => "vault.forbidden",
        VaultOutcome::RateLimited { .. } => "vault.rate_limited",
        VaultOutcome::Failed(DependencyFailure::Unavailable) => "vault.unavailable",
        VaultOutcome::Failed(DependencyFailure::Timeout) => "vault.timeout",
        VaultOutcome::Failed(DependencyFailure::BadAnswer) => "vault.bad_answer",
    }
}

fn failure_of(response: &CalloutResponse) -> DependencyFailure {
    match response.status {
        Some(200) => DependencyFailure::BadAnswer,
        other => DependencyFailure::from_status(other),
    }
}

/// "Connect your account". The link is filled in by the connect pages, which keep the vault's
/// own interaction URL (Okta STS) behind their same-user check: it is never answered as is.
fn connect_required(
    tenant: &Tenant,
    interaction_uri: Option<&str>,
    missing_scopes: &[String],
) -> Deny {
    Deny::ConnectRequired {
        connection: tenant.vault.connection.clone(),
        tenant_name: tenant.name.clone(),
        scopes: tenant.provider_scopes().to_vec(),
        missing_scopes: missing_scopes.to_vec(),
        connect: None,
        interaction_uri: interaction_uri.map(Box::from),
    }
}

fn forward(
    index: usize,
    tenant: &Tenant,
    credential_headers: &[String],
    principal: &Rc<Principal>,
    token: &str,
) -> Forward {
    // Setting a header replaces every value it had (Envoy's setCopy), so only headers other
    // than the one set need removing: the client's other credentials, and the agent's own
    // `Authorization` when the downstream token goes elsewhere.
    let mut strip: Vec<String> = credential_headers
        .iter()
        .filter(|h| **h != tenant.downstream.header)
        .cloned()
        .collect();
    if tenant.downstream.header != "authorization" {
        strip.push("authorization".to_string());
    }
    if let Some(h) = &tenant.vault.subject_token_header {
        strip.push(h.clone());
    }
    Forward {
        tenant: index,
        principal: Rc::clone(principal),
        strip,
        header: tenant.downstream.header.clone(),
        value: auth::downstream_value(tenant, token),
    }
}

fn vault_step(
    tenant: &Tenant,
    index: usize,
    credential_headers: &[String],
    principal: &Rc<Principal>,
    outcome: &VaultOutcome,
) -> Step {
    let deny = |deny: Deny| Step::Deny {
        deny,
        tenant: index,
        principal: Some(Rc::clone(principal)),
    };
    match outcome {
        VaultOutcome::Token { access_token, .. } => Step::Forward(forward(
            index,
            tenant,
            credential_headers,
            principal,
            access_token.expose(),
        )),
        VaultOutcome::ConnectRequired {
            interaction_uri,
            missing_scopes,
            ..
        } => deny(connect_required(
            tenant,
            interaction_uri.as_deref(),
            missing_scopes,
        )),
        VaultOutcome::SubjectRejected { .. } => deny(Deny::InvalidToken(TokenError::Rejected)),
        VaultOutcome::Misconfigured { .. } => deny(Deny::VaultMisconfigured),
        VaultOutcome::Forbidden { .. } => deny(Deny::VaultForbidden),
        VaultOutcome::RateLimited {
            retry_after_seconds,
        } => deny(Deny::VaultRateLimited {
            retry_after_seconds: *retry_after_seconds,
        }),
        VaultOutcome::Failed(f) => deny(Deny::VaultFailed(*f)),
    }
}

#[cfg(test)]
mod tests;
