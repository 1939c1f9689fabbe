//! The `Cookie` header values the connect pages read.

/// The value of cookie `name` among all `Cookie` header values.
pub fn cookie(values: &[&[u8]], name: &str) -> Option<String> {
    values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_string())
        .filter(|v| !v.is_empty() && v.len() <= 1024)
}

/// How many times cookie `name` appears among all `Cookie` header values, whatever its value.
pub fn cookie_count(values: &[&[u8]], name: &str) -> usize {
    values
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k == name))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies() {
        let headers: Vec<&[u8]> = vec![b"a=1; tvp=xyz", b"b=2"];
        assert_eq!(cookie(&headers, "tvp").as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&headers, "c"), None);
        assert_eq!(cookie(&[b"tvp="], "tvp"), None);
        assert_eq!(cookie_count(&headers, "tvp"), 1);
        assert_eq!(cookie_count(&[b"tvp=1; a=2", b"tvp="], "tvp"), 2);
        assert_eq!(cookie_count(&[b"xtvp=1; tvp_x=2"], "tvp"), 0);
    }
}
