//! The pipeline of one request, in three short stages: verify the token (the verified cache,
//! cheap checks, keys, the signature under the tenant's failure budget), authorize it (scopes
//! by method; the user's ID token for Okta user access), and get the downstream token (the
//! cache, or one vault exchange shared by every request waiting for it).

use std::rc::Rc;

use super::{
    connect_required, downstream, forward, vault_metric, vault_step, FlightKey, Host, RequestInput,
    Step, Worker,
};
use crate::auth;
use crate::cache::{self, CachedFailure, Downstream, FailedAgainst, Principal, Verified};
use crate::callout::DependencyFailure;
use crate::config::SubjectTokenType;
use crate::jwt::{Claims, TokenError};
use crate::metrics::Counter;
use crate::reply::Deny;
use crate::vault;

/// Where verification left a request.
enum Verification {
    Verified(Rc<Principal>),
    /// The tenant's keys must be fetched first.
    NeedKeys,
    /// Refused, with who it was when known.
    Refused(Deny, Option<Rc<Principal>>),
}

impl Worker {
    /// Run the request, the clock already read for it (or run it again once its keys came):
    /// the step it needs next.
    pub fn begin_at(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        input: RequestInput,
        now_ms: u64,
    ) -> Step {
        let tenant = input.tenant;
        let refuse = |deny: Deny, who: Option<Rc<Principal>>| Step::Deny {
            deny,
            tenant,
            principal: who,
        };
        let principal = match self.verify(host, &input, now_ms) {
            Verification::Verified(principal) => principal,
            Verification::NeedKeys => return self.wait_for_keys(now_ms, context_id, input),
            Verification::Refused(deny, who) => return refuse(deny, who),
        };
        if let Err(deny) = self.authorize(host, &input, &principal, now_ms) {
            return refuse(deny, Some(principal));
        }
        self.downstream(host, context_id, input, principal, now_ms)
    }

