//! The per-worker request pipeline: what to do with a request now, and with the requests that
//! were waiting when a call-out answers. Host access goes through [`Host`], so this runs and is
//! tested on the host target; `filter/` only applies the returned [`Step`]s.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::rc::Rc;

use crate::auth;
use crate::cache::{self, CachedFailure, Downstream, Verified, VerifiedTokens};
use crate::cache::{DigestMap, Principal, TokenDigest};
use crate::callout::{CalloutRequest, CalloutResponse, DependencyFailure};
use crate::config::{Config, ConnectProvider, JwksSource, SubjectTokenType, Tenant, VaultBackend};
use crate::crypto::signing::{AssertionSigner, PureRustSigner};
use crate::crypto::SignatureVerifier;
use crate::jwks::{self, KeySet, RefetchPolicy};
use crate::jwt::{Claims, TokenError};
use crate::reply::Deny;
use crate::secret::Redacted;
use crate::vault::{self, VaultOutcome};

/// The few host services the pipeline needs.
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

/// Forget a cached downstream answer, so the next request asks the vault (after the user
/// connected the account). When the key was last evicted after a backend 401 is kept.
pub fn evict_downstream(host: &dyn Host, key: &str) {
    update_shared(host, key, |old| {
        Some(cache::encode_evicted(
            old.map_or(0, cache::downstream_evicted_at),
        ))
    });
}

/// Forget every cached answer of a user (all their login hints), and void the answers of
/// exchanges already in flight: after the user disconnected the account.
pub fn evict_user(host: &dyn Host, user_key: &str, now_ms: u64) {
    // Mark first, then evict what the record lists: a store indexed before the mark is
    // evicted here; one after it sees the mark (`store_downstream` checks both ways).
    let mut keys = Vec::new();
    update_shared(host, user_key, |old| {
        let mut record = old.and_then(cache::decode_user).unwrap_or_default();
        record.voided_at_ms = record.voided_at_ms.max(now_ms);
        keys = record.keys.clone();
        Some(cache::encode_user(&record))
    });
    for key in keys {
        evict_downstream(host, &key);
    }
}

/// Read-modify-write of a shared-data entry under CAS, retried while other workers write in
/// between. `change` gives the new value, or `None` to leave the entry. True when written.
fn update_shared(
    host: &dyn Host,
    key: &str,
    mut change: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
) -> bool {
    for _ in 0..4 {
        let (value, cas) = host.shared_get(key);
        let Some(new) = change(value.as_deref()) else {
            return false;
        };
        if host.shared_set(key, &new, cas) {
            return true;
        }
    }
    false
}

/// Whether answers of an exchange that began at `started_ms` are void for this user record.
fn voided(record: &cache::UserRecord, started_ms: u64) -> bool {
    record.voided_at_ms != 0 && record.voided_at_ms >= started_ms
}

/// How often a worker looks at shared data for keys another worker fetched.
const KEY_SYNC_INTERVAL_MS: u64 = 1_000;

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

#[derive(Debug, Clone)]
enum Purpose {
    Discovery {
        tenant: usize,
    },
    Jwks {
        tenant: usize,
    },
    /// Call `leg` (0 first) of the tenant's vault exchange.
    Vault {
        tenant: usize,
        leg: u8,
    },
}

struct Flight {
    purpose: Purpose,
    request: CalloutRequest,
    waiters: Vec<u32>,
    /// The context whose call-out is in flight; `None` once it went away before the answer.
    owner: Option<u32>,
    /// When the call-out was sent (for the latency histogram).
    sent_ms: u64,
    /// When the exchange began (its first leg): an eviction after it voids its answer.
    started_ms: u64,
    /// The user record of a vault exchange.
    user_key: Option<String>,
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
}

