//! `application/x-www-form-urlencoded` and query strings: just enough to read the few
//! parameters the connect pages and the filter take, and to build the URLs and form bodies the
//! connect pages and the vault exchanges send. A leaf: it imports nothing of ours.

/// Longest value accepted for one parameter; anything longer is treated as absent.
const MAX_VALUE_BYTES: usize = 4096;

/// Percent-encode everything outside RFC 3986 unreserved characters.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `a=1&b=2` from pairs, every name and value encoded.
pub fn encode_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The value of `name` in a query or form body, decoded. A parameter given twice is refused
/// (`None`): two values for one name are a parser-confusion attack, not a client mistake.
pub fn param(query: &str, name: &str) -> Option<String> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k).as_deref() != Some(name) {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(decode(v)?);
    }
    found.filter(|v| v.len() <= MAX_VALUE_BYTES)
}

/// Percent-decode (and `+` as space); `None` for broken escapes, non-UTF-8 or control bytes.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

/// The query of a request path (`""` when there is none).
pub fn query_of(path: &str) -> &str {
    let path = path.split('#').next().unwrap_or("");
    path.split_once('?').map_or("", |(_, q)| q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = "a b&c=d/é?\"<>";
        assert_eq!(decode(&encode(s)).as_deref(), Some(s));
        assert_eq!(encode_pairs(&[("x", "1 2"), ("y", "&")]), "x=1%202&y=%26");
    }

    #[test]
    fn params() {
        let q = "code=abc&state=x%2Fy&empty=&plus=a+b";
        assert_eq!(param(q, "code").as_deref(), Some("abc"));
        assert_eq!(param(q, "state").as_deref(), Some("x/y"));
        assert_eq!(param(q, "empty").as_deref(), Some(""));
        assert_eq!(param(q, "plus").as_deref(), Some("a b"));
        assert_eq!(param(q, "missing"), None);
        assert_eq!(param("a=1&a=2", "a"), None, "duplicates are refused");
        assert_eq!(param("a=%zz", "a"), None);
        assert_eq!(
            param("a=%0d%0a", "a"),
            None,
            "control characters are refused"
        );
        assert_eq!(param(&format!("a={}", "x".repeat(5000)), "a"), None);
        assert_eq!(query_of("/p?a=1#frag"), "a=1");
        assert_eq!(query_of("/p"), "");
    }
}