    /// The token's caller, from the verified cache or by checking it.
    fn verify(&mut self, host: &dyn Host, input: &RequestInput, now_ms: u64) -> Verification {
        let config = Rc::clone(&self.config);
        let tenant = &config.tenants[input.tenant];
        let now = (now_ms / 1000) as i64;
        let skew = config.settings.clock_skew_seconds as i64;
        let digest = self.digest.of(&input.token);
        let cached = self
            .verified
            .get(digest)
            .filter(|v| v.tenant == input.tenant)
            .map(|v| Rc::clone(&v.principal));
        let cached = match cached {
            Some(principal) => Some(principal),
            None => self.verified_elsewhere(host, input.tenant, digest),
        };
        host.count(
            &tenant.id,
            if cached.is_some() {
                Counter::VerifiedCacheHit
            } else {
                Counter::VerifiedCacheMiss
            },
        );
        if let Some(principal) = cached {
            // Cached, but lifetimes still run out.
            if let Err(e) = crate::jwt::check_lifetime(&principal.claims, now, skew) {
                self.verified.remove(digest);
                return Verification::Refused(Deny::InvalidToken(e), Some(principal));
            }
            return Verification::Verified(principal);
        }
        let refused = |e: TokenError| Verification::Refused(Deny::InvalidToken(e), None);
        // A token whose signature already failed against these keys: refused again at the
        // cost of the lookup.
        let against = FailedAgainst {
            tenant: input.tenant,
            keys: self.keys[input.tenant].generation,
        };
        if self.failed.failed(digest, against) {
            host.count(&tenant.id, Counter::SignatureFailedCached);
            return refused(TokenError::BadSignature);
        }
        let jwt = match auth::precheck(tenant, &input.token, &config.settings, now) {
            Ok(jwt) => jwt,
            Err(e) => return refused(e),
        };
        let keys = match self.keys_for(host, input.tenant, now_ms) {
            Some(keys) if keys.knows(&jwt) => keys,
            known => {
                // Cold start, or a `kid` we have not seen: maybe a rotation. Either way fetch
                // at most once per interval per worker.
                let state = &self.keys[input.tenant];
                if self.flights.contains_key(&FlightKey::Keys(input.tenant))
                    || self.policy().may_fetch(
                        state.last_attempt_ms,
                        known.is_some(),
                        state.failures,
                        now_ms,
                    )
                {
                    return Verification::NeedKeys;
                }
                return match (known, state.last_failure) {
                    (None, failure) => Verification::Refused(
                        Deny::KeysUnavailable(failure.unwrap_or(DependencyFailure::Unavailable)),
                        None,
                    ),
                    (Some(_), _) => refused(TokenError::UnknownKey),
                };
            }
        };
        // Everything cheap passed: the signature check is what a flood of forged tokens costs.
        // Once the tenant's failures spent its budget, a token that would need one waits (503);
        // verified tokens never get here.
        let rate = config.settings.signature_failures_per_second;
        let wait_s = self.keys[input.tenant]
            .failure_budget
            .wait_seconds(rate, now_ms);
        if wait_s > 0 {
            let throttled = Deny::VerificationThrottled {
                retry_after_seconds: wait_s,
            };
            return Verification::Refused(throttled, None);
        }
        match auth::verify(jwt, &keys, self.verifier.as_ref()) {
            Ok(claims) => {
                self.share_verified(host, input.tenant, digest, &claims);
                Verification::Verified(self.remember_verified(input.tenant, digest, claims))
            }
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
                refused(e)
            }
        }
    }

    /// A token's checked claims: its caller, kept in this worker's verified-token cache.
    pub(super) fn remember_verified(
        &mut self,
        tenant: usize,
        digest: u128,
        claims: Claims,
    ) -> Rc<Principal> {
        let principal = Rc::new(self.principal(tenant, claims));
        let verified = Verified {
            tenant,
            principal: Rc::clone(&principal),
        };
        self.verified.insert(digest, verified);
        principal
    }

    /// Scopes for the method; for Okta "user access", the user's ID token riding along in its
    /// header, checked on every request (cached answer or not), so a request without a valid
    /// one never gets through.
    fn authorize(
        &mut self,
        host: &dyn Host,
        input: &RequestInput,
        principal: &Principal,
        now_ms: u64,
    ) -> Result<(), Deny> {
        let config = Rc::clone(&self.config);
        let tenant = &config.tenants[input.tenant];
        auth::authorize(tenant, &input.method, &principal.claims)?;
        if tenant.vault.subject_token_type != SubjectTokenType::IdToken {
            return Ok(());
        }
        let keys = self
            .keys_for(host, input.tenant, now_ms)
            .ok_or(Deny::KeysUnavailable(DependencyFailure::Unavailable))?;
        auth::verify_id_token(
            tenant,
            input.subject_token.as_deref(),
            &principal.claims,
            &keys,
            self.verifier.as_ref(),
            &config.settings,
            (now_ms / 1000) as i64,
        )
        .map_err(Deny::InvalidToken)
    }

    /// The user's downstream token: cached (or a cached refusal), or one vault exchange that
    /// every request of the same user joins.
    fn downstream(
        &mut self,
        host: &dyn Host,
        context_id: u32,
        input: RequestInput,
        principal: Rc<Principal>,
        now_ms: u64,
    ) -> Step {
        let config = Rc::clone(&self.config);
        let tenant = &config.tenants[input.tenant];
        let refuse = |deny: Deny, principal: &Rc<Principal>| Step::Deny {
            deny,
            tenant: input.tenant,
            principal: Some(Rc::clone(principal)),
        };
        if let Some(token) = downstream::memoized(&principal, now_ms) {
            host.count(&tenant.id, Counter::DownstreamCacheHit);
            return self.answered(&input, &principal, &Downstream::Token(token));
        }
        let cached = host
            .shared_get(&principal.downstream_key)
            .0
            .and_then(|b| cache::decode_downstream_until(&b, now_ms));
        if let Some((Downstream::Token(token), expires_at_ms)) = &cached {
            downstream::memoize(&principal, token, now_ms, *expires_at_ms);
        }
        let cached = cached.map(|(answer, _)| answer);
        host.count(
            &tenant.id,
            if cached.is_some() {
                Counter::DownstreamCacheHit
            } else {
                Counter::DownstreamCacheMiss
            },
        );
        if let Some(answer) = cached {
            return self.answered(&input, &principal, &answer);
        }
        let subject = match tenant.vault.subject_token_type {
            SubjectTokenType::AccessToken => input.token.clone(),
            SubjectTokenType::RefreshToken | SubjectTokenType::IdToken => {
                match &input.subject_token {
                    Some(t) => t.clone(),
                    None => {
                        let missing = Deny::InvalidRequest(
                            "This resource needs the user's refresh token header.",
                        );
                        return refuse(missing, &principal);
                    }
                }
            }
        };
        if let Some(wait_s) = self.backing_off(host, input.tenant, now_ms) {
            host.count(&tenant.id, Counter::VaultBackoff);
            let limited = Deny::VaultRateLimited {
                retry_after_seconds: Some(wait_s),
            };
            return refuse(limited, &principal);
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
                let headers = &config.settings.credential_headers;
                return vault_step(tenant, input.tenant, headers, &principal, &outcome);
            }
        };
        self.wait_for_token(host, now_ms, context_id, input, principal, request)
    }

    /// A request's step from its user's cached vault answer.
    pub(super) fn answered(
        &self,
        input: &RequestInput,
        principal: &Rc<Principal>,
        answer: &Downstream,
    ) -> Step {
        let tenant = &self.config.tenants[input.tenant];
        let refuse = |deny: Deny| Step::Deny {
            deny,
            tenant: input.tenant,
            principal: Some(Rc::clone(principal)),
        };
        match answer {
            Downstream::Token(t) => {
                let headers = &self.config.settings.credential_headers;
                Step::Forward(forward(
                    input.tenant,
                    tenant,
                    headers,
                    principal,
                    t.expose(),
                ))
            }
            Downstream::NotConnected { interaction_uri } => {
                refuse(connect_required(tenant, interaction_uri.as_deref(), &[]))
            }
            Downstream::Failed(failure) => refuse(match failure {
                CachedFailure::Misconfigured => Deny::VaultMisconfigured,
                CachedFailure::Forbidden => Deny::VaultForbidden,
                CachedFailure::Dependency(f) => Deny::VaultFailed(*f),
            }),
        }
    }
}
