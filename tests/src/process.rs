//! The real `kopa` binary as a child process: its stdout and stderr are collected line by
//! line, so tests wait for what it prints and check what it logs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `kopa` binary under test: `$KOPA_BIN`, else `kopa` next to the test binary's
/// `deps/` folder (where `cargo build -p kopa` puts it; `make test` builds it first).
pub fn kopa_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KOPA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let bin = profile_dir.join("kopa");
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build -p kopa` (make test does) or set KOPA_BIN",
        bin.display()
    );
    bin
}

/// Runs `kopa ARGS` to completion with extra environment variables.
pub fn run_kopa(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(kopa_bin())
        .args(args)
        .envs(envs.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

type Lines = Arc<Mutex<Vec<String>>>;

/// A running `kopa` process.
#[derive(Debug)]
pub struct KopaProcess {
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Lines {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl KopaProcess {
    /// Starts `kopa ARGS`.
    pub fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut child = Command::new(kopa_bin())
            .args(args)
            .envs(envs.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// `kopa serve --data-dir DIR --listen 127.0.0.1:0` plus `extra` arguments.
    pub fn serve(data_dir: &std::path::Path, extra: &[&str]) -> Self {
        let dir = data_dir.to_str().unwrap();
        let mut args = vec!["serve", "--data-dir", dir, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        Self::spawn(&args, &[])
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything printed on stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// Everything printed on stderr (the JSON log) so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until a line of stdout (or stderr, with `on_stderr`) satisfies `pred`.
    pub fn wait_line(
        &mut self,
        on_stderr: bool,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let lines = if on_stderr {
                &self.stderr
            } else {
                &self.stdout
            };
            if let Some(l) = lines.lock().unwrap().iter().find(|l| pred(l)) {
                return l.clone();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "kopa exited ({status}) before printing the expected line\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a line\nstdout:\n{}\nstderr:\n{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the "listening on https://ADDR" banner and returns ADDR.
    pub fn wait_listening(&mut self) -> SocketAddr {
        let line = self.wait_line(false, Duration::from_secs(30), |l| {
            l.contains(" listening on https://")
        });
        line.rsplit("https://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Sends a signal by name (`TERM`, `HUP`, `KILL`, `INT`).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain the pipes.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kopa did not exit in {timeout:?}\nstderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KopaProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `kopa ARGS` and requires success, showing its stderr otherwise.
pub fn kopa_ok(args: &[&str]) -> Output {
    let out = run_kopa(args, &[]);
    assert!(
        out.status.success(),
        "kopa {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
