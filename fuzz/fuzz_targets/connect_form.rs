//! Query strings, form fields and cookies of the connect pages (browser-controlled): never
//! panic; decoded values never carry control characters; encoding round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tvp_core::connect::form;
use tvp_core::urlencoded;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for name in ["id", "state", "code", "connect_code", "csrf"] {
        if let Some(v) = urlencoded::param(urlencoded::query_of(text), name) {
            assert!(!v.chars().any(char::is_control));
            assert_eq!(urlencoded::decode(&urlencoded::encode(&v)).as_deref(), Some(v.as_str()));
        }
    }
    let _ = form::cookie(&[data], "tvp_session");
});
