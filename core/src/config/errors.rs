//! What is wrong with a plugin configuration: every problem found, each with the JSON path of
//! the value at fault and the tenant it belongs to. Each prints as one log line, because those
//! lines are all an operator sees in Envoy's log when the plugin refuses to start.

use std::fmt;

use super::{one_line, printable};

/// One problem of the plugin configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The id of the tenant the problem is in, when that tenant has one.
    pub tenant: Option<String>,
    /// JSON path of the value at fault (`settings.hosts[1]`, `tenants[2].vault.client_id`);
    /// empty for the document as a whole.
    pub path: String,
    /// What is wrong, one line.
    pub message: String,
}

impl ConfigError {
    /// A problem of the field `field` (a path relative to the tenant) of tenant `index`.
    pub fn in_tenant(index: usize, id: &str, field: &str, message: impl fmt::Display) -> Self {
        ConfigError {
            tenant: Some(id.to_string()),
            path: join(&format!("tenants[{index}]"), field),
            message: one_line(&message.to_string()),
        }
    }
}

/// `invalid plugin configuration: tenant '<id>': field '<field>': <message>`, the field relative
/// to the tenant; without a tenant `field '<path>': <message>`.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid plugin configuration: ")?;
        match tenant_and_field(&self.path) {
            Some((index, field)) => {
                match &self.tenant {
                    Some(id) => write!(f, "tenant '{}': ", printable(id))?,
                    None => write!(f, "tenant '#{index}': ")?,
                }
                if !field.is_empty() {
                    write!(f, "field '{field}': ")?;
                }
            }
            None if self.path.is_empty() => f.write_str("not a valid configuration document: ")?,
            None => write!(f, "field '{}': ", self.path)?,
        }
        f.write_str(&self.message)
    }
}

/// The tenant index and the path inside the tenant, for a path under `tenants[i]`.
fn tenant_and_field(path: &str) -> Option<(usize, &str)> {
    let (index, rest) = path.strip_prefix("tenants[")?.split_once(']')?;
    let index = index.parse().ok()?;
    Some((index, rest.strip_prefix('.').unwrap_or(rest)))
}

/// Every problem of a configuration that did not load, in document order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One line per problem.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Problems of one part of the document (the document, a tenant), with paths relative to it.
#[derive(Debug, Default)]
pub(super) struct Found(Vec<(String, String)>);

impl Found {
    /// A problem of `field` (a relative path); the message is made one line.
    pub(super) fn add(&mut self, field: &str, message: impl fmt::Display) {
        self.0
            .push((field.to_string(), one_line(&message.to_string())));
    }

    /// The value of a check, or `None` with its problem recorded.
    pub(super) fn check<T, M: fmt::Display>(&mut self, field: &str, r: Result<T, M>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.add(field, m);
                None
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems as configuration errors of the part at `base`.
    pub(super) fn into_errors(self, base: &str, tenant: Option<&str>) -> Vec<ConfigError> {
        self.0
            .into_iter()
            .map(|(field, message)| ConfigError {
                tenant: tenant.map(str::to_string),
                path: join(base, &field),
                message,
            })
            .collect()
    }
}

/// `key` below `base`: `.key` for plain names, `["..."]` (JSON-escaped, so one line, and cut
/// to 64 characters) for anything else a document may use as a key.
pub(super) fn key(base: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if plain {
        join(base, key)
    } else {
        let cut: String = key.chars().take(64).collect();
        let quoted = serde_json::to_string(&cut).unwrap_or_default();
        format!("{base}[{quoted}]")
    }
}

/// The relative path `rest` below `base`.
pub(super) fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty() || rest.starts_with('[')) {
        (true, _) => rest.to_string(),
        (false, true) => format!("{base}{rest}"),
        (false, false) => format!("{base}.{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_and_quote_odd_keys() {
        assert_eq!(join("", "settings"), "settings");
        assert_eq!(
            join("tenants[2]", "vault.client_id"),
            "tenants[2].vault.client_id"
        );
        assert_eq!(join("tenants[2]", "[\"a b\"]"), "tenants[2][\"a b\"]");
        assert_eq!(join("tenants[2]", ""), "tenants[2]");
        assert_eq!(key("tenants[0]", "token_typ"), "tenants[0].token_typ");
        assert_eq!(key("", "a.b"), "[\"a.b\"]");
        assert_eq!(key("x", "bad\nkey"), "x[\"bad\\nkey\"]");
        assert_eq!(key("x", ""), "x[\"\"]");
    }

    #[test]
    fn lines_name_the_tenant_and_the_field_inside_it() {
        let e = |tenant: Option<&str>, path: &str| {
            ConfigError {
                tenant: tenant.map(str::to_string),
                path: path.into(),
                message: "m".into(),
            }
            .to_string()
        };
        assert_eq!(
            e(Some("github"), "tenants[0].vault.client_id"),
            "invalid plugin configuration: tenant 'github': field 'vault.client_id': m"
        );
        assert_eq!(
            e(None, "tenants[3]"),
            "invalid plugin configuration: tenant '#3': m"
        );
        assert_eq!(
            e(Some("evil\nid"), "tenants[0][\"x y\"]"),
            "invalid plugin configuration: tenant 'evil?id': field '[\"x y\"]': m"
        );
        assert_eq!(
            e(None, "settings.hosts[1]"),
            "invalid plugin configuration: field 'settings.hosts[1]': m"
        );
        assert_eq!(
            e(None, ""),
            "invalid plugin configuration: not a valid configuration document: m"
        );
        let two = ConfigErrors(vec![
            ConfigError::in_tenant(1, "a", "id", "x\ny"),
            ConfigError::in_tenant(2, "b", "", "z"),
        ]);
        assert_eq!(
            two.to_string(),
            "invalid plugin configuration: tenant 'a': field 'id': x?y\n\
             invalid plugin configuration: tenant 'b': z"
        );
        assert_eq!(two.0[0].path, "tenants[1].id");
    }
}
