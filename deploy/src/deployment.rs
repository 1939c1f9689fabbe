//! The deployment description: what the tenants file does not say because it depends on where
//! the gateway runs (addresses, TLS, the module's location, Istio placement). A small JSON or
//! YAML file, every field optional, plus `--set key=value` overrides.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;
use tvp_core::config::Url;

/// What is rendered; each has its own defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Envoy,
    Istio,
    Compose,
    EnvoyGateway,
}

/// Where `make wasm` puts the module, relative to the repository (the local stack's path).
pub const LOCAL_WASM: &str = "target/wasm32-wasip1/release/token_vault_proxy.wasm";
/// Where `make native` puts the dynamic module, relative to the repository.
pub const LOCAL_NATIVE: &str = "target/native/libtvp_native.so";
/// Where the compose stack's Envoy finds it: the `build` service's target volume.
pub const COMPOSE_WASM: &str = "/target/wasm32-wasip1/release/token_vault_proxy.wasm";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    public_base_url: Option<String>,
    listen_address: Option<String>,
    listen_port: Option<u16>,
    admin_address: Option<String>,
    admin_port: Option<u16>,
    tls: Option<Tls>,
    wasm: Option<String>,
    wasm_sha256: Option<String>,
    host: Option<FilterHost>,
    native_module: Option<String>,
    ca_bundle: Option<String>,
    lds_path: Option<String>,
    allow_inline_secrets: Option<bool>,
    istio: Option<RawIstio>,
    envoy_gateway: Option<RawEnvoyGateway>,
}

