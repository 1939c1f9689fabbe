//! A tenant's canonical resource URLs: what MCP clients send as RFC 8707 `resource`, what the
//! RFC 9728 metadata names, and (with `audience`) what the agent token's `aud` must hold. One
//! setting for all three, so the metadata can never name a resource the filter then refuses.

use super::{FieldError, Url};

/// Resolve `resources` (absolute URLs, or paths under `settings.public_base_url`) into their
/// canonical absolute form, refusing anything a client could not send back byte for byte.
pub(super) fn resolve(
    tenant: &str,
    raw: &[String],
    public_base_url: Option<&str>,
) -> Result<Vec<String>, FieldError> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for (i, entry) in raw.iter().enumerate() {
        let field = |m: &str| (format!("resources[{i}]"), m.to_string());
        let url = match (entry.strip_prefix('/'), public_base_url) {
            (Some(_), Some(base)) => format!("{base}{entry}"),
            (Some(_), None) => {
                return Err(field(
                    "a path needs settings.public_base_url (with resource_from_request, name \
                     absolute URLs: accepted audiences are fixed at load, never taken from Host)",
                ))
            }
            (None, _) => entry.clone(),
        };
        let parsed = Url::parse(&url).map_err(field)?;
        // MCP's canonical resource URI: lowercase scheme and host, no fragment, no trailing
        // slash (MCP 2025-11-25 authorization, "Canonical Server URI"; RFC 8707 section 2).
        if parsed.authority != parsed.authority.to_ascii_lowercase() {
            return Err(field(
                "host must be lowercase (the canonical form clients send)",
            ));
        }
        let path = parsed.path_and_query.as_str();
        if path.contains('?') {
            return Err(field("must not have a query"));
        }
        if path.ends_with('/') {
            return Err(field(
                "must not end with '/' (the canonical form clients send)",
            ));
        }
        // The filter routes by the first path segment and serves the metadata of what is below
        // it (RFC 9728 section 3.1 inserts the well-known path before the resource's path).
        let own = format!("/{tenant}");
        if path != own && !path.starts_with(&format!("{own}/")) {
            return Err(field(&format!(
                "must be {own} or below it: the filter serves this resource and its metadata there"
            )));
        }
        if path.contains('%') || path.split('/').any(|s| s == "." || s == "..") {
            return Err(field("must not contain percent-escapes or dot segments"));
        }
        if let Some(base) = public_base_url {
            if !url.starts_with(&format!("{base}/")) {
                return Err(field(&format!(
                    "must be under settings.public_base_url ({base}): clients reach the filter there"
                )));
            }
        }
        if out.contains(&url) {
            return Err(field("is listed twice"));
        }
        out.push(url);
    }
    Ok(out)
}

/// Accepted `aud` values: the resources, then `audience` (once).
pub(super) fn audiences(resources: &[String], audience: Option<&str>) -> Vec<String> {
    let mut all = resources.to_vec();
    if let Some(a) = audience {
        if !all.iter().any(|r| r == a) {
            all.push(a.to_string());
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(entry: &str, base: Option<&str>) -> Result<String, String> {
        resolve("github", &[entry.to_string()], base)
            .map(|mut v| v.remove(0))
            .map_err(|(f, m)| format!("{f}: {m}"))
    }

    #[test]
    fn paths_join_the_public_url_and_urls_stay_as_written() {
        let base = Some("https://gw.example.com");
        assert_eq!(
            one("/github/mcp", base).as_deref(),
            Ok("https://gw.example.com/github/mcp")
        );
        assert_eq!(
            one("https://gw.example.com/github", base).as_deref(),
            Ok("https://gw.example.com/github")
        );
        assert_eq!(
            one("https://other.example/github/mcp", None).as_deref(),
            Ok("https://other.example/github/mcp")
        );
    }

    #[test]
    fn non_canonical_or_unservable_resources_are_refused() {
        let base = Some("https://gw.example.com");
        for (entry, base, why) in [
            ("/github/mcp", None, "needs settings.public_base_url"),
            ("https://GW.example.com/github/mcp", None, "lowercase"),
            ("/github/mcp/", base, "must not end with '/'"),
            ("/github/mcp?x=1", base, "query"),
            ("/github/mcp#x", base, "fragment"),
            ("/gitlab/mcp", base, "must be /github or below it"),
            ("/githubx", base, "must be /github or below it"),
            ("/github/../x", base, "dot segments"),
            ("/github/%2e%2e", base, "percent-escapes"),
            (
                "https://other.example/github/mcp",
                base,
                "under settings.public_base_url",
            ),
            ("github/mcp", base, "absolute"),
        ] {
            let e = one(entry, base).unwrap_err();
            assert!(e.starts_with("resources[0]: "), "{entry}: {e}");
            assert!(e.contains(why), "{entry}: {e}");
        }
        let twice = resolve("github", &["/github".into(), "/github".into()], base);
        assert_eq!(twice.unwrap_err().0, "resources[1]");
    }

    #[test]
    fn audiences_are_the_resources_then_the_audience_once() {
        let r = vec!["https://gw/github/mcp".to_string()];
        assert_eq!(audiences(&r, None), r);
        assert_eq!(audiences(&r, Some("https://gw/github/mcp")), r);
        assert_eq!(
            audiences(&r, Some("https://api.example")),
            vec!["https://gw/github/mcp", "https://api.example"]
        );
    }
}
