//! The `log` facade onto Envoy's `dynamic_modules` logger, at the level Envoy runs it.

use crate::abi::{self, LogLevel};

struct EnvoyLogger;

fn level_of(level: log::Level) -> LogLevel {
    match level {
        log::Level::Error => LogLevel::Error,
        log::Level::Warn => LogLevel::Warn,
        log::Level::Info => LogLevel::Info,
        log::Level::Debug => LogLevel::Debug,
        log::Level::Trace => LogLevel::Trace,
    }
}

impl log::Log for EnvoyLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // Formatting is skipped entirely when Envoy would drop the line.
        abi::log_enabled(level_of(metadata.level()))
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        abi::log(
            level_of(record.level()),
            &message,
            record.file().unwrap_or_default(),
            record.line().unwrap_or_default(),
        );
    }

    fn flush(&self) {}
}

static LOGGER: EnvoyLogger = EnvoyLogger;

/// Route `log` to Envoy (once per process; Envoy filters by its own level).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}
