//! Runs the example configurations of `nginx-conf/` (and the README's
//! Example) as they are, changed only by string replacement (the module
//! path, the `listen` port, and the paths a test names), so the text users
//! copy cannot rot.
//!
//! Used by `t/nginx_conf.rs`, `t/e2e_django.rs`, `t/browser.rs` and
//! `t/readme_example.rs`, next to `mod common;`. [`django`] runs the Django
//! blog of `t/django/` behind `django-gunicorn.conf`.
#![allow(dead_code)]

pub mod django;

use std::fmt;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// The `load_module` line every example starts with (the Debian layout:
/// `modules/` under nginx's prefix is `/usr/lib/nginx/modules`).
pub const LOAD_MODULE: &str = "load_module modules/ngx_http_static_gen_module.so;";

/// Directives whose first argument is a file system path: after the
/// replacements, each must point into the test's directory.
const PATH_DIRECTIVES: &[&str] = &[
    "root",
    "alias",
    "static_gen_root",
    "access_log",
    "error_log",
    "pid",
    "fastcgi_pass",
    "server",
    "include",
    "ssl_certificate",
    "ssl_certificate_key",
];

/// The repository's `nginx-conf/` directory.
pub fn conf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx-conf")
}

/// Every file of `nginx-conf/`: a file added there must get its
/// replacements in [`example`] (`t/nginx_conf.rs` checks the list).
pub const EXAMPLES: &[&str] = &[
    "django-gunicorn.conf",
    "minimal.conf",
    "several-servers.conf",
    "wordpress-php-fpm.conf",
];

/// An example with its paths pointing into its temp dir (`{tmp}`) and its
/// upstream at `upstream` (`host:port`, or `unix:` and a socket path).
pub fn example(name: &str, upstream: &str) -> ExampleConf {
    let conf = ExampleConf::load(name);
    match name {
        // the test client's `Host: localhost` is one of the site's names
        "minimal.conf" => conf
            .replace(
                "server_name example.org",
                "server_name localhost example.org",
            )
            .replace("127.0.0.1:8000", upstream)
            .replace("/var/cache/nginx/static-gen", "{tmp}/generated"),
        "django-gunicorn.conf" => conf
            .replace(
                "server_name blog.example.org",
                "server_name localhost blog.example.org",
            )
            .replace("unix:/run/gunicorn/blog.sock", upstream)
            .replace("/srv/blog/", "{tmp}/")
            .replace("/var/log/nginx/", "{tmp}/"),
        "wordpress-php-fpm.conf" => conf
            .replace(
                "server_name www.example.org",
                "server_name localhost www.example.org",
            )
            .replace("unix:/run/php/php8.2-fpm.sock", upstream)
            .replace("/var/www/wordpress", "{tmp}/wordpress")
            .replace("/var/cache/nginx/wordpress", "{tmp}/generated")
            .replace("/var/log/nginx/", "{tmp}/"),
        "several-servers.conf" => several_servers(upstream, free_port(), free_port()),
        other => panic!("nginx-conf/{other}: add its replacements to t/example_conf/mod.rs"),
    }
}

/// `nginx-conf/several-servers.conf` for one front-end server of a test:
/// its upstream at `upstream`, its peer listener on `127.0.0.1:own_peer`,
/// relaying to the other server's peer listener on `127.0.0.1:other_peer`.
pub fn several_servers(upstream: &str, own_peer: u16, other_peer: u16) -> ExampleConf {
    ExampleConf::load("several-servers.conf")
        .replace(
            "server_name blog.example.org",
            "server_name localhost blog.example.org",
        )
        .replace("server 10.0.0.10:8000", format!("server {upstream}"))
        .replace(
            "listen 10.0.0.1:8081;",
            format!("listen 127.0.0.1:{own_peer};"),
        )
        .replace(
            "server 10.0.0.2:8081;",
            format!("server 127.0.0.1:{other_peer};"),
        )
        .replace("/var/cache/nginx/blog", "{tmp}/generated")
        .replace("/var/log/nginx/", "{tmp}/")
}

/// One file of `nginx-conf/` (or another example text), with its own
/// temporary directory (`{tmp}`).
pub struct ExampleConf {
    name: String,
    /// Where the text comes from, for messages: `nginx-conf/<name>`.
    origin: String,
    text: String,
    dir: TempDir,
    /// Certificate and key for a second, HTTPS (HTTP/2) `listen` ([`ExampleConf::https`]).
    https: Option<(PathBuf, PathBuf)>,
    /// Directives added at the top of the `http` block.
    http_extra: String,
}

