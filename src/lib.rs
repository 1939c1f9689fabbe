//! token-vault-proxy: an Envoy proxy-wasm HTTP filter that validates an AI agent's bearer JWT
//! per tenant, enforces scopes by method, exchanges it at the Auth0 Token Vault for the user's
//! downstream token, and forwards the request with that token instead.
//!
//! Only this file, `filter/` and `host.rs` talk to the proxy-wasm host; everything else is
//! plain Rust with unit tests on the host target.

pub mod abi;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod callout;
pub mod config;
pub mod connect;
pub mod crypto;
pub mod endpoints;
pub mod flow;
pub mod generation;
pub mod jwks;
pub mod jwt;
pub mod mcp;
pub mod policy;
pub mod reply;
pub mod secret;
pub mod vault;

#[cfg(test)]
mod testing;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Trace);
    std::panic::set_hook(Box::new(|info| {
        // A panic traps the VM; say where, never what data was in hand.
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let _ = proxy_wasm::hostcalls::log(
            proxy_wasm::types::LogLevel::Critical,
            &format!("token-vault-proxy: panic at {location}"),
        );
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(filter::Root::new(context_id)));
}}
