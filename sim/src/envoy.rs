//! The example tenants re-pointed at a sim on other ports (the tests and the bench run the
//! local stack on free ports). Envoy configurations are rendered by `tvp render envoy`
//! (deploy/), envoy/envoy.yaml included.

pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    pub sim: u16,
    pub backend: u16,
}

/// The plugin configuration of the local stack, re-pointed at other sim ports.
pub fn plugin_config_for(example: &str, ports: &Ports) -> String {
    example
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", ports.sim))
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{}", ports.backend))
}
