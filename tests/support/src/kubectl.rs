//! The real kubectl, as users run it, for tests against a running cluster.

/// The installed kubectl with a kubeconfig and a cache dir of its own (the dispatcher at
/// /usr/bin/kubectl caches the server's version there).
pub struct Kubectl {
    pub kubeconfig: std::path::PathBuf,
    pub cache: tempfile::TempDir,
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(kubeconfig: &std::path::Path) -> Kubectl {
        assert!(std::path::Path::new("/usr/bin/kubectl").exists(), "/usr/bin/kubectl is missing: these tests drive the real kubectl");
        Kubectl { kubeconfig: kubeconfig.to_path_buf(), cache: tempfile::tempdir().unwrap() }
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write;
        let mut child = std::process::Command::new("timeout")
            .arg("60")
            .arg("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Output { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).into(), stderr: String::from_utf8_lossy(&out.stderr).into() }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, "")
    }

    /// Run and require success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.ok, "kubectl {args:?} failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }

    /// `kubectl get KIND -w --output-watch-events` running while `during` acts: what it
    /// printed (stdout, stderr). It gets 3 s to start watching and 2 s to print afterwards.
    pub fn watch_during(&self, kind: &str, during: impl FnOnce()) -> (String, String) {
        let watch = std::process::Command::new("timeout")
            .args(["30", "kubectl", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(["get", kind, "-w", "--output-watch-events"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl get -w");
        std::thread::sleep(std::time::Duration::from_secs(3));
        during();
        std::thread::sleep(std::time::Duration::from_secs(2));
        unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
        let out = watch.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn apply(&self, yaml: &str) -> String {
        let o = self.run_with_stdin(&["apply", "-f", "-"], yaml);
        assert!(o.ok, "kubectl apply failed:\nstdout: {}\nstderr: {}", o.stdout, o.stderr);
        o.stdout
    }
}
