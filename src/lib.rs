//! token-vault-proxy: the Envoy proxy-wasm HTTP filter. Every decision is `tvp-core`'s; this
//! crate reads the request from the proxy-wasm host, calls the core and applies its answer.
//! Only this crate talks to the proxy-wasm host.

pub mod abi;

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
