//! The command line of `tvp`: its subcommands and flags, with the help text clap prints. What
//! each one does is in main.rs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// token-vault-proxy's deployment tool: checks a tenants file (the filter's plugin
/// configuration) with the filter's own parser and renders it for where the filter runs.
#[derive(Parser)]
#[command(name = "tvp", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check a tenants file: every problem, one line each with its JSON path; exit 1 if any
    /// (2 if the file cannot be read)
    Validate {
        #[arg(value_name = "TENANTS.json")]
        tenants: String,
    },
    /// Render a tenants file for envoy, istio, envoy-gateway or compose, or the front of the
    /// replicas
    Render {
        #[command(subcommand)]
        target: Render,
    },
    /// Check Kubernetes resources (a YAML stream) against the vendored Istio, Envoy Gateway
    /// and Gateway API CRD schemas
    Check {
        #[arg(value_name = "RESOURCES.yaml")]
        resources: String,
    },
}

#[derive(Subcommand)]
pub enum Render {
    /// An Envoy bootstrap (envoy.yaml)
    ///
    /// With lds_path=DIR/NAME.yaml, the listener and the plugin configuration go to NAME.yaml,
    /// which Envoy reloads when a new one is moved into DIR; --out is required then.
    Envoy(RenderArgs),
    /// WasmPlugin, ServiceEntry, DestinationRule and VirtualService resources (istio.yaml)
    ///
    /// The VirtualService routes /{tenant}/ on istio.gateway for the gateway's own hosts
    /// (istio.hosts, default public_base_url's host), which the filter checks too.
    /// Without hold routes, settings.mcp_hold_path is left out (with a warning).
    /// Needs wasm, wasm_sha256 and istio.gateway.
    Istio(RenderArgs),
    /// Envoy Gateway resources (envoy-gateway.yaml)
    ///
    /// EnvoyExtensionPolicy (the module, sha256 pinned, fail closed), per tenant an HTTPRoute,
    /// Backend and BackendTLSPolicy on the Gateway, an HTTPRoute for the filter's own
    /// endpoints, and an EnvoyPatchPolicy adding the clusters the filter calls. Needs
    /// envoy_gateway.gateway, wasm and wasm_sha256, and Envoy Gateway's extensionApis
    /// enableEnvoyPatchPolicy and enableBackend; settings.mcp_hold_path is left out (with a
    /// warning).
    EnvoyGateway(RenderArgs),
    /// The docker-compose demo's Envoy bootstrap (envoy.yaml)
    ///
    /// allow_inline_secrets defaults to true here (a demo).
    Compose(RenderArgs),
    /// The Envoy in front of the gateway's replicas (front.yaml)
    ///
    /// balance=credential (the default) hashes the agent's Authorization header, so each
    /// agent credential reaches one replica (one vault exchange per user and token lifetime,
    /// not one per replica); round-robin spreads requests.
    Front(FrontArgs),
}

/// The deployment fields of `--deployment FILE` and `--set`, shown under `--help`.
pub const DEPLOYMENT_FIELDS: &str = "\
The deployment file (JSON or YAML) and --set take: public_base_url, listen_address,
listen_port, admin_address, admin_port, tls.cert, tls.key, wasm, wasm_sha256 (required for
istio and envoy-gateway), host (wasm or native), native_module (default
target/native/libtvp_native.so), ca_bundle, lds_path, allow_inline_secrets (a demo only:
client_secret values in the tenants file are refused otherwise; default true for compose),
istio.name, istio.namespace, istio.selector, istio.ports, istio.mode, istio.credential_name,
istio.hosts, istio.gateway (NAMESPACE/NAME, required for istio),
envoy_gateway.gateway (NAMESPACE/NAME), envoy_gateway.listener,
envoy_gateway.name, envoy_gateway.namespace, envoy_gateway.ca_config_map,
envoy_gateway.allow_plain_http.

Without --out the result goes to standard output. Files are written atomically (renamed into
place): rendering straight into DIR is itself a push.";

