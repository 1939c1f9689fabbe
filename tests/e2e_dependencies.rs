//! The JWKS endpoint and the Token Vault failing in every way the sim can: the filter fails
//! closed with the documented status, keeps old keys, and recovers without a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Failures any HTTP dependency can show, whatever it is: too big, too slow, gone.
fn transport_faults() -> Vec<(&'static str, Fault, u16)> {
    vec![
        (
            "10 MB",
            Fault::body(200, "application/json", vec![b' '; 10 * 1024 * 1024]),
            502,
        ),
        ("slow", Fault::Delay(Duration::from_millis(3000)), 504),
        ("dropped", Fault::Drop, 503),
    ]
}

fn jwks_faults() -> Vec<(&'static str, Fault, u16)> {
    let mut faults = transport_faults();
    faults.extend([
        ("500", Fault::status(500), 502),
        ("404", Fault::status(404), 502),
        (
            "html",
            Fault::body(200, "text/html", "<html>hello</html>"),
            502,
        ),
        (
            "invalid json",
            Fault::body(200, "application/json", "{\"keys\": ["),
            502,
        ),
        (
            "wrong key type",
            Fault::body(
                200,
                "application/json",
                json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string(),
            ),
            502,
        ),
        (
            "empty set",
            Fault::body(200, "application/json", "{\"keys\": []}"),
            502,
        ),
        ("503", Fault::status(503), 503),
    ]);
    faults
}

#[test]
fn jwks_failures_at_start_fail_closed_then_recover() {
    let stack = Stack::with(Options {
        wait_for_keys: false,
        before_envoy: Some(Box::new(|sim| {
            sim.fail(Endpoint::Jwks, Fault::status(500), None)
        })),
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    for (name, fault, status) in jwks_faults() {
        stack.sim.fail(Endpoint::Jwks, fault, None);
        let got = stack.eventually(status, || stack.call("GET", "/github/user", &token).status);
        assert_eq!(got, status, "JWKS {name}");
        let r = stack.call("GET", "/github/user", &token);
        if r.status == status {
            assert_eq!(r.json()["error"], "temporarily_unavailable", "{name}");
        }
    }
    let health = stack.request("GET", "/health", &[], b"").json();
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["tenants"]["github"]["keys_loaded"], false);
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    assert_eq!(stack.sim.count(Endpoint::Vault), 0);
    stack.sim.heal(Endpoint::Jwks);
    assert_eq!(
        stack.eventually(200, || stack.call("GET", "/github/user", &token).status),
        200
    );
}

#[test]
fn key_rotation_costs_exactly_one_fetch() {
    let stack = Stack::start();
    let old = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &old).status, 200);
    // Past the refetch interval (1 s in tests), an unknown kid may trigger one fetch.
    std::thread::sleep(Duration::from_millis(1100));
    let new_kid = stack.sim.rotate("github", true);
    let before = stack.sim.count(Endpoint::Jwks);
    let new = stack.token("github", "alice");
    assert!(new.len() > 10 && new_kid == "github-rsa-2");
    assert_eq!(stack.call("GET", "/github/user", &new).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Jwks), before + 1);
    let another = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"jti": "x"})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &another).status, 200);
    assert_eq!(
        stack.call("GET", "/github/user", &old).status,
        200,
        "the old key is still published"
    );
    assert_eq!(stack.sim.count(Endpoint::Jwks), before + 1);
    // Unknown kids within the interval do not cause fetches (no fetch amplification).
    for i in 0..5 {
        let bogus = stack.mint(Mint {
            tenant: "github".into(),
            sub: "alice".into(),
            header: Some(json!({"kid": format!("bogus-{i}")})),
            ..Mint::default()
        });
        assert_eq!(stack.call("GET", "/github/user", &bogus).status, 401);
    }
    assert_eq!(stack.sim.count(Endpoint::Jwks), before + 1);
}

#[test]
fn rotated_out_key_is_refused_after_refetch() {
    let stack = Stack::start();
    std::thread::sleep(Duration::from_millis(1100));
    stack.sim.rotate("github", false);
    // The first token with the new kid makes the filter refetch and learn the rotation.
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "alice"))
            .status,
        200
    );
    let retired = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        key: Some("retired".into()),
        ..Mint::default()
    });
    let r = stack.call("GET", "/github/user", &retired);
    assert_eq!(r.status, 401);
    assert!(r.json()["error_description"]
        .as_str()
        .unwrap_or_default()
        .contains("unknown key"));
}

