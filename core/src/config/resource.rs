//! A tenant's canonical resource URLs: what MCP clients send as RFC 8707 `resource`, what the
//! RFC 9728 metadata names, and (with `audience`) what the agent token's `aud` must hold. One
//! setting for all three, so the metadata can never name a resource the filter then refuses.

use super::{Found, Url};

/// Resolve `resources` (absolute URLs, or paths under `settings.public_base_url`) into their
/// canonical absolute form, refusing anything a client could not send back byte for byte. Each
/// bad entry is reported; `None` if there is one.
pub(super) fn resolve(
    tenant: &str,
    raw: &[String],
    public_base_url: Option<&str>,
    found: &mut Found,
) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    let mut all_good = true;
    for (i, entry) in raw.iter().enumerate() {
        match canonical(tenant, entry, public_base_url, &out) {
            Ok(url) => out.push(url),
            Err(m) => {
                found.add(&format!("resources[{i}]"), m);
                all_good = false;
            }
        }
    }
    all_good.then_some(out)
}

/// One entry of `resources`, given the ones before it.
fn canonical(
    tenant: &str,
    entry: &str,
    public_base_url: Option<&str>,
    before: &[String],
) -> Result<String, String> {
    let url = match (entry.strip_prefix('/'), public_base_url) {
        (Some(_), Some(base)) => format!("{base}{entry}"),
        (Some(_), None) => {
            return Err(
                "a path needs settings.public_base_url (with resource_from_request, name \
                 absolute URLs: accepted audiences are fixed at load, never taken from Host)"
                    .into(),
            )
        }
        (None, _) => entry.to_string(),
    };
    let parsed = Url::parse(&url)?;
    // MCP's canonical resource URI: lowercase scheme and host, no fragment, no trailing
    // slash (MCP 2025-11-25 authorization, "Canonical Server URI"; RFC 8707 section 2).
    if parsed.authority != parsed.authority.to_ascii_lowercase() {
        return Err("host must be lowercase (the canonical form clients send)".into());
    }
    let path = parsed.path_and_query.as_str();
    if path.contains('?') {
        return Err("must not have a query".into());
    }
    if path.ends_with('/') {
        return Err("must not end with '/' (the canonical form clients send)".into());
    }
    // The filter routes by the first path segment and serves the metadata of what is below
    // it (RFC 9728 section 3.1 inserts the well-known path before the resource's path).
    let own = format!("/{tenant}");
    if path != own && !path.starts_with(&format!("{own}/")) {
        return Err(format!(
            "must be {own} or below it: the filter serves this resource and its metadata there"
        ));
    }
    if path.contains('%') || path.split('/').any(|s| s == "." || s == "..") {
        return Err("must not contain percent-escapes or dot segments".into());
    }
    if let Some(base) = public_base_url {
        if !url.starts_with(&format!("{base}/")) {
            return Err(format!(
                "must be under settings.public_base_url ({base}): clients reach the filter there"
            ));
        }
    }
    if before.contains(&url) {
        return Err("is listed twice".into());
    }
    Ok(url)
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

    fn lines(found: Found) -> Vec<String> {
        found
            .into_errors("", None)
            .into_iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect()
    }

    fn one(entry: &str, base: Option<&str>) -> Result<String, String> {
        let mut found = Found::default();
        match resolve("github", &[entry.to_string()], base, &mut found) {
            Some(mut v) if found.is_empty() => Ok(v.remove(0)),
            _ => Err(lines(found).join("\n")),
        }
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
        let mut found = Found::default();
        let entries = ["/github".into(), "/gitlab".into(), "/github".into()];
        assert_eq!(resolve("github", &entries, base, &mut found), None);
        let got = lines(found);
        assert!(
            got.len() == 2
                && got[0].starts_with("resources[1]: must be /github or below it")
                && got[1] == "resources[2]: is listed twice",
            "{got:?}"
        );
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
