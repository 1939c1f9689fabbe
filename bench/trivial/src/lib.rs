//! The cheapest useful proxy-wasm filter: read `authorization`, set one header. Its cost over
//! plain Envoy is the wasm boundary itself, the floor for token-vault-proxy's warm path.

// A benchmark's yardstick, never deployed: the SDK's own wrappers are what a minimal filter
// would use (the real filter's host calls are in src/host/).
#![allow(clippy::disallowed_methods)]

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}

struct Root;
impl Context for Root {}
impl RootContext for Root {
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Request))
    }
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Request;
impl Context for Request {}
impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let seen = proxy_wasm::hostcalls::get_map_value_bytes(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            "authorization",
        )
        .ok()
        .flatten()
        .is_some();
        let _ = proxy_wasm::hostcalls::set_map_value_bytes(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            "x-trivial",
            Some(if seen { b"1" } else { b"0" }),
        );
        Action::Continue
    }
}