/// Which build of the filter Envoy runs: the proxy-wasm module (sandboxed; Istio and Envoy
/// Gateway load only this) or the dynamic module (native code in Envoy's process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FilterHost {
    #[default]
    Wasm,
    Native,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain of the listener (a path Envoy reads).
    pub cert: String,
    /// PEM private key of the listener.
    pub key: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIstio {
    name: Option<String>,
    namespace: Option<String>,
    selector: Option<BTreeMap<String, String>>,
    ports: Option<Vec<u16>>,
    mode: Option<String>,
    credential_name: Option<String>,
    hosts: Option<Vec<String>>,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvoyGateway {
    gateway: Option<String>,
    listener: Option<String>,
    name: Option<String>,
    namespace: Option<String>,
    ca_config_map: Option<String>,
    allow_plain_http: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvoyGateway {
    /// The Gateway the routes attach to and the EnvoyPatchPolicy targets (namespace, name).
    pub gateway: Option<(String, String)>,
    /// The Gateway's listener (`sectionName`) the routes attach to; `None`: every listener.
    pub listener: Option<String>,
    /// Name of the EnvoyExtensionPolicy and EnvoyPatchPolicy, prefix of the other resources.
    pub name: String,
    /// Namespace of the routes, their backends and the EnvoyExtensionPolicy (default: the
    /// Gateway's). The EnvoyPatchPolicy is always in the Gateway's: Envoy Gateway wants that.
    pub namespace: Option<String>,
    /// A ConfigMap (key `ca.crt`) the backends' certificates are verified against instead of
    /// the system trust store.
    pub ca_config_map: Option<String>,
    /// Plain-HTTP outside hosts and backends carry tokens unencrypted: a demo only.
    pub allow_plain_http: bool,
}

impl EnvoyGateway {
    /// The namespace of everything but the EnvoyPatchPolicy.
    pub fn namespace(&self) -> &str {
        match (&self.namespace, &self.gateway) {
            (Some(ns), _) => ns,
            (None, Some((ns, _))) => ns,
            (None, None) => "default",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Istio {
    /// Name of the WasmPlugin (and prefix of the other resources).
    pub name: String,
    /// Namespace of every resource: the gateway's, so `exportTo: ["."]` keeps them to it.
    pub namespace: String,
    /// Labels of the workloads that run the filter.
    pub selector: BTreeMap<String, String>,
    /// Ports whose traffic the filter sees (empty: all).
    pub ports: Vec<u16>,
    /// Which listeners: Istio counts a gateway's listeners as CLIENT (the default, for the
    /// default ingress gateway selector); a sidecar's inbound ones are SERVER.
    pub mode: String,
    /// A Secret (key `ca.crt`) the outside hosts' certificates are verified against instead of
    /// the `ca_bundle` file in the proxy container.
    pub credential_name: Option<String>,
    /// The gateway's own host names (`host[:port]`): the plugin's `settings.hosts`, so a
    /// request for another host on a shared ingress gets no tenant token, and the hosts of
    /// the VirtualService routing `/{tenant}/` (empty: the public URL's host).
    pub hosts: Vec<String>,
    /// The Istio `Gateway` (namespace, name) the VirtualService binds the tenants' routes to.
    pub gateway: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Overrides `settings.public_base_url` of the tenants file: the public URL is a property
    /// of where the gateway is exposed.
    pub public_base_url: Option<String>,
    pub listen_address: String,
    pub listen_port: u16,
    pub admin_address: String,
    pub admin_port: u16,
    pub tls: Option<Tls>,
    pub wasm: String,
    pub wasm_sha256: Option<String>,
    pub host: FilterHost,
    /// The dynamic module (`libtvp_native.so`) when `host` is native.
    pub native_module: String,
    /// CA bundle Envoy verifies https upstreams against.
    pub ca_bundle: String,
    /// `render envoy` only: where Envoy reads its listener (routes, the filter and its plugin
    /// configuration) from, watching the file's directory, so a new tenants file takes effect
    /// by moving a new listener file there, without a restart. `None`: one static bootstrap.
    pub lds_path: Option<String>,
    /// Secrets written into the tenants file (`client_secret`, ...) end up in the rendered
    /// configuration and Envoy's config dump: a demo only. Default: false, but true for
    /// `render compose` (the docker-compose demo's target).
    pub allow_inline_secrets: bool,
    pub istio: Istio,
    pub envoy_gateway: EnvoyGateway,
}

/// Parse a deployment file (JSON or YAML; empty means all defaults) with `key=value`
/// overrides (dotted keys; a value that parses as JSON is taken as JSON, else as a string).
pub fn load(text: &str, overrides: &[String], target: Target) -> Result<Deployment, String> {
    let mut doc: Value = if text.trim().is_empty() {
        Value::Object(Default::default())
    } else {
        match crate::doc::from_yaml(text).map_err(|e| format!("deployment: {e}"))? {
            // Only comments: all defaults, as for an empty file.
            Value::Null => Value::Object(Default::default()),
            doc => doc,
        }
    };
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| format!("--set {o}: expected key=value"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        set_dotted(&mut doc, key, value).map_err(|e| format!("--set {o}: {e}"))?;
    }
    let raw: RawDeployment = serde_json::from_value(doc).map_err(|e| format!("deployment: {e}"))?;
    resolve(raw, target)
}

fn set_dotted(doc: &mut Value, key: &str, value: Value) -> Result<(), String> {
    let mut v = doc;
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    for p in parents {
        let obj = v.as_object_mut().ok_or("not an object")?;
        v = obj
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Default::default()));
    }
    v.as_object_mut()
        .ok_or("not an object")?
        .insert(last.to_string(), value);
    Ok(())
}

fn resolve(raw: RawDeployment, target: Target) -> Result<Deployment, String> {
    // The compose stack publishes Envoy's ports from a container: listen on every interface.
    let any = if target == Target::Compose {
        "0.0.0.0"
    } else {
        "127.0.0.1"
    };
    let wasm = match (raw.wasm, target) {
        (Some(w), _) => w,
        (None, Target::Envoy) => LOCAL_WASM.into(),
        (None, Target::Compose) => COMPOSE_WASM.into(),
        (None, Target::Istio) => {
            return Err("deployment: wasm: Istio needs the module's URL (oci://REGISTRY/token-vault-proxy:TAG from `make oci`, or https://...)".into())
        }
        (None, Target::EnvoyGateway) => {
            return Err("deployment: wasm: Envoy Gateway needs the module's URL (oci://REGISTRY/token-vault-proxy:TAG from `make oci`, or https://...)".into())
        }
    };
    let raw_istio = raw.istio.unwrap_or_default();
    let raw_eg = raw.envoy_gateway.unwrap_or_default();
    let gateway = namespaced_name(raw_eg.gateway, "envoy_gateway.gateway")?;
    let istio_gateway = namespaced_name(raw_istio.gateway, "istio.gateway")?;
    let d = Deployment {
        public_base_url: raw.public_base_url,
        listen_address: raw.listen_address.unwrap_or_else(|| any.into()),
        listen_port: raw.listen_port.unwrap_or(3000),
        // The admin interface can dump the configuration and stop Envoy: loopback only, in
        // the compose container too (reach it from inside the network namespace).
        admin_address: raw.admin_address.unwrap_or_else(|| "127.0.0.1".into()),
        admin_port: raw.admin_port.unwrap_or(9901),
        tls: raw.tls,
        wasm,
        wasm_sha256: raw.wasm_sha256,
        host: raw.host.unwrap_or_default(),
        native_module: raw.native_module.unwrap_or_else(|| LOCAL_NATIVE.into()),
        ca_bundle: raw
            .ca_bundle
            .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into()),
        lds_path: raw.lds_path,
        allow_inline_secrets: raw
            .allow_inline_secrets
            .unwrap_or(target == Target::Compose),
        istio: Istio {
            name: raw_istio.name.unwrap_or_else(|| "token-vault-proxy".into()),
            namespace: raw_istio.namespace.unwrap_or_else(|| "istio-system".into()),
            selector: raw_istio
                .selector
                .unwrap_or_else(|| BTreeMap::from([("istio".into(), "ingressgateway".into())])),
            ports: raw_istio.ports.unwrap_or_default(),
            mode: raw_istio.mode.unwrap_or_else(|| "CLIENT".into()),
            credential_name: raw_istio.credential_name,
            hosts: raw_istio.hosts.unwrap_or_default(),
            gateway: istio_gateway,
        },
        envoy_gateway: EnvoyGateway {
            gateway,
            listener: raw_eg.listener,
            name: raw_eg.name.unwrap_or_else(|| "token-vault-proxy".into()),
            namespace: raw_eg.namespace,
            ca_config_map: raw_eg.ca_config_map,
            allow_plain_http: raw_eg.allow_plain_http.unwrap_or(false),
        },
    };
    check(&d, target)?;
    Ok(d)
}

/// A `NAMESPACE/NAME` reference to a Kubernetes resource.
fn namespaced_name(value: Option<String>, field: &str) -> Result<Option<(String, String)>, String> {
    let Some(v) = value else {
        return Ok(None);
    };
    v.split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .map(|(ns, name)| Some((ns.to_string(), name.to_string())))
        .ok_or_else(|| format!("deployment: {field}: must be NAMESPACE/NAME"))
}

fn check(d: &Deployment, target: Target) -> Result<(), String> {
    let bad = |field: &str, why: &str| Err(format!("deployment: {field}: {why}"));
    if let Some(u) = &d.public_base_url {
        if let Err(e) = Url::parse(u) {
            return bad("public_base_url", e);
        }
    }
    for (field, addr) in [
        ("listen_address", &d.listen_address),
        ("admin_address", &d.admin_address),
    ] {
        if addr.parse::<IpAddr>().is_err() {
            return bad(field, "must be an IP address");
        }
    }
    if d.listen_port == 0 || d.admin_port == 0 {
        return bad("listen_port", "ports must not be 0");
    }
    if d.listen_port == d.admin_port {
        return bad("admin_port", "must differ from listen_port");
    }
    if d.host == FilterHost::Native && target != Target::Envoy {
        return bad(
            "host",
            "native (a dynamic module) renders for `tvp render envoy` only: Istio, Envoy Gateway and the compose demo load the wasm module",
        );
    }
    if let Some(sha) = &d.wasm_sha256 {
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return bad("wasm_sha256", "must be 64 lower-case hex digits");
        }
    }
    let remote = ["oci://", "http://", "https://"]
        .iter()
        .any(|s| d.wasm.starts_with(s));
    if target == Target::Istio && d.wasm_sha256.is_none() {
        return bad(
            "wasm_sha256",
            "Istio must pin the module (it refuses a different one): the image's manifest digest `make oci` prints, or the sha256 of the .wasm file for https://",
        );
    }
    if target == Target::EnvoyGateway {
        check_envoy_gateway(d)?;
    } else if target != Target::Istio && remote {
        return bad(
            "wasm",
            "Envoy loads the module from a local file here (oci:// is for Istio)",
        );
    }
    if let Some(p) = &d.lds_path {
        if target != Target::Envoy {
            // Istio pushes configuration over xDS anyway; the compose demo mounts one file.
            return bad("lds_path", "only `render envoy` writes a listener file");
        }
        match lds_dir(p) {
            None => return bad(
                "lds_path",
                "must be a .yaml file in a directory of its own (DIR/NAME.yaml): Envoy watches DIR",
            ),
            // `--out DIR` writes both files into DIR.
            Some((_, "envoy.yaml")) => {
                return bad("lds_path", "envoy.yaml is the bootstrap's name")
            }
            Some(_) => {}
        }
    }
    if !["SERVER", "CLIENT", "CLIENT_AND_SERVER"].contains(&d.istio.mode.as_str()) {
        return bad("istio.mode", "must be SERVER, CLIENT or CLIENT_AND_SERVER");
    }
    if d.istio.ports.contains(&0) {
        return bad("istio.ports", "ports must not be 0");
    }
    if target == Target::Istio && d.istio.gateway.is_none() {
        // Without one, a VirtualService binds to every sidecar of the mesh instead.
        return bad(
            "istio.gateway",
            "name the Istio Gateway serving the agents' host (NAMESPACE/NAME): the tenants' routes bind to it",
        );
    }
    Ok(())
}

/// Envoy Gateway fetches the module itself and must be able to verify it; its resources
/// need a Gateway to attach to.
fn check_envoy_gateway(d: &Deployment) -> Result<(), String> {
    let bad = |field: &str, why: &str| Err(format!("deployment: {field}: {why}"));
    if !["oci://", "https://"].iter().any(|s| d.wasm.starts_with(s)) {
        return bad(
            "wasm",
            "Envoy Gateway fetches the module: oci://REGISTRY/token-vault-proxy:TAG (from `make oci`) or https://...",
        );
    }
    if d.wasm_sha256.is_none() {
        return bad(
            "wasm_sha256",
            "Envoy Gateway must pin the module (fail closed on a different one): the image's manifest digest `make oci` prints, or the sha256 of the .wasm file for https://",
        );
    }
    if d.envoy_gateway.gateway.is_none() {
        return bad(
            "envoy_gateway.gateway",
            "name the Gateway the routes attach to (NAMESPACE/NAME)",
        );
    }
    Ok(())
}

/// The directory Envoy watches for a listener file at `path` and the file's name: `DIR/NAME`
/// with a non-empty DIR and NAME ending in `.yaml` or `.yml` (Envoy parses by extension).
pub fn lds_dir(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.rsplit_once('/')?;
    let dir = if dir.is_empty() { "/" } else { dir };
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    (!stem.is_empty()).then_some((dir, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_per_target() {
        let envoy = load("", &[], Target::Envoy).unwrap();
        assert_eq!(envoy.listen_address, "127.0.0.1");
        assert_eq!(envoy.listen_port, 3000);
        assert_eq!(envoy.wasm, LOCAL_WASM);
        assert_eq!(envoy.tls, None);
        assert!(!envoy.allow_inline_secrets);
        let compose = load("", &[], Target::Compose).unwrap();
        assert_eq!(compose.listen_address, "0.0.0.0");
        assert_eq!(compose.admin_address, "127.0.0.1");
        assert!(compose.allow_inline_secrets);
        assert_eq!(compose.wasm, COMPOSE_WASM);
        assert!(load("", &[], Target::Istio).unwrap_err().contains("wasm"));
    }

    #[test]
    fn yaml_or_json_with_overrides() {
        let yaml =
            "listen_port: 8443\ntls:\n  cert: /c.pem\n  key: /k.pem\nistio:\n  namespace: gw\n";
        let d = load(
            yaml,
            &[
                "admin_port=9000".into(),
                "istio.selector={\"app\":\"gw\"}".into(),
            ],
            Target::Envoy,
        )
        .unwrap();
        assert_eq!(d.listen_port, 8443);
        assert_eq!(d.admin_port, 9000);
        assert_eq!(d.tls.unwrap().key, "/k.pem");
        assert_eq!(d.istio.namespace, "gw");
        assert_eq!(d.istio.selector["app"], "gw");
        let json = load(
            "{\"public_base_url\": \"https://gw.example.com\"}",
            &[],
            Target::Envoy,
        )
        .unwrap();
        assert_eq!(
            json.public_base_url.as_deref(),
            Some("https://gw.example.com")
        );
    }

    #[test]
    fn comments_only_is_all_defaults_and_a_repeated_key_is_refused() {
        let d = load("# nothing set yet\n", &[], Target::Envoy).unwrap();
        assert_eq!(
            d.listen_port,
            load("", &[], Target::Envoy).unwrap().listen_port
        );
        // Which of the two would win is a guess: refused, naming the line.
        let e = load("listen_port: 1\nlisten_port: 2\n", &[], Target::Envoy)
            .err()
            .unwrap();
        assert!(
            e.starts_with("deployment: ") && e.contains("listen_port"),
            "{e}"
        );
        assert!(e.contains("line 2") && !e.contains('\n'), "{e}");
    }
    #[test]
    fn the_documented_example_loads_for_every_target() {
        let text = include_str!("../deployment.example.yaml");
        let local = ["wasm=/etc/envoy/token_vault_proxy.wasm".to_string()];
        let pinned = [format!("wasm_sha256={}", "a".repeat(64))];
        for (target, sets) in [
            (Target::Istio, &pinned[..]),
            (Target::EnvoyGateway, &pinned[..]),
            (Target::Envoy, &local[..]),
            (Target::Compose, &local[..]),
        ] {
            let d = load(text, sets, target).unwrap();
            assert_eq!(d.istio.selector["istio"], "ingressgateway");
            assert_eq!(d.tls.as_ref().unwrap().cert, "/etc/envoy/tls/tls.crt");
            assert_eq!(
                d.envoy_gateway.gateway,
                Some(("gateways".into(), "agents".into()))
            );
            assert_eq!(
                d.istio.gateway,
                Some(("istio-system".into(), "agents".into()))
            );
        }
        // As written it names an OCI module, which plain Envoy cannot load, and no digest.
        assert!(load(text, &[], Target::Envoy).is_err());
        let unpinned = load(text, &[], Target::Istio).unwrap_err();
        assert!(unpinned.contains("wasm_sha256"), "{unpinned}");
        // The commented lds_path works as documented.
        let hot = text.replace("# lds_path:", "lds_path:");
        let d = load(&hot, &local, Target::Envoy).unwrap();
        assert_eq!(d.lds_path.as_deref(), Some("/etc/envoy/lds/listeners.yaml"));
    }

    #[test]
    fn refuses_what_cannot_work() {
        for (text, set) in [
            ("colour: red", ""),
            ("", "listen_address=localhost"),
            ("", "admin_port=3000"),
            ("", "wasm=oci://r/x:1"),
            ("", "public_base_url=gw.example.com"),
            ("", "wasm_sha256=abc"),
            ("", "istio.mode=BOTH"),
        ] {
            let sets: Vec<String> = [set]
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .collect();
            assert!(load(text, &sets, Target::Envoy).is_err(), "{text} {set}");
        }
        assert!(load("", &["oops".into()], Target::Envoy).is_err());
    }

    #[test]
    fn istio_needs_the_gateway_its_routes_bind_to() {
        let pinned = [
            "wasm=oci://r/x:1".to_string(),
            format!("wasm_sha256={}", "a".repeat(64)),
        ];
        let e = load("", &pinned, Target::Istio).unwrap_err();
        assert!(e.starts_with("deployment: istio.gateway: "), "{e}");
        for bad in ["agents", "/agents", "ns/", "a/b/c"] {
            let mut sets = pinned.to_vec();
            sets.push(format!("istio.gateway={bad}"));
            let e = load("", &sets, Target::Istio).unwrap_err();
            assert_eq!(
                e, "deployment: istio.gateway: must be NAMESPACE/NAME",
                "{bad}"
            );
        }
        let mut sets = pinned.to_vec();
        sets.push("istio.gateway=gw/agents".into());
        let d = load("", &sets, Target::Istio).unwrap();
        assert_eq!(d.istio.gateway, Some(("gw".into(), "agents".into())));
    }

    #[test]
    fn a_listener_file_for_render_envoy_only() {
        let d = load(
            "lds_path: /etc/envoy/lds/listeners.yaml",
            &[],
            Target::Envoy,
        )
        .unwrap();
        assert_eq!(
            lds_dir(d.lds_path.as_deref().unwrap()),
            Some(("/etc/envoy/lds", "listeners.yaml"))
        );
        assert_eq!(load("", &[], Target::Envoy).unwrap().lds_path, None);
        assert_eq!(lds_dir("/l.yml"), Some(("/", "l.yml")));
        for bad in [
            "listeners.yaml",
            "/etc/envoy/lds/",
            "/etc/envoy/lds.json",
            "/x/.yaml",
            "/etc/envoy/envoy.yaml",
        ] {
            let set = [format!("lds_path={bad}")];
            assert!(load("", &set, Target::Envoy).is_err(), "{bad}");
        }
        let set = ["lds_path=/etc/envoy/lds/listeners.yaml".to_string()];
        assert!(load("", &set, Target::Compose).is_err());
        let istio = [
            set[0].clone(),
            "wasm=oci://r/x:1".into(),
            format!("wasm_sha256={}", "a".repeat(64)),
        ];
        assert!(load("", &istio, Target::Istio).is_err());
    }
}
