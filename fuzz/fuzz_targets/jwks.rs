//! JWKS and discovery documents from the network: never panic, never accept private keys.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::jwks;

fuzz_target!(|data: &[u8]| {
    if let Ok(set) = jwks::parse_jwks(data) {
        assert!(!set.keys.is_empty());
    }
    let _ = jwks::jwks_path_from_discovery(data, "issuer.example");
});
