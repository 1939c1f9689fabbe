//! token-vault-proxy as an Envoy dynamic module (`envoy.filters.http.dynamic_modules`): the
//! same core as the wasm filter, loaded into Envoy as a shared library. Every decision is
//! `tvp-core`'s; this crate reads each event from Envoy, calls the core and applies its answer.
//!
//! - [`abi`]: the C ABI (types, callbacks, hooks); the only `unsafe` code.
//! - [`filter`]: hooks to core calls and outcomes to Envoy calls.
//! - [`background`]: the configuration's key refresh on Envoy's main thread.
//! - [`host`]: the core's `Host` (clock, store, metrics, call-outs).
//! - [`registry`]: this worker's streams and call-outs by the core's ids.
//! - [`store`]: the process-wide shared store (bounded).
//! - [`wake`]: waking a request that waits for another worker's vault exchange.
//! - [`crypto`]: signatures through `aws-lc-rs`, keys parsed once.
//! - [`logger`]: `log` onto Envoy's logger.

// The compiler keeps `unsafe` inside the bindings module.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

// Every hook catches panics to answer 500; with `panic = "abort"` (the workspace's release
// profile) a panic would take Envoy down instead. `make native` builds the `native` profile.
#[cfg(panic = "abort")]
compile_error!("tvp-native must unwind on panic: build it with `--profile native` (make native)");

#[allow(unsafe_code)]
pub mod abi;
pub mod background;
pub mod crypto;
pub mod filter;
pub mod host;
pub mod logger;
pub mod registry;
pub mod store;
pub mod wake;
