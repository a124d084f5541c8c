//! Integration-test harness: real nginx with the built module, a raw HTTP/1.1
//! client and a scripted upstream server. Standard library only.
//!
//! Each test file does `mod common;` and uses what it needs.
//!
//! Environment:
//! - `STATIC_GEN_NGINX`: nginx binary to run (default: the one the module was
//!   built against, `STATIC_GEN_BUILT_NGINX` from `build.rs`).
//! - `STATIC_GEN_MODULE`: the module `.so` (default: next to the test binary's
//!   `deps/` directory).
//! - `STATIC_GEN_KEEP`: keep test directories (configs, logs, generated files).
//! - `STATIC_GEN_LOG_LEVEL`: error_log level (default `debug`; only a
//!   `--with-debug` nginx writes debug lines).
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod mounts;
mod php_fpm;
mod service;
// each test binary uses a different part of the harness
#[allow(unused_imports)]
pub use mounts::*;
#[allow(unused_imports)]
pub use php_fpm::*;
#[allow(unused_imports)]
pub use service::*;

/// Timeout for every socket operation and for nginx start/stop.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Conditional and range request headers that nginx's not-modified and
/// range filters act on (a reply that must always be sent whole ignores
/// them).
#[allow(dead_code)]
pub const CONDITIONAL_HEADERS: &[(&str, &str)] = &[
    ("If-None-Match", "*"),
    ("If-None-Match", "\"x\""),
    ("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT"),
    ("If-Match", "\"x\""),
    ("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:01 GMT"),
    ("Range", "bytes=0-1"),
    ("If-Range", "\"x\""),
];

pub const MODULE_FILE: &str = "libngx_http_static_gen_module.so";

// ---------------------------------------------------------------------------
// Locating binaries
// ---------------------------------------------------------------------------

/// The nginx binary: `$STATIC_GEN_NGINX`, else the one the module was built for.
pub fn nginx_binary() -> PathBuf {
    match std::env::var_os("STATIC_GEN_NGINX") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("STATIC_GEN_BUILT_NGINX")),
    }
}

/// The module: `$STATIC_GEN_MODULE`, else `target/<profile>/libngx_http_static_gen_module.so`
/// (the test binary lives in `target/<profile>/deps/`).
pub fn module_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STATIC_GEN_MODULE") {
        if !p.is_empty() {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary directory");
    let profile_dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().expect("target/<profile>")
    } else {
        deps
    };
    profile_dir.join(MODULE_FILE)
}

/// [`module_path`], checked to exist and (unless `STATIC_GEN_MODULE` is set)
/// to be newer than the sources: `cargo test` does not build the cdylib, so
/// run `cargo build` (with the same `--target-dir`) first.
pub fn checked_module_path() -> PathBuf {
    let module = module_path();
    let built = fs::metadata(&module)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "module {}: {e}; `cargo test` does not build the cdylib: run `cargo build` first \
                 (or set STATIC_GEN_MODULE)",
                module.display()
            )
        });
    if std::env::var_os("STATIC_GEN_MODULE").is_none() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let newest = ["src", "logic/src"]
            .iter()
            .flat_map(|d| list_files(&root.join(d)))
            .filter_map(|f| Some((fs::metadata(&f).ok()?.modified().ok()?, f)))
            .max();
        if let Some((time, file)) = newest {
            assert!(
                time <= built,
                "module {} is older than {}: `cargo test` does not build the cdylib; run \
                 `cargo build` (same --target-dir) first",
                module.display(),
                file.display()
            );
        }
    }
    module
}

/// nginx's `-V` output (version and configure arguments), cached.
pub fn nginx_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| {
        let out = Command::new(nginx_binary())
            .arg("-V")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx_binary().display()));
        String::from_utf8_lossy(&out.stderr).into_owned()
    })
}

/// nginx's version number (`nginx version: nginx/1.28.3` in `-V`).
pub fn nginx_version_number() -> (u32, u32, u32) {
    let v = nginx_version();
    let number = v
        .split("nginx/")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in `nginx -V`: {v}"));
    let mut parts = number.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next(), next(), next())
}

/// Whether nginx is this version or newer.
pub fn nginx_at_least(major: u32, minor: u32, patch: u32) -> bool {
    nginx_version_number() >= (major, minor, patch)
}

// ---------------------------------------------------------------------------
// Ports, temp dirs, small utilities
// ---------------------------------------------------------------------------

/// A loopback port that was free a moment ago. Never hands out the same port
/// twice in one test process.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    for _ in 0..100 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local_addr").port();
        drop(listener);
        if given.lock().unwrap().insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// All regular files under `dir`, recursively, sorted (empty if `dir` is missing).
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => walk(&p, out),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}

