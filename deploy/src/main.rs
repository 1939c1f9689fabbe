//! `tvp validate FILE`, `tvp render envoy|istio|envoy-gateway|compose ...` and `tvp check FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use deploy::deployment::Target;
use deploy::tenants;

const USAGE: &str = "usage:
  tvp validate TENANTS.json
      every problem of the tenants file, one line each with its JSON path; exit 1 if any
  tvp render envoy|istio|envoy-gateway|compose --tenants TENANTS.json [--deployment FILE] [--set KEY=VALUE]... [--out DIR]
      envoy    an Envoy bootstrap (envoy.yaml)
      istio    WasmPlugin, ServiceEntry and DestinationRule resources (istio.yaml); without
               routes of its own, settings.mcp_hold_path is left out (with a warning)
      envoy-gateway
               EnvoyExtensionPolicy (the module, sha256 pinned, fail closed), per tenant an
               HTTPRoute, Backend and BackendTLSPolicy on the Gateway, an HTTPRoute for the
               filter's own endpoints, and an EnvoyPatchPolicy adding the clusters the filter
               calls (envoy-gateway.yaml); needs envoy_gateway.gateway, wasm and wasm_sha256,
               and Envoy Gateway's extensionApis enableEnvoyPatchPolicy and enableBackend;
               settings.mcp_hold_path is left out (with a warning)
      compose  the docker-compose demo's Envoy bootstrap (envoy.yaml)
      The deployment file (JSON or YAML) and --set take: public_base_url, listen_address,
      listen_port, admin_address, admin_port, tls.cert, tls.key, wasm, wasm_sha256 (required
      for istio and envoy-gateway), ca_bundle, lds_path, allow_inline_secrets (a demo only:
      client_secret values in the tenants file are refused otherwise; default true for
      compose), istio.name, istio.namespace, istio.selector, istio.ports, istio.mode,
      istio.credential_name, istio.hosts, envoy_gateway.gateway (NAMESPACE/NAME),
      envoy_gateway.listener, envoy_gateway.name, envoy_gateway.namespace,
      envoy_gateway.ca_config_map, envoy_gateway.allow_plain_http.
      Without --out the result goes to standard output. With lds_path=DIR/NAME.yaml (envoy
      only), the listener and the plugin configuration go to NAME.yaml, which Envoy reloads
      when a new one is moved into DIR; --out is required then. Files are written atomically
      (renamed into place): rendering straight into DIR is itself a push.
  tvp render front --set replicas=HOST:PORT,... [--set balance=credential|round-robin] [--set KEY=VALUE]... [--out DIR]
      the Envoy in front of the gateway's replicas (front.yaml): balance=credential (the
      default) hashes the agent's Authorization header, so each agent credential reaches one
      replica (one vault exchange per user and token lifetime, not one per replica);
      round-robin spreads requests. Also listen_address, listen_port (3000), admin_port (9902).
  tvp check RESOURCES.yaml
      check Kubernetes resources (a YAML stream) against the vendored Istio, Envoy Gateway and
      Gateway API CRD schemas";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("validate") if args.len() == 2 => return validate(&args[1]),
        Some("render") => render(&args[1..]),
        Some("check") if args.len() == 2 => check(&args[1]),
        _ => Err(vec![USAGE.to_string()]),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(lines) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::FAILURE
        }
    }
}

