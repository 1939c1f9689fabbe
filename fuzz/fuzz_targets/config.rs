//! The plugin configuration parser: never panic; every error is one line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::config;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = config::parse(data, &|name| (name == "SECRET").then(|| "s".to_string())) {
        assert!(!e.to_string().contains('\n'));
    }
});
