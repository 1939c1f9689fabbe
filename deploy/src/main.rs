//! `tvp validate FILE`, `tvp render envoy|istio|envoy-gateway|compose|front ...` and
//! `tvp check FILE`.

use std::process::ExitCode;

use clap::Parser;
use deploy::cli::{Cli, Command, FrontArgs, Render, RenderArgs};
use deploy::deployment::Target;
use deploy::tenants;

/// Usage errors (and --help, --version) are clap's: to standard error with exit 2 (standard
/// output and 0 for help). Other errors: one line each on standard error, exit 1.
fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Validate { tenants } => return validate(&tenants),
        Command::Check { resources } => check(&resources),
        Command::Render { target } => match target {
            Render::Envoy(a) => render(Target::Envoy, a),
            Render::Istio(a) => render(Target::Istio, a),
            Render::EnvoyGateway(a) => render(Target::EnvoyGateway, a),
            Render::Compose(a) => render(Target::Compose, a),
            Render::Front(a) => render_front(a),
        },
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
fn render_front(args: FrontArgs) -> Result<(), Vec<String>> {
    let FrontArgs { sets, out } = args;
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

fn render(target: Target, args: RenderArgs) -> Result<(), Vec<String>> {
    let RenderArgs {
        tenants: tenants_file,
        deployment: deployment_file,
        sets: mut overrides,
        host,
        out,
    } = args;
    if let Some(host) = host {
        overrides.push(format!("host={host}"));
    }
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