fn validate(file: &str) -> ExitCode {
    let problems = match std::fs::read_to_string(file) {
        Ok(text) => match tenants::parse_json(&text) {
            Ok(doc) => tenants::check(&doc),
            Err(p) => vec![p],
        },
        Err(e) => {
            eprintln!("tvp: {file}: {e}");
            return ExitCode::from(2);
        }
    };
    for p in &problems {
        println!("{file}: {p}");
    }
    if problems.is_empty() {
        println!("{file}: ok");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn check(file: &str) -> Result<(), Vec<String>> {
    let text = read(file)?;
    let violations =
        deploy::schema::check_stream(&text).map_err(|e| vec![format!("{file}: {e}")])?;
    if violations.is_empty() {
        println!("{file}: ok");
        Ok(())
    } else {
        Err(violations.iter().map(|v| format!("{file}: {v}")).collect())
    }
}

fn read(path: &str) -> Result<String, Vec<String>> {
    std::fs::read_to_string(path).map_err(|e| vec![format!("tvp: {path}: {e}")])
}

/// `tvp render front`: no tenants file, only the replicas and how to balance them.
fn render_front(args: &[String]) -> Result<(), Vec<String>> {
    let usage = || vec![USAGE.to_string()];
    let (mut sets, mut out) = (Vec::new(), None);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(usage)?.clone();
        match flag.as_str() {
            "--set" => sets.push(value),
            "--out" => out = Some(PathBuf::from(value)),
            _ => return Err(usage()),
        }
    }
    let front = deploy::front::Front::from_sets(&sets).map_err(|e| vec![format!("tvp: {e}")])?;
    let text = deploy::front::render(&front);
    match out {
        None => print!("{text}"),
        Some(dir) => {
            let path = dir.join("front.yaml");
            write_atomically(&dir, &path, &text)
                .map_err(|e| vec![format!("tvp: {}: {e}", path.display())])?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

fn render(args: &[String]) -> Result<(), Vec<String>> {
    if args.first().is_some_and(|t| t == "front") {
        return render_front(&args[1..]);
    }
    let usage = || vec![USAGE.to_string()];
    let target = args
        .first()
        .and_then(|t| Target::parse(t))
        .ok_or_else(usage)?;
    let (mut tenants_file, mut deployment_file, mut out) = (None, None, None);
    let mut overrides = Vec::new();
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(usage)?.clone();
        match flag.as_str() {
            "--tenants" => tenants_file = Some(value),
            "--deployment" => deployment_file = Some(value),
            "--set" => overrides.push(value),
            "--out" => out = Some(PathBuf::from(value)),
            _ => return Err(usage()),
        }
    }
    let tenants_file = tenants_file.ok_or_else(usage)?;
    let tenants_text = read(&tenants_file)?;
    let deployment_text = match &deployment_file {
        Some(f) => read(f)?,
        None => String::new(),
    };
    let rendered =
        deploy::render(target, &tenants_text, &deployment_text, &overrides).map_err(|lines| {
            lines
                .into_iter()
                .map(|l| format!("{tenants_file}: {l}"))
                .collect::<Vec<_>>()
        })?;
    for w in &rendered.warnings {
        eprintln!("{w}");
    }
    let Some(dir) = out else {
        if !rendered.more.is_empty() {
            return Err(vec![
                "tvp: lds_path: the listener goes to a file of its own: use --out DIR".into(),
            ]);
        }
        print!("{}", rendered.text);
        return Ok(());
    };
    let bootstrap = dir.join(rendered.file);
    if !rendered.more.is_empty() {
        // Envoy reads the bootstrap only when it starts; a listener file naming a cluster the
        // running bootstrap lacks is refused.
        if std::fs::read_to_string(&bootstrap).is_ok_and(|old| old != rendered.text) {
            eprintln!(
                "{}: changed (clusters or admin): restart Envoy with it before pushing the listener file",
                bootstrap.display()
            );
        }
    }
    // The listener file last: its arrival is what a watching Envoy acts on.
    let files = std::iter::once((rendered.file.to_string(), &rendered.text))
        .chain(rendered.more.iter().map(|(n, t)| (n.clone(), t)));
    for (name, text) in files {
        let path = dir.join(name);
        write_atomically(&dir, &path, text)
            .map_err(|e| vec![format!("tvp: {}: {e}", path.display())])?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Write to a temporary file in `dir` and rename it over `path`: a reader (Envoy watching
/// the directory for moves) sees the old file or the new one, never half of one.
fn write_atomically(
    dir: &std::path::Path,
    path: &std::path::Path,
    text: &str,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tvp-{}", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
