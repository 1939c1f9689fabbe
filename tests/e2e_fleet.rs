//! Many gateways, one behaviour: three Envoy replicas with the filter behind a front Envoy, as
//! an ingress deployment runs. Every step of a user's flow may land on another replica, and
//! replicas restart during a flow; nothing a user's next step needs lives in one process.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::browser::{enc, Browser};
use common::fleet::{Balance, Fleet};
use common::*;
use serde_json::json;

/// The `authorization` the echo backend received, from its answer.
fn backend_saw(r: &Response) -> String {
    r.json()["headers"]
        .as_array()
        .and_then(|h| {
            h.iter()
                .find(|p| p[0] == "authorization")
                .and_then(|p| p[1].as_str())
        })
        .unwrap_or_default()
        .to_string()
}

/// Sign in at the sim's login form as `user` from a page of the connect flow.
fn sign_in(browser: &mut Browser, fleet: &Fleet, url: &str, user: &str) -> Response {
    let (at, page) = browser.open(url);
    assert!(at.contains("/authorize?"), "{at}");
    let q = Browser::field(&page.text(), "q").expect("login form");
    let login = format!("http://127.0.0.1:{}/authorize/login", fleet.sim.port);
    browser
        .submit(&login, &format!("q={}&username={user}", enc(&q)))
        .1
}

/// How many replicas served a page of the connect flow.
fn replicas_serving_connect_pages(fleet: &Fleet) -> usize {
    (0..fleet.replicas())
        .filter(|&i| fleet.log(i).contains("tenant=github connect "))
        .count()
}

#[test]
fn a_user_connects_across_replicas_and_through_their_restart() {
    let mut fleet = Fleet::start(
        3,
        Balance::RoundRobin,
        json!({"not_connected_cache_seconds": 1}),
    );
    // alice, REST and MCP, on whichever replica.
    let alice = fleet.token("github", "alice");
    for _ in 0..3 {
        let r = fleet.call("GET", "/github/user", &alice);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(backend_saw(&r).starts_with("Bearer sim_github_alice_"));
    }
    let auth = format!("Bearer {alice}");
    let rpc = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                     "params": {"name": "whoami", "arguments": {}}});
    let r = fleet.request(
        "POST",
        "/github/mcp",
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        rpc.to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(backend_saw(&r).starts_with("Bearer sim_github_alice_"));

    // bob has not connected: the consent answer, with a link on the public URL.
    let bob = fleet.token("github", "bob");
    let r = fleet.call("GET", "/github/user", &bob);
    assert_eq!(r.status, 403, "{}", r.text());
    let link = r.json()["connect_uri"].as_str().unwrap().to_string();
    assert!(
        link.starts_with(&format!(
            "http://127.0.0.1:{}/connect/github/start?id=",
            fleet.port
        )),
        "{link}"
    );

    // He signs in; the front sends each browser step to the next replica.
    let mut browser = Browser::new();
    let consent_page = sign_in(&mut browser, &fleet, &link, "bob");
    let ticket = Browser::field(&consent_page.text(), "ticket").expect("consent form");

    // Every replica restarts while he is at the provider: all they held in memory is gone.
    for i in 0..fleet.replicas() {
        fleet.restart(i);
    }
    let approve = format!(
        "http://127.0.0.1:{}/connected-accounts/approve",
        fleet.sim.port
    );
    let (at, done) = browser.submit(&approve, &format!("ticket={}&decision=allow", enc(&ticket)));
    assert!(at.contains("/connect/github/callback?"), "{at}");
    assert_eq!(done.status, 200, "{}", done.text());
    assert!(done.text().contains("Your github account is connected"));
    assert!(fleet.sim.is_connected("bob", "github"));
    assert!(
        replicas_serving_connect_pages(&fleet) >= 2,
        "the flow's steps were spread over the replicas"
    );

    // His retry succeeds on every replica, once the others' brief "not connected" lapsed.
    std::thread::sleep(Duration::from_millis(1100));
    for i in 0..fleet.replicas() {
        let r = fleet.call_replica(i, "GET", "/github/user", &bob);
        assert_eq!(r.status, 200, "replica {i}: {}", r.text());
        assert!(backend_saw(&r).starts_with("Bearer sim_github_bob_"));
    }
}

#[test]
fn a_disconnect_is_seen_by_every_replica_within_the_cache_bound() {
    const BOUND_S: u64 = 2;
    let fleet = Fleet::start(
        3,
        Balance::RoundRobin,
        json!({"downstream_cache_max_seconds": BOUND_S}),
    );
    let alice = fleet.token("github", "alice");
    // Each replica exchanges once and caches alice's downstream token.
    for i in 0..fleet.replicas() {
        assert_eq!(
            fleet.call_replica(i, "GET", "/github/user", &alice).status,
            200
        );
    }
    assert_eq!(fleet.sim.count(Endpoint::Vault), 3);

    // She disconnects on her accounts page (on whichever replica the front picks).
    let mut browser = Browser::new();
    let accounts = format!("http://127.0.0.1:{}/connect/github/accounts", fleet.port);
    let page = sign_in(&mut browser, &fleet, &accounts, "alice");
    let delete = Browser::form_action(&page.text()).expect("an account row");
    let (_, after) = browser.submit(&delete, "");
    assert!(after.text().contains("No github account is connected"));
    let disconnected = std::time::Instant::now();

    // Within the bound, no replica forwards with her old token any longer.
    std::thread::sleep(Duration::from_millis(BOUND_S * 1000 + 300));
    for i in 0..fleet.replicas() {
        let r = fleet.call_replica(i, "GET", "/github/user", &alice);
        assert_eq!(r.status, 403, "replica {i}: {}", r.text());
    }
    eprintln!(
        "every replica refused within {:?} of the disconnect (bound {BOUND_S} s)",
        disconnected.elapsed()
    );
}

#[test]
fn vault_calls_are_users_times_replicas_unless_the_front_hashes_the_credential() {
    const USERS: usize = 4;
    const ROUNDS: usize = 6;
    let mut seen = Vec::new();
    for balance in [Balance::RoundRobin, Balance::ByCredential] {
        let fleet = Fleet::start(3, balance, json!({}));
        let users: Vec<String> = (0..USERS).map(|n| format!("user{n}")).collect();
        for u in &users {
            fleet.sim.connect(u, "github");
        }
        let tokens: Vec<String> = users.iter().map(|u| fleet.token("github", u)).collect();
        for _ in 0..ROUNDS {
            for t in &tokens {
                assert_eq!(fleet.call("GET", "/github/user", t).status, 200);
            }
        }
        let calls = fleet.sim.count(Endpoint::Vault);
        eprintln!(
            "{balance:?}: {USERS} users x {ROUNDS} requests over {} replicas: {calls} vault calls",
            fleet.replicas()
        );
        seen.push(calls);
    }
    // Round robin: each user exchanged once per replica. Hashing the agent's credential:
    // once in all.
    assert_eq!(seen, vec![(USERS * 3) as u64, USERS as u64]);
}
