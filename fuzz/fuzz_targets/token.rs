//! Bearer extraction, untrusted JWS parsing and claim checks: never panic, and anything
//! accepted is structurally what we promise (three segments, an allowed algorithm).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::{auth, jose, jwt};

#[path = "example.rs"]
mod example;
use example::example;

fuzz_target!(|data: &[u8]| {
    let _ = auth::bearer_token(&[data]);
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = jwt::parse(text, 65_536, Some("email")) {
        assert_eq!(text.matches('.').count(), 2);
        assert!(jose::Alg::from_name(parsed.alg.name()).is_some());
        let tenant = &example().tenants[0];
        let rules = jwt::ClaimRules { issuer: &tenant.issuer, audiences: &tenant.audiences, skew_s: 60 };
        let _ = jwt::check_claims(&parsed.claims, &rules, 1_800_000_000);
    }
});
