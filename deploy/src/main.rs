//! `tvp validate FILE` and `tvp render envoy|istio|compose ...`.

use std::process::ExitCode;

use deploy::tenants;

const USAGE: &str = "usage:
  tvp validate TENANTS.json
      every problem of the tenants file, one line each with its JSON path; exit 1 if any";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("validate") if args.len() == 2 => validate(&args[1]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
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
