//! `tvp render front`: the Envoy in front of the replicas, accepted by Envoy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::*;

#[test]
fn the_front_validates_in_envoy_for_either_balance() {
    for balance in ["credential", "round-robin"] {
        let (code, out, err) = tvp(&[
            "render",
            "front",
            "--set",
            "replicas=10.0.0.1:3000,gw-1.gw.svc:3000",
            "--set",
            &format!("balance={balance}"),
        ]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("cluster: replicas"), "{out}");
        envoy_validates(&out, &scratch(&format!("front-{balance}")));
    }
    let (code, _, err) = tvp(&["render", "front", "--set", "balance=credential"]);
    assert_eq!(code, 1);
    assert!(err.contains("replicas: name the replicas"), "{err}");
}