#[test]
fn old_keys_stay_in_use_while_refreshes_fail() {
    let stack = Stack::with(Options {
        settings: json!({"jwks_min_refetch_seconds": 1, "jwks_refresh_seconds": 1, "jwks_max_stale_seconds": 60, "callout_timeout_ms": 1500}),
        ..Options::default()
    });
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "alice"))
            .status,
        200
    );
    stack.sim.fail(Endpoint::Jwks, Fault::status(500), None);
    let before = stack.sim.count(Endpoint::Jwks);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        stack.sim.count(Endpoint::Jwks) > before,
        "background refresh kept trying"
    );
    let fresh = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"jti": "new"})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &fresh).status, 200);
    assert_eq!(
        stack.request("GET", "/health", &[], b"").json()["tenants"]["github"]["keys_loaded"],
        true
    );
}

#[test]
fn vault_failures_fail_closed_with_the_right_status() {
    // Without the per-user back-off, so one user can go through every fault in a row.
    let mut settings = test_settings();
    settings["vault_backoff_seconds"] = json!(0);
    let stack = Stack::with(Options {
        settings,
        ..Options::default()
    });
    let token = stack.token("github", "alice");
    let error = |e: &str| {
        Fault::body(
            0,
            "application/json",
            json!({"error": e, "error_description": "x"}).to_string(),
        )
    };
    let with_status = |f: Fault, status: u16| match f {
        Fault::Respond { headers, body, .. } => Fault::Respond {
            status,
            headers,
            body,
        },
        other => other,
    };
    let mut cases = transport_faults();
    cases.extend([
        ("500", Fault::status(500), 502),
        ("502", Fault::status(502), 502),
        ("503", Fault::status(503), 503),
        ("html", Fault::body(200, "text/html", "<html>"), 502),
        (
            "garbage json",
            Fault::body(200, "application/json", "{\"access_token\": 5}"),
            502,
        ),
        (
            "token with CRLF",
            Fault::body(
                200,
                "application/json",
                json!({"access_token": "a\r\nx-evil: 1"}).to_string(),
            ),
            502,
        ),
        (
            "invalid_client",
            with_status(error("invalid_client"), 401),
            502,
        ),
        ("mfa_required", with_status(error("mfa_required"), 403), 502),
        (
            "bad request",
            with_status(error("invalid_request"), 400),
            502,
        ),
    ]);
    for (name, fault, status) in cases {
        stack.sim.fail(Endpoint::Vault, fault, Some(1));
        let r = stack.call("GET", "/github/user", &token);
        assert_eq!(r.status, status, "vault {name}: {}", r.text());
        assert!(
            !r.text().contains("x-evil") && !r.text().contains(&token),
            "{name}"
        );
    }
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    // With no back-off set, failures are not cached: the vault heals and the next request
    // goes through.
    assert_eq!(stack.call("GET", "/github/user", &token).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Backend), 1);
    // Any other 4xx means "authorization required", as the auth0-ai SDKs read it (last: the
    // answer is remembered for a few seconds, as "not connected" is; alice's token is cached).
    stack.sim.fail(
        Endpoint::Vault,
        with_status(error("access_denied"), 403),
        Some(1),
    );
    let r = stack.call("GET", "/github/user", &stack.token("github", "dave"));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "connected_account_required");
    let log = stack.log_text();
    assert!(!log.contains(&token) && !log.contains(GITHUB_SECRET));
}

