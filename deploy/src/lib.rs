//! `tvp`: one source of truth for deploying token-vault-proxy. The tenants file (the filter's
//! plugin configuration) is validated by the filter's own code and rendered, with a small
//! deployment description, into an Envoy bootstrap, Istio or Envoy Gateway resources or the
//! docker-compose demo's Envoy configuration.

pub mod cli;
pub mod deployment;
pub mod doc;
pub mod envoy;
pub mod envoy_gateway;
pub mod front;
pub mod istio;
pub mod schema;
pub mod secrets;
pub mod tenants;
pub mod upstream;

use deployment::Target;

/// What `tvp render` writes: a file name (for `--out DIR`) and its text, and what the user
/// must know about it (lines for standard error).
pub struct Rendered {
    pub file: &'static str,
    pub text: String,
    /// Files that go next to `file` (name, text): the listener file of `lds_path`.
    pub more: Vec<(String, String)>,
    pub warnings: Vec<String>,
}

/// Render a tenants file for a target. Errors are the lines to print: every problem of the
/// tenants file (with paths), or what is wrong with the deployment description.
pub fn render(
    target: Target,
    tenants_text: &str,
    deployment_text: &str,
    overrides: &[String],
) -> Result<Rendered, Vec<String>> {
    let doc = tenants::parse_json(tenants_text).map_err(|p| vec![p.to_string()])?;
    let problems = tenants::check(&doc);
    if !problems.is_empty() {
        return Err(problems.iter().map(ToString::to_string).collect());
    }
    let plan = upstream::plan(&doc)
        .map_err(|ps| ps.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let d = deployment::load(deployment_text, overrides, target).map_err(|e| vec![e])?;
    if !d.allow_inline_secrets {
        let inline = secrets::inline_secrets(&doc);
        if !inline.is_empty() {
            return Err(inline.iter().map(ToString::to_string).collect());
        }
    }
    let (file, text, warnings) = match target {
        Target::Envoy | Target::Compose => (
            "envoy.yaml",
            envoy::render(&plan, &d).map_err(|e| vec![e]),
            vec![],
        ),
        Target::Istio => (
            "istio.yaml",
            istio::render(&plan, &d).map_err(|e| vec![e]),
            istio::warnings(&plan, &d),
        ),
        Target::EnvoyGateway => (
            "envoy-gateway.yaml",
            envoy_gateway::render(&plan, &d),
            envoy_gateway::warnings(&plan),
        ),
    };
    let more = envoy::render_listeners(&plan, &d)
        .map_err(|e| vec![e])?
        .into_iter()
        .collect();
    text.map(|text| Rendered {
        file,
        text,
        more,
        warnings,
    })
}

#[cfg(test)]
mod fixtures;