impl ExampleConf {
    /// Reads `nginx-conf/<name>`.
    pub fn load(name: &str) -> ExampleConf {
        let path = conf_dir().join(name);
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ExampleConf::from_text(name, &format!("nginx-conf/{name}"), text)
    }

    /// An example that is not a file of `nginx-conf/` (the README's):
    /// `name` labels its directory, `origin` says where it comes from.
    pub fn from_text(name: &str, origin: &str, text: String) -> ExampleConf {
        assert!(
            text.lines().any(|l| l.trim() == LOAD_MODULE),
            "{origin}: expected the line `{LOAD_MODULE}`"
        );
        ExampleConf {
            name: name.to_string(),
            origin: origin.to_string(),
            text,
            dir: TempDir::new(&format!("conf-{name}")),
            https: None,
            http_extra: String::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file as read, with the replacements made so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The directory `{tmp}` stands for.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside [`ExampleConf::dir`].
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.dir.join(rel)
    }

    /// Writes a file inside [`ExampleConf::dir`] (parents created).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        self.dir.write(rel, contents)
    }

    /// Replaces every occurrence of `from` by `to`, where `{tmp}` in `to`
    /// stands for the directory. Panics when `from` does not occur: the file
    /// changed and the test must follow.
    pub fn replace(mut self, from: &str, to: impl fmt::Display) -> Self {
        assert!(
            self.text.contains(from),
            "{}: `{from}` not found; update the test's replacements",
            self.origin
        );
        let to = to.to_string().replace("{tmp}", &self.tmp_str());
        self.text = self.text.replace(from, &to);
        self
    }

    /// Adds a second `listen`, on another free port ([`ConfRun::https_port`]),
    /// with TLS (this certificate and key, files inside the directory) and
    /// HTTP/2, beside the plain HTTP one `listen 80;` becomes.
    pub fn https(mut self, certificate: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.https = Some((
            certificate.as_ref().to_path_buf(),
            key.as_ref().to_path_buf(),
        ));
        self
    }

    /// Adds directives (`log_format`, say) at the top of the `http` block.
    pub fn http_directives(mut self, text: &str) -> Self {
        self.http_extra.push_str(text);
        self.http_extra.push('\n');
        self
    }

    fn tmp_str(&self) -> String {
        self.dir
            .path()
            .to_str()
            .expect("utf-8 temp path")
            .to_string()
    }

    /// The configuration nginx runs: the module's real path, `listen
    /// 127.0.0.1:<port>` (and the HTTPS `listen` on `https_port` when
    /// [`ExampleConf::https`] was called), nginx's temporary directories in
    /// `{tmp}`. Checks that every path left in it points into `{tmp}` (or is
    /// one of the relative `include`s copied there).
    pub fn render(&self, port: u16, https_port: Option<u16>) -> String {
        let tmp = self.tmp_str();
        let module = checked_module_path();
        let mut conf = self
            .text
            .replace(LOAD_MODULE, &format!("load_module {};", module.display()));
        assert!(
            conf.contains("listen 80;"),
            "{}: expected `listen 80;`",
            self.origin
        );
        let mut listen = format!("listen 127.0.0.1:{port};");
        if let Some((certificate, key)) = &self.https {
            let https_port = https_port.expect("a port for the HTTPS listen");
            // `http2 on;` is nginx 1.25.1's; older ones (the distribution's
            // 1.22) take `http2` as a parameter of `listen`
            let http2 = if nginx_at_least(1, 25, 1) {
                format!("listen 127.0.0.1:{https_port} ssl;\n        http2 on;")
            } else {
                format!("listen 127.0.0.1:{https_port} ssl http2;")
            };
            listen = format!(
                "{listen}\n        {http2}\n        \
                 ssl_certificate {};\n        ssl_certificate_key {};",
                certificate.display(),
                key.display()
            );
        }
        conf = conf.replace("listen 80;", &listen);
        assert!(
            conf.contains("\nhttp {\n"),
            "{}: expected a line `http {{`",
            self.origin
        );
        conf = conf.replacen(
            "\nhttp {\n",
            &format!(
                "\nhttp {{\n\
                 \x20   access_log {tmp}/access.log;\n\
                 \x20   client_body_temp_path {tmp}/client_body_temp;\n\
                 \x20   proxy_temp_path {tmp}/proxy_temp;\n\
                 \x20   fastcgi_temp_path {tmp}/fastcgi_temp;\n\
                 \x20   uwsgi_temp_path {tmp}/uwsgi_temp;\n\
                 \x20   scgi_temp_path {tmp}/scgi_temp;\n{}",
                self.http_extra
            ),
            1,
        );
        for line in conf.lines() {
            let line = line.trim();
            let mut words = line.split_whitespace();
            let (Some(directive), Some(arg)) = (words.next(), words.next()) else {
                continue;
            };
            if line.starts_with('#') || !PATH_DIRECTIVES.contains(&directive) {
                continue;
            }
            let arg = arg.trim_end_matches(';');
            let path = arg.strip_prefix("unix:").unwrap_or(arg);
            let absolute = path.starts_with('/');
            let inside = path.starts_with(&tmp);
            let relative_include = directive == "include" && !absolute;
            let address =
                matches!(directive, "server" | "fastcgi_pass") && !arg.starts_with("unix:");
            assert!(
                inside || relative_include || address || arg == "off",
                "{}: `{line}` points outside the test directory; add a replacement",
                self.origin
            );
        }
        conf
    }

