//! The gateway's public URL, the base of every protected-resource, metadata and connect-page
//! URL it names.

use super::RequestHead;
use crate::config::Settings;

/// `settings.public_base_url`, or, when `resource_from_request` allows it, the request's own
/// scheme and `:authority` (an authority of host characters only, so nothing odd is echoed
/// into a challenge or a link). `None`: no URL can be named.
pub fn public_base(settings: &Settings, head: &RequestHead) -> Option<String> {
    if let Some(base) = &settings.public_base_url {
        return Some(base.clone());
    }
    if !settings.resource_from_request {
        return None;
    }
    let authority = head.authority();
    let valid = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    // A TLS-terminating proxy in front says so in X-Forwarded-Proto.
    let scheme = match head
        .get_str("x-forwarded-proto")
        .or_else(|| head.get_str(":scheme"))
    {
        Some("https") => "https",
        _ => "http",
    };
    valid.then(|| format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(pairs: &[(&str, &str)]) -> RequestHead {
        RequestHead::new(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
        )
    }

    #[test]
    fn configured_first_then_the_request_only_when_allowed() {
        let mut s = Settings {
            public_base_url: Some("https://gw.example.com".into()),
            ..Settings::default()
        };
        let h = head(&[(":authority", "evil.example"), (":scheme", "http")]);
        assert_eq!(
            public_base(&s, &h).as_deref(),
            Some("https://gw.example.com")
        );
        s.public_base_url = None;
        assert_eq!(public_base(&s, &h), None);
        s.resource_from_request = true;
        assert_eq!(public_base(&s, &h).as_deref(), Some("http://evil.example"));
        let h = head(&[(":authority", "gw:8443"), ("x-forwarded-proto", "https")]);
        assert_eq!(public_base(&s, &h).as_deref(), Some("https://gw:8443"));
        for bad in ["", "gw/x", "gw\"", "a b"] {
            assert_eq!(
                public_base(&s, &head(&[(":authority", bad)])),
                None,
                "{bad}"
            );
        }
    }
}
