//! The plugin configuration parser: never panic; every error is one line, and a refused
//! configuration says why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::config;

fuzz_target!(|data: &[u8]| {
    if let Err(errors) = config::parse(data, &|name| (name == "SECRET").then(|| "s".to_string())) {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(!e.to_string().contains('\n'));
        }
    }
});
