//! The per-worker state machine under any sequence of requests, call-out answers, failures,
//! timeouts, ticks and context teardowns; the driver (shared with `tests/state_machine.rs`)
//! panics on a broken invariant.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/machine/mod.rs"]
mod machine;

fuzz_target!(|data: &[u8]| {
    machine::Machine::run(data);
});
