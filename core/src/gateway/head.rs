//! A request's headers as the host read them, once, when the request began: everything the
//! decisions about it need later (its path for a challenge, its origin for a link) comes from
//! here, not from another host call.

/// Request headers by lower-case name, values as bytes (they need not be UTF-8).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead(Vec<(String, Vec<u8>)>);

impl RequestHead {
    pub fn new(headers: Vec<(String, Vec<u8>)>) -> Self {
        RequestHead(headers)
    }

    /// Every value of `name` (lower case), in order.
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    /// The first value of `name` as borrowed text.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as owned text.
    pub fn get(&self, name: &str) -> Option<String> {
        self.get_str(name).map(str::to_string)
    }

    pub fn method(&self) -> &str {
        self.get_str(":method").unwrap_or_default()
    }

    pub fn path(&self) -> &str {
        self.get_str(":path").unwrap_or_default()
    }

    pub fn authority(&self) -> &str {
        self.get_str(":authority").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_by_name_in_order_and_text_only_when_utf8() {
        let head = RequestHead::new(vec![
            (":method".into(), b"GET".to_vec()),
            ("cookie".into(), b"a=1".to_vec()),
            ("cookie".into(), b"b=2".to_vec()),
            ("x-bin".into(), vec![0xff]),
        ]);
        assert_eq!(head.method(), "GET");
        assert_eq!(head.all("cookie"), vec![&b"a=1"[..], b"b=2"]);
        assert_eq!(head.get("cookie").as_deref(), Some("a=1"));
        assert_eq!(head.get_str("x-bin"), None);
        assert_eq!((head.path(), head.authority()), ("", ""));
    }
}
