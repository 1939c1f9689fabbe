//! The per-worker request pipeline: what to do with a request now, and with the requests that
//! were waiting when a call-out answers. Host access goes through [`Host`], so this runs and is
//! tested on the host target; `filter/` only applies the returned [`Step`]s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use crate::auth;
use crate::cache::{self, CachedFailure, Downstream, Verified, VerifiedTokens};
use crate::cache::{DigestMap, FailedAgainst, FailedTokens, Principal, TokenDigest};
use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{Config, JwksSource, SubjectTokenType, Tenant};
use crate::crypto::signing::{AssertionSigner, PureRustSigner};
use crate::crypto::SignatureVerifier;
use crate::jwks::{self, KeySet, RefetchPolicy};
use crate::jwt::{Claims, TokenError};
use crate::reply::Deny;
use crate::secret::Redacted;
use crate::vault::{self, VaultOutcome};

use crate::host::Host;
use crate::metrics::{Counter, Histogram};
use flights::{Flight, Purpose};

mod downstream;
mod flights;
mod id_token;

pub use downstream::{evict_downstream, evict_user};

/// How often a worker looks at shared data for keys another worker fetched.
const KEY_SYNC_INTERVAL_MS: u64 = 1_000;

/// Tokens whose signature failed, remembered per worker (digests only, about 50 bytes each):
/// enough for a client retrying a bad token, or a replayed forgery. Distinct forgeries are
/// held back by the failure budget instead.
const FAILED_TOKENS_CAPACITY: usize = 1024;

/// A tenant's budget of signature failures on one worker: a token bucket holding
/// `rate` failures that refills at `rate` per second. Kept as what has been spent, in
/// thousandths of a failure, so a new (default) budget is full whatever the rate.
#[derive(Debug, Default, Clone, Copy)]
struct FailureBudget {
    spent_milli: u64,
    at_ms: u64,
}

