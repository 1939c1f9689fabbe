//! Single flight: one call-out per needed answer (a tenant's keys, a user's downstream token)
//! however many requests wait for it, who sent it, and what to do when its sender goes away.

use std::rc::Rc;

use super::exchange_lease::{self, Lease};
use super::{Host, RequestInput, Resolution, Step, Worker};
use crate::cache::{self, Principal};
use crate::callout::{CalloutRequest, CalloutResponse};
use crate::config::{JwksSource, SubjectTokenType, VaultBackend};
use crate::vault;

/// What a flight fetches: each is fetched once however many requests wait for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FlightKey {
    /// A tenant's signing keys (by index in the configuration).
    Keys(usize),
    /// A user's downstream token (by its cache key).
    Token(String),
}

#[derive(Debug, Clone)]
pub(super) enum Purpose {
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

pub(super) struct Flight {
    pub(super) purpose: Purpose,
    pub(super) request: CalloutRequest,
    pub(super) waiters: Vec<u32>,
    /// The context whose call-out is in flight; `None` once it went away before the answer.
    pub(super) owner: Option<u32>,
    /// When its call-out was sent (for the latency histogram); `None` until then.
    pub(super) sent_ms: Option<u64>,
    /// When the exchange began (its first leg): an eviction after it voids its answer.
    pub(super) started_ms: u64,
    /// The user record of a vault exchange.
    pub(super) user_key: Option<String>,
    /// A vault exchange's lease across workers (hosts with shared flights only).
    pub(super) lease: Lease,
}

/// What a request that joined flight `key` (its lease `lease`) waits for: the call-out, or the
/// worker holding the lease.
fn waiting(key: FlightKey, lease: Lease) -> Step {
    match (lease, &key) {
        (Lease::HeldElsewhere { until_ms, seen }, FlightKey::Token(dkey)) => Step::WaitElsewhere {
            watch: exchange_lease::key(dkey),
            until_ms,
            seen,
        },
        _ => Step::Wait {
            flight: key,
            start: None,
        },
    }
}

/// The call-out fetching tenant `index`'s keys: its JWKS, or first its discovery document.
pub(super) fn keys_request(index: usize, jwks: &JwksSource) -> (Purpose, CalloutRequest) {
    match jwks {
        JwksSource::Direct {
            cluster,
            authority,
            path,
        } => (
            Purpose::Jwks { tenant: index },
            CalloutRequest::get(cluster, authority, path),
        ),
        JwksSource::Discovery {
            cluster,
            authority,
            path,
        } => (
            Purpose::Discovery { tenant: index },
            CalloutRequest::get(cluster, authority, path),
        ),
    }
}

impl Worker {
    pub(super) fn wait_for_keys(
        &mut self,
        now_ms: u64,
        context_id: u32,
        input: RequestInput,
    ) -> Step {
        let index = input.tenant;
        let tenant = &self.config.tenants[index];
        let (purpose, request) = keys_request(index, &tenant.jwks);
        self.waiting_keys.insert(context_id, input);
        self.join(
            now_ms,
            context_id,
            FlightKey::Keys(index),
            purpose,
            request,
            None,
            Lease::NotShared,
        )
    }

    /// Wait for the user's downstream token: the exchange `request` starts it unless another
    /// request of the same user already did.
    pub(super) fn wait_for_token(
        &mut self,
        host: &dyn Host,
        now_ms: u64,
        context_id: u32,
        input: RequestInput,
        principal: Rc<Principal>,
        request: CalloutRequest,
    ) -> Step {
        let key = FlightKey::Token(principal.downstream_key.clone());
        let purpose = Purpose::Vault {
            tenant: input.tenant,
            leg: 0,
        };
        let user_key = Some(principal.user_key.clone());
        self.waiting_token.insert(context_id, (input, principal));
        let lease = match &key {
            FlightKey::Token(dkey) if self.shared_flights && !self.flights.contains_key(&key) => {
                self.take_lease(host, &exchange_lease::key(dkey), now_ms)
            }
            _ => Lease::NotShared,
        };
        self.join(now_ms, context_id, key, purpose, request, user_key, lease)
    }