#[derive(Args)]
#[command(after_help = DEPLOYMENT_FIELDS)]
pub struct RenderArgs {
    /// The tenants file: the filter's plugin configuration (JSON)
    #[arg(long, value_name = "TENANTS.json")]
    pub tenants: String,
    /// The deployment description (JSON or YAML); every field is optional
    #[arg(long, value_name = "FILE")]
    pub deployment: Option<String>,
    /// Override one deployment field (dotted keys; a value that parses as JSON is taken as
    /// JSON, else as a string); repeatable
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub sets: Vec<String>,
    /// Which build of the filter Envoy runs: the wasm module, or the native dynamic module
    /// (`make native`; `render envoy` only). Same as `--set host=...`
    #[arg(long, value_name = "wasm|native")]
    pub host: Option<String>,
    /// Write the files into DIR instead of standard output
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
#[command(after_help = "\
--set takes: replicas=HOST:PORT,... (required), balance=credential|round-robin (credential),
listen_address (0.0.0.0), listen_port (3000), admin_port (9902).")]
pub struct FrontArgs {
    /// A front setting; repeatable
    #[arg(long = "set", value_name = "KEY=VALUE", allow_hyphen_values = true)]
    pub sets: Vec<String>,
    /// Write front.yaml into DIR instead of standard output
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tvp").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// `tvp` as the Makefile, scripts/run-local.sh, docker-compose.yml and the README call it
    /// (after `--bin tvp --`, or `"$TVP"` starting a line; continuation lines joined, `$((..))`
    /// as one word).
    #[test]
    fn every_documented_invocation_parses() {
        let sources = [
            ("Makefile", include_str!("../../Makefile")),
            (
                "scripts/run-local.sh",
                include_str!("../../scripts/run-local.sh"),
            ),
            (
                "docker-compose.yml",
                include_str!("../../docker-compose.yml"),
            ),
            ("README.md", include_str!("../../README.md")),
        ];
        let expansion = regex::Regex::new(r"\$\(\([^)]*\)\)").unwrap();
        for (name, text) in sources {
            let joined = text.replace("\\\n", " ");
            let calls: Vec<&str> = joined
                .lines()
                .filter_map(|l| {
                    // A script's call starts its command line (not `[ -x "$TVP" ]`).
                    let rest = match l.find("--bin tvp -- ") {
                        Some(i) => &l[i + "--bin tvp -- ".len()..],
                        None => l.trim_start().strip_prefix("\"$TVP\" ")?,
                    };
                    let end = [" 2>", " #", " |", " &&", "`"]
                        .iter()
                        .filter_map(|stop| rest.find(stop))
                        .min()
                        .unwrap_or(rest.len());
                    Some(&rest[..end])
                })
                .collect();
            assert!(!calls.is_empty(), "{name}: no tvp call found");
            for call in calls {
                let call = expansion.replace_all(call, "1").replace('"', "");
                let args: Vec<&str> = call.split_whitespace().collect();
                if let Err(e) = parse(&args) {
                    panic!("{name}: tvp {call}: {e}");
                }
            }
        }
    }

    #[test]
    fn flags_keep_their_names() {
        let cli = parse(&[
            "render",
            "istio",
            "--tenants",
            "t.json",
            "--deployment",
            "d.yaml",
            "--set",
            "a=1",
            "--set",
            "b=-2",
            "--out",
            "dir",
        ])
        .unwrap();
        let Command::Render {
            target: Render::Istio(a),
        } = cli.command
        else {
            panic!("not render istio");
        };
        assert_eq!(
            (a.tenants.as_str(), a.deployment.as_deref()),
            ("t.json", Some("d.yaml"))
        );
        assert_eq!(a.sets, ["a=1", "b=-2"]);
        assert_eq!(a.host, None);
        assert_eq!(a.out, Some(PathBuf::from("dir")));
        let cli = parse(&["render", "front", "--set", "replicas=h:1"]).unwrap();
        assert!(
            matches!(cli.command, Command::Render { target: Render::Front(f) } if f.sets == ["replicas=h:1"] && f.out.is_none())
        );
        assert!(
            matches!(parse(&["validate", "t.json"]).unwrap().command, Command::Validate { tenants } if tenants == "t.json")
        );
        assert!(
            matches!(parse(&["check", "r.yaml"]).unwrap().command, Command::Check { resources } if resources == "r.yaml")
        );
    }

    #[test]
    fn usage_errors() {
        for (args, kind) in [
            (&["render", "nowhere"][..], ErrorKind::InvalidSubcommand),
            (&["render", "envoy"], ErrorKind::MissingRequiredArgument),
            (&["render", "envoy", "--tenants"], ErrorKind::InvalidValue),
            (
                &["render", "envoy", "--tenants", "t", "--colour", "red"],
                ErrorKind::UnknownArgument,
            ),
            (
                &["render", "front", "--tenants", "t"],
                ErrorKind::UnknownArgument,
            ),
            (&["validate"], ErrorKind::MissingRequiredArgument),
            (&["validate", "a", "b"], ErrorKind::UnknownArgument),
            (&["check"], ErrorKind::MissingRequiredArgument),
            (&[], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
        ] {
            let e = parse(args).err().map(|e| e.kind());
            assert_eq!(e, Some(kind), "tvp {args:?}");
        }
    }

    /// Every subcommand has its help; the render targets list what a deployment file takes.
    #[test]
    fn help_for_every_subcommand() {
        let top = Cli::command().render_long_help().to_string();
        for sub in ["validate", "render", "check"] {
            assert!(top.contains(sub), "{top}");
        }
        for sub in [&["validate"][..], &["check"], &["render"]] {
            let args: Vec<&str> = sub.iter().copied().chain(["--help"]).collect();
            assert_eq!(
                parse(&args).err().map(|e| e.kind()),
                Some(ErrorKind::DisplayHelp)
            );
        }
        for target in ["envoy", "istio", "envoy-gateway", "compose", "front"] {
            let e = parse(&["render", target, "--help"]).err().unwrap();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp);
            let help = e.to_string();
            assert!(help.contains("--set") && help.contains("--out"), "{help}");
            if target == "front" {
                assert!(help.contains("replicas=HOST:PORT"), "{help}");
            } else {
                assert!(
                    help.contains("--tenants") && help.contains(DEPLOYMENT_FIELDS),
                    "{help}"
                );
            }
        }
    }
}
