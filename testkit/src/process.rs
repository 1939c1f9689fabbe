//! Processes a test or a benchmark starts, stopped with their handle however the run ends,
//! and Envoy's command line.

use std::fs::File;
use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A child process killed and reaped when this handle drops (a failed assertion unwinds
/// through it, so no Envoy outlives its test).
pub struct Process(Child);

impl Process {
    pub fn spawn(command: &mut Command) -> io::Result<Process> {
        command.spawn().map(Process)
    }

    /// Kill it (if it still runs) and reap it.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }
}

impl Deref for Process {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for Process {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Envoy's command line: `-c CONFIG --disable-hot-restart -l warning`, then what the caller
/// adds; its standard error (the log) and standard output (the access log) to files or
/// nowhere.
pub struct Envoy {
    binary: Option<PathBuf>,
    config: PathBuf,
    concurrency: Option<u32>,
    cpus: Option<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: Option<PathBuf>,
    access_log: Option<PathBuf>,
}

impl Envoy {
    pub fn new(config: &Path) -> Envoy {
        Envoy {
            binary: None,
            config: config.to_path_buf(),
            concurrency: None,
            cpus: None,
            args: Vec::new(),
            env: Vec::new(),
            log: None,
            access_log: None,
        }
    }

    /// This Envoy binary instead of [`crate::envoy_bin`].
    pub fn binary(mut self, path: &Path) -> Envoy {
        self.binary = Some(path.to_path_buf());
        self
    }

    /// Worker threads (Envoy's default is one per core).
    pub fn concurrency(mut self, workers: u32) -> Envoy {
        self.concurrency = Some(workers);
        self
    }

    /// Run on these CPUs only (`taskset -c`), as the benchmarks do.
    pub fn pinned(mut self, cpus: &str) -> Envoy {
        self.cpus = Some(cpus.to_string());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Envoy {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    pub fn env(mut self, name: &str, value: &str) -> Envoy {
        self.env.push((name.to_string(), value.to_string()));
        self
    }

    /// Envoy's log (standard error) goes to this file.
    pub fn log(mut self, path: &Path) -> Envoy {
        self.log = Some(path.to_path_buf());
        self
    }

    /// Standard output (where the local stack's access log goes) to this file.
    pub fn access_log(mut self, path: &Path) -> Envoy {
        self.access_log = Some(path.to_path_buf());
        self
    }

    pub fn spawn(&self) -> Result<Process, String> {
        let bin = match &self.binary {
            Some(path) => path.clone(),
            None => crate::require_envoy()?,
        };
        let to = |file: &Option<PathBuf>| -> Result<Stdio, String> {
            match file {
                Some(path) => File::create(path)
                    .map(Stdio::from)
                    .map_err(|e| format!("{}: {e}", path.display())),
                None => Ok(Stdio::null()),
            }
        };
        let mut command = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        command.arg("-c").arg(&self.config);
        if let Some(n) = self.concurrency {
            command.args(["--concurrency", &n.to_string()]);
        }
        command
            .args(["--disable-hot-restart", "-l", "warning"])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(to(&self.access_log)?)
            .stderr(to(&self.log)?);
        Process::spawn(&mut command).map_err(|e| format!("cannot start Envoy: {e}"))
    }
}

/// `envoy --mode validate -c CONFIG` in `dir` with these variables: whether it passed (exit
/// 0 and `OK`), and what it printed. Validate mode builds every listener and cluster and loads
/// the module with its configuration.
pub fn envoy_validates(
    config: &Path,
    dir: &Path,
    env: &[(&str, &str)],
) -> Result<(bool, String), String> {
    let out = Command::new(crate::require_envoy()?)
        .args(["--mode", "validate", "-l", "warning", "-c"])
        .arg(config)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("cannot start Envoy: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success() && text.contains("OK"), text))
}
