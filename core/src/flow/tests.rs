use super::*;
use crate::cache;
use crate::config::{self, OTHER_CREDENTIAL_HEADERS};
use crate::crypto::{PureRustVerifier, SignatureVerifier};
use crate::testing::FakeHost;
use keys::FailureBudget;
use serde_json::json;
use sim::keys::IssuerKeys;

const NOW_S: u64 = 1_800_000_000;

struct Fixture {
    host: FakeHost,
    worker: Worker,
    keys: IssuerKeys,
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

/// A fixture whose configuration `edit` changed first.
fn fixture_with(edit: impl Fn(&mut serde_json::Value)) -> Fixture {
    let mut doc: serde_json::Value =
        serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
    edit(&mut doc);
    let doc = doc.to_string();
    let cfg = config::parse(
        doc.as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some("secret".into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let host = FakeHost::default();
    host.now.set(NOW_S * 1000);
    Fixture {
        host,
        worker: Worker::new(Rc::new(cfg), Box::new(PureRustVerifier)),
        keys: IssuerKeys::generate("github"),
    }
}

impl Fixture {
    fn token(&self, sub: &str, scope: &str) -> String {
        self.token_with(sub, scope, json!({}))
    }

    /// A token with `extra` claims added.
    fn token_with(&self, sub: &str, scope: &str, extra: serde_json::Value) -> String {
        let mut claims = json!({"iss": "http://127.0.0.1:9000/issuers/github/", "aud": "http://localhost:3000/github/mcp", "sub": sub, "exp": NOW_S + 600, "scope": scope});
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        self.keys
            .sign(
                "RS256",
                "current",
                &json!({"alg": "RS256", "kid": "github-rsa-1"}),
                &claims,
            )
            .unwrap_or_default()
    }

    fn begin(&mut self, ctx: u32, method: &str, token: &str) -> Step {
        let input = RequestInput {
            tenant: 0,
            method: method.into(),
            token: token.into(),
            subject_token: None,
        };
        self.worker.begin(&self.host, ctx, input)
    }

    fn answer(&mut self, token: u32, status: u16, body: serde_json::Value) -> Vec<Resolution> {
        let response = CalloutResponse {
            status: Some(status),
            retry_after: None,
            rate_limit_reset: None,
            body: Some(body.to_string().into_bytes()),
        };
        self.worker.on_response(&self.host, token, &response)
    }
}

fn started(step: &Step) -> Option<(&FlightKey, &CalloutRequest)> {
    match step {
        Step::Wait {
            flight,
            start: Some(r),
        } => Some((flight, r)),
        _ => None,
    }
}

#[test]
fn cold_requests_share_fetches_then_warm_requests_make_none() {
    let mut f = fixture();
    let alice = f.token("alice", "github:read github:write");
    // Two concurrent cold requests: one JWKS fetch.
    let first = f.begin(1, "GET", &alice);
    let (jwks_flight, request) = started(&first).unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(
        (request.path.as_str(), request.cluster.as_str()),
        ("/issuers/github/jwks.json", "sim_control")
    );
    let jwks_flight = jwks_flight.clone();
    let second = f.begin(2, "GET", &alice);
    assert!(matches!(second, Step::Wait { start: None, .. }));
    f.worker.dispatched(&jwks_flight, 100, 1, NOW_S * 1000);
    assert!(f.worker.is_waiting(1) && f.worker.is_waiting(2));

    // Keys arrive: both need the vault; one exchange is started.
    let resolved = f.answer(100, 200, f.keys.jwks());
    assert_eq!(resolved.len(), 2);
    let starts: Vec<_> = resolved.iter().filter_map(|(_, s)| started(s)).collect();
    assert_eq!(starts.len(), 1);
    let (vault_flight, vault_request) = (starts[0].0.clone(), starts[0].1.clone());
    assert_eq!(vault_request.path, "/oauth/token");
    // The exchange carries the agent's token and the client secret; its Debug shows neither.
    let body = String::from_utf8_lossy(vault_request.body.as_deref().unwrap_or_default());
    assert!(
        body.contains(&alice) && body.contains(r#""client_secret":"secret""#),
        "{body}"
    );
    let printed = format!("{vault_request:?} {:?}", resolved);
    assert!(
        !printed.contains(&alice) && !printed.contains(r#""secret""#),
        "{printed}"
    );
    f.worker.dispatched(&vault_flight, 101, 1, NOW_S * 1000);

    let resolved = f.answer(
        101,
        200,
        json!({"access_token": "gho_1", "expires_in": 3600}),
    );
    assert_eq!(resolved.len(), 2);
    for (_, step) in &resolved {
        match step {
            Step::Forward(fw) => {
                assert_eq!(
                    (fw.header.as_str(), fw.value.as_str()),
                    ("authorization", "Bearer gho_1")
                );
                // Setting authorization replaces the agent's token; only the client's other
                // credential headers are removed.
                assert_eq!(fw.strip, OTHER_CREDENTIAL_HEADERS, "{:?}", fw.strip);
                assert!(!format!("{fw:?}").contains("gho_1"), "{fw:?}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!f.worker.is_waiting(1) && !f.worker.is_waiting(2));

    // Warm: decided at once, no call-out.
    assert!(matches!(f.begin(3, "GET", &alice), Step::Forward(_)));
    // Another worker (same shared data, empty local state) needs only the JWKS parse, no calls.
    let mut other = Worker::new(Rc::clone(&f.worker.config), Box::new(PureRustVerifier));
    let input = RequestInput {
        tenant: 0,
        method: "GET".into(),
        token: alice.clone(),
        subject_token: None,
    };
    assert!(matches!(other.begin(&f.host, 9, input), Step::Forward(_)));
}

#[test]
fn refusals_and_cached_lifetimes() {
    let mut f = fixture();
    let read_only = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &read_only);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 7, 1, NOW_S * 1000);
    let resolved = f.answer(7, 200, f.keys.jwks());
    assert!(matches!(resolved[0].1, Step::Wait { start: Some(_), .. }));
    // The same token on a write: refused from the verified cache, before any vault call.
    match f.begin(2, "POST", &read_only) {
        Step::Deny {
            deny: Deny::InsufficientScope(s),
            ..
        } => assert_eq!(s, vec!["github:write"]),
        other => panic!("{other:?}"),
    }
    // Time passes beyond exp + skew: the cached verification no longer counts.
    f.host.now.set((NOW_S + 600 + 61) * 1000);
    assert!(matches!(
        f.begin(3, "GET", &read_only),
        Step::Deny {
            deny: Deny::InvalidToken(TokenError::Expired),
            ..
        }
    ));
}

#[test]
fn not_connected_and_failures_are_cached_briefly() {
    let mut f = fixture();
    let shared_key = {
        let jwks = cache::jwks_key(&f.worker.config.tenants[0]);
        f.host
            .shared_set(
                &jwks,
                &cache::encode_jwks(NOW_S * 1000, f.keys.jwks().to_string().as_bytes()),
                None,
            )
            .unwrap_or_else(|e| panic!("{e:?}"));
        jwks
    };
    assert!(!shared_key.is_empty());
    let bob = f.token("bob", "github:read");
    let s = f.begin(1, "GET", &bob);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 1, 1, NOW_S * 1000);
    let r = f.answer(
        1,
        401,
        json!({"error": "federated_connection_refresh_token_not_found"}),
    );
    assert!(matches!(
        r[0].1,
        Step::Deny {
            deny: Deny::ConnectRequired { .. },
            ..
        }
    ));
    assert!(matches!(
        f.begin(2, "GET", &bob),
        Step::Deny {
            deny: Deny::ConnectRequired { .. },
            ..
        }
    ));
    f.host.now.set((NOW_S + 6) * 1000);
    let s = f.begin(3, "GET", &bob);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 2, 3, NOW_S * 1000);
    let r = f.answer(2, 500, json!({}));
    assert!(matches!(
        r[0].1,
        Step::Deny {
            deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
            ..
        }
    ));
    // Remembered for vault_backoff_seconds (5): no call-out per retry.
    assert!(matches!(
        f.begin(4, "GET", &bob),
        Step::Deny {
            deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
            ..
        }
    ));
    f.host.now.set((NOW_S + 11) * 1000);
    assert!(
        matches!(f.begin(5, "GET", &bob), Step::Wait { start: Some(_), .. }),
        "asked again after the back-off"
    );
}

/// Keys in shared data, so requests go straight to the vault step.
fn with_keys(f: &Fixture) {
    let jwks = cache::jwks_key(&f.worker.config.tenants[0]);
    f.host
        .shared_set(
            &jwks,
            &cache::encode_jwks(NOW_S * 1000, f.keys.jwks().to_string().as_bytes()),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// Start `ctx`'s exchange and dispatch it as call-out `token`.
fn exchange(f: &mut Fixture, ctx: u32, token: u32, agent: &str) -> FlightKey {
    let s = f.begin(ctx, "GET", agent);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("{s:?}"));
    f.worker.dispatched(&flight, token, ctx, f.host.now_ms());
    flight
}

fn rate_limited(step: &Step) -> Option<Option<u64>> {
    match step {
        Step::Deny {
            deny: Deny::VaultRateLimited {
                retry_after_seconds,
            },
            ..
        } => Some(*retry_after_seconds),
        _ => None,
    }
}

#[test]
fn a_vault_429_stops_every_users_calls_until_retry_after() {
    let mut f = fixture();
    with_keys(&f);
    let bob = f.token("bob", "github:read");
    exchange(&mut f, 1, 1, &bob);
    let response = CalloutResponse {
        status: Some(429),
        retry_after: Some("30".into()),
        rate_limit_reset: None,
        body: Some(b"{}".to_vec()),
    };
    let r = f.worker.on_response(&f.host, 1, &response);
    assert_eq!(rate_limited(&r[0].1), Some(Some(30)));
    // Anyone of the tenant: refused at once with the time left, no call-out.
    for (ctx, who) in [(2, "bob"), (3, "alice"), (4, "carol")] {
        let step = f.begin(ctx, "GET", &f.token(who, "github:read"));
        assert_eq!(rate_limited(&step), Some(Some(30)), "{who}");
    }
    f.host.now.set(NOW_S * 1000 + 29_500);
    let step = f.begin(5, "GET", &f.token("alice", "github:read"));
    assert_eq!(rate_limited(&step), Some(Some(1)));
    f.host.now.set((NOW_S + 30) * 1000);
    let step = f.begin(6, "GET", &f.token("alice", "github:read"));
    assert!(started(&step).is_some(), "{step:?}");
}

#[test]
fn a_backend_401_evicts_a_key_at_most_once_per_interval() {
    let mut f = fixture();
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    let ok = json!({"access_token": "gho_1", "expires_in": 3600});
    let forward_and_refuse = |f: &mut Fixture, ctx: u32| -> Option<usize> {
        let Step::Forward(fw) = f.begin(ctx, "GET", &alice) else {
            return None;
        };
        let key = &fw.principal.downstream_key;
        f.worker
            .backend_answered(&f.host, fw.tenant, key, &|| Some(401))
            .then_some(fw.tenant)
    };
    exchange(&mut f, 1, 1, &alice);
    f.answer(1, 200, ok.clone());
    assert_eq!(forward_and_refuse(&mut f, 2), Some(0), "first 401 evicts");
    // The next request exchanges again; the new token is refused at once too.
    f.host.now.set(NOW_S * 1000 + 100);
    exchange(&mut f, 3, 2, &alice);
    f.answer(2, 200, ok.clone());
    assert_eq!(forward_and_refuse(&mut f, 4), None, "not again within 5 s");
    assert!(matches!(f.begin(5, "GET", &alice), Step::Forward(_)));
    f.host.now.set((NOW_S + 5) * 1000);
    assert_eq!(forward_and_refuse(&mut f, 6), Some(0), "again after 5 s");
    assert!(started(&f.begin(7, "GET", &alice)).is_some());
}

#[test]
fn a_disconnect_evicts_every_login_hint_and_voids_exchanges_in_flight() {
    let mut f = fixture_with(|doc| {
        doc["tenants"][0]["vault"]["login_hint_claim"] = json!("email");
    });
    with_keys(&f);
    let ok = json!({"access_token": "gho_1", "expires_in": 3600});
    let work = f.token_with("alice", "github:read", json!({"email": "a@work"}));
    let home = f.token_with("alice", "github:read", json!({"email": "a@home"}));
    let bob = f.token("bob", "github:read");
    for (i, t) in [&work, &home, &bob].into_iter().enumerate() {
        let i = i as u32 + 1;
        exchange(&mut f, i, i, t);
        f.answer(i, 200, ok.clone());
        assert!(matches!(f.begin(10 + i, "GET", t), Step::Forward(_)));
    }
    // An exchange of alice's (a third account) is in flight when she disconnects.
    let other = f.token_with("alice", "github:read", json!({"email": "a@other"}));
    exchange(&mut f, 20, 20, &other);
    f.host.now.set(NOW_S * 1000 + 10);
    let t = &f.worker.config.tenants[0];
    let user = cache::user_key_for(t, &t.issuer, "alice");
    evict_user(&f.host, &user, f.host.now_ms());
    f.host.now.set(NOW_S * 1000 + 20);
    // Its answer still serves the request that waited, but is not stored.
    let r = f.answer(20, 200, ok.clone());
    assert!(matches!(r[0].1, Step::Forward(_)));
    for (ctx, t) in [(31, &home), (32, &other)] {
        assert!(started(&f.begin(ctx, "GET", t)).is_some(), "{ctx}");
    }
    assert!(
        matches!(f.begin(33, "GET", &bob), Step::Forward(_)),
        "bob keeps his"
    );
    // Exchanges that begin after the disconnect are stored again.
    exchange(&mut f, 30, 30, &work);
    f.answer(30, 200, ok.clone());
    assert!(matches!(f.begin(34, "GET", &work), Step::Forward(_)));
}

#[test]
fn waiters_survive_their_owner_going_away() {
    let mut f = fixture();
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 5, 1, NOW_S * 1000);
    assert!(matches!(
        f.begin(2, "GET", &alice),
        Step::Wait { start: None, .. }
    ));
    // The owner's client hangs up: its call-out is lost with it.
    f.worker.forget(&f.host, 1);
    let orphans = f.worker.take_orphans(NOW_S * 1000);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].0, flight);
    // The root re-sends it; the answer finishes the waiter.
    f.worker.dispatched(&flight, 6, 0, NOW_S * 1000);
    let resolved = f.answer(6, 200, f.keys.jwks());
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].0, 2);
    // A late answer to the lost call changes nothing.
    assert!(f.answer(5, 200, f.keys.jwks()).is_empty());
    // Without waiters, an orphaned flight is simply dropped.
    let bob = f.token("bob", "github:read");
    let s = f.begin(3, "GET", &bob);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 8, 3, NOW_S * 1000);
    f.worker.forget(&f.host, 3);
    assert!(f.worker.take_orphans(NOW_S * 1000).is_empty());
    assert!(!f.worker.is_waiting(3));
}