/// A directory under `std::env::temp_dir()`, mode 0755, removed on drop
/// unless `STATIC_GEN_KEEP` is set.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// `label` goes into the name (defaults to the current test's name).
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let label = if label.is_empty() {
            thread::current().name().unwrap_or("test").to_string()
        } else {
            label.to_string()
        };
        let label: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!(
            "static-gen-{label}-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod 0755");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes `contents` at `rel`, creating parent directories (0755).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("create parent dirs");
        }
        fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STATIC_GEN_KEEP").is_some() {
            eprintln!("STATIC_GEN_KEEP: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// nginx
// ---------------------------------------------------------------------------

/// Builder for an nginx instance. The `http {}` contents are a template:
///
/// - `{{tmp}}`: the instance's temp dir (no trailing slash);
/// - `{{port}}`, `{{port2}}`, ... `{{port9}}`: free loopback ports, picked at
///   start (`{{port1}}` is `{{port}}`). nginx is considered up when `{{port}}`
///   accepts connections (if the template uses it);
/// - `{{name}}`: any substitution added with [`Nginx::var`].
///
/// Any `{{...}}` left over is an error.
pub struct Nginx {
    template: String,
    vars: Vec<(String, String)>,
    main_extra: String,
    workers: usize,
    load_module: bool,
    log_level: String,
    /// `user` (as root, `root` unless set).
    user: Option<String>,
    tmp: TempDir,
}

impl Nginx {
    pub fn new(http_template: &str) -> Nginx {
        Nginx {
            template: http_template.to_string(),
            vars: Vec::new(),
            main_extra: String::new(),
            workers: 1,
            load_module: true,
            log_level: std::env::var("STATIC_GEN_LOG_LEVEL").unwrap_or_else(|_| "debug".into()),
            user: None,
            tmp: TempDir::new(""),
        }
    }

    /// `worker_processes` (default 1).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds a `{{name}}` substitution (applied before the built-in ones);
    /// set again, the last value counts.
    pub fn var(mut self, name: &str, value: impl fmt::Display) -> Self {
        self.vars.retain(|(n, _)| n != name);
        self.vars.push((name.to_string(), value.to_string()));
        self
    }

    /// Extra main-context directives (e.g. `thread_pool`, `env`).
    pub fn main_conf(mut self, text: &str) -> Self {
        self.main_extra.push_str(text);
        self.main_extra.push('\n');
        self
    }

    /// `error_log` level (default `debug`, or `$STATIC_GEN_LOG_LEVEL`).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// The `user` directive's arguments (`"nobody nogroup"`), instead of
    /// `root` when the tests run as root.
    #[allow(dead_code)]
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Leaves out `load_module` (to test the harness itself or plain nginx).
    pub fn without_module(mut self) -> Self {
        self.load_module = false;
        self
    }

    /// The instance's temp dir (to create files before starting).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// Renders nginx.conf for `template`. `ports[n]` holds `{{portN}}`
    /// (`ports[1]` is `{{port}}`); missing ones used by the template are picked.
    fn render(&self, template: &str, ports: &mut [Option<u16>; 10]) -> String {
        let mut body = template.to_string();
        for (k, v) in &self.vars {
            body = body.replace(&format!("{{{{{k}}}}}"), v);
        }
        let tmp = self
            .tmp
            .path()
            .to_str()
            .expect("utf-8 temp path")
            .to_string();
        body = body.replace("{{tmp}}", &tmp);
        for (n, slot) in ports.iter_mut().enumerate().skip(1) {
            let mut names = vec![format!("{{{{port{n}}}}}")];
            if n == 1 {
                names.push("{{port}}".to_string());
            }
            if names.iter().any(|name| body.contains(name.as_str())) {
                let port = *slot.get_or_insert_with(free_port);
                for name in &names {
                    body = body.replace(name.as_str(), &port.to_string());
                }
            }
        }
        if let Some(i) = body.find("{{") {
            let end = body[i..]
                .find("}}")
                .map(|e| i + e + 2)
                .unwrap_or(body.len());
            panic!("unknown placeholder {} in nginx template", &body[i..end]);
        }

        let mut conf = String::new();
        if self.load_module {
            let module = checked_module_path();
            conf.push_str(&format!("load_module {};\n", module.display()));
        }
        match &self.user {
            Some(user) => conf.push_str(&format!("user {user};\n")),
            None if is_root() => conf.push_str("user root;\n"),
            None => {}
        }
        conf.push_str(&format!(
            "worker_processes {workers};\n\
             pid {tmp}/nginx.pid;\n\
             error_log {tmp}/error.log {level};\n\
             {main}\
             events {{\n    worker_connections 1024;\n}}\n\
             http {{\n\
             \x20   access_log {tmp}/access.log;\n\
             \x20   client_body_temp_path {tmp}/client_body_temp;\n\
             \x20   proxy_temp_path {tmp}/proxy_temp;\n\
             \x20   fastcgi_temp_path {tmp}/fastcgi_temp;\n\
             \x20   uwsgi_temp_path {tmp}/uwsgi_temp;\n\
             \x20   scgi_temp_path {tmp}/scgi_temp;\n\
             \n{body}\n}}\n",
            workers = self.workers,
            level = self.log_level,
            main = self.main_extra,
        ));
        conf
    }

    fn write_conf(&self, conf: &str) {
        let path = self.tmp.join("nginx.conf");
        fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    fn command(&self) -> Command {
        let tmp = self.tmp.path();
        let mut cmd = Command::new(nginx_binary());
        cmd.arg("-p")
            .arg(format!("{}/", tmp.display()))
            .arg("-c")
            .arg(tmp.join("nginx.conf"))
            .arg("-e")
            .arg(tmp.join("error.log"));
        cmd
    }

    /// Runs `nginx -t` on this configuration: (success, stderr + error log).
    pub fn config_test(self) -> (bool, String) {
        let conf = self.render(&self.template, &mut [None; 10]);
        self.write_conf(&conf);
        let out = self
            .command()
            .arg("-t")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx_binary().display()));
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if let Ok(log) = fs::read_to_string(self.tmp.join("error.log")) {
            text.push_str(&log);
        }
        (out.status.success(), text)
    }

    /// Starts nginx and waits until it serves; panics with the error log on failure.
    pub fn start(self) -> NginxHandle {
        match self.try_start() {
            Ok(h) => h,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Nginx::start`], returning the failure (with the error log) instead.
    /// Retries with new ports when one was taken in the meantime.
    pub fn try_start(self) -> Result<NginxHandle, String> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _ = fs::remove_file(self.tmp.join("error.log"));
            let _ = fs::remove_file(self.tmp.join("nginx.pid"));
            let mut ports = [None; 10];
            let conf = self.render(&self.template, &mut ports);
            self.write_conf(&conf);
            let mut child = self
                .command()
                .arg("-g")
                .arg("daemon off;")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run {}: {e}", nginx_binary().display()))?;
            match wait_ready(
                &mut child,
                &self.tmp.join("nginx.pid"),
                ports[1],
                self.workers,
            ) {
                Ok(()) => {
                    return Ok(NginxHandle {
                        child: Some(child),
                        ports,
                        conf,
                        stderr: String::new(),
                        builder: self,
                    })
                }
                Err(e) => {
                    let stderr = stop_child(&mut child);
                    let log = fs::read_to_string(self.tmp.join("error.log")).unwrap_or_default();
                    if attempt < 3 && log.contains("Address already in use") {
                        eprintln!("nginx: a port was taken meanwhile, retrying with new ports");
                        continue;
                    }
                    return Err(format!(
                        "nginx did not start: {e}\n--- {} ---\n--- nginx.conf ---\n{conf}\n\
                         --- stderr ---\n{stderr}\n--- error.log ---\n{}",
                        nginx_binary().display(),
                        filter_log(&log)
                    ));
                }
            }
        }
    }
}

/// Waits for the pid file (written after the listening sockets are open),
/// for `port` to accept connections, and for the worker processes.
fn wait_ready(
    child: &mut Child,
    pid_file: &Path,
    port: Option<u16>,
    workers: usize,
) -> Result<(), String> {
    let deadline = Instant::now() + TIMEOUT;
    let pid = child.id();
    loop {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(format!("nginx exited with {status}"));
        }
        if let Ok(s) = fs::read_to_string(pid_file) {
            if s.trim().parse::<u32>().ok() == Some(pid) {
                break;
            }
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the pid file".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    if let Some(port) = port {
        while TcpStream::connect_timeout(&loopback(port), Duration::from_millis(200)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!("timed out waiting for port {port}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
    while children_of(pid).len() < workers {
        if let Some(status) = child.try_wait().ok().flatten() {
            return Err(format!("nginx exited with {status}"));
        }
        if Instant::now() >= deadline {
            return Err("timed out waiting for the worker processes".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Stops an nginx master: SIGQUIT (graceful), then SIGTERM, then SIGKILL to
/// master and workers. Returns what nginx wrote to stderr.
fn stop_child(child: &mut Child) -> String {
    let pid = child.id();
    let exited = |child: &mut Child, timeout: Duration| {
        wait_until(timeout, || child.try_wait().ok().flatten().is_some())
    };
    if child.try_wait().ok().flatten().is_none() {
        send_signal(pid, "QUIT");
        if !exited(child, TIMEOUT) {
            eprintln!("nginx {pid}: still running after SIGQUIT, sending SIGTERM");
            send_signal(pid, "TERM");
            if !exited(child, Duration::from_secs(3)) {
                eprintln!("nginx {pid}: still running after SIGTERM, sending SIGKILL");
                let workers = children_of(pid);
                let _ = child.kill();
                for w in workers {
                    send_signal(w, "KILL");
                }
                let _ = child.wait();
            }
        }
    }
    let mut s = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut s);
    }
    s
}

/// Error-log text for failure messages: everything but debug lines, and the
/// last 40 debug lines; capped to the last 400 lines.
fn filter_log(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let debug_idx: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains(" [debug] "))
        .collect();
    let keep_debug: HashSet<usize> = debug_idx.iter().rev().take(40).copied().collect();
    let kept: Vec<&str> = (0..lines.len())
        .filter(|i| !lines[*i].contains(" [debug] ") || keep_debug.contains(i))
        .map(|i| lines[i])
        .collect();
    let skip = kept.len().saturating_sub(400);
    let mut out = String::new();
    if skip > 0 || debug_idx.len() > keep_debug.len() {
        out.push_str(&format!(
            "({} lines; debug lines elided, STATIC_GEN_KEEP=1 keeps the file)\n",
            lines.len()
        ));
    }
    for l in &kept[skip..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// Returns `nginx -t` success and output for an `http {}` template (module loaded).
pub fn config_test(http_template: &str) -> (bool, String) {
    Nginx::new(http_template).config_test()
}

/// A running nginx. Dropping it stops nginx (SIGQUIT, then SIGTERM, then
/// SIGKILL of master and workers) and removes the temp dir.
pub struct NginxHandle {
    child: Option<Child>,
    ports: [Option<u16>; 10],
    conf: String,
    stderr: String,
    builder: Nginx,
}

impl NginxHandle {
    /// `{{port}}`.
    pub fn port(&self) -> u16 {
        self.port_n(1)
    }

    /// `{{portN}}` (1 = `{{port}}`).
    pub fn port_n(&self, n: usize) -> u16 {
        self.ports
            .get(n)
            .copied()
            .flatten()
            .unwrap_or_else(|| panic!("the template does not use {{{{port{n}}}}}"))
    }

    pub fn tmp(&self) -> &Path {
        self.builder.tmp.path()
    }

    /// A path inside the temp dir.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.builder.tmp.join(rel)
    }

    /// The full nginx.conf as written.
    pub fn conf(&self) -> &str {
        &self.conf
    }

    /// The master's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Pids of the master's live children (workers).
    pub fn worker_pids(&self) -> Vec<u32> {
        children_of(self.pid())
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.path("error.log")).unwrap_or_default()
    }

    pub fn access_log(&self) -> String {
        fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }

    /// Error-log lines at the given levels, e.g. `&["alert", "crit", "emerg"]`.
    pub fn log_lines(&self, levels: &[&str]) -> Vec<String> {
        self.error_log()
            .lines()
            .filter(|l| levels.iter().any(|lv| l.contains(&format!(" [{lv}] "))))
            .map(str::to_string)
            .collect()
    }

    /// Panics if the error log has `[alert]`, `[crit]` or `[emerg]` lines
    /// (e.g. "worker process ... exited on signal 11").
    pub fn assert_no_alerts(&self) {
        let bad = self.log_lines(&["alert", "crit", "emerg"]);
        assert!(bad.is_empty(), "error log has alerts:\n{}", bad.join("\n"));
    }

    /// Sends a signal (`"HUP"`, `"USR1"`, ...) to the master.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// Reloads the same configuration (SIGHUP) and waits for the new workers.
    pub fn reload(&mut self) -> Result<(), String> {
        let conf = self.conf.clone();
        self.reload_conf(conf)
    }

    /// Replaces the `http {}` template (ports already picked stay the same),
    /// reloads and waits for the new workers. Err (with the `[emerg]` lines)
    /// when nginx rejected the new configuration and kept the old one (the
    /// handle then keeps the old one too).
    pub fn reload_with(&mut self, http_template: &str) -> Result<(), String> {
        let conf = self.builder.render(http_template, &mut self.ports);
        self.reload_conf(conf)?;
        self.builder.template = http_template.to_string();
        Ok(())
    }

    fn reload_conf(&mut self, conf: String) -> Result<(), String> {
        fs::write(self.path("nginx.conf"), &conf).expect("write nginx.conf");
        let old_conf = std::mem::replace(&mut self.conf, conf);
        let old_workers = self.worker_pids();
        let log_before = self.error_log().len();
        self.signal("HUP");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.error_log();
            let new_part = log.get(log_before..).unwrap_or("");
            let failed: Vec<&str> = new_part
                .lines()
                .filter(|l| l.contains(" [emerg] ") || l.contains(" [alert] "))
                .collect();
            if !failed.is_empty() {
                // nginx kept the old configuration: so does the handle.
                let _ = fs::write(self.path("nginx.conf"), &old_conf);
                self.conf = old_conf;
                return Err(failed.join("\n"));
            }
            let now = self.worker_pids();
            let new_workers = now.iter().filter(|p| !old_workers.contains(p)).count();
            let old_left = now.iter().any(|p| old_workers.contains(p));
            if new_workers >= self.builder.workers && !old_left {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "reload did not complete in time\n{}",
                    filter_log(new_part)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops nginx now (what Drop does). Returns what nginx wrote to stderr.
    pub fn stop(&mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let s = stop_child(&mut child);
            self.stderr.push_str(&s);
        }
        self.stderr.clone()
    }
}

impl Drop for NginxHandle {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let log = self.error_log();
            if !log.is_empty() {
                eprintln!("--- nginx error.log ---\n{}", filter_log(&log));
            }
        }
    }
}

fn send_signal(pid: u32, sig: &str) {
    if pid == 0 {
        return;
    }
    let _ = Command::new("kill")
        .arg("-s")
        .arg(sig)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Pids whose parent is `ppid` (from /proc).
fn children_of(ppid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may contain spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        if state == Some("Z") || state == Some("X") {
            continue;
        }
        if fields.next().and_then(|s| s.parse::<u32>().ok()) == Some(ppid) {
            out.push(pid);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// HTTP client
// ---------------------------------------------------------------------------

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A parsed HTTP response.
#[derive(Clone, Debug, Default)]
pub struct Response {
    /// "HTTP/1.1"
    pub version: String,
    pub status: u16,
    pub reason: String,
    /// In order received; names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body was chunked (decoded in `body`).
    pub chunked: bool,
    /// The whole body arrived (Content-Length reached, last chunk seen, or
    /// the body was delimited by close). False when the connection ended early.
    pub complete: bool,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
}

impl Response {
    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All values of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `X-Static-Gen` value, or "" if absent.
    pub fn sg_status(&self) -> &str {
        self.header("X-Static-Gen").unwrap_or("")
    }
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {} {}", self.version, self.status, self.reason)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {v}")?;
        }
        writeln!(f)?;
        let body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            write!(f, "{}... ({} bytes)", &body[..cut], body.len())
        } else {
            write!(f, "{body}")
        }
    }
}

/// A client connection with its own read buffer (keep-alive, pipelining,
/// partial reads, early close).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    pub fn open(port: u16) -> io::Result<Conn> {
        let stream = TcpStream::connect_timeout(&loopback(port), TIMEOUT)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            eof: false,
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Half-closes the sending side.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Reads more into the buffer; Ok(false) at EOF.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut tmp = [0u8; 16384];
        let n = match self.stream.read(&mut tmp) {
            Ok(n) => n,
            // A reset after the peer sent everything counts as the end.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            self.eof = true;
            return Ok(false);
        }
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(true)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let rest = self.buf.split_off(n);
        std::mem::replace(&mut self.buf, rest)
    }

    /// Reads exactly `n` bytes (fewer at EOF).
    pub fn read_bytes(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n && self.fill()? {}
        let n = n.min(self.buf.len());
        Ok(self.take(n))
    }

    /// Reads until EOF.
    pub fn read_to_end(&mut self) -> io::Result<Vec<u8>> {
        while self.fill()? {}
        let n = self.buf.len();
        Ok(self.take(n))
    }

    fn read_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line = self.take(i + 1);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(Some(line));
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads the status line and headers only (skipping 1xx responses).
    pub fn read_head(&mut self) -> io::Result<Response> {
        loop {
            let head = self.read_head_once()?;
            if !(100..200).contains(&head.status) || head.status == 101 {
                return Ok(head);
            }
        }
    }

    fn read_head_once(&mut self) -> io::Result<Response> {
        let status_line = self.read_line()?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a status line",
            )
        })?;
        let status_line = String::from_utf8_lossy(&status_line).into_owned();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("").to_string();
        let status = parts
            .next()
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|_| version.starts_with("HTTP/"))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad status line {status_line:?}"),
                )
            })?;
        let reason = parts.next().unwrap_or("").to_string();
        let headers = self.read_fields()?;
        Ok(Response {
            version,
            status,
            reason,
            headers,
            ..Response::default()
        })
    }

    fn read_fields(&mut self) -> io::Result<Vec<(String, String)>> {
        let mut fields = Vec::new();
        loop {
            let line = self.read_line()?.ok_or_else(|| {
                io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in headers")
            })?;
            if line.is_empty() {
                return Ok(fields);
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if let Some((n, v)) = line.split_once(':') {
                fields.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
    }

    /// Reads a full response to a request with the given method.
    pub fn read_response(&mut self, method: &str) -> io::Result<Response> {
        let mut r = self.read_head()?;
        self.read_body(method, &mut r)?;
        Ok(r)
    }

    /// Reads the body of a response whose head was read with `read_head`.
    pub fn read_body(&mut self, method: &str, r: &mut Response) -> io::Result<()> {
        r.complete = true;
        if method.eq_ignore_ascii_case("HEAD")
            || r.status == 204
            || r.status == 304
            || (100..200).contains(&r.status)
        {
            return Ok(());
        }
        let chunked = r
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        if chunked {
            r.chunked = true;
            loop {
                let Some(line) = self.read_line()? else {
                    r.complete = false;
                    return Ok(());
                };
                let line = String::from_utf8_lossy(&line).into_owned();
                let size_str = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(size_str, 16).map_err(|_| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad chunk size {line:?}"),
                    )
                })?;
                if size == 0 {
                    match self.read_fields() {
                        Ok(t) => r.trailers = t,
                        Err(_) => r.complete = false,
                    }
                    return Ok(());
                }
                let data = self.read_bytes(size)?;
                let short = data.len() < size;
                r.body.extend_from_slice(&data);
                if short {
                    r.complete = false;
                    return Ok(());
                }
                if self.read_line()? != Some(Vec::new()) {
                    r.complete = false;
                    return Ok(());
                }
            }
        } else if let Some(len) = r.header("Content-Length") {
            let len: usize = len.parse().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad Content-Length {len:?}"),
                )
            })?;
            r.body = self.read_bytes(len)?;
            r.complete = r.body.len() == len;
        } else {
            r.body = self.read_to_end()?;
        }
        Ok(())
    }
}

/// The method of a raw request (its first token).
fn method_of(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == b' ').unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Sends `raw` exactly as given on a new connection and reads one response.
pub fn try_request(port: u16, raw: &[u8]) -> io::Result<Response> {
    let mut c = Conn::open(port)?;
    c.send(raw)?;
    c.read_response(&method_of(raw))
}

/// Like [`try_request`], panicking on I/O errors.
pub fn request(port: u16, raw: &[u8]) -> Response {
    try_request(port, raw).unwrap_or_else(|e| {
        panic!(
            "request to 127.0.0.1:{port} failed: {e}\nrequest: {:?}",
            String::from_utf8_lossy(raw)
        )
    })
}

/// Builds a request: `Host: localhost`, `Connection: close`, the given
/// headers, and `Content-Length` when there is a body (or the method is POST/PUT).
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\n");
    let has = |n: &str| headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
    if !has("Host") {
        raw.push_str("Host: localhost\r\n");
    }
    if !has("Connection") {
        raw.push_str("Connection: close\r\n");
    }
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    if (!body.is_empty() || method == "POST" || method == "PUT")
        && !has("Content-Length")
        && !has("Transfer-Encoding")
    {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

pub fn get(port: u16, path: &str) -> Response {
    request(port, &build_request("GET", path, &[], b""))
}

pub fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, &build_request("GET", path, headers, b""))
}

pub fn head(port: u16, path: &str) -> Response {
    request(port, &build_request("HEAD", path, &[], b""))
}

pub fn head_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Response {
    request(port, &build_request("HEAD", path, headers, b""))
}

pub fn post(port: u16, path: &str, body: &[u8]) -> Response {
    request(port, &build_request("POST", path, &[], body))
}

pub fn method(port: u16, method: &str, path: &str) -> Response {
    request(port, &build_request(method, path, &[], b""))
}

pub fn method_with(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    request(port, &build_request(method, path, headers, body))
}

/// Opens a connection, sends `raw`, reads the response head, and returns the
/// connection (drop it to abort; or read `n` body bytes with `read_bytes`).
pub fn open_and_read_head(port: u16, raw: &[u8]) -> (Conn, Response) {
    let mut c = Conn::open(port).unwrap_or_else(|e| panic!("connect {port}: {e}"));
    c.send(raw).expect("send request");
    let r = c.read_head().expect("read response head");
    (c, r)
}

// ---------------------------------------------------------------------------
// Scripted upstream
// ---------------------------------------------------------------------------

/// A request as the upstream received it.
#[derive(Clone, Debug, Default)]
pub struct UpstreamRequest {
    pub method: String,
    /// The request target exactly as sent (path and query).
    pub path: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl UpstreamRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }
}

/// One step of a response plan.
#[derive(Clone, Debug)]
pub enum Step {
    Write(Vec<u8>),
    Sleep(Duration),
    /// Close the connection now (no more steps are run).
    Close,
}

/// What the upstream does for one request. After the last step the
/// connection is closed, unless `keep_alive()` was set (then the next
/// request on it is read).
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub keep_alive: bool,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    pub fn write(mut self, bytes: impl AsRef<[u8]>) -> Plan {
        self.steps.push(Step::Write(bytes.as_ref().to_vec()));
        self
    }

    pub fn sleep(mut self, d: Duration) -> Plan {
        self.steps.push(Step::Sleep(d));
        self
    }

    pub fn sleep_ms(self, ms: u64) -> Plan {
        self.sleep(Duration::from_millis(ms))
    }

    pub fn close(mut self) -> Plan {
        self.steps.push(Step::Close);
        self
    }

    pub fn keep_alive(mut self) -> Plan {
        self.keep_alive = true;
        self
    }

    /// A complete response with `Content-Length`.
    pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Plan {
        Plan::new().write(http_response(status, headers, body))
    }

    /// 200 `text/html; charset=utf-8` with the body.
    pub fn html(body: &str) -> Plan {
        Plan::response(
            200,
            &[("Content-Type", "text/html; charset=utf-8")],
            body.as_bytes(),
        )
    }

    /// A complete chunked response, all at once.
    pub fn chunked(status: u16, headers: &[(&str, &str)], chunks: &[&[u8]]) -> Plan {
        let mut bytes = response_head(status, &with_chunked(headers));
        for c in chunks {
            bytes.extend(chunk(c));
        }
        bytes.extend(last_chunk());
        Plan::new().write(bytes)
    }

    /// A chunked response with `pause` between the chunks.
    pub fn chunked_slow(
        status: u16,
        headers: &[(&str, &str)],
        chunks: &[&[u8]],
        pause: Duration,
    ) -> Plan {
        let mut p = Plan::new().write(response_head(status, &with_chunked(headers)));
        for c in chunks {
            p = p.write(chunk(c)).sleep(pause);
        }
        p.write(last_chunk())
    }

    /// Announces `Content-Length: declared_len` but sends only `body`, then closes.
    pub fn truncated(
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
        declared_len: usize,
    ) -> Plan {
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        let len = declared_len.to_string();
        h.push(("Content-Length", &len));
        Plan::new()
            .write(response_head(status, &h))
            .write(body)
            .sleep_ms(50)
            .close()
    }
}

fn with_chunked<'a>(headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = headers.to_vec();
    if !h
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("Transfer-Encoding"))
    {
        h.push(("Transfer-Encoding", "chunked"));
    }
    h
}

pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Status line and headers (as given, nothing added) and the blank line.
pub fn response_head(status: u16, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// A full response; adds `Content-Length` unless given (or chunked).
pub fn http_response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut h = headers.to_vec();
    let len = body.len().to_string();
    if !h.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("Content-Length") || n.eq_ignore_ascii_case("Transfer-Encoding")
    }) {
        h.push(("Content-Length", &len));
    }
    let mut bytes = response_head(status, &h);
    bytes.extend_from_slice(body);
    bytes
}

/// One chunk of a chunked body.
pub fn chunk(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:x}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v.extend_from_slice(b"\r\n");
    v
}

pub fn last_chunk() -> Vec<u8> {
    b"0\r\n\r\n".to_vec()
}

type Handler = dyn Fn(&UpstreamRequest) -> Plan + Send + Sync + 'static;

/// A scripted HTTP upstream on a free loopback port, one thread per connection.
/// Records every request it received.
pub struct Upstream {
    port: u16,
    requests: Arc<Mutex<Vec<UpstreamRequest>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<thread::JoinHandle<()>>,
}

impl Upstream {
    pub fn start<F>(handler: F) -> Upstream
    where
        F: Fn(&UpstreamRequest) -> Plan + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let accept_thread = {
            let requests = requests.clone();
            let connections = connections.clone();
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("upstream-{port}"))
                .spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = conn else { continue };
                        connections.fetch_add(1, Ordering::SeqCst);
                        let requests = requests.clone();
                        let handler = handler.clone();
                        let _ = thread::Builder::new()
                            .name(format!("upstream-{port}-conn"))
                            .spawn(move || serve_conn(stream, &*handler, &requests));
                    }
                })
                .expect("spawn upstream thread")
        };
        Upstream {
            port,
            requests,
            connections,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// Always answers with the same plan.
    pub fn fixed(plan: Plan) -> Upstream {
        Upstream::start(move |_| plan.clone())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// "127.0.0.1:port"
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// All requests received so far.
    pub fn requests(&self) -> Vec<UpstreamRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Number of requests received.
    pub fn hit_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Number of requests whose target (path with query) equals `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Number of TCP connections accepted.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Forgets the recorded requests.
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&loopback(self.port), Duration::from_secs(1));
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_conn(stream: TcpStream, handler: &Handler, requests: &Mutex<Vec<UpstreamRequest>>) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
        eof: false,
    };
    loop {
        let req = match read_request(&mut conn) {
            Ok(Some(r)) => r,
            _ => return,
        };
        requests.lock().unwrap().push(req.clone());
        let plan = handler(&req);
        for step in &plan.steps {
            match step {
                Step::Write(b) => {
                    if conn.send(b).is_err() {
                        return;
                    }
                }
                Step::Sleep(d) => thread::sleep(*d),
                Step::Close => return,
            }
        }
        if !plan.keep_alive {
            let _ = conn.stream.shutdown(Shutdown::Write);
            // Let the peer read everything before the socket goes away.
            let _ = conn.stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = conn.read_to_end();
            return;
        }
    }
}

