//! The filter's Envoy stats, read from Envoy's admin endpoint (plain and Prometheus).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

fn stat(stack: &Stack, name: &str) -> u64 {
    stack.stat(&format!("wasmcustom.tvp.{name}"))
}

#[test]
fn decisions_caches_and_callouts_are_counted_per_tenant() {
    let stack = Stack::start();
    let alice = stack.token("github", "alice");
    for _ in 0..3 {
        assert_eq!(stack.call("GET", "/github/user", &alice).status, 200);
    }
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "bob"))
            .status,
        403
    );
    assert_eq!(stack.request("GET", "/github/user", &[], b"").status, 401);
    let expired = stack.mint(Mint {
        tenant: "github".into(),
        sub: "alice".into(),
        claims: Some(serde_json::json!({"exp": 1})),
        ..Mint::default()
    });
    assert_eq!(stack.call("GET", "/github/user", &expired).status, 401);
    stack.sim.fail(Endpoint::Vault, Fault::status(503), Some(1));
    stack.sim.connect("carol", "github");
    assert_eq!(
        stack
            .call("GET", "/github/user", &stack.token("github", "carol"))
            .status,
        503
    );

    // Counters reach Envoy on the filter's next tick (about a second).
    assert_eq!(stack.eventually(3, || stat(&stack, "github.allow")), 3);
    assert_eq!(
        stack.eventually(1, || stat(&stack, "github.vault.unavailable")),
        1
    );
    assert_eq!(stat(&stack, "github.deny.connect_required"), 1);
    assert_eq!(stat(&stack, "github.deny.missing_token"), 1);
    assert_eq!(stat(&stack, "github.deny.token_expired"), 1);
    assert_eq!(stat(&stack, "github.deny.vault_unavailable"), 1);
    assert_eq!(stat(&stack, "github.vault.ok"), 1);
    assert_eq!(stat(&stack, "github.vault.connect_required"), 1);
    assert_eq!(stat(&stack, "github.vault.unavailable"), 1);
    assert_eq!(stat(&stack, "github.verified_cache.hit"), 2);
    assert_eq!(stat(&stack, "github.verified_cache.miss"), 4);
    assert_eq!(stat(&stack, "github.downstream_cache.hit"), 2);
    assert_eq!(stat(&stack, "github.jwks.fetch"), 1);
    assert_eq!(stat(&stack, "google.jwks.fetch"), 1);
    assert_eq!(stat(&stack, "github.jwks.fetch_failed"), 0);

    // Prometheus: the tenant is a label (stats_tags in the Envoy config). Envoy strips the
    // wasm filter's namespace; the dynamic module's names keep Envoy's own prefix.
    let prom = http(stack.admin, "GET", "/stats/prometheus", &[], b"")
        .unwrap()
        .text();
    let prefix = if testkit::native_host() {
        "envoy_wasmcustom_"
    } else {
        ""
    };
    let line_start = |text: &str| prom.lines().any(|l| l.starts_with(text));
    assert!(
        line_start(&format!("{prefix}tvp_allow{{tvp_tenant=\"github\"}} 3")),
        "{prom}"
    );
    assert!(
        line_start(&format!("# TYPE {prefix}tvp_vault_latency_ms histogram")),
        "{prom}"
    );
    assert!(
        !prom.contains(&alice) && !prom.contains("alice"),
        "no user data in metrics"
    );
}
