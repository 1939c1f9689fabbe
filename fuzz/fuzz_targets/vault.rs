//! Token Vault answers: never panic, and a token we accept is safe to put in a header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::callout::CalloutResponse;
use tvp_core::vault::{auth0, VaultOutcome};

#[path = "example.rs"]
mod example;
use example::example;

fuzz_target!(|data: &[u8]| {
    let Some((&status, body)) = data.split_first() else { return };
    let cfg = example();
    let statuses = [200u16, 400, 401, 403, 429, 500, 503, 504];
    let response = CalloutResponse {
        status: Some(statuses[usize::from(status) % statuses.len()]),
        retry_after: std::str::from_utf8(body).ok().map(|s| s.chars().take(8).collect()),
        rate_limit_reset: std::str::from_utf8(body).ok().map(|s| s.chars().take(12).collect()),
        body: Some(body.to_vec()),
    };
    if let VaultOutcome::Token { access_token, .. } = auth0::parse_exchange(&cfg.tenants[0].vault, &["repo".to_string()], &response, 1_800_000_000) {
        assert!(access_token.expose().bytes().all(|b| (0x21..=0x7e).contains(&b)));
    }
});
