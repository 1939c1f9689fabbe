//! Bearer extraction, untrusted JWS parsing and claim checks: never panic, and anything
//! accepted is structurally what we promise (three segments, an allowed algorithm).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::{auth, config, jwt};

fuzz_target!(|data: &[u8]| {
    let _ = auth::bearer_token(&[data]);
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = jwt::parse(text, 65_536, Some("email")) {
        assert_eq!(text.matches('.').count(), 2);
        assert!(jwt::Alg::from_name(parsed.alg.name()).is_some());
        let cfg = config::parse(include_bytes!("../../tenants.example.json"), &|_| Some("x".into()));
        if let Ok(cfg) = cfg {
            let _ = jwt::check_claims(&parsed.claims, &cfg.tenants[0], 1_800_000_000, 60);
        }
    }
});
