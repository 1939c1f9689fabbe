//! `settings.hosts`: the names this gateway answers to. On a shared ingress the tenant comes
//! from the path alone, so without it `Host: other-app` with `/github/...` would get GitHub's
//! token injected and be routed wherever the ingress sends `other-app`.

/// The allowed `:authority` values: host names, each optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hosts(Vec<(String, Option<u16>)>);

impl Hosts {
    /// Lower-case DNS names (or IPv4 addresses), optionally `:port`; at least one.
    pub fn parse(entries: &[String]) -> Result<Hosts, String> {
        if entries.is_empty() {
            return Err("must name at least one host (leave it out to accept any)".into());
        }
        let mut out = Vec::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let parsed = split(e)
                .filter(|(h, _)| is_host_name(h))
                .ok_or_else(|| format!("[{i}] is not a host name with an optional :port"))?;
            out.push(parsed);
        }
        Ok(Hosts(out))
    }

    /// Whether a request's `:authority` is one of these: an entry without a port allows the
    /// name on any port. Names compare without case and without a trailing dot.
    pub fn allows(&self, authority: &str) -> bool {
        let Some((host, port)) = split(authority) else {
            return false;
        };
        self.0
            .iter()
            .any(|(h, p)| *h == host && (p.is_none() || *p == port))
    }
}

/// `host[:port]`, the host lower-cased and without a trailing dot; `None` if the port is not
/// a number from 1 to 65535.
fn split(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)),
        None => (authority, None),
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    Some((host, port))
}

fn is_host_name(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Result<Hosts, String> {
        Hosts::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn names_with_and_without_ports() {
        let h = hosts(&["agents.example.com", "localhost:3000"]).unwrap_or(Hosts(vec![]));
        for ok in [
            "agents.example.com",
            "AGENTS.example.com",
            "agents.example.com.",
            "agents.example.com:443",
            "localhost:3000",
        ] {
            assert!(h.allows(ok), "{ok}");
        }
        for no in [
            "other-app",
            "localhost",
            "localhost:3001",
            "agents.example.com.evil.example",
            "evil.agents.example.com",
            "agents.example.com:x",
            "",
        ] {
            assert!(!h.allows(no), "{no}");
        }
    }

    #[test]
    fn bad_entries_are_refused_with_their_index() {
        assert!(hosts(&[]).is_err());
        for bad in [
            "",
            "a..b",
            "-a.example",
            "a_b.example",
            "a.example:0",
            "a.example:x",
            "*.example",
            "[::1]",
            "a b",
        ] {
            let e = hosts(&["ok.example", bad]).unwrap_err();
            assert!(e.starts_with("[1]"), "{bad}: {e}");
        }
    }
}