impl FailureBudget {
    fn refill(&mut self, rate: u64, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        // `rate` per second is `rate` thousandths per millisecond.
        self.spent_milli = self
            .spent_milli
            .saturating_sub(elapsed.saturating_mul(rate));
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Seconds until one more failure may be risked: 0 when one may now.
    fn wait_seconds(&mut self, rate: u64, now_ms: u64) -> u64 {
        self.refill(rate, now_ms);
        let over = (self.spent_milli + 1000).saturating_sub(rate.saturating_mul(1000));
        if over == 0 {
            return 0;
        }
        over.div_ceil(rate.max(1)).div_ceil(1000).max(1)
    }

    fn spend(&mut self, rate: u64, now_ms: u64) {
        self.refill(rate, now_ms);
        self.spent_milli = (self.spent_milli + 1000).min(rate.saturating_mul(1000));
    }
}

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
        flight: String,
        start: Option<CalloutRequest>,
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

#[derive(Debug)]
enum Stage {
    NeedKeys,
    NeedDownstream(Rc<Principal>),
}

#[derive(Debug)]
struct Waiting {
    input: RequestInput,
    stage: Stage,
}

#[derive(Default)]
struct TenantKeys {
    keys: Option<Rc<KeySet>>,
    cas: Option<u32>,
    fetched_at_ms: u64,
    synced_at_ms: Option<u64>,
    last_attempt_ms: Option<u64>,
    last_failure: Option<DependencyFailure>,
    /// Consecutive failed fetches, for the cold-start retry backoff.
    failures: u32,
    /// When this worker claimed the refresh lease it holds, if it holds one.
    lease_claimed_ms: Option<u64>,
    /// Bumped whenever `keys` is replaced: a token that failed against older keys is checked
    /// again.
    generation: u64,
    /// Signature failures this worker may still risk for the tenant.
    failure_budget: FailureBudget,
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
    flights: HashMap<String, Flight>,
    callouts: HashMap<u32, String>,
    waiting: HashMap<u32, Waiting>,
    orphans: HashSet<String>,
    /// Per user: (iss, sub, login hint) and the hashes derived from them.
    identities: DigestMap<Identity>,
}

/// A user seen before on this worker, with the hashes derived for them.
struct Identity {
    tenant: usize,
    iss: String,
    sub: String,
    login_hint: Option<String>,
    hashes: cache::UserHashes,
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
            waiting: HashMap::new(),
            orphans: HashSet::new(),
            identities: DigestMap::default(),
        }
    }

    /// Sign client assertions with `signer` instead of pure Rust.
    pub fn with_signer(mut self, signer: Box<dyn AssertionSigner>) -> Self {
        self.signer = signer;
        self
    }

    fn policy(&self) -> RefetchPolicy {
        let s = &self.config.settings;
        RefetchPolicy {
            refresh_ms: s.jwks_refresh_seconds.saturating_mul(1000),
            min_refetch_ms: s.jwks_min_refetch_seconds.saturating_mul(1000),
            max_stale_ms: s.jwks_max_stale_seconds.saturating_mul(1000),
        }
    }

    pub fn is_waiting(&self, context_id: u32) -> bool {
        self.waiting.contains_key(&context_id)
    }

    /// Start on a new request for `context_id`.
    pub fn begin(&mut self, host: &dyn Host, context_id: u32, input: RequestInput) -> Step {
        self.run(host, context_id, input, Stage::NeedKeys)
    }

    fn run(&mut self, host: &dyn Host, context_id: u32, input: RequestInput, stage: Stage) -> Step {
        let config = Rc::clone(&self.config);
        let tenant = &config.tenants[input.tenant];
        let now_ms = host.now_ms();
        let now = (now_ms / 1000) as i64;
        let skew = config.settings.clock_skew_seconds as i64;
        let deny = |deny: Deny, who: Option<&Rc<Principal>>| Step::Deny {
            deny,
            tenant: input.tenant,
            principal: who.map(Rc::clone),
        };

        let principal = match stage {
            Stage::NeedDownstream(principal) => principal,
            Stage::NeedKeys => {
                let digest = self.digest.of(&input.token);
                let cached = self
                    .verified
                    .get(digest)
                    .filter(|v| v.tenant == input.tenant)
                    .map(|v| Rc::clone(&v.principal));
                host.count(
                    &tenant.id,
                    if cached.is_some() {
                        Counter::VerifiedCacheHit
                    } else {
                        Counter::VerifiedCacheMiss
                    },
                );
                match cached {
                    Some(principal) => {
                        if let Err(e) = crate::jwt::check_lifetime(&principal.claims, now, skew) {
                            self.verified.remove(digest);
                            return deny(Deny::InvalidToken(e), Some(&principal));
                        }
                        principal
                    }
                    None => {
                        // A token whose signature already failed against these keys: refused
                        // again at the cost of the lookup.
                        let against = FailedAgainst {
                            tenant: input.tenant,
                            keys: self.keys[input.tenant].generation,
                        };
                        if self.failed.failed(digest, against) {
                            host.count(&tenant.id, Counter::SignatureFailedCached);
                            return deny(Deny::InvalidToken(TokenError::BadSignature), None);
                        }
                        let jwt = match auth::precheck(tenant, &input.token, &config.settings, now)
                        {
                            Ok(jwt) => jwt,
                            Err(e) => return deny(Deny::InvalidToken(e), None),
                        };
                        let keys = match self.keys_for(host, input.tenant, now_ms) {
                            Some(keys) if keys.knows(&jwt) => keys,
                            known => {
                                // Cold start, or a `kid` we have not seen: maybe a rotation.
                                // Either way fetch at most once per interval per worker.
                                let state = &self.keys[input.tenant];
                                if self.flights.contains_key(&jwks_flight(tenant))
                                    || self.policy().may_fetch(
                                        state.last_attempt_ms,
                                        known.is_some(),
                                        state.failures,
                                        now_ms,
                                    )
                                {
                                    return self.wait_for_keys(now_ms, context_id, input);
                                }
                                return match (known, state.last_failure) {
                                    (None, failure) => deny(
                                        Deny::KeysUnavailable(
                                            failure.unwrap_or(DependencyFailure::Unavailable),
                                        ),
                                        None,
                                    ),
                                    (Some(_), _) => {
                                        deny(Deny::InvalidToken(TokenError::UnknownKey), None)
                                    }
                                };
                            }
                        };
                        // Everything cheap passed: the signature check is what a flood of forged
                        // tokens costs. Once the tenant's failures spent its budget, a token
                        // that would need one waits (503); verified tokens never get here.
                        let rate = config.settings.signature_failures_per_second;
                        let state = &mut self.keys[input.tenant];
                        let wait_s = state.failure_budget.wait_seconds(rate, now_ms);
                        if wait_s > 0 {
                            let throttled = Deny::VerificationThrottled {
                                retry_after_seconds: wait_s,
                            };
                            return deny(throttled, None);
                        }
                        let principal = match auth::verify(jwt, &keys, self.verifier.as_ref()) {
                            Ok(c) => Rc::new(self.principal(input.tenant, c)),
                            Err(e) => {
                                if e == TokenError::BadSignature {
                                    let state = &mut self.keys[input.tenant];
                                    state.failure_budget.spend(rate, now_ms);
                                    let against = FailedAgainst {
                                        tenant: input.tenant,
                                        keys: state.generation,
                                    };
                                    self.failed.insert(digest, against);
                                    host.count(&tenant.id, Counter::SignatureFailed);
                                }
                                return deny(Deny::InvalidToken(e), None);
                            }
                        };
                        self.verified.insert(
                            digest,
                            Verified {
                                tenant: input.tenant,
                                principal: Rc::clone(&principal),
                            },
                        );
                        principal
                    }
                }
            }
        };

        if let Err(d) = auth::authorize(tenant, &input.method, &principal.claims) {
            return deny(d, Some(&principal));
        }
        // Okta "user access": the user's ID token rides along in its header. Checked on every
        // request, cached answer or not, so a request without a valid one never gets through.
        if tenant.vault.subject_token_type == SubjectTokenType::IdToken {
            let checked = match self.keys_for(host, input.tenant, now_ms) {
                Some(keys) => auth::verify_id_token(
                    tenant,
                    input.subject_token.as_deref(),
                    &principal.claims,
                    &keys,
                    self.verifier.as_ref(),
                    &config.settings,
                    now,
                )
                .map_err(Deny::InvalidToken),
                None => Err(Deny::KeysUnavailable(DependencyFailure::Unavailable)),
            };
            if let Err(d) = checked {
                return deny(d, Some(&principal));
            }
        }

        let cached = host
            .shared_get(&principal.downstream_key)
            .0
            .and_then(|b| cache::decode_downstream(&b, now_ms));
        host.count(
            &tenant.id,
            if cached.is_some() {
                Counter::DownstreamCacheHit
            } else {
                Counter::DownstreamCacheMiss
            },
        );
        match cached {
            Some(Downstream::Token(t)) => Step::Forward(forward(
                input.tenant,
                tenant,
                &config.settings.credential_headers,
                &principal,
                t.expose(),
            )),
            Some(Downstream::NotConnected { interaction_uri }) => deny(
                connect_required(tenant, interaction_uri.as_deref(), &[]),
                Some(&principal),
            ),
            Some(Downstream::Failed(failure)) => deny(
                match failure {
                    CachedFailure::Misconfigured => Deny::VaultMisconfigured,
                    CachedFailure::Forbidden => Deny::VaultForbidden,
                    CachedFailure::Dependency(f) => Deny::VaultFailed(f),
                },
                Some(&principal),
            ),
            None => {
                let subject = match tenant.vault.subject_token_type {
                    SubjectTokenType::AccessToken => input.token.clone(),
                    SubjectTokenType::RefreshToken | SubjectTokenType::IdToken => {
                        match &input.subject_token {
                            Some(t) => t.clone(),
                            None => {
                                return deny(
                                    Deny::InvalidRequest(
                                        "This resource needs the user's refresh token header.",
                                    ),
                                    Some(&principal),
                                )
                            }
                        }
                    }
                };
                if let Some(wait_s) = self.backing_off(host, input.tenant, now_ms) {
                    host.count(&tenant.id, Counter::VaultBackoff);
                    let limited = Deny::VaultRateLimited {
                        retry_after_seconds: Some(wait_s),
                    };
                    return deny(limited, Some(&principal));
                }
                let request = match vault::first_request(
                    &tenant.vault,
                    &subject,
                    principal.claims.login_hint.as_deref(),
                    self.signer.as_ref(),
                    now_ms / 1000,
                ) {
                    Ok(request) => request,
                    Err(outcome) => {
                        host.count(&tenant.id, Counter::Vault(vault_metric(&outcome)));
                        return vault_step(
                            tenant,
                            input.tenant,
                            &config.settings.credential_headers,
                            &principal,
                            &outcome,
                        );
                    }
                };
                let tenant_index = input.tenant;
                self.wait(
                    now_ms,
                    context_id,
                    principal.downstream_key.clone(),
                    Purpose::Vault {
                        tenant: tenant_index,
                        leg: 0,
                    },
                    request,
                    Waiting {
                        input,
                        stage: Stage::NeedDownstream(principal),
                    },
                )
            }
        }
    }

    fn complete_flight(
        &mut self,
        host: &dyn Host,
        key: &str,
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
        let mut finish =
            |worker: &mut Worker, decide: &mut dyn FnMut(&mut Worker, u32, Waiting) -> Step| {
                for ctx in &flight.waiters {
                    if let Some(w) = worker.waiting.remove(ctx) {
                        let step = decide(worker, *ctx, w);
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
                            key.to_string(),
                            Flight {
                                purpose: Purpose::Jwks { tenant },
                                request: request.clone(),
                                waiters: flight.waiters,
                                owner: None,
                                sent_ms: None,
                                started_ms: flight.started_ms,
                                user_key: None,
                            },
                        );
                        // Dispatched at once by the caller through `take_orphans`.
                        self.orphans.insert(key.to_string());
                        return Vec::new();
                    }
                    None => {
                        let failure = failure_of(response);
                        self.keys[tenant].last_failure = Some(failure);
                        self.keys[tenant].failures = self.keys[tenant].failures.saturating_add(1);
                        finish(self, &mut |w, ctx, waiting| {
                            w.after_keys(host, ctx, waiting, Some(failure))
                        });
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
                finish(self, &mut |w, ctx, waiting| {
                    w.after_keys(host, ctx, waiting, failure)
                });
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
                            key.to_string(),
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
                            },
                        );
                        self.orphans.insert(key.to_string());
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
                if let Some(user_key) = &flight.user_key {
                    self.store_downstream(host, key, user_key, flight.started_ms, &outcome, now_ms);
                }
                let config = Rc::clone(&self.config);
                finish(self, &mut |_, _, waiting| {
                    let t = &config.tenants[waiting.input.tenant];
                    let Stage::NeedDownstream(principal) = &waiting.stage else {
                        return Step::Deny {
                            deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
                            tenant: waiting.input.tenant,
                            principal: None,
                        };
                    };
                    vault_step(
                        t,
                        waiting.input.tenant,
                        &config.settings.credential_headers,
                        principal,
                        &outcome,
                    )
                });
            }
        }
        out
    }

    fn after_keys(
        &mut self,
        host: &dyn Host,
        ctx: u32,
        waiting: Waiting,
        failure: Option<DependencyFailure>,
    ) -> Step {
        let tenant = waiting.input.tenant;
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
        self.run(host, ctx, waiting.input, Stage::NeedKeys)
    }

    /// Keep a fetched JWKS, or record why it failed. Old keys stay in use after a failure.
    fn store_jwks(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        response: &CalloutResponse,
        now_ms: u64,
    ) -> Option<DependencyFailure> {
        let parsed = match (response.status, &response.body) {
            (Some(200), Some(body)) => jwks::parse_jwks(body).ok().map(|k| (k, body)),
            _ => None,
        };
        let tenant_id = &self.config.tenants[tenant].id;
        host.count(tenant_id, Counter::JwksFetch);
        let Some((keys, body)) = parsed else {
            host.count(tenant_id, Counter::JwksFetchFailed);
            let failure = failure_of(response);
            self.keys[tenant].last_failure = Some(failure);
            self.keys[tenant].failures = self.keys[tenant].failures.saturating_add(1);
            return Some(failure);
        };
        let key = cache::jwks_key(&self.config.tenants[tenant]);
        let cas = host.shared_get(&key).1;
        // Best effort: other workers fetch for themselves if it does not land.
        let _ = host.shared_set(&key, &cache::encode_jwks(now_ms, body), cas);
        let state = &mut self.keys[tenant];
        state.keys = Some(Rc::new(keys));
        state.generation = state.generation.wrapping_add(1);
        state.fetched_at_ms = now_ms;
        state.cas = host.shared_get(&key).1;
        state.synced_at_ms = Some(now_ms);
        state.last_failure = None;
        state.failures = 0;
        None
    }

    /// The tenant's usable keys, refreshed from shared data at most once per sync interval.
    fn keys_for(&mut self, host: &dyn Host, tenant: usize, now_ms: u64) -> Option<Rc<KeySet>> {
        let policy = self.policy();
        let state = &mut self.keys[tenant];
        // Without keys, look every time: another worker may have just stored them.
        let due = state.keys.is_none()
            || state
                .synced_at_ms
                .is_none_or(|t| now_ms.saturating_sub(t) >= KEY_SYNC_INTERVAL_MS);
        if due {
            state.synced_at_ms = Some(now_ms);
            let key = cache::jwks_key(&self.config.tenants[tenant]);
            if let (Some(bytes), cas) = host.shared_get(&key) {
                if cas != state.cas || state.keys.is_none() {
                    if let Some((fetched_at, body)) = cache::decode_jwks(&bytes) {
                        if let Ok(keys) = jwks::parse_jwks(body) {
                            state.keys = Some(Rc::new(keys));
                            state.generation = state.generation.wrapping_add(1);
                            state.fetched_at_ms = fetched_at;
                            state.cas = cas;
                        }
                    }
                }
            }
        }
        let state = &self.keys[tenant];
        state
            .keys
            .as_ref()
            .filter(|_| policy.usable(state.fetched_at_ms, now_ms))
            .cloned()
    }

    /// Tenants whose keys should be refreshed in the background now, with the request to send.
    pub fn refresh_due(&mut self, host: &dyn Host) -> Vec<(String, CalloutRequest)> {
        let now_ms = host.now_ms();
        let policy = self.policy();
        let mut due = Vec::new();
        let config = Rc::clone(&self.config);
        for i in 0..config.tenants.len() {
            self.keys_for(host, i, now_ms);
            let state = &self.keys[i];
            let tenant = &config.tenants[i];
            let flight = jwks_flight(tenant);
            if self.flights.contains_key(&flight) {
                continue;
            }
            let fetch_now = match state.keys {
                None => policy.may_fetch(state.last_attempt_ms, false, state.failures, now_ms),
                Some(_) => policy.due_for_refresh(
                    state.fetched_at_ms,
                    state.last_attempt_ms.unwrap_or(0),
                    now_ms,
                ),
            };
            // Every worker's root ticks; one of them fetches per window, the rest read the
            // result from shared data.
            if fetch_now && self.take_refresh_lease(host, i, now_ms) {
                let (purpose, request) = match &tenant.jwks {
                    JwksSource::Direct {
                        cluster,
                        authority,
                        path,
                    } => (
                        Purpose::Jwks { tenant: i },
                        CalloutRequest::get(cluster, authority, path),
                    ),
                    JwksSource::Discovery {
                        cluster,
                        authority,
                        path,
                    } => (
                        Purpose::Discovery { tenant: i },
                        CalloutRequest::get(cluster, authority, path),
                    ),
                };
                self.flights.insert(
                    flight.clone(),
                    Flight {
                        purpose,
                        request: request.clone(),
                        waiters: Vec::new(),
                        owner: None,
                        sent_ms: None,
                        started_ms: now_ms,
                        user_key: None,
                    },
                );
                due.push((flight, request));
            }
        }
        due
    }

    /// Claim the right to refresh tenant `i`'s keys for one call-out window, across workers.
    /// Shared-data CAS makes exactly one claimant win a window.
    fn take_refresh_lease(&mut self, host: &dyn Host, i: usize, now_ms: u64) -> bool {
        let key = cache::jwks_lease_key(&self.config.tenants[i]);
        let window = self.config.settings.callout_timeout_ms + 1000;
        let (value, mut cas) = host.shared_get(&key);
        let held_since = value
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes);
        if held_since.is_some_and(|t| now_ms.saturating_sub(t) < window) {
            return false;
        }
        if cas.is_none() {
            // First claim ever: create the entry, then race for it with CAS like everyone.
            let _ = host.shared_set(&key, &0u64.to_be_bytes(), None);
            cas = host.shared_get(&key).1;
        }
        let claimed = cas.is_some() && host.shared_set(&key, &now_ms.to_be_bytes(), cas).is_ok();
        if claimed {
            self.keys[i].lease_claimed_ms = Some(now_ms);
        }
        claimed
    }

    /// A refresh this worker claimed succeeded: free the lease at once, so the next refresh
    /// (by any worker) is not held back by this one's window. A failed one keeps it: failures
    /// back off across workers.
    fn release_refresh_lease(&mut self, host: &dyn Host, i: usize) {
        let Some(claimed) = self.keys[i].lease_claimed_ms.take() else {
            return;
        };
        let key = cache::jwks_lease_key(&self.config.tenants[i]);
        let (value, cas) = host.shared_get(&key);
        let held_since = value
            .and_then(|v| v.try_into().ok())
            .map(u64::from_be_bytes);
        if held_since == Some(claimed) {
            let _ = host.shared_set(&key, &0u64.to_be_bytes(), cas);
        }
    }

    /// The verified caller, reusing the hashes derived for the same user before: a new token
    /// of a known user costs no SHA-256.
    fn principal(&mut self, tenant: usize, claims: Claims) -> Principal {
        let hint = claims.login_hint.as_deref().unwrap_or("");
        let digest = self.digest.of_parts(&[
            &(tenant as u64).to_le_bytes(),
            claims.iss.as_bytes(),
            claims.sub.as_bytes(),
            hint.as_bytes(),
        ]);
        if let Some(known) = self.identities.get(&digest) {
            // Equal fields, not just equal digests: one user's keys never serve another.
            if known.tenant == tenant
                && known.iss == claims.iss
                && known.sub == claims.sub
                && known.login_hint == claims.login_hint
            {
                return Principal::with_hashes(claims, known.hashes.clone());
            }
        }
        let hashes = cache::UserHashes::new(&self.config.tenants[tenant], &claims);
        if self.identities.len() >= self.config.settings.verified_token_cache_size.max(1) {
            self.identities.clear();
        }
        let entry = Identity {
            tenant,
            iss: claims.iss.clone(),
            sub: claims.sub.clone(),
            login_hint: claims.login_hint.clone(),
            hashes: hashes.clone(),
        };
        self.identities.insert(digest, entry);
        Principal::with_hashes(claims, hashes)
    }

    /// Whether signing keys are loaded for tenant `i` (for `/health`).
    pub fn keys_loaded(&mut self, host: &dyn Host, i: usize) -> bool {
        let now = host.now_ms();
        self.keys_for(host, i, now).is_some()
    }
}

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

fn jwks_flight(tenant: &Tenant) -> String {
    cache::jwks_key(tenant)
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