/// A 429 stops the tenant's vault calls for its Retry-After: 100 requests of several users
/// after it make no call-out, and each gets the time left.
#[test]
fn a_vault_429_is_honoured_tenant_wide() {
    let stack = Stack::start();
    let limited = Fault::Respond {
        status: 429,
        headers: vec![
            ("retry-after".into(), "7".into()),
            ("content-type".into(), "application/json".into()),
        ],
        body: json!({"error": "too_many_requests"})
            .to_string()
            .into_bytes(),
    };
    stack.sim.fail(Endpoint::Vault, limited, None);
    let r = stack.call("GET", "/github/user", &stack.token("github", "alice"));
    assert_eq!((r.status, r.header("retry-after")), (503, Some("7")));
    let users: Vec<String> = (0..5)
        .map(|i| stack.token("github", &format!("user{i}")))
        .collect();
    for i in 0..100 {
        let r = stack.call("GET", "/github/user", &users[i % users.len()]);
        assert_eq!(r.status, 503, "{}", r.text());
        let wait: u64 = r.header("retry-after").unwrap_or("").parse().unwrap_or(0);
        assert!((1..=7).contains(&wait), "retry-after {wait}");
    }
    assert_eq!(stack.sim.count(Endpoint::Vault), 1, "one call-out in all");
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    // Auth0's standard 429 has no Retry-After: its X-RateLimit-Reset becomes one (another
    // tenant: the back-off is per tenant).
    stack
        .sim
        .fail(Endpoint::Vault, Fault::auth0_rate_limited(30), Some(1));
    let r = stack.call("GET", "/google/calendar", &stack.token("google", "alice"));
    assert_eq!(r.status, 503, "{}", r.text());
    let wait: u64 = r.header("retry-after").unwrap_or("").parse().unwrap_or(0);
    assert!((28..=30).contains(&wait), "retry-after {wait}");
}

/// Failed vault answers are remembered per user for `vault_backoff_seconds`: retries make
/// no call-out, other users are not affected.
#[test]
fn a_vault_failure_is_remembered_per_user_briefly() {
    let stack = Stack::start();
    let bob = stack.token("github", "bob");
    stack.sim.fail(Endpoint::Vault, Fault::status(500), Some(1));
    for _ in 0..20 {
        assert_eq!(stack.call("GET", "/github/user", &bob).status, 502);
    }
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    let alice = stack.token("github", "alice");
    assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
    assert_eq!(stack.sim.count(Endpoint::Vault), 2);
}

#[test]
fn backend_failure_is_envoys_ordinary_answer() {
    let stack = Stack::start();
    stack.sim.fail(Endpoint::Backend, Fault::Drop, Some(1));
    let r = stack.call("GET", "/github/user", &stack.token("github", "alice"));
    assert_eq!(r.status, 503);
    stack
        .sim
        .fail(Endpoint::Backend, Fault::status(500), Some(1));
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "alice"))
            .status,
        500
    );
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "alice"))
            .status,
        200
    );
}

#[test]
fn discovery_failure_and_recovery() {
    let stack = Stack::with(Options {
        wait_for_keys: false,
        before_envoy: Some(Box::new(|sim| {
            sim.fail(Endpoint::Discovery, Fault::status(404), None)
        })),
        ..Options::default()
    });
    let token = stack.mint(Mint {
        tenant: "google".into(),
        sub: "alice".into(),
        ..Mint::default()
    });
    assert_eq!(
        stack.eventually(502, || stack.call("GET", "/google/files", &token).status),
        502
    );
    assert!(
        stack.eventually(true, || stack.sim.count(Endpoint::Jwks) > 0),
        "github's own JWKS loads regardless"
    );
    stack.sim.heal(Endpoint::Discovery);
    assert_eq!(
        stack.eventually(200, || stack.call("GET", "/google/files", &token).status),
        200
    );
}

/// A token the filter still accepts (within its clock skew) but the vault refuses as expired
/// (`401 invalid_grant`, as Auth0 and the sim answer): the agent is told to get a new token,
/// never sent round a connect flow that cannot help.
#[test]
fn vault_refusing_the_agent_token_is_invalid_token_not_connect() {
    let stack = Stack::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let token = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(json!({"exp": now - 20})),
        ..Mint::default()
    });
    let r = stack.call("GET", "/github/user", &token);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_token");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(!r.text().contains("connect"), "{}", r.text());
    assert_eq!(stack.sim.count(Endpoint::Vault), 1);
    assert_eq!(stack.sim.count(Endpoint::Backend), 0);
    let decisions = stack.decisions();
    assert_eq!(
        decisions.last().map(|d| d["reason"].clone()),
        Some(json!("token_rejected"))
    );
}