    /// Take the exchange lease at `watch` for one exchange's length, unless another worker
    /// holds it.
    fn take_lease(&self, host: &dyn Host, watch: &str, now_ms: u64) -> Lease {
        let duration = exchange_lease::duration_ms(self.config.settings.callout_timeout_ms);
        exchange_lease::take(host, watch, now_ms, duration)
    }

    /// Join the flight for `key`, or start it (or, leased elsewhere, wait for it).
    #[allow(clippy::too_many_arguments)]
    fn join(
        &mut self,
        now_ms: u64,
        context_id: u32,
        key: FlightKey,
        purpose: Purpose,
        request: CalloutRequest,
        user_key: Option<String>,
        lease: Lease,
    ) -> Step {
        if let Some(flight) = self.flights.get_mut(&key) {
            flight.waiters.push(context_id);
            let lease = flight.lease;
            return waiting(key, lease);
        }
        let elsewhere = matches!(lease, Lease::HeldElsewhere { .. });
        self.flights.insert(
            key.clone(),
            Flight {
                purpose,
                request: request.clone(),
                waiters: vec![context_id],
                // Leased elsewhere: nobody here sends it.
                owner: (!elsewhere).then_some(context_id),
                sent_ms: None,
                started_ms: now_ms,
                user_key,
                lease,
            },
        );
        if elsewhere {
            return waiting(key, lease);
        }
        Step::Wait {
            flight: key,
            start: Some(request),
        }
    }

    /// A request waiting for another worker's exchange was woken (the lease record was written,
    /// or ran out): every such flight of this worker is answered from the cache the other
    /// worker filled, taken over if the lease is free, or waits on.
    pub fn poll_elsewhere(&mut self, host: &dyn Host, now_ms: u64) -> Vec<Resolution> {
        let leased_elsewhere: Vec<FlightKey> = self
            .flights
            .iter()
            .filter(|(_, f)| matches!(f.lease, Lease::HeldElsewhere { .. }))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in leased_elsewhere {
            let FlightKey::Token(dkey) = &key else {
                continue;
            };
            if let Some(answered) = self.answer_from_cache(host, &key, dkey, now_ms) {
                out.extend(answered);
                continue;
            }
            let watch = exchange_lease::key(dkey);
            let lease = self.take_lease(host, &watch, now_ms);
            if let Lease::Taken { .. } | Lease::NotShared = lease {
                // The holder may have cached its answer and released between the two reads:
                // then there is nothing to send.
                if let Some(answered) = self.answer_from_cache(host, &key, dkey, now_ms) {
                    if let Lease::Taken { until_ms } = lease {
                        exchange_lease::release(host, &watch, until_ms);
                    }
                    out.extend(answered);
                    continue;
                }
            }
            let Some(flight) = self.flights.get_mut(&key) else {
                continue;
            };
            flight.lease = lease;
            if let Lease::HeldElsewhere { .. } = lease {
                for ctx in &flight.waiters {
                    out.push((*ctx, waiting(key.clone(), flight.lease)));
                }
                continue;
            }
            // Free (released without an answer to cache, or expired): ours to send.
            flight.started_ms = now_ms;
            if let Some(first) = flight.waiters.first() {
                let start = Some(flight.request.clone());
                out.push((*first, Step::Wait { flight: key, start }));
            }
        }
        out
    }