/// Per-worker state shared by the root context and every HTTP context of one VM.
pub struct Worker {
    pub config: Rc<Config>,
    verifier: Box<dyn SignatureVerifier>,
    /// Signs client assertions (Okta backends).
    signer: Box<dyn AssertionSigner>,
    digest: TokenDigest,
    verified: VerifiedTokens,
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
                        "verified_cache.hit"
                    } else {
                        "verified_cache.miss"
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
                        let principal = match auth::verify(jwt, &keys, self.verifier.as_ref()) {
                            Ok(c) => Rc::new(self.principal(input.tenant, c)),
                            Err(e) => return deny(Deny::InvalidToken(e), None),
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
                "downstream_cache.hit"
            } else {
                "downstream_cache.miss"
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
                    host.count(&tenant.id, "vault.backoff");
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
                        host.count(&tenant.id, vault_metric(&outcome));
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

    fn wait_for_keys(&mut self, now_ms: u64, context_id: u32, input: RequestInput) -> Step {
        let tenant = &self.config.tenants[input.tenant];
        let (purpose, request) = match &tenant.jwks {
            JwksSource::Direct {
                cluster,
                authority,
                path,
            } => (
                Purpose::Jwks {
                    tenant: input.tenant,
                },
                CalloutRequest::get(cluster, authority, path),
            ),
            JwksSource::Discovery {
                cluster,
                authority,
                path,
            } => (
                Purpose::Discovery {
                    tenant: input.tenant,
                },
                CalloutRequest::get(cluster, authority, path),
            ),
        };
        let flight = jwks_flight(tenant);
        self.wait(
            now_ms,
            context_id,
            flight,
            purpose,
            request,
            Waiting {
                input,
                stage: Stage::NeedKeys,
            },
        )
    }

    /// Join the flight for `key`, or start it.
    fn wait(
        &mut self,
        now_ms: u64,
        context_id: u32,
        key: String,
        purpose: Purpose,
        request: CalloutRequest,
        waiting: Waiting,
    ) -> Step {
        let user_key = match &waiting.stage {
            Stage::NeedDownstream(p) => Some(p.user_key.clone()),
            Stage::NeedKeys => None,
        };
        self.waiting.insert(context_id, waiting);
        if let Some(flight) = self.flights.get_mut(&key) {
            flight.waiters.push(context_id);
            return Step::Wait {
                flight: key,
                start: None,
            };
        }
        self.flights.insert(
            key.clone(),
            Flight {
                purpose,
                request: request.clone(),
                waiters: vec![context_id],
                owner: Some(context_id),
                sent_ms: 0,
                started_ms: now_ms,
                user_key,
            },
        );
        Step::Wait {
            flight: key,
            start: Some(request),
        }
    }

    /// The call-out for `flight` was dispatched as `token` by `owner`.
    pub fn dispatched(&mut self, flight: &str, token: u32, owner: u32, now_ms: u64) {
        if let Some(f) = self.flights.get_mut(flight) {
            f.owner = Some(owner);
            f.sent_ms = now_ms;
            if let Purpose::Jwks { tenant } | Purpose::Discovery { tenant } = f.purpose {
                self.keys[tenant].last_attempt_ms = Some(now_ms);
            }
        }
        self.orphans.remove(flight);
        self.callouts.insert(token, flight.to_string());
    }

    /// A waiting request went away (client closed). Its flight carries on for the others; if
    /// it owned the call-out, the answer will not come to us and the root must redo it.
    pub fn forget(&mut self, context_id: u32) {
        self.waiting.remove(&context_id);
        let mut orphaned = Vec::new();
        for (key, f) in self.flights.iter_mut() {
            f.waiters.retain(|w| *w != context_id);
            if f.owner == Some(context_id) {
                f.owner = None;
                orphaned.push(key.clone());
            }
        }
        for key in orphaned {
            let empty = self.flights.get(&key).is_some_and(|f| f.waiters.is_empty());
            if empty {
                self.flights.remove(&key);
            } else {
                self.orphans.insert(key);
            }
        }
        self.callouts
            .retain(|_, flight| self.flights.contains_key(flight));
    }

    /// Flights whose owner went away and that others still wait for: redispatch them.
    pub fn take_orphans(&mut self, now_ms: u64) -> Vec<(String, CalloutRequest)> {
        let keys: Vec<String> = self.orphans.drain().collect();
        let mut out = Vec::new();
        for key in keys {
            self.restart_single_use_exchange(&key, now_ms);
            if let Some(f) = self.flights.get(&key) {
                out.push((key, f.request.clone()));
            }
        }
        out
    }

    /// A vault call sent by a context that went away is sent again; an Okta call must not be
    /// replayed as it was (its client assertion's `jti`, and an ID-JAG, are single-use), so the
    /// exchange starts over from its first call with a fresh assertion.
    fn restart_single_use_exchange(&mut self, key: &str, now_ms: u64) {
        let Some(flight) = self.flights.get_mut(key) else {
            return;
        };
        let Purpose::Vault { tenant, .. } = flight.purpose else {
            return;
        };
        let vault = &self.config.tenants[tenant].vault;
        // Never sent (the next leg of a chain), or Auth0's exchange, which may be repeated.
        if flight.sent_ms == 0 || matches!(vault.backend, VaultBackend::Auth0 { .. }) {
            return;
        }
        let Some(Waiting {
            input,
            stage: Stage::NeedDownstream(principal),
        }) = flight.waiters.iter().find_map(|w| self.waiting.get(w))
        else {
            return;
        };
        let subject = match vault.subject_token_type {
            SubjectTokenType::RefreshToken | SubjectTokenType::IdToken => {
                input.subject_token.clone().unwrap_or_default()
            }
            SubjectTokenType::AccessToken => input.token.clone(),
        };
        let hint = principal.claims.login_hint.as_deref();
        if let Ok(request) =
            vault::first_request(vault, &subject, hint, self.signer.as_ref(), now_ms / 1000)
        {
            flight.request = request;
            flight.purpose = Purpose::Vault { tenant, leg: 0 };
            flight.sent_ms = 0;
        }
    }

    /// A dispatch failed before anything was sent (e.g. the cluster does not exist).
    pub fn dispatch_failed(&mut self, host: &dyn Host, flight: &str) -> Vec<Resolution> {
        let response = CalloutResponse {
            status: Some(503),
            retry_after: None,
            rate_limit_reset: None,
            body: Some(Vec::new()),
        };
        self.complete_flight(host, flight, &response)
    }

    /// A call-out answered. Returns the requests it decided; the caller dispatches any new
    /// `Step::Wait { start: Some(..) }` among them.
    pub fn on_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        response: &CalloutResponse,
    ) -> Vec<Resolution> {
        match self.callouts.remove(&token) {
            Some(flight) => self.complete_flight(host, &flight, response),
            None => Vec::new(),
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
            "vault.latency_ms"
        } else {
            "jwks.latency_ms"
        };
        host.record(&tenant_id, kind, now_ms.saturating_sub(flight.sent_ms));
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
                                sent_ms: 0,
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
                                sent_ms: 0,
                                started_ms: flight.started_ms,
                                user_key: flight.user_key.clone(),
                            },
                        );
                        self.orphans.insert(key.to_string());
                        return Vec::new();
                    }
                };
                host.count(&tenant_id, vault_metric(&outcome));
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
        host.count(tenant_id, "jwks.fetch");
        let Some((keys, body)) = parsed else {
            host.count(tenant_id, "jwks.fetch_failed");
            let failure = failure_of(response);
            self.keys[tenant].last_failure = Some(failure);
            self.keys[tenant].failures = self.keys[tenant].failures.saturating_add(1);
            return Some(failure);
        };
        let key = cache::jwks_key(&self.config.tenants[tenant]);
        let cas = host.shared_get(&key).1;
        host.shared_set(&key, &cache::encode_jwks(now_ms, body), cas);
        let state = &mut self.keys[tenant];
        state.keys = Some(Rc::new(keys));
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
                        sent_ms: 0,
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
            host.shared_set(&key, &0u64.to_be_bytes(), None);
            cas = host.shared_get(&key).1;
        }
        let claimed = cas.is_some() && host.shared_set(&key, &now_ms.to_be_bytes(), cas);
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
            host.shared_set(&key, &0u64.to_be_bytes(), cas);
        }
    }

    /// The backend answered a request forwarded with the token cached under `key`: when it
    /// refused it (401), evict it. True when a token was evicted. `status` is read only here,
    /// for forwarded requests (local replies cost nothing).
    pub fn backend_answered(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        key: &str,
        status: &dyn Fn() -> Option<u16>,
    ) -> bool {
        if status() != Some(401) {
            return false;
        }
        // At most once per key per interval: a backend that refuses every token must not
        // turn each request into a vault call.
        let now_ms = host.now_ms();
        let interval_ms = self
            .config
            .settings
            .vault_backoff_seconds
            .saturating_mul(1000);
        let tenant_id = &self.config.tenants[tenant].id;
        let (value, _) = host.shared_get(key);
        let last = value.as_deref().map_or(0, cache::downstream_evicted_at);
        if last != 0 && now_ms.saturating_sub(last) < interval_ms {
            host.count(tenant_id, "downstream_evict_limited");
            return false;
        }
        update_shared(host, key, |_| Some(cache::encode_evicted(now_ms)));
        host.count(tenant_id, "downstream_evicted");
        true
    }

    /// Check an ID token of the connect pages' sign-in for tenant `tenant`, issued to its
    /// connect client, and return its `sub`. Auth0's is signed by the tenant's issuer keys;
    /// Okta's by the org's (`org_keys`, the JWKS just fetched), its issuer the org.
    pub fn verify_id_token(
        &mut self,
        host: &dyn Host,
        tenant: usize,
        token: &str,
        org_keys: Option<&[u8]>,
    ) -> Option<String> {
        let now_ms = host.now_ms();
        let connect = self.config.tenants[tenant].connect.clone()?;
        let (keys, issuer) = match (&connect.provider, org_keys) {
            (ConnectProvider::Auth0 { .. }, None) => (
                self.keys_for(host, tenant, now_ms)?,
                self.config.tenants[tenant].issuer.clone(),
            ),
            (ConnectProvider::Okta { issuer, .. }, Some(jwks)) => {
                (Rc::new(jwks::parse_jwks(jwks).ok()?), issuer.clone())
            }
            _ => return None,
        };
        let s = &self.config.settings;
        // The connect client's own list: an agent allow-list of ES256 only must not make
        // the sign-in's RS256 ID tokens unverifiable (nor widen what agent tokens may use).
        let algorithms = &connect.id_token_algorithms;
        let jwt = crate::jwt::parse(token, s.max_token_bytes.max(16 * 1024), None).ok()?;
        let claims = &jwt.claims;
        let valid = algorithms.contains(&jwt.alg)
            && claims.iss == issuer
            && claims.aud.contains(&connect.client_id)
            && crate::jwt::check_lifetime(
                claims,
                (now_ms / 1000) as i64,
                s.clock_skew_seconds as i64,
            )
            .is_ok();
        if !valid {
            return None;
        }
        keys.verify(&jwt, self.verifier.as_ref()).ok()?;
        Some(jwt.claims.sub)
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

    /// Cache a vault answer under `key`, listed in the user's record, unless the user's
    /// answers were voided (a disconnect) after this exchange began at `started_ms`.
    fn store_downstream(
        &self,
        host: &dyn Host,
        key: &str,
        user_key: &str,
        started_ms: u64,
        outcome: &VaultOutcome,
        now_ms: u64,
    ) {
        let Some((value, ttl_s)) = self.cached_answer(outcome) else {
            return;
        };
        if ttl_s == 0 {
            return;
        }
        let mut dropped = None;
        let indexed = update_shared(host, user_key, |old| {
            let mut record = match old {
                None => cache::UserRecord::default(),
                Some(bytes) => cache::decode_user(bytes)?,
            };
            if voided(&record, started_ms) {
                return None;
            }
            if !record.keys.iter().any(|k| k == key) {
                record.keys.push(key.to_string());
            }
            // Bounded: the oldest entry leaves the record and the cache together.
            dropped = (record.keys.len() > cache::MAX_USER_KEYS).then(|| record.keys.remove(0));
            Some(cache::encode_user(&record))
        });
        if let Some(old) = &dropped {
            evict_downstream(host, old);
        }
        if !indexed {
            return;
        }
        let expires_at_ms = now_ms.saturating_add(ttl_s.saturating_mul(1000));
        update_shared(host, key, |old| {
            let evicted_at = old.map_or(0, cache::downstream_evicted_at);
            Some(cache::encode_downstream(&value, expires_at_ms, evicted_at))
        });
        // A disconnect between indexing and writing may have missed this entry: check again.
        let kept = host
            .shared_get(user_key)
            .0
            .and_then(|b| cache::decode_user(&b))
            .is_some_and(|r| !voided(&r, started_ms) && r.keys.iter().any(|k| k == key));
        if !kept {
            evict_downstream(host, key);
        }
    }

    /// What to cache for a vault answer, and for how many seconds.
    fn cached_answer(&self, outcome: &VaultOutcome) -> Option<(Downstream, u64)> {
        let s = &self.config.settings;
        let failed = |f| Some((Downstream::Failed(f), s.vault_backoff_seconds));
        match outcome {
            VaultOutcome::Token {
                access_token,
                expires_in,
            } => Some((
                Downstream::Token(access_token.clone()),
                // Capped: a disconnect on another replica is seen within the cap.
                expires_in
                    .saturating_sub(s.downstream_expiry_margin_seconds)
                    .min(s.downstream_cache_max_seconds),
            )),
            VaultOutcome::ConnectRequired {
                interaction_uri, ..
            } => Some((
                Downstream::NotConnected {
                    interaction_uri: interaction_uri.clone(),
                },
                s.not_connected_cache_seconds,
            )),
            // Remembered per user so retries cannot turn into a call each.
            VaultOutcome::Misconfigured { .. } => failed(CachedFailure::Misconfigured),
            VaultOutcome::Forbidden { .. } => failed(CachedFailure::Forbidden),
            VaultOutcome::Failed(f) => failed(CachedFailure::Dependency(*f)),
            // Per token, not per user: a new token must be tried. Rate limits are tenant-wide.
            VaultOutcome::SubjectRejected { .. } | VaultOutcome::RateLimited { .. } => None,
        }
    }

    /// The vault answered 429: no call for any user of the tenant until its `Retry-After`
    /// (without one, `vault_backoff_seconds`, at least a second).
    fn back_off(&self, host: &dyn Host, tenant: usize, retry_after_s: Option<u64>, now_ms: u64) {
        let seconds = retry_after_s
            .unwrap_or(self.config.settings.vault_backoff_seconds)
            .max(1);
        let until = now_ms.saturating_add(seconds.saturating_mul(1000));
        let key = cache::vault_backoff_key(&self.config.tenants[tenant]);
        update_shared(host, &key, |old| {
            let current = old.and_then(decode_ms).unwrap_or(0);
            (until > current).then(|| until.to_be_bytes().to_vec())
        });
    }

    /// Seconds the tenant's vault asked us to wait still, if any.
    fn backing_off(&self, host: &dyn Host, tenant: usize, now_ms: u64) -> Option<u64> {
        let key = cache::vault_backoff_key(&self.config.tenants[tenant]);
        let until = host.shared_get(&key).0.as_deref().and_then(decode_ms)?;
        (until > now_ms).then(|| (until - now_ms).div_ceil(1000))
    }
}

fn decode_ms(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
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
