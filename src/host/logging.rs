//! Envoy's log: the `log` crate's records written through the raw ABI, at Envoy's level.

use super::raw::*;

/// Log only what Envoy will print: skipping formatting and a host call per request when the
/// wasm log level is above `info`. Re-read on every tick, as `/logging` can change it.
pub fn follow_host_log_level() {
    let mut level: u32 = 0;
    // SAFETY: the host writes only the out-parameter, a live local (a plain integer: a
    // level the host adds later cannot be an invalid enum value here).
    if unsafe { proxy_get_log_level(&mut level) } == OK {
        log::set_max_level(log_filter(level));
    }
}

/// The `log` crate's filter for a proxy-wasm log level (trace 0 .. critical 5).
fn log_filter(level: u32) -> log::LevelFilter {
    match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    }
}

/// The `log` crate's records, written to Envoy's log through the raw ABI (the SDK's logger
/// unwraps the host's status, trapping the VM on a refusal).
struct HostLogger;
static LOGGER: HostLogger = HostLogger;
impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        write_log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

/// Install [`HostLogger`] (everything passes until the first tick reads Envoy's level).
pub fn install_logger() {
    // Err only if a logger is already installed: then that one stays.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Trace);
}

/// One line in Envoy's log at a proxy-wasm level; a refusal loses the line, never traps.
pub fn write_log(level: u32, message: &str) {
    // SAFETY: the pointer comes from a live string and its exact length; the host only reads.
    unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}
