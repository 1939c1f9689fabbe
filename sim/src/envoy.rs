//! Render `envoy/envoy.template.yaml` for a set of ports (the local stack and the tests).

use serde_json::Value;

pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    pub sim: u16,
    pub backend: u16,
}

impl Ports {
    /// The local stack's fixed ports.
    pub const LOCAL: Ports = Ports {
        listen: 3000,
        admin: 9901,
        sim: 9000,
        backend: 9001,
    };
}

/// The plugin configuration of the local stack, re-pointed at other sim ports.
pub fn plugin_config_for(example: &str, ports: &Ports) -> String {
    example
        .replace("127.0.0.1:9000", &format!("127.0.0.1:{}", ports.sim))
        .replace("127.0.0.1:9001", &format!("127.0.0.1:{}", ports.backend))
}

/// Fill the template. `plugin_config` is embedded as a YAML block scalar.
pub fn render(
    template: &str,
    ports: &Ports,
    wasm: &str,
    plugin_config: &str,
) -> Result<String, String> {
    // Pretty-print so the embedded document reads like tenants.example.json.
    let doc: Value =
        serde_json::from_str(plugin_config).map_err(|e| format!("plugin configuration: {e}"))?;
    let pretty = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    let indented: Vec<String> = pretty
        .lines()
        .map(|l| format!("                    {l}"))
        .collect();
    Ok(template
        .replace("{{LISTEN_PORT}}", &ports.listen.to_string())
        .replace("{{ADMIN_PORT}}", &ports.admin.to_string())
        .replace("{{SIM_PORT}}", &ports.sim.to_string())
        .replace("{{BACKEND_PORT}}", &ports.backend.to_string())
        .replace("{{WASM}}", wasm)
        .replace("{{PLUGIN_CONFIG}}", &indented.join("\n")))
}
