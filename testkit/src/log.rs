//! Logs a process wrote to a file, and the checks every run makes on them: no secret in the
//! text, no sign of a failed filter. The checks name what leaked, never the value.

use std::path::Path;

/// A log's text so far (empty if there is none yet).
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The last `lines` lines.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The name of the first secret that appears in `text`, for `(name, value)` pairs (empty
/// values are skipped: they are in every text).
pub fn leaked<'a>(text: &str, secrets: &[(&'a str, &str)]) -> Option<&'a str> {
    secrets
        .iter()
        .find(|(_, value)| !value.is_empty() && text.contains(value))
        .map(|(name, _)| *name)
}

/// The first line that shows the filter failed: a panic, or a critical line from the wasm
/// runtime (a trapped VM).
pub fn filter_failure(text: &str) -> Option<&str> {
    text.lines().find(|l| {
        l.contains("panic")
            || (l.contains("[critical]") && (l.contains("wasm") || l.contains("dynamic_modules")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_are_named_not_shown() {
        let text = "[debug] wasm log: exchanged for sim_github_alice_1";
        let secrets = [
            ("client secret", "s3cret"),
            ("downstream token", "sim_github_alice_1"),
        ];
        assert_eq!(leaked(text, &secrets), Some("downstream token"));
        assert_eq!(leaked(text, &[("empty", "")]), None);
    }

    #[test]
    fn a_trapped_vm_or_a_panic_is_a_failure() {
        assert!(filter_failure("[info] ok\n[warning] slow").is_none());
        let trap = "[critical][wasm] Function: proxy_on_request_headers failed";
        assert_eq!(filter_failure(&format!("ok\n{trap}")), Some(trap));
        assert!(filter_failure("panicked at core/src/x.rs").is_some());
    }

    #[test]
    fn the_tail_is_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
