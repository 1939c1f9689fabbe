//! token-vault-proxy: the Envoy proxy-wasm HTTP filter. Every decision is `tvp-core`'s; this
//! crate reads the request from the proxy-wasm host, calls the core and applies its answer.
//! Only this crate talks to the proxy-wasm host.

pub mod abi;

#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;
#[cfg(target_arch = "wasm32")]
mod wake;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::install_logger();
    std::panic::set_hook(Box::new(|info| {
        // A panic traps the VM; say where, never what data was in hand.
        let location = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        host::write_log(5, &format!("token-vault-proxy: panic at {location}"));
        // The VM traps next: other workers must not wake it (see wake.rs).
        wake::mark_dead();
    }));
    proxy_wasm::set_root_context(|context_id| Box::new(filter::Root::new(context_id)));
}}
