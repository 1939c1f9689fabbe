use super::*;
use crate::config;
use crate::crypto::PureRustVerifier;
use crate::testing::FakeHost;
use serde_json::json;
use sim::keys::IssuerKeys;

const NOW_S: u64 = 1_800_000_000;

struct Fixture {
    host: FakeHost,
    worker: Worker,
    keys: IssuerKeys,
}

fn fixture() -> Fixture {
    let doc = &crate::testing::example_json();
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
        let claims = json!({"iss": "http://127.0.0.1:9000/issuers/github/", "aud": "http://localhost:3000/github/mcp", "sub": sub, "exp": NOW_S + 600, "scope": scope});
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

fn started(step: &Step) -> Option<(&str, &CalloutRequest)> {
    match step {
        Step::Wait {
            flight,
            start: Some(r),
        } => Some((flight.as_str(), r)),
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
    let jwks_flight = jwks_flight.to_string();
    let second = f.begin(2, "GET", &alice);
    assert!(matches!(second, Step::Wait { start: None, .. }));
    f.worker.dispatched(&jwks_flight, 100, 1, NOW_S * 1000);
    assert!(f.worker.is_waiting(1) && f.worker.is_waiting(2));

    // Keys arrive: both need the vault; one exchange is started.
    let resolved = f.answer(100, 200, f.keys.jwks());
    assert_eq!(resolved.len(), 2);
    let starts: Vec<_> = resolved.iter().filter_map(|(_, s)| started(s)).collect();
    assert_eq!(starts.len(), 1);
    let (vault_flight, vault_request) = (starts[0].0.to_string(), starts[0].1.clone());
    assert_eq!(vault_request.path, "/oauth/token");
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
                // Setting authorization replaces the agent's token: nothing else to remove.
                assert!(fw.strip.is_empty(), "{:?}", fw.strip);
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
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
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
fn not_connected_is_cached_briefly_and_failures_not_at_all() {
    let mut f = fixture();
    let shared_key = {
        let jwks = cache::jwks_key(&f.worker.config.tenants[0]);
        f.host.shared_set(
            &jwks,
            &cache::encode_jwks(NOW_S * 1000, f.keys.jwks().to_string().as_bytes()),
            None,
        );
        jwks
    };
    assert!(!shared_key.is_empty());
    let bob = f.token("bob", "github:read");
    let s = f.begin(1, "GET", &bob);
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
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
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
    f.worker.dispatched(&flight, 2, 3, NOW_S * 1000);
    let r = f.answer(2, 500, json!({}));
    assert!(matches!(
        r[0].1,
        Step::Deny {
            deny: Deny::VaultFailed(DependencyFailure::BadAnswer),
            ..
        }
    ));
    assert!(
        matches!(f.begin(4, "GET", &bob), Step::Wait { start: Some(_), .. }),
        "a failure is not cached"
    );
}

#[test]
fn waiters_survive_their_owner_going_away() {
    let mut f = fixture();
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
    f.worker.dispatched(&flight, 5, 1, NOW_S * 1000);
    assert!(matches!(
        f.begin(2, "GET", &alice),
        Step::Wait { start: None, .. }
    ));
    // The owner's client hangs up: its call-out is lost with it.
    f.worker.forget(1);
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
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
    f.worker.dispatched(&flight, 8, 3, NOW_S * 1000);
    f.worker.forget(3);
    assert!(f.worker.take_orphans(NOW_S * 1000).is_empty());
    assert!(!f.worker.is_waiting(3));
}

#[test]
fn jwks_failure_without_keys_is_unavailable_and_backs_off() {
    let mut f = fixture();
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let flight = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
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
        .unwrap_or_default();
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

#[test]
fn a_lost_okta_call_is_sent_again_with_a_fresh_assertion() {
    const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwehRANCAAQeGFMv1HVMAvMEHZx1zrM7g//YGsfOT+iCzLHJi8WJbqRsMRxOL/QN2Wo2U+bkVEXTLf5Ibs7XXHqQxqGIgcCj
-----END PRIVATE KEY-----";
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
        &crate::testing::with_sealing_key(&|_| Some(PEM.into())),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut f = fixture();
    f.worker = Worker::new(Rc::new(cfg), Box::new(PureRustVerifier));
    let alice = f.token("alice", "github:read");
    let s = f.begin(1, "GET", &alice);
    let jwks = started(&s).map(|(a, _)| a.to_string()).unwrap_or_default();
    f.worker.dispatched(&jwks, 1, 1, NOW_S * 1000);
    let resolved = f.answer(1, 200, f.keys.jwks());
    let (flight, first) = started(&resolved[0].1)
        .map(|(k, r)| (k.to_string(), r.clone()))
        .unwrap_or_else(|| panic!("{resolved:?}"));
    f.worker.dispatched(&flight, 2, 1, NOW_S * 1000);
    assert!(matches!(
        f.begin(2, "GET", &alice),
        Step::Wait { start: None, .. }
    ));
    // The owner goes away after sending: the call is sent again, not replayed.
    f.worker.forget(1);
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
    f.host.shared_set(
        &key,
        &cache::encode_jwks(NOW_S * 1000, jwks.as_bytes()),
        None,
    );
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