/// Reads one request; Ok(None) on a clean EOF before it.
fn read_request(conn: &mut Conn) -> io::Result<Option<UpstreamRequest>> {
    let line = loop {
        match conn.read_line()? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break String::from_utf8_lossy(&l).into_owned(),
        }
    };
    let mut parts = line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let version = parts.next().unwrap_or("").to_string();
    let headers = conn.read_fields()?;
    let mut req = UpstreamRequest {
        method,
        path,
        version,
        headers,
        body: Vec::new(),
    };
    let chunked = req
        .header("Transfer-Encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut r = Response {
            headers: vec![("Transfer-Encoding".into(), "chunked".into())],
            status: 200,
            ..Response::default()
        };
        conn.read_body("POST", &mut r)?;
        req.body = r.body;
    } else if let Some(len) = req.header("Content-Length").and_then(|l| l.parse().ok()) {
        req.body = conn.read_bytes(len)?;
    }
    Ok(Some(req))
}

// ---------------------------------------------------------------------------
// The generated tree (the mapping rule of the README)
// ---------------------------------------------------------------------------

/// The page file of `uri`, relative to its root: `index.html` in the
/// directory of a URI ending in `/`, else the URI with `.html` appended;
/// key arguments (given in canonical form) after a `?`.
pub fn page_rel(uri: &str) -> String {
    let (path, args) = match uri.split_once('?') {
        Some((path, args)) => (path, format!("?{args}")),
        None => (uri, String::new()),
    };
    let rel = path.trim_start_matches('/');
    if path.ends_with('/') {
        format!("{rel}index.html{args}")
    } else {
        format!("{rel}.html{args}")
    }
}

