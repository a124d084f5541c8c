//! php-fpm for the FastCGI tests: a master with one small pool, its
//! configuration, pid file and logs in a directory the test owns.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::{free_port, is_root, Service, TIMEOUT};

/// php-fpm's binary, or `None` after saying the test is skipped.
pub fn php_fpm_or_skip() -> Option<PathBuf> {
    let binary = php_fpm_binary();
    if binary.is_none() {
        eprintln!("skipped: php-fpm not installed (ci/deps installs the php-fpm package)");
    }
    binary
}

/// php-fpm's binary: `php-fpm` on the PATH, else the highest
/// `/usr/sbin/php-fpm<version>`.
fn php_fpm_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(p) = std::env::split_paths(&path)
        .map(|d| d.join("php-fpm"))
        .find(|p| p.is_file())
    {
        return Some(p);
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
                && p.is_file()
        })
        .collect();
    found.sort();
    found.pop()
}

/// Where the pool listens.
pub enum PhpFpmListen {
    /// A free loopback port (another one if it was taken meanwhile).
    LoopbackPort,
    /// A Unix socket, mode 0666 so that nginx's workers can connect whatever
    /// their user.
    Socket(PathBuf),
}

/// A running php-fpm. Dropping it stops the master and its pool (see
/// [`Service`]) and, if the test panicked, prints `php-fpm.log`, where
/// php-fpm writes its errors. The directory must outlive it.
pub struct PhpFpm {
    service: Service,
    dir: PathBuf,
    port: Option<u16>,
}

impl PhpFpm {
    /// Starts `binary` (from [`php_fpm_or_skip`]) with its files in `dir`
    /// and waits until the pool accepts connections; panics with
    /// php-fpm's log if it does not start.
    pub fn start(binary: &Path, dir: &Path, listen: PhpFpmListen) -> PhpFpm {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // a retry must not find the previous attempt's errors
            let _ = fs::remove_file(dir.join("php-fpm.log"));
            let (address, port) = match &listen {
                PhpFpmListen::LoopbackPort => {
                    let port = free_port();
                    (format!("127.0.0.1:{port}"), Some(port))
                }
                PhpFpmListen::Socket(path) => (path.display().to_string(), None),
            };
            let listen_mode = if port.is_none() {
                "listen.mode = 0666\n"
            } else {
                ""
            };
            let conf = format!(
                "[global]\n\
                 pid = {d}/php-fpm.pid\n\
                 error_log = {d}/php-fpm.log\n\
                 daemonize = no\n\
                 \n\
                 [app]\n\
                 listen = {address}\n\
                 {listen_mode}\
                 pm = static\n\
                 pm.max_children = 2\n\
                 clear_env = yes\n\
                 catch_workers_output = yes\n\
                 security.limit_extensions = .php\n",
                d = dir.display()
            );
            let conf_path = dir.join("php-fpm.conf");
            fs::write(&conf_path, conf)
                .unwrap_or_else(|e| panic!("write {}: {e}", conf_path.display()));
            let mut cmd = Command::new(binary);
            // -n: no php.ini, so the machine's settings do not matter;
            // -R: the tests run as root, and so does the pool.
            cmd.arg("-n").arg("-y").arg(&conf_path).arg("-p").arg(dir);
            if is_root() {
                cmd.arg("-R");
            }
            let service = Service::spawn("php-fpm", cmd, dir.join("php-fpm.out"));
            let mut fpm = PhpFpm {
                service,
                dir: dir.to_path_buf(),
                port,
            };
            let ready = fpm.service.try_wait_ready(TIMEOUT, || match port {
                Some(port) => TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok(),
                None => UnixStream::connect(&address).is_ok(),
            });
            match ready {
                Ok(()) => return fpm,
                Err(e) => {
                    let log = fpm.log();
                    // errors before php-fpm opens its log go to stderr
                    let out = fpm.service.log();
                    drop(fpm);
                    if attempt < 3 && log.contains("Address already in use") {
                        continue;
                    }
                    panic!(
                        "php-fpm ({}) did not start: {e}\n--- php-fpm.log ---\n{log}\n\
                         --- php-fpm.out ---\n{out}",
                        binary.display()
                    );
                }
            }
        }
    }

    /// The pool's port ([`PhpFpmListen::LoopbackPort`] only).
    pub fn port(&self) -> u16 {
        self.port.expect("php-fpm listens on a socket, not a port")
    }

    /// `php-fpm.log`: the master's and the workers' messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("php-fpm.log")).unwrap_or_default()
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        // the service prints its output; php-fpm's own log is here
        if thread::panicking() {
            eprintln!("--- php-fpm.log ---\n{}", self.log());
        }
    }
}
