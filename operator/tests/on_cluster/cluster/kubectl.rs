//! The kubectl that `scripts/cluster.sh` builds, run as a user would run it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `STREAMJOIN_KUBECTL` (set by `scripts/cluster.sh env`), else `kubectl` on PATH.
pub fn kubectl_bin() -> PathBuf {
    std::env::var_os("STREAMJOIN_KUBECTL")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("kubectl"), PathBuf::from)
}

/// kubectl with one kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    pub bin: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("KUBECONFIG", &self.kubeconfig);
        cmd
    }

    /// Runs `kubectl ARGS` (with `input` on stdin when given): stdout on success,
    /// the command and its output on failure.
    pub fn try_run(&self, args: &[&str], input: Option<&str>) -> Result<String, String> {
        let mut cmd = self.command();
        cmd.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting {} {args:?}: {e}", self.bin.display()))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| format!("kubectl {args:?}: writing stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl {args:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "kubectl {} failed ({}):\n{stdout}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// As [`Kubectl::try_run`], panicking on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args, None).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl apply --server-side -f -` of a YAML stream.
    pub fn apply_yaml(&self, yaml: &str, manager: &str) -> String {
        self.try_run(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                &format!("--field-manager={manager}"),
                "-f",
                "-",
            ],
            Some(yaml),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}