/// Temporary files left under a root.
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    list_files(&root.join(".static_gen/tmp"))
}

/// Asserts that no temporary file is left under `root`, once those being
/// written now are done: a compressor thread writes a page's variants to a
/// temporary file for a while after its store; one left behind never goes.
pub fn assert_no_temp_files(root: &Path) {
    assert!(
        wait_until(TIMEOUT, || temp_files(root).is_empty()),
        "temporary files left: {:?}",
        temp_files(root)
    );
}

/// Splits a page file into its header and identity body, as the page was
/// installed: once its compressed variants are made (in the background),
/// the file holds them after the identity body and its header says where
/// and how (`static_gen 2`, `identity:`, `variant:` and `levels:` lines);
/// those are left out.
pub fn split_page(file: &[u8]) -> (String, Vec<u8>) {
    let end = file
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("page header")
        + 2;
    let header = String::from_utf8_lossy(&file[..end]).into_owned();
    let identity_len = header
        .lines()
        .find_map(|l| l.strip_prefix("identity: "))
        .map(|n| n.parse::<usize>().expect("identity length"));
    let body = &file[end..];
    let body = identity_len.map_or(body, |len| &body[..len]);
    let installed: String = header
        .replacen("static_gen 2\n", "static_gen 1\n", 1)
        .lines()
        .filter(|l| {
            !l.starts_with("identity: ")
                && !l.starts_with("variant: ")
                && !l.starts_with("levels: ")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    (installed, body.to_vec())
}

/// Waits for a page file (installed just after the client got the last
/// byte) and returns its body.
pub fn stored_body(path: &Path) -> Vec<u8> {
    assert!(
        wait_until(TIMEOUT, || path.exists()),
        "{} was not stored",
        path.display()
    );
    split_page(&fs::read(path).unwrap()).1
}

/// Asserts `path` is still absent a little after the response, and no
/// temporary file remains under `root`.
pub fn assert_not_stored(path: &Path, root: &Path) {
    thread::sleep(Duration::from_millis(100));
    assert!(!path.exists(), "{} was stored", path.display());
    assert!(
        wait_until(TIMEOUT, || temp_files(root).is_empty()),
        "left: {:?}",
        temp_files(root)
    );
}

impl NginxHandle {
    /// The page file of `uri` under `<tmp>/gen`, the root most tests use.
    pub fn page(&self, uri: &str) -> PathBuf {
        self.path(format!("gen/{}", page_rel(uri)))
    }
}

/// An upstream whose every response carries a number that only grows (which
/// render it is, from 1; the counter is returned): `<path> version=<n>`.
/// Paths under `/slow/` take `slow` before answering.
pub fn versioned_upstream(slow: Duration) -> (Upstream, Arc<AtomicUsize>) {
    let counter = Arc::new(AtomicUsize::new(1));
    let rendered = counter.clone();
    let up = Upstream::start(move |req| {
        let n = rendered.fetch_add(1, Ordering::SeqCst);
        let body = format!("{} version={n:08}", req.path);
        let plan = Plan::new();
        let plan = if req.path.starts_with("/slow/") && !slow.is_zero() {
            plan.sleep(slow)
        } else {
            plan
        };
        plan.write(http_response(
            200,
            &[("Content-Type", "text/html")],
            body.as_bytes(),
        ))
    });
    (up, counter)
}

/// The render number of a `versioned_upstream` response.
pub fn version(r: &Response) -> usize {
    let text = r.text();
    let v = text.rsplit("version=").next().and_then(|v| v.parse().ok());
    v.unwrap_or_else(|| panic!("no version in {r}"))
}