    /// Copies the files relative `include`s name (`mime.types`,
    /// `fastcgi_params`) next to the configuration: from `/etc/nginx` when
    /// there (Debian's nginx-common), else small stand-ins.
    fn copy_includes(&self) {
        for line in self.text.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("include") {
                continue;
            }
            let Some(name) = words.next().map(|w| w.trim_end_matches(';')) else {
                continue;
            };
            if name.starts_with('/') || self.path(name).exists() {
                continue;
            }
            let system = Path::new("/etc/nginx").join(name);
            let contents = fs::read(&system).unwrap_or_else(|_| match name {
                "mime.types" => {
                    b"types {\n text/html html;\n text/css css;\n application/javascript js;\n}\n"
                        .to_vec()
                }
                "fastcgi_params" => FASTCGI_PARAMS.as_bytes().to_vec(),
                other => panic!("{}: no stand-in for `include {other}`", self.origin),
            });
            self.write(name, contents);
        }
    }

    /// nginx with the file, its own pid file and error log, and `extra`
    /// main-context directives (`-g` takes them all at once).
    /// Starts nginx in the foreground, in its own process group (stopped
    /// with it), with stderr kept for the failure message.
    fn spawn_nginx(&self) -> Child {
        self.command("daemon off;")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx_binary().display()))
    }

    fn command(&self, extra: &str) -> Command {
        let tmp = self.tmp_str();
        let mut globals = format!("pid {tmp}/nginx.pid; error_log {tmp}/error.log info; {extra}");
        if is_root() {
            // workers as root can write the generated tree in a 0755 temp dir
            globals.push_str(" user root;");
        }
        let mut cmd = Command::new(nginx_binary());
        cmd.arg("-p")
            .arg(format!("{tmp}/"))
            .arg("-c")
            .arg(self.path("nginx.conf"))
            .arg("-e")
            .arg(self.path("error.log"))
            .arg("-g")
            .arg(globals);
        cmd
    }

    fn prepare(&self, port: u16, https_port: Option<u16>) -> String {
        let conf = self.render(port, https_port);
        self.copy_includes();
        self.write("nginx.conf", &conf);
        conf
    }

    /// `nginx -t` on the file: (success, what nginx said).
    pub fn config_test(&self) -> (bool, String) {
        let conf = self.prepare(free_port(), self.https.as_ref().map(|_| free_port()));
        let out = self
            .command("")
            .arg("-t")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", nginx_binary().display()));
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            text.push_str(&format!("\n--- nginx.conf ---\n{conf}"));
        }
        (out.status.success(), text)
    }

    /// Starts nginx on the file (in the foreground, `daemon off`) and waits
    /// until it accepts connections; retries with another port if the one
    /// picked was taken meanwhile.
    pub fn start(self) -> ConfRun {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let https_port = self.https.as_ref().map(|_| free_port());
            let _ = fs::remove_file(self.path("error.log"));
            let _ = fs::remove_file(self.path("nginx.pid"));
            let conf = self.prepare(port, https_port);
            let mut child = self.spawn_nginx();
            match wait_nginx(&mut child, &self.path("nginx.pid"), port) {
                Ok(()) => {
                    return ConfRun {
                        child: Some(child),
                        port,
                        https_port,
                        conf,
                        example: self,
                    }
                }
                Err(e) => {
                    let stderr = stop_nginx(&mut child);
                    let log = fs::read_to_string(self.path("error.log")).unwrap_or_default();
                    if attempt < 3 && log.contains("Address already in use") {
                        eprintln!("nginx: port {port} was taken meanwhile, retrying");
                        continue;
                    }
                    panic!(
                        "nginx ({}) did not start {}: {e}\n--- stderr ---\n{stderr}\n\
                         --- error.log ---\n{log}\n--- nginx.conf ---\n{conf}",
                        nginx_binary().display(),
                        self.origin,
                    );
                }
            }
        }
    }
}