#[test]
fn jwks_failure_without_keys_is_unavailable_and_backs_off() {
    let mut f = fixture();
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let flight = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&flight, 1, 1, NOW_S * 1000);
    let r = f.answer(1, 504, json!({}));
    assert!(matches!(
        r[0].1,
        Step::Deny {
            deny: Deny::KeysUnavailable(DependencyFailure::Timeout),
            ..
        }
    ));
    // Within the backoff, refused at once with the same reason; afterwards, fetched again.
    assert!(matches!(
        f.begin(2, "GET", &alice),
        Step::Deny {
            deny: Deny::KeysUnavailable(DependencyFailure::Timeout),
            ..
        }
    ));
    f.host.now.set((NOW_S + 3) * 1000);
    assert!(matches!(
        f.begin(3, "GET", &alice),
        Step::Wait { start: Some(_), .. }
    ));
}

#[test]
fn background_refresh_takes_a_lease_and_frees_it_when_done() {
    let mut f = fixture();
    let mut other = Worker::new(Rc::clone(&f.worker.config), Box::new(PureRustVerifier));
    // Both workers tick with no keys: one of them fetches each tenant's keys.
    let mine = f.worker.refresh_due(&f.host);
    let theirs = other.refresh_due(&f.host);
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(
        theirs.is_empty(),
        "the lease keeps the second worker out: {theirs:?}"
    );
    let github = mine
        .iter()
        .find(|(_, r)| r.path.contains("/github/"))
        .map(|(flight, _)| flight.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&github, 7, 0, NOW_S * 1000);
    let jwks = f.keys.jwks();
    f.answer(7, 200, jwks);
    // Done and stored: the lease is free at once, so the next refresh is not held back by the
    // window of this one; the other tenant's fetch still holds its lease.
    let lease = |i: usize| {
        let key = cache::jwks_lease_key(&f.worker.config.tenants[i]);
        f.host.shared_get(&key).0
    };
    assert_eq!(lease(0), Some(0u64.to_be_bytes().to_vec()));
    assert_eq!(lease(1), Some((NOW_S * 1000).to_be_bytes().to_vec()));
    f.host.now.set((NOW_S + 500) * 1000);
    let later = other.refresh_due(&f.host);
    assert!(
        later.iter().any(|(_, r)| r.path.contains("/github/")),
        "{later:?}"
    );
}