    /// The flight `key` (user cache key `dkey`) answered from the cache another worker filled:
    /// its waiters' steps, or `None` if nothing is cached yet.
    fn answer_from_cache(
        &mut self,
        host: &dyn Host,
        key: &FlightKey,
        dkey: &str,
        now_ms: u64,
    ) -> Option<Vec<Resolution>> {
        let answer = host
            .shared_get(dkey)
            .0
            .and_then(|b| cache::decode_downstream(&b, now_ms))?;
        let flight = self.flights.remove(key)?;
        let mut out = Vec::new();
        for ctx in flight.waiters {
            if let Some((input, principal)) = self.waiting_token.remove(&ctx) {
                out.push((ctx, self.answered(&input, &principal, &answer)));
            }
        }
        Some(out)
    }

    /// The lease of `flight`, if this worker holds it, is released (its answer is cached, or
    /// nobody here waits for it any more): the workers waiting elsewhere are woken by it.
    pub(super) fn release_lease(host: &dyn Host, key: &FlightKey, flight: &Flight) {
        if let (Lease::Taken { until_ms }, FlightKey::Token(dkey)) = (flight.lease, key) {
            exchange_lease::release(host, &exchange_lease::key(dkey), until_ms);
        }
    }

    /// The call-out for `flight` was dispatched as `token` by `owner`.
    pub fn dispatched(&mut self, flight: &FlightKey, token: u32, owner: u32, now_ms: u64) {
        if let Some(f) = self.flights.get_mut(flight) {
            f.owner = Some(owner);
            f.sent_ms = Some(now_ms);
            if let Purpose::Jwks { tenant } | Purpose::Discovery { tenant } = f.purpose {
                self.keys[tenant].last_attempt_ms = Some(now_ms);
            }
        }
        self.orphans.remove(flight);
        self.callouts.insert(token, flight.clone());
    }

    /// A waiting request went away (client closed). Its flight carries on for the others; if
    /// it owned the call-out, the answer will not come to us and the root must redo it.
    pub fn forget(&mut self, host: &dyn Host, context_id: u32) {
        self.waiting_keys.remove(&context_id);
        self.waiting_token.remove(&context_id);
        let mut orphaned = Vec::new();
        let mut abandoned = Vec::new();
        for (key, f) in self.flights.iter_mut() {
            f.waiters.retain(|w| *w != context_id);
            if f.owner == Some(context_id) {
                f.owner = None;
                orphaned.push(key.clone());
            } else if f.waiters.is_empty() && matches!(f.lease, Lease::HeldElsewhere { .. }) {
                abandoned.push(key.clone());
            }
        }
        for key in abandoned {
            self.flights.remove(&key);
        }
        for key in orphaned {
            let empty = self.flights.get(&key).is_some_and(|f| f.waiters.is_empty());
            if empty {
                if let Some(flight) = self.flights.remove(&key) {
                    Self::release_lease(host, &key, &flight);
                }
            } else {
                self.orphans.insert(key);
            }
        }
        self.callouts
            .retain(|_, flight| self.flights.contains_key(flight));
    }

    /// Flights whose owner went away and that others still wait for: redispatch them.
    pub fn take_orphans(&mut self, now_ms: u64) -> Vec<(FlightKey, CalloutRequest)> {
        let keys: Vec<FlightKey> = self.orphans.drain().collect();
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
    fn restart_single_use_exchange(&mut self, key: &FlightKey, now_ms: u64) {
        let Some(flight) = self.flights.get_mut(key) else {
            return;
        };
        let Purpose::Vault { tenant, .. } = flight.purpose else {
            return;
        };
        let vault = &self.config.tenants[tenant].vault;
        // Never sent (the next leg of a chain), or Auth0's exchange, which may be repeated.
        if flight.sent_ms.is_none() || matches!(vault.backend, VaultBackend::Auth0 { .. }) {
            return;
        }
        let Some((input, principal)) = flight
            .waiters
            .iter()
            .find_map(|w| self.waiting_token.get(w))
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
            flight.sent_ms = None;
        }
    }

    /// A dispatch failed before anything was sent (e.g. the cluster does not exist).
    pub fn dispatch_failed(&mut self, host: &dyn Host, flight: &FlightKey) -> Vec<Resolution> {
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
}