/// Waits for nginx's pid file and for `port` to accept connections.
fn wait_nginx(child: &mut Child, pid_file: &Path, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nginx exited with {status}"));
        }
        let pid_written =
            fs::read_to_string(pid_file).is_ok_and(|s| s.trim() == child.id().to_string());
        if pid_written && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("port {port} does not accept connections"));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Stops nginx (SIGQUIT: graceful) and returns what it wrote to stderr.
fn stop_nginx(child: &mut Child) -> String {
    stop_process(child, libc::SIGQUIT);
    let mut s = String::new();
    if let Some(mut err) = child.stderr.take() {
        use std::io::Read;
        let _ = err.read_to_string(&mut s);
    }
    s
}

/// Debian's `fastcgi_params`, for machines without `/etc/nginx`.
const FASTCGI_PARAMS: &str = "\
fastcgi_param QUERY_STRING $query_string;
fastcgi_param REQUEST_METHOD $request_method;
fastcgi_param CONTENT_TYPE $content_type;
fastcgi_param CONTENT_LENGTH $content_length;
fastcgi_param SCRIPT_NAME $fastcgi_script_name;
fastcgi_param REQUEST_URI $request_uri;
fastcgi_param DOCUMENT_URI $document_uri;
fastcgi_param DOCUMENT_ROOT $document_root;
fastcgi_param SERVER_PROTOCOL $server_protocol;
fastcgi_param GATEWAY_INTERFACE CGI/1.1;
fastcgi_param REMOTE_ADDR $remote_addr;
fastcgi_param SERVER_ADDR $server_addr;
fastcgi_param SERVER_PORT $server_port;
fastcgi_param SERVER_NAME $server_name;
fastcgi_param REDIRECT_STATUS 200;
";

/// nginx running an example file. Dropping it stops nginx (SIGQUIT, then
/// SIGKILL of the whole process group) and removes its directory.
pub struct ConfRun {
    child: Option<Child>,
    port: u16,
    https_port: Option<u16>,
    conf: String,
    example: ExampleConf,
}

impl ConfRun {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The HTTPS port, when the configuration has one ([`ExampleConf::https`]).
    pub fn https_port(&self) -> Option<u16> {
        self.https_port
    }

    pub fn dir(&self) -> &Path {
        self.example.dir()
    }

    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.example.path(rel)
    }

    /// Writes a file inside the directory (parents created).
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        self.example.write(rel, contents)
    }

    /// The configuration as nginx runs it.
    pub fn conf(&self) -> &str {
        &self.conf
    }

    pub fn error_log(&self) -> String {
        fs::read_to_string(self.path("error.log")).unwrap_or_default()
    }

    /// Panics if the error log has `[alert]`, `[crit]` or `[emerg]` lines.
    pub fn assert_no_alerts(&self) {
        let bad: Vec<String> = self
            .error_log()
            .lines()
            .filter(|l| {
                l.contains(" [alert] ") || l.contains(" [crit] ") || l.contains(" [emerg] ")
            })
            .map(str::to_string)
            .collect();
        assert!(bad.is_empty(), "error log has alerts:\n{}", bad.join("\n"));
    }

    /// Stops nginx now; returns what it wrote to stderr.
    pub fn stop(&mut self) -> String {
        match self.child.take() {
            Some(mut child) => stop_nginx(&mut child),
            None => String::new(),
        }
    }

    /// Whether nginx runs (started, not stopped).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts nginx again after [`ConfRun::stop`], on the same port with the
    /// same configuration and directory (generated tree, logs): a server
    /// that was down and comes back. Panics if it does not start.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nginx is running already");
        let _ = fs::remove_file(self.path("nginx.pid"));
        let mut child = self.example.spawn_nginx();
        if let Err(e) = wait_nginx(&mut child, &self.path("nginx.pid"), self.port) {
            let stderr = stop_nginx(&mut child);
            panic!(
                "nginx ({}) did not start again: {e}\n--- stderr ---\n{stderr}\n\
                 --- error.log ---\n{}",
                self.example.origin,
                self.error_log()
            );
        }
        self.child = Some(child);
    }
}

impl Drop for ConfRun {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let log = self.error_log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!(
                "--- nginx error.log ({}) ---\n{}",
                self.example.origin,
                tail.join("\n")
            );
        }
    }
}