/// The agent's key of the Okta tenants (P-256, a test key).
const OKTA_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----";

/// A fixture whose first tenant exchanges at an Okta STS, with client assertions signed by
/// [`OKTA_PEM`] (same issuer, keys and tenant id as the example's).
fn okta_sts_fixture() -> Fixture {
    let mut doc: serde_json::Value =
        serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
    doc["tenants"][0]["vault"] = json!({
        "type": "okta-sts", "cluster": "okta",
        "token_url": "https://org.okta.example/oauth2/v1/token",
        "client_id": "agent", "private_key_env": "K", "key_id": "k1",
        "resource": "https://api.example", "connection": "github",
    });
    doc["tenants"][0]
        .as_object_mut()
        .map(|t| t.remove("connect"));
    let cfg = config::parse(
        doc.to_string().as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some(OKTA_PEM.into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut f = fixture();
    f.worker = Worker::new(Rc::new(cfg), Box::new(PureRustVerifier));
    f
}

#[test]
fn a_lost_okta_call_is_sent_again_with_a_fresh_assertion() {
    let mut f = okta_sts_fixture();
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let jwks = started(&s)
        .map(|(a, _)| a.clone())
        .unwrap_or_else(|| panic!("no call-out started"));
    f.worker.dispatched(&jwks, 1, 1, NOW_S * 1000);
    let resolved = f.answer(1, 200, f.keys.jwks());
    let (flight, first) = started(&resolved[0].1)
        .map(|(k, r)| (k.clone(), r.clone()))
        .unwrap_or_else(|| panic!("{resolved:?}"));
    f.worker.dispatched(&flight, 2, 1, NOW_S * 1000);
    assert!(matches!(
        f.begin(2, "GET", &alice),
        Step::Wait { start: None, .. }
    ));
    // The owner goes away after sending: the call is sent again, not replayed.
    f.worker.forget(&f.host, 1);
    let orphans = f.worker.take_orphans(NOW_S * 1000);
    assert_eq!(orphans.len(), 1);
    let assertion = |r: &CalloutRequest| {
        let body = String::from_utf8(r.body.clone().unwrap_or_default()).unwrap_or_default();
        body.split('&')
            .find_map(|p| p.strip_prefix("client_assertion="))
            .unwrap_or_default()
            .to_string()
    };
    assert!(!assertion(&first).is_empty());
    assert_ne!(assertion(&orphans[0].1), assertion(&first), "a fresh jti");
}

#[test]
fn id_tokens_are_checked_with_the_connect_clients_algorithms_not_the_agents() {
    // Agents of this tenant sign ES256 only (another issuer: the vault takes the user's
    // refresh token); Auth0 signs the connect client's ID tokens RS256.
    let mut doc: serde_json::Value =
        serde_json::from_str(&crate::testing::example_json()).unwrap_or_default();
    doc["tenants"][0]["algorithms"] = json!(["ES256"]);
    doc["tenants"][0]["vault"]["subject_token_type"] = json!("refresh_token");
    doc["tenants"][0]["vault"]["subject_token_header"] = json!("x-auth0-refresh-token");
    let cfg = config::parse(
        doc.to_string().as_bytes(),
        &crate::testing::with_sealing_key(&|_| Some("secret".into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut f = fixture();
    let jwks = f.keys.jwks().to_string();
    let key = cache::jwks_key(&cfg.tenants[0]);
    f.host
        .shared_set(
            &key,
            &cache::encode_jwks(NOW_S * 1000, jwks.as_bytes()),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    f.worker = Worker::new(Rc::new(cfg), Box::new(PureRustVerifier));
    let id_token = |alg: &str, aud: &str| {
        let claims = json!({"iss": "http://127.0.0.1:9000/issuers/github/", "aud": aud,
                            "sub": "auth0|bob", "iat": NOW_S, "exp": NOW_S + 600});
        let header = json!({"alg": alg, "kid": f.keys.kid_for(alg, "current")});
        f.keys
            .sign(alg, "current", &header, &claims)
            .unwrap_or_default()
    };
    let (rs256, ps256, es256, other_client) = (
        id_token("RS256", "github-connect-web"),
        id_token("PS256", "github-connect-web"),
        id_token("ES256", "github-connect-web"),
        id_token("RS256", "someone-else"),
    );
    let mut verify = |t: &str| f.worker.verify_id_token(&f.host, 0, t, None);
    assert_eq!(verify(&rs256).as_deref(), Some("auth0|bob"));
    assert_eq!(verify(&ps256).as_deref(), Some("auth0|bob"));
    // The agents' algorithm is not one Auth0 signs ID tokens with.
    assert_eq!(verify(&es256), None);
    assert_eq!(verify(&other_client), None);
}

#[test]
fn configured_credential_headers_are_removed_before_forwarding() {
    let mut f = fixture_with(|doc| {
        doc["settings"]["strip_headers"] = json!(["X-Api-Key", "cookie", "x-api-key"]);
    });
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 100, &alice);
    let resolved = f.answer(
        100,
        200,
        json!({"access_token": "gho_1", "expires_in": 3600}),
    );
    match resolved.as_slice() {
        [(1, Step::Forward(fw))] => assert_eq!(
            fw.strip,
            [
                "proxy-authorization",
                "x-forwarded-authorization",
                "x-api-key",
                "cookie"
            ],
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inputs_and_answers_print_without_their_secrets() {
    let input = RequestInput {
        tenant: 0,
        method: "GET".into(),
        token: "agent.jwt.value".into(),
        subject_token: Some("refresh-secret".into()),
    };
    let answer = CalloutResponse {
        status: Some(200),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(br#"{"access_token":"gho_secret"}"#.to_vec()),
    };
    let printed = format!("{input:?} {answer:?}");
    for secret in ["agent.jwt.value", "refresh-secret", "gho_secret"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("GET") && printed.contains("Some(200)"),
        "{printed}"
    );
}

/// Counts the signature checks of the verifier it wraps.
struct Counting(Rc<std::cell::Cell<u32>>);

impl SignatureVerifier for Counting {
    fn verify(
        &self,
        alg: crate::jose::Alg,
        key: &crate::crypto::Key,
        message: &[u8],
        signature: &[u8],
    ) -> bool {
        self.0.set(self.0.get() + 1);
        PureRustVerifier.verify(alg, key, message, signature)
    }
}

/// A fixture whose worker counts its signature checks, with keys in shared data.
fn counting_fixture(edit: impl Fn(&mut serde_json::Value)) -> (Fixture, Rc<std::cell::Cell<u32>>) {
    let mut f = fixture_with(edit);
    let checks = Rc::new(std::cell::Cell::new(0));
    f.worker = Worker::new(
        Rc::clone(&f.worker.config),
        Box::new(Counting(Rc::clone(&checks))),
    );
    with_keys(&f);
    (f, checks)
}

/// `token` with its signature replaced by `seed`-derived bytes of the same length: the real
/// `kid`, issuer and audience, so only the signature check can refuse it.
fn forged(token: &str, seed: u64) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (signed, signature) = token.rsplit_once('.').unwrap_or_default();
    let len = b64.decode(signature).map(|s| s.len()).unwrap_or(256);
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    format!("{signed}.{}", b64.encode(bytes))
}

fn bad_signature(step: &Step) -> bool {
    matches!(
        step,
        Step::Deny {
            deny: Deny::InvalidToken(TokenError::BadSignature),
            ..
        }
    )
}

fn throttled(step: &Step) -> Option<u64> {
    match step {
        Step::Deny {
            deny: Deny::VerificationThrottled {
                retry_after_seconds,
            },
            ..
        } => Some(*retry_after_seconds),
        _ => None,
    }
}

#[test]
fn a_repeated_forged_token_is_checked_once() {
    let (mut f, checks) = counting_fixture(|_| {});
    let forgery = forged(&f.token("alice", "github:read"), 1);
    for ctx in 1..=20 {
        let step = f.begin(ctx, "GET", &forgery);
        assert!(bad_signature(&step), "{ctx}: {step:?}");
    }
    assert_eq!(checks.get(), 1, "one signature check for twenty requests");
    assert_eq!(f.host.counted("github", "signature.failed"), 1);
    assert_eq!(f.host.counted("github", "signature.failed_cached"), 19);
    // Another forgery is checked (once too); a valid token is unaffected.
    let other = forged(&f.token("alice", "github:read"), 2);
    assert!(bad_signature(&f.begin(30, "GET", &other)));
    assert!(bad_signature(&f.begin(31, "GET", &other)));
    assert_eq!(checks.get(), 2);
    assert!(started(&f.begin(32, "GET", &f.token("alice", "github:read"))).is_some());
    assert_eq!(checks.get(), 3);
    // New keys (a refresh stored by another worker): what failed is checked again, once.
    f.host.now.set((NOW_S + 2) * 1000);
    with_keys(&f);
    f.worker.refresh_due(&f.host);
    assert!(bad_signature(&f.begin(40, "GET", &forgery)));
    assert!(bad_signature(&f.begin(41, "GET", &forgery)));
    assert_eq!(checks.get(), 4);
}

#[test]
fn the_failure_budget_holds_new_tokens_back_and_recovers() {
    let (mut f, checks) = counting_fixture(|doc| {
        doc["settings"]["signature_failures_per_second"] = json!(3);
    });
    // alice is warm: verified and her downstream token cached.
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    assert_eq!(checks.get(), 1);

    // A flood of distinct forgeries: three are checked, then none.
    let junk: Vec<String> = (0..50)
        .map(|i| forged(&f.token("mallory", "github:read"), 100 + i))
        .collect();
    let steps: Vec<Step> = (0..50)
        .map(|i| f.begin(10 + i, "GET", &junk[i as usize]))
        .collect();
    assert!(steps[..3].iter().all(bad_signature), "{:?}", &steps[..3]);
    assert!(
        steps[3..].iter().all(|s| throttled(s) == Some(1)),
        "{:?}",
        &steps[3..]
    );
    assert_eq!(checks.get(), 1 + 3, "no check once the budget is spent");
    // During the flood: alice's verified token still goes through, at no check; a forgery
    // already checked is still a plain 401 (not a 503).
    for ctx in 100..110 {
        assert!(matches!(f.begin(ctx, "GET", &alice), Step::Forward(_)));
    }
    assert!(bad_signature(&f.begin(110, "GET", &junk[0])));
    // A new token, even a valid one, waits: it cannot be told from a forgery unchecked.
    let bob = f.token("bob", "github:read");
    assert_eq!(throttled(&f.begin(111, "GET", &bob)), Some(1));
    assert_eq!(checks.get(), 4);

    // A third of a second refills one failure: one more forgery is checked, then none.
    f.host.now.set(NOW_S * 1000 + 334);
    assert!(bad_signature(&f.begin(120, "GET", &junk[10])));
    assert_eq!(throttled(&f.begin(121, "GET", &junk[11])), Some(1));
    assert_eq!(checks.get(), 5);

    // The flood over, a second later: bob's token is verified and goes to the vault. Valid
    // tokens spend nothing: three more, and the budget still has its three failures.
    f.host.now.set((NOW_S + 2) * 1000);
    assert!(started(&f.begin(130, "GET", &bob)).is_some());
    for (ctx, who) in [(131, "carol"), (132, "dave"), (133, "erin")] {
        let step = f.begin(ctx, "GET", &f.token(who, "github:read"));
        assert!(started(&step).is_some(), "{who}: {step:?}");
    }
    for ctx in 140..143 {
        assert!(bad_signature(&f.begin(
            ctx,
            "GET",
            &junk[ctx as usize - 120]
        )));
    }
    assert!(throttled(&f.begin(143, "GET", &junk[40])).is_some());
    assert!(matches!(f.begin(144, "GET", &alice), Step::Forward(_)));
}

#[test]
fn a_flood_at_one_tenant_does_not_hold_back_another() {
    // A second tenant with the same issuer and keys, under its own id and resource.
    let (mut f, _) = counting_fixture(|doc| {
        doc["settings"]["signature_failures_per_second"] = json!(2);
        let mut twin = doc["tenants"][0].clone();
        twin["id"] = json!("twin");
        twin["resources"] = json!(["/twin/mcp"]);
        doc["tenants"][1] = twin;
    });
    let twin_jwks = cache::jwks_key(&f.worker.config.tenants[1]);
    f.host
        .shared_set(
            &twin_jwks,
            &cache::encode_jwks(NOW_S * 1000, f.keys.jwks().to_string().as_bytes()),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    for i in 0..10 {
        f.begin(
            i,
            "GET",
            &forged(&f.token("mallory", "github:read"), i as u64),
        );
    }
    assert!(throttled(&f.begin(20, "GET", &f.token("bob", "github:read"))).is_some());
    let twin_token = f.token_with(
        "bob",
        "github:read",
        json!({"aud": "http://localhost:3000/twin/mcp"}),
    );
    let input = RequestInput {
        tenant: 1,
        method: "GET".into(),
        token: twin_token,
        subject_token: None,
    };
    let step = f.worker.begin(&f.host, 21, input);
    assert!(started(&step).is_some(), "{step:?}");
}

#[test]
fn the_failure_budget_refills_continuously() {
    let mut b = FailureBudget::default();
    let t0 = NOW_S * 1000;
    for _ in 0..4 {
        assert_eq!(b.wait_seconds(4, t0), 0);
        b.spend(4, t0);
    }
    assert_eq!(b.wait_seconds(4, t0), 1);
    assert_eq!(b.wait_seconds(4, t0 + 249), 1);
    assert_eq!(b.wait_seconds(4, t0 + 250), 0);
    b.spend(4, t0 + 250);
    // A clock going back refills nothing and breaks nothing.
    assert_eq!(b.wait_seconds(4, t0), 1);
    // Idle for long: full again, never more than full.
    assert_eq!(b.wait_seconds(4, t0 + 60_000), 0);
    for _ in 0..4 {
        b.spend(4, t0 + 60_000);
    }
    assert_eq!(b.wait_seconds(4, t0 + 60_000), 1);
    // Large rates do not overflow.
    let mut big = FailureBudget::default();
    big.spend(100_000, u64::MAX);
    assert_eq!(big.wait_seconds(100_000, u64::MAX), 0);
}

/// Two workers sharing one store and their flights (the native host): `f.worker` and the
/// returned one.
fn sharing_workers(f: &mut Fixture) -> Worker {
    let config = Rc::clone(&f.worker.config);
    f.worker = Worker::new(Rc::clone(&config), Box::new(PureRustVerifier)).with_shared_flights();
    Worker::new(config, Box::new(PureRustVerifier)).with_shared_flights()
}

fn request(token: &str) -> RequestInput {
    RequestInput {
        tenant: 0,
        method: "GET".into(),
        token: token.into(),
        subject_token: None,
    }
}

fn waits_elsewhere(step: &Step) -> Option<(String, Option<u32>)> {
    match step {
        Step::WaitElsewhere { watch, seen, .. } => Some((watch.clone(), *seen)),
        _ => None,
    }
}

#[test]
fn workers_sharing_flights_send_one_exchange_per_user() {
    let mut f = fixture();
    let mut other = sharing_workers(&mut f);
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    // The other worker's requests of the same user wait for it: no call-out of their own.
    let first = other.begin(&f.host, 7, request(&alice));
    let (watch, seen) = waits_elsewhere(&first).unwrap_or_else(|| panic!("{first:?}"));
    assert!(watch.starts_with("tvp/v1/dx/"), "{watch}");
    assert!(waits_elsewhere(&other.begin(&f.host, 8, request(&alice))).is_some());
    // Woken with nothing new: they wait on.
    let now = f.host.now_ms();
    let early = other.poll_elsewhere(&f.host, now);
    assert_eq!(early.len(), 2);
    assert!(early.iter().all(|(_, s)| waits_elsewhere(s).is_some()));
    // The holder's answer is cached and its lease released: the record changed.
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    assert_ne!(f.host.shared_get(&watch).1, seen);
    let answered = other.poll_elsewhere(&f.host, now);
    let mut ctxs: Vec<u32> = answered.iter().map(|(c, _)| *c).collect();
    ctxs.sort_unstable();
    assert_eq!(ctxs, vec![7, 8]);
    for (_, step) in &answered {
        let Step::Forward(fw) = step else {
            panic!("{step:?}")
        };
        assert!(fw.value.ends_with("gho_1"));
    }
    assert!(!other.is_waiting(7) && !other.is_waiting(8));
    // Another user is its own exchange, on whichever worker sees it first.
    let bob = f.token("bob", "github:read");
    assert!(started(&other.begin(&f.host, 9, request(&bob))).is_some());
}

#[test]
fn without_shared_flights_each_worker_sends_its_own_exchange() {
    let mut f = fixture();
    let config = Rc::clone(&f.worker.config);
    let mut other = Worker::new(config, Box::new(PureRustVerifier));
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    assert!(started(&other.begin(&f.host, 7, request(&alice))).is_some());
}

#[test]
fn a_lease_whose_holder_gave_up_is_taken_over_at_once() {
    let mut f = fixture();
    let mut other = sharing_workers(&mut f);
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    let step = other.begin(&f.host, 7, request(&alice));
    assert!(waits_elsewhere(&step).is_some(), "{step:?}");
    // The holder's only request goes away: its call-out is cancelled, the lease released.
    f.worker.forget(&f.host, 1);
    let now = f.host.now_ms();
    let resolved = other.poll_elsewhere(&f.host, now);
    assert_eq!(resolved.len(), 1);
    let (flight, _) = started(&resolved[0].1).unwrap_or_else(|| panic!("{resolved:?}"));
    let flight = flight.clone();
    other.dispatched(&flight, 3, 7, now);
    let response = CalloutResponse {
        status: Some(200),
        retry_after: None,
        rate_limit_reset: None,
        body: Some(br#"{"access_token":"gho_2","expires_in":3600}"#.to_vec()),
    };
    let r = other.on_response(&f.host, 3, &response);
    assert!(matches!(&r[0], (7, Step::Forward(fw)) if fw.value.ends_with("gho_2")));
}

#[test]
fn a_lease_that_ran_out_is_taken_over_by_a_waiter() {
    let mut f = fixture();
    let mut other = sharing_workers(&mut f);
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    assert!(waits_elsewhere(&other.begin(&f.host, 7, request(&alice))).is_some());
    let Step::WaitElsewhere { until_ms, .. } = other.begin(&f.host, 8, request(&alice)) else {
        panic!("not waiting elsewhere")
    };
    let lease = super::exchange_lease::duration_ms(f.worker.config.settings.callout_timeout_ms);
    assert_eq!(until_ms, f.host.now_ms() + lease);
    // Before it runs out: still waiting. At its end: one waiter sends the exchange.
    assert!(other
        .poll_elsewhere(&f.host, until_ms - 1)
        .iter()
        .all(|(_, s)| waits_elsewhere(s).is_some()));
    let resolved = other.poll_elsewhere(&f.host, until_ms);
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert!(started(&resolved[0].1).is_some());
    // The first holder's answer arriving late does not disturb the new holder's lease.
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    let key = super::exchange_lease::key(&match &resolved[0].1 {
        Step::Wait {
            flight: FlightKey::Token(k),
            ..
        } => k.clone(),
        s => panic!("{s:?}"),
    });
    let (value, _) = f.host.shared_get(&key);
    assert_ne!(value.as_deref(), Some(&0u64.to_be_bytes()[..]));
}

/// A verifier that refuses every signature: a worker with it accepts a token only if it never
/// checks it.
struct RefusesAll;

impl SignatureVerifier for RefusesAll {
    fn verify(&self, _: crate::jose::Alg, _: &crate::crypto::Key, _: &[u8], _: &[u8]) -> bool {
        false
    }
}

#[test]
fn a_token_one_worker_verified_is_not_checked_again_by_another_sharing_the_store() {
    let mut f = fixture();
    let config = Rc::clone(&f.worker.config);
    let digest = cache::TokenDigest::new();
    let sharing = |verifier: Box<dyn SignatureVerifier>, namespace: &str| {
        Worker::new(Rc::clone(&config), verifier)
            .with_shared_verified_tokens(namespace.into(), digest)
    };
    f.worker = sharing(Box::new(PureRustVerifier), "config-1");
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    // Another worker of the same configuration: the token is known verified.
    let mut other = sharing(Box::new(RefusesAll), "config-1");
    assert!(matches!(
        other.begin(&f.host, 7, request(&alice)),
        Step::Forward(_)
    ));
    assert_eq!(f.host.counter("github", "verified_cache.hit"), 1);
    // A worker of another configuration, or one not sharing, checks it itself.
    let mut pushed = sharing(Box::new(RefusesAll), "config-2");
    let mut alone = Worker::new(Rc::clone(&config), Box::new(RefusesAll));
    for (ctx, worker) in [(8, &mut pushed), (9, &mut alone)] {
        let step = worker.begin(&f.host, ctx, request(&alice));
        assert!(
            matches!(
                step,
                Step::Deny {
                    deny: Deny::InvalidToken(TokenError::BadSignature),
                    ..
                }
            ),
            "{step:?}"
        );
    }
    // A worker configured without a verified-token cache checks every token.
    let mut f0 = fixture_with(|doc| doc["settings"]["verified_token_cache_size"] = json!(0));
    let uncached = Worker::new(Rc::clone(&f0.worker.config), Box::new(RefusesAll))
        .with_shared_verified_tokens("config-1".into(), digest);
    f0.worker = uncached;
    f0.host = std::mem::take(&mut f.host);
    assert!(matches!(
        f0.begin(11, "GET", &alice),
        Step::Deny {
            deny: Deny::InvalidToken(TokenError::BadSignature),
            ..
        }
    ));
    f.host = std::mem::take(&mut f0.host);
    // Lifetimes still run out, wherever it was verified.
    // (past the clock skew allowed)
    f.host.now.set((NOW_S + 600 + 3600) * 1000);
    let mut late = sharing(Box::new(RefusesAll), "config-1");
    assert!(matches!(
        late.begin(&f.host, 10, request(&alice)),
        Step::Deny {
            deny: Deny::InvalidToken(TokenError::Expired),
            ..
        }
    ));
}

#[test]
fn a_warm_request_reuses_the_token_read_briefly_and_never_past_an_eviction_here() {
    let mut f = fixture();
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    let Step::Forward(first) = f.begin(2, "GET", &alice) else {
        panic!("not forwarded")
    };
    // Within the memo's time: no shared-data read at all.
    let reads = f.host.shared_reads();
    assert!(matches!(f.begin(3, "GET", &alice), Step::Forward(_)));
    assert_eq!(f.host.shared_reads(), reads);
    // A clock stepped back reads again.
    let now = f.host.now_ms();
    f.host.now.set(now - 1);
    assert!(matches!(f.begin(5, "GET", &alice), Step::Forward(_)));
    assert!(f.host.shared_reads() > reads);
    f.host.now.set(now);
    // An eviction on this worker (a disconnect here) takes effect at once.
    downstream::evict_downstream(&f.host, &first.principal.downstream_key);
    assert!(started(&f.begin(4, "GET", &alice)).is_some());
}

#[test]
fn an_eviction_by_another_worker_is_seen_within_the_memo_time() {
    let mut f = fixture();
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    f.answer(1, 200, json!({"access_token": "gho_1", "expires_in": 3600}));
    let Step::Forward(first) = f.begin(2, "GET", &alice) else {
        panic!("not forwarded")
    };
    // Another worker evicts it (its write, not this worker's eviction).
    let key = &first.principal.downstream_key;
    f.host
        .shared_set(key, &cache::encode_evicted(0), None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let read_at = f.host.now_ms();
    f.host.now.set(read_at + downstream::MEMO_MS - 1);
    assert!(matches!(f.begin(3, "GET", &alice), Step::Forward(_)));
    f.host.now.set(read_at + downstream::MEMO_MS);
    assert!(started(&f.begin(4, "GET", &alice)).is_some());
}

/// The refusal of `step`, if it is one.
fn refusal(step: &Step) -> Option<&Deny> {
    match step {
        Step::Deny { deny, .. } => Some(deny),
        _ => None,
    }
}

/// Bob's exchange is answered `status` `body`, which refuses him with `want`: the refusal is
/// remembered for him alone for `vault_backoff_seconds` (5), then the vault is asked again.
fn assert_refusal_cached_per_user(
    f: &mut Fixture,
    status: u16,
    body: serde_json::Value,
    want: &Deny,
    metric: &str,
) {
    with_keys(f);
    let backoff_ms = f.worker.config.settings.vault_backoff_seconds * 1000;
    assert_eq!(backoff_ms, 5_000);
    let bob = f.token("bob", "github:read");
    exchange(f, 1, 1, &bob);
    let r = f.answer(1, status, body);
    assert_eq!(refusal(&r[0].1), Some(want), "{r:?}");
    assert_eq!(f.host.counted("github", metric), 1);
    // Bob again, until the back-off ends: the same refusal at once, no call-out.
    for (ctx, at_ms) in [(2, 0), (3, 1), (4, backoff_ms - 1)] {
        f.host.now.set(NOW_S * 1000 + at_ms);
        let step = f.begin(ctx, "GET", &bob);
        assert_eq!(refusal(&step), Some(want), "{ctx}: {step:?}");
    }
    assert_eq!(
        f.host.counted("github", metric),
        1,
        "the vault was not asked"
    );
    // Another user is not refused for bob: alice's request calls the vault.
    let step = f.begin(5, "GET", &f.token("alice", "github:read"));
    assert!(started(&step).is_some(), "{step:?}");
    // After the back-off bob calls again.
    f.host.now.set(NOW_S * 1000 + backoff_ms);
    let step = f.begin(6, "GET", &bob);
    assert!(
        started(&step).is_some(),
        "asked again after the back-off: {step:?}"
    );
}

#[test]
fn a_forbidden_vault_answer_is_cached_per_user_for_the_back_off() {
    // Forbidden comes only from Okta (a 403 with an OAuth error); Auth0's 4xx that are not
    // the filter's own client or the subject token ask the user to connect instead.
    let mut f = okta_sts_fixture();
    assert_refusal_cached_per_user(
        &mut f,
        403,
        json!({"error": "access_denied"}),
        &Deny::VaultForbidden,
        "vault.forbidden",
    );
}

#[test]
fn a_misconfigured_vault_answer_is_cached_per_user_for_the_back_off() {
    for error in ["invalid_client", "unauthorized_client"] {
        let mut f = fixture();
        assert_refusal_cached_per_user(
            &mut f,
            401,
            json!({"error": error}),
            &Deny::VaultMisconfigured,
            "vault.misconfigured",
        );
    }
}

#[test]
fn a_user_keeps_only_the_sixteen_latest_login_hints_listed_and_a_disconnect_evicts_them_all() {
    let mut f = fixture_with(|doc| {
        doc["tenants"][0]["vault"]["login_hint_claim"] = json!("email");
    });
    with_keys(&f);
    let ok = json!({"access_token": "gho_1", "expires_in": 3600});
    let n = cache::MAX_USER_KEYS + 1;
    let tokens: Vec<String> = (0..n)
        .map(|i| f.token_with("alice", "github:read", json!({"email": format!("a{i}@x")})))
        .collect();
    // Each hint exchanged and cached in turn, its key listed in alice's record.
    let mut keys = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        let ctx = i as u32 + 1;
        f.host.now.set(NOW_S * 1000 + ctx as u64);
        exchange(&mut f, ctx, ctx, t);
        f.answer(ctx, 200, ok.clone());
        let Step::Forward(fw) = f.begin(100 + ctx, "GET", t) else {
            panic!("hint {i} not cached")
        };
        keys.push(fw.principal.downstream_key.clone());
    }
    let t = &f.worker.config.tenants[0];
    let user = cache::user_key_for(t, &t.issuer, "alice");
    let record = |f: &Fixture| {
        let bytes = f.host.shared_get(&user).0.unwrap_or_default();
        cache::decode_user(&bytes).unwrap_or_else(|| panic!("no record"))
    };
    // The record lists the sixteen most recent, oldest first; the first hint's left it.
    assert_eq!(record(&f).keys, keys[1..].to_vec());
    assert_eq!(record(&f).keys.len(), cache::MAX_USER_KEYS);
    // The hint that left the record left the cache too: its next request exchanges again.
    let step = f.begin(200, "GET", &tokens[0]);
    assert!(started(&step).is_some(), "{step:?}");
    for (i, t) in tokens.iter().enumerate().skip(1) {
        let step = f.begin(200 + i as u32, "GET", t);
        assert!(matches!(step, Step::Forward(_)), "hint {i}: {step:?}");
    }
    // A disconnect evicts every key the record lists.
    evict_user(&f.host, &user, f.host.now_ms());
    for (i, t) in tokens.iter().enumerate().skip(1) {
        let step = f.begin(300 + i as u32, "GET", t);
        assert!(started(&step).is_some(), "hint {i}: {step:?}");
    }
    for key in &keys {
        let (value, _) = f.host.shared_get(key);
        let value = value.unwrap_or_default();
        assert_eq!(cache::decode_downstream(&value, f.host.now_ms()), None);
    }
}

#[test]
fn expiry_arithmetic_at_the_clock_s_limits_saturates_instead_of_overflowing() {
    // A huge `expires_in` is capped: at most `downstream_cache_max_seconds` in the cache.
    let mut f = fixture();
    with_keys(&f);
    let alice = f.token("alice", "github:read");
    exchange(&mut f, 1, 1, &alice);
    let r = f.answer(
        1,
        200,
        json!({"access_token": "gho_1", "expires_in": u64::MAX}),
    );
    let Step::Forward(fw) = &r[0].1 else {
        panic!("{r:?}")
    };
    let cap_ms = f.worker.config.settings.downstream_cache_max_seconds * 1000;
    let entry = f.host.shared_get(&fw.principal.downstream_key).0;
    let expires_at = entry
        .and_then(|b| cache::decode_downstream_until(&b, NOW_S * 1000))
        .map(|(_, at)| at);
    assert_eq!(expires_at, Some(NOW_S * 1000 + cap_ms));
    f.host.now.set(NOW_S * 1000 + cap_ms);
    assert!(started(&f.begin(2, "GET", &alice)).is_some());

    // A clock near u64::MAX (ms), a token whose `exp` is i64::MAX (plus the skew), a vault
    // lifetime at the limit, a lease across workers: nothing overflows, the token is not
    // expired, and the answer is cached until the end of time (saturated, not wrapped).
    let mut f = fixture();
    f.worker =
        Worker::new(Rc::clone(&f.worker.config), Box::new(PureRustVerifier)).with_shared_flights();
    let now = u64::MAX - 10_000;
    f.host.now.set(now);
    let jwks = cache::jwks_key(&f.worker.config.tenants[0]);
    f.host
        .shared_set(
            &jwks,
            &cache::encode_jwks(now, f.keys.jwks().to_string().as_bytes()),
            None,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
    let forever = f.token_with("alice", "github:read", json!({"exp": i64::MAX}));
    exchange(&mut f, 1, 1, &forever);
    let r = f.answer(
        1,
        200,
        json!({"access_token": "gho_2", "expires_in": u64::MAX}),
    );
    let Step::Forward(fw) = &r[0].1 else {
        panic!("{r:?}")
    };
    let entry = f.host.shared_get(&fw.principal.downstream_key).0;
    let expires_at = entry
        .and_then(|b| cache::decode_downstream_until(&b, now))
        .map(|(_, at)| at);
    assert_eq!(expires_at, Some(u64::MAX));
    // Later still: verified from the cache, the token still good, no call-out.
    f.host.now.set(u64::MAX - 1);
    let step = f.begin(2, "GET", &forever);
    assert!(
        matches!(&step, Step::Forward(fw) if fw.value == "Bearer gho_2"),
        "{step:?}"
    );
}
