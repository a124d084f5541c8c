//! Background programs of the tests (nginx, gunicorn, php-fpm): each in its
//! own process group, stopped with its whole group.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{wait_until, TIMEOUT};

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn gone_or_zombie(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Sends `signal` to a child started in its own process group, waits for it
/// (10 s), then kills whatever is left of the group and reaps the child.
/// The child is not reaped before the group kill, so its pid (the group id)
/// cannot have been reused.
pub fn stop_process(child: &mut Child, signal: libc::c_int) {
    let pid = child.id();
    if child.try_wait().ok().flatten().is_none() {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
        if !wait_until(TIMEOUT, || gone_or_zombie(pid)) {
            eprintln!("process {pid}: still running 10 s after signal {signal}, killing its group");
        }
    }
    // SAFETY: kill(2) on our own child's process group.
    unsafe { libc::kill(-(pid as libc::pid_t), libc::SIGKILL) };
    let _ = child.wait();
}

/// A background program (gunicorn, php-fpm) in its own process group, its
/// output in a log file. Dropping it sends SIGTERM (both stop their workers
/// and exit), then SIGKILL to the group, and prints the log if the test
/// panicked.
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Spawns `cmd` (stdout and stderr to `log`) in a new process group.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Service {
        let out = fs::File::create(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let err = out.try_clone().expect("dup log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e}"));
        Service {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `ready()` holds; panics (with the log) if the process
    /// exits first or it takes longer than `timeout`.
    pub fn wait_ready(&mut self, timeout: Duration, ready: impl FnMut() -> bool) {
        if let Err(e) = self.try_wait_ready(timeout, ready) {
            panic!("{e}:\n{}", self.log());
        }
    }

    /// Waits until `ready()` holds; says why not if the process exits
    /// first or it takes longer than `timeout`.
    pub fn try_wait_ready(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited with {status}", self.name));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready after {timeout:?}", self.name));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        stop_process(&mut self.child, libc::SIGTERM);
        if thread::panicking() {
            eprintln!(
                "--- {} log ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log()
            );
        }
    }
}
