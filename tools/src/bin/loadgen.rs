//! The load of case 7 of `ci/bench` (a purge under load): N clients, each a
//! thread with its own kept-alive connection, ask for pages chosen by a
//! Zipf law for D seconds; one whole-tree purge is sent at a given second.
//! Every response is recorded (when it was sent and answered, its status,
//! its `X-Static-Gen` header), and the statistics are written as one JSON
//! object: responses per time slice, latency percentiles before and after
//! the purge, which pages were regenerated (a `MISS`) and when, and how long
//! requests that waited for a regenerated page took to be answered after it.
//!
//! ```text
//! loadgen --url http://127.0.0.1:PORT [--prefix /stampede/ --pages 200 | --path /x/]
//!         [--clients 64] [--seconds 15] [--zipf 1.0] [--seed 1] [--slice-ms 1000]
//!         [--purge-at 5 --purge-url http://127.0.0.1:PORT/_static_gen/purge]
//!         [--warm] [--out FILE]
//! loadgen --url http://127.0.0.1:PORT --urls FILE [--clients 16] [--seconds 20] [--out FILE]
//! ```
//!
//! `--warm` first asks for every page once (8 at a time), then again until
//! each answers `X-Static-Gen: HIT`, and fails if one does not. The pages are
//! `PREFIX<i>/` for i in 0..PAGES, page i being the (i+1)-th most popular
//! (weight 1/(i+1)^s), or the single `--path`. `--seconds 0` only warms.
//! `--urls FILE` replays a mix of requests instead (case 10, a day of real
//! visitors): one a line, `PATH` or `PATH<TAB>COOKIE` (sent as `Cookie:`);
//! the clients walk the list in order, each from its own share of it
//! (client i starts at line i * lines / clients), wrapping at its end.
//! The JSON goes to `--out` (default: stdout); a summary goes to stderr.
//! Standard library only; HTTP/1.1 with `Content-Length` or chunked bodies.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Barrier, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    url: Target,
    paths: Vec<String>,
    /// The `Cookie` of each path's request (`--urls`).
    cookies: Vec<Option<String>>,
    /// `--urls`: walk the paths in order rather than by popularity.
    replay: bool,
    clients: usize,
    seconds: f64,
    zipf: f64,
    seed: u64,
    slice_ms: u64,
    purge_at: Option<f64>,
    purge_url: Option<Target>,
    warm: bool,
    out: Option<String>,
}

/// Where requests go: `http://host:port` and, for the purge, its path.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    /// `host:port`, also the `Host` header.
    authority: String,
    /// The path and query (`/` when none).
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let authority = if authority.contains(':') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(Target {
            authority,
            path: path.to_string(),
        })
    }
}

const USAGE: &str = "usage: loadgen --url http://HOST:PORT [--prefix P --pages N | --path P] \
[--clients N] [--seconds S] [--zipf S] [--seed N] [--slice-ms MS] \
[--purge-at S --purge-url URL] [--warm] [--out FILE] | --urls FILE ...";

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut map: HashMap<&str, &str> = HashMap::new();
    let mut warm = false;
    let mut i = 0;
    while i < args.len() {
        let key = args[i].as_str();
        if key == "--warm" {
            warm = true;
            i += 1;
            continue;
        }
        let known = [
            "--url",
            "--prefix",
            "--pages",
            "--path",
            "--urls",
            "--clients",
            "--seconds",
            "--zipf",
            "--seed",
            "--slice-ms",
            "--purge-at",
            "--purge-url",
            "--out",
        ];
        if !known.contains(&key) {
            return Err(format!("unknown option {key}"));
        }
        let value = args
            .get(i + 1)
            .ok_or_else(|| format!("{key} needs a value"))?;
        if map.insert(key, value).is_some() {
            return Err(format!("{key} given twice"));
        }
        i += 2;
    }
    fn num<T: std::str::FromStr>(
        map: &HashMap<&str, &str>,
        key: &str,
        default: T,
    ) -> Result<T, String> {
        match map.get(key) {
            Some(v) => v.parse().map_err(|_| format!("{key}: not a number: {v}")),
            None => Ok(default),
        }
    }
    let url = Target::parse(map.get("--url").ok_or("--url is required")?)?;
    let (paths, cookies) = match (map.get("--urls"), map.get("--path"), map.get("--prefix")) {
        (Some(file), None, None) => read_urls(file)?,
        (Some(_), _, _) | (None, Some(_), Some(_)) => {
            return Err("--urls, --path and --prefix exclude each other".into())
        }
        (None, Some(path), None) => (vec![path.to_string()], vec![None]),
        (None, None, prefix) => {
            let prefix = prefix.copied().unwrap_or("/stampede/");
            let pages: usize = num(&map, "--pages", 200)?;
            let paths: Vec<String> = (0..pages).map(|i| format!("{prefix}{i}/")).collect();
            let cookies = vec![None; paths.len()];
            (paths, cookies)
        }
    };
    if paths.is_empty() {
        return Err("no pages".into());
    }
    let purge_at = map
        .get("--purge-at")
        .map(|v| {
            v.parse::<f64>()
                .map_err(|_| format!("--purge-at: not a number: {v}"))
        })
        .transpose()?;
    let purge_url = map
        .get("--purge-url")
        .map(|u| Target::parse(u))
        .transpose()?;
    if purge_at.is_some() != purge_url.is_some() {
        return Err("--purge-at and --purge-url go together".into());
    }
    let options = Options {
        url,
        paths,
        cookies,
        replay: map.contains_key("--urls"),
        clients: num(&map, "--clients", 64)?,
        seconds: num(&map, "--seconds", 15.0)?,
        zipf: num(&map, "--zipf", 1.0)?,
        seed: num(&map, "--seed", 1)?,
        slice_ms: num(&map, "--slice-ms", 1000)?,
        purge_at,
        purge_url,
        warm,
        out: map.get("--out").map(|s| s.to_string()),
    };
    if options.clients == 0 || options.slice_ms == 0 || options.seconds < 0.0 {
        return Err("--clients and --slice-ms must be positive, --seconds not negative".into());
    }
    Ok(options)
}

/// The requests of `--urls FILE`: their paths and cookies.
fn read_urls(file: &str) -> Result<(Vec<String>, Vec<Option<String>>), String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    Ok(parse_urls(&text))
}

fn parse_urls(text: &str) -> (Vec<String>, Vec<Option<String>>) {
    text.lines()
        .filter(|line| !line.is_empty())
        .map(|line| match line.split_once('\t') {
            Some((path, cookie)) => (path.to_string(), Some(cookie.to_string())),
            None => (line.to_string(), None),
        })
        .unzip()
}

// ---------------------------------------------------------------------------
// Pages by popularity
// ---------------------------------------------------------------------------

/// A small fast generator (xorshift64*), one per client.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: different clients' seeds spread out
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Page i has weight 1 / (i + 1)^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------

/// What the module said it did (`X-Static-Gen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
enum Gen {
    None,
    Hit,
    Miss,
    Expired,
    Stale,
    Bypass,
    Other,
}

impl Gen {
    const ALL: [Gen; 7] = [
        Gen::Hit,
        Gen::Miss,
        Gen::Expired,
        Gen::Stale,
        Gen::Bypass,
        Gen::Other,
        Gen::None,
    ];

    fn parse(value: &[u8]) -> Gen {
        match value {
            b"HIT" => Gen::Hit,
            b"MISS" => Gen::Miss,
            b"EXPIRED" => Gen::Expired,
            b"STALE" => Gen::Stale,
            b"BYPASS" => Gen::Bypass,
            _ => Gen::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Gen::None => "none",
            Gen::Hit => "HIT",
            Gen::Miss => "MISS",
            Gen::Expired => "EXPIRED",
            Gen::Stale => "STALE",
            Gen::Bypass => "BYPASS",
            Gen::Other => "other",
        }
    }

    /// The request went upstream, and its response may regenerate the page.
    fn upstream(self) -> bool {
        matches!(self, Gen::Miss | Gen::Expired)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Response {
    status: u16,
    gen: Gen,
    /// Body bytes (decoded, for a chunked body).
    body: usize,
    /// The server closes the connection after it.
    close: bool,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// A kept-alive connection (or any byte stream, for the tests) and what
/// was read from it beyond the last response.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
    len: usize,
}

/// The longest a response may take (a request waiting for a page lock
/// waits 5 s at most, by default): a hung server fails the run, it does
/// not stall it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// An error in words (a read timeout says so).
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no response within {} s", READ_TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Conn<TcpStream> {
    fn connect(authority: &str) -> io::Result<Conn<TcpStream>> {
        let addr = authority
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid(format!("{authority}: no address")))?;
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Conn::new(stream))
    }
}

impl<S: Read + Write> Conn<S> {
    fn new(stream: S) -> Conn<S> {
        Conn {
            stream,
            buf: vec![0; 64 * 1024],
            len: 0,
        }
    }

    /// Reads more; an error at the end of the stream.
    fn fill(&mut self) -> io::Result<()> {
        if self.len == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.stream.read(&mut self.buf[self.len..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        self.len += n;
        Ok(())
    }

    /// Until at least `n` bytes are buffered.
    fn fill_to(&mut self, n: usize) -> io::Result<()> {
        while self.len < n {
            if n > self.buf.len() {
                self.buf.resize(n.next_power_of_two(), 0);
            }
            self.fill()?;
        }
        Ok(())
    }

    /// The end of the line that starts at `from` (the index after its
    /// `\r\n`).
    fn line_end(&mut self, from: usize) -> io::Result<usize> {
        let mut scanned = from;
        loop {
            if let Some(i) = find(&self.buf[scanned..self.len], b"\r\n") {
                return Ok(scanned + i + 2);
            }
            scanned = self.len.saturating_sub(1).max(from);
            self.fill()?;
        }
    }

    /// Sends `request` and reads its response (whose body is dropped).
    fn request(&mut self, request: &[u8], head: bool) -> io::Result<Response> {
        self.stream.write_all(request)?;
        self.response(head)
    }

    fn response(&mut self, head: bool) -> io::Result<Response> {
        let mut scanned = 0;
        let head_end = loop {
            if let Some(i) = find(&self.buf[scanned..self.len], b"\r\n\r\n") {
                break scanned + i + 4;
            }
            scanned = self.len.saturating_sub(3);
            if self.len > 1 << 20 {
                return Err(invalid("response header too long"));
            }
            self.fill()?;
        };
        let (status, gen, length, chunked, close) = {
            let text = &self.buf[..head_end - 4];
            let mut lines = text
                .split(|&b| b == b'\n')
                .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
            let status_line = lines.next().unwrap_or_default();
            let status = status_line
                .strip_prefix(b"HTTP/1.")
                .and_then(|rest| rest.get(2..5))
                .and_then(|code| std::str::from_utf8(code).ok()?.parse::<u16>().ok())
                .ok_or_else(|| {
                    invalid(format!(
                        "bad status line {:?}",
                        String::from_utf8_lossy(status_line)
                    ))
                })?;
            let mut gen = Gen::None;
            let mut length = None;
            let mut chunked = false;
            let mut close = status_line.starts_with(b"HTTP/1.0");
            for line in lines {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let name = &line[..colon];
                let value = line[colon + 1..].trim_ascii();
                if name.eq_ignore_ascii_case(b"content-length") {
                    let n = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<usize>().ok())
                        .ok_or_else(|| invalid("bad Content-Length"))?;
                    length = Some(n);
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case(b"chunked");
                } else if name.eq_ignore_ascii_case(b"connection") {
                    close = value.eq_ignore_ascii_case(b"close");
                } else if name.eq_ignore_ascii_case(b"x-static-gen") {
                    gen = Gen::parse(value);
                }
            }
            (status, gen, length, chunked, close)
        };
        let no_body = head || status == 204 || status == 304 || (100..200).contains(&status);
        let (body, end) = if no_body {
            (0, head_end)
        } else if chunked {
            self.chunked(head_end)?
        } else if let Some(n) = length {
            self.fill_to(head_end + n)?;
            (n, head_end + n)
        } else {
            // until the server closes
            loop {
                match self.fill() {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            }
            (self.len - head_end, self.len)
        };
        self.buf.copy_within(end..self.len, 0);
        self.len -= end;
        Ok(Response {
            status,
            gen,
            body,
            close: close || (!no_body && !chunked && length.is_none()),
        })
    }

    /// A chunked body from `start`: (its decoded size, where it ends).
    fn chunked(&mut self, start: usize) -> io::Result<(usize, usize)> {
        let mut pos = start;
        let mut body = 0;
        loop {
            let end = self.line_end(pos)?;
            let line = &self.buf[pos..end - 2];
            let digits = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| usize::from_str_radix(d.trim(), 16).ok())
                .ok_or_else(|| invalid("bad chunk size"))?;
            pos = end;
            if size == 0 {
                // trailers, up to an empty line
                loop {
                    let end = self.line_end(pos)?;
                    let empty = end == pos + 2;
                    pos = end;
                    if empty {
                        return Ok((body, pos));
                    }
                }
            }
            self.fill_to(pos + size + 2)?;
            body += size;
            pos += size + 2;
        }
    }
}

fn get_request(target: &Target, path: &str, cookie: Option<&str>) -> Vec<u8> {
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: loadgen\r\n{cookie}\r\n",
        target.authority
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------
// The load
// ---------------------------------------------------------------------------

/// One answered request; times in nanoseconds since the start of the load.
#[derive(Debug, Clone, Copy)]
struct Record {
    start: u64,
    end: u64,
    page: u32,
    status: u16,
    gen: Gen,
    body: u32,
}

#[derive(Default)]
struct ClientResult {
    records: Vec<Record>,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct PurgeResult {
    /// When it was sent and answered, ns since the start of the load.
    sent: u64,
    answered: u64,
    status: u16,
    body: String,
    error: Option<String>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn client(
    id: usize,
    options: &Options,
    requests: &[Vec<u8>],
    zipf: &Zipf,
    ready: &Barrier,
    go: &Barrier,
    start: &OnceLock<Instant>,
) -> ClientResult {
    let mut rng = Rng::new(options.seed.wrapping_mul(1000).wrapping_add(id as u64));
    let mut result = ClientResult {
        records: Vec::with_capacity(64 * 1024),
        ..ClientResult::default()
    };
    let error = |result: &mut ClientResult, e: io::Error| {
        result.errors += 1;
        if result.first_error.is_none() {
            result.first_error = Some(describe(&e));
        }
    };
    let mut conn = match Conn::connect(&options.url.authority) {
        Ok(c) => Some(c),
        Err(e) => {
            error(&mut result, e);
            None
        }
    };
    ready.wait();
    go.wait();
    let t0 = *start.get().expect("set before the start");
    let deadline = Duration::from_secs_f64(options.seconds);
    let mut next = id * requests.len() / options.clients;
    loop {
        let sent = Instant::now();
        if sent.duration_since(t0) >= deadline {
            break;
        }
        let page = if options.replay {
            next = (next + 1) % requests.len();
            next
        } else {
            zipf.sample(&mut rng)
        };
        let c = match &mut conn {
            Some(c) => c,
            None => match Conn::connect(&options.url.authority) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    error(&mut result, e);
                    thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        match c.request(&requests[page], false) {
            Ok(response) => {
                let answered = Instant::now();
                result.records.push(Record {
                    start: nanos(sent.duration_since(t0)),
                    end: nanos(answered.duration_since(t0)),
                    page: page as u32,
                    status: response.status,
                    gen: response.gen,
                    body: u32::try_from(response.body).unwrap_or(u32::MAX),
                });
                if response.close {
                    conn = None;
                }
            }
            Err(e) => {
                error(&mut result, e);
                conn = None;
            }
        }
    }
    result
}

/// Sends the purge at `at` on a connection of its own; keeps its reply.
fn purge(target: &Target, t0: Instant, at: Duration) -> PurgeResult {
    let wake = t0 + at;
    let now = Instant::now();
    if wake > now {
        thread::sleep(wake - now);
    }
    let mut result = PurgeResult::default();
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    let sent = Instant::now();
    result.sent = nanos(sent.duration_since(t0));
    let outcome = (|| -> io::Result<(u16, String)> {
        let mut stream = Conn::connect(&target.authority)?.stream;
        stream.write_all(request.as_bytes())?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply)?;
        let head_end = find(&reply, b"\r\n\r\n").ok_or_else(|| invalid("no header"))? + 4;
        let mut conn = Conn::new(io::Cursor::new(reply.clone()));
        let response = conn.response(false)?;
        let body = String::from_utf8_lossy(&reply[head_end..])
            .trim()
            .to_string();
        Ok((response.status, body))
    })();
    result.answered = nanos(t0.elapsed());
    match outcome {
        Ok((status, body)) => {
            result.status = status;
            result.body = body;
        }
        Err(e) => result.error = Some(describe(&e)),
    }
    result
}

// ---------------------------------------------------------------------------
// Warm-up
// ---------------------------------------------------------------------------

/// Every page once, then again until each answers `HIT`. Returns the
/// statuses of the first pass.
fn warm(options: &Options) -> Result<HashMap<Gen, u64>, String> {
    let threads = options.clients.clamp(1, 8);
    let pages = options.paths.len();
    let first: Vec<Result<Vec<Gen>, String>> = thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || -> Result<Vec<Gen>, String> {
                    let mut conn =
                        Conn::connect(&options.url.authority).map_err(|e| describe(&e))?;
                    let mut gens = Vec::new();
                    for page in (t..pages).step_by(threads) {
                        let path = &options.paths[page];
                        let request = get_request(&options.url, path, None);
                        // the first pass; then until it is a HIT
                        let mut tries = 0;
                        loop {
                            let response = match conn.request(&request, false) {
                                Ok(r) => r,
                                Err(_) => {
                                    conn = Conn::connect(&options.url.authority)
                                        .map_err(|e| describe(&e))?;
                                    conn.request(&request, false)
                                        .map_err(|e| format!("{path}: {}", describe(&e)))?
                                }
                            };
                            if response.status != 200 {
                                return Err(format!("{path}: status {}", response.status));
                            }
                            if tries == 0 {
                                gens.push(response.gen);
                            } else if response.gen == Gen::Hit {
                                break;
                            }
                            if response.close {
                                conn = Conn::connect(&options.url.authority)
                                    .map_err(|e| describe(&e))?;
                            }
                            tries += 1;
                            if tries > 200 {
                                return Err(format!(
                                    "{path}: not a HIT after {tries} requests ({})",
                                    response.gen.name()
                                ));
                            }
                            if tries > 1 {
                                thread::sleep(Duration::from_millis(10));
                            }
                        }
                    }
                    Ok(gens)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a warm-up thread panicked".into()))
            })
            .collect()
    });
    let mut counts = HashMap::new();
    for gens in first {
        for gen in gens? {
            *counts.entry(gen).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

struct Json(String);

impl Json {
    fn num(x: Option<f64>) -> String {
        match x {
            Some(x) if x.is_finite() => format!("{x:.6}")
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string(),
            _ => "null".into(),
        }
    }

    fn string(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    fn field(&mut self, name: &str, value: impl AsRef<str>) {
        if !self.0.ends_with('{') {
            self.0.push_str(", ");
        }
        let _ = write!(self.0, "{}: {}", Json::string(name), value.as_ref());
    }
}

/// Latency percentiles (ms) of `latencies` (ns), as a JSON object.
fn latency_json(mut latencies: Vec<u64>) -> String {
    latencies.sort_unstable();
    let mut j = Json(String::from("{"));
    j.field("requests", latencies.len().to_string());
    for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
        j.field(name, Json::num(percentile(&latencies, q).map(ms)));
    }
    j.field("max", Json::num(latencies.last().copied().map(ms)));
    j.0.push('}');
    j.0
}

fn counts_json(records: &[&Record]) -> String {
    let mut j = Json(String::from("{"));
    for gen in Gen::ALL {
        j.field(
            gen.name(),
            records.iter().filter(|r| r.gen == gen).count().to_string(),
        );
    }
    j.0.push('}');
    j.0
}

/// Responses by HTTP status: `{"200": N, "404": N}`.
fn http_statuses_json(records: &[&Record]) -> String {
    let mut counts: Vec<(u16, u64)> = Vec::new();
    for r in records {
        match counts.iter_mut().find(|(status, _)| *status == r.status) {
            Some((_, n)) => *n += 1,
            None => counts.push((r.status, 1)),
        }
    }
    counts.sort_unstable();
    let mut j = Json(String::from("{"));
    for (status, n) in counts {
        j.field(&status.to_string(), n.to_string());
    }
    j.0.push('}');
    j.0
}

fn list<T: ToString>(xs: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = xs.into_iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// The statistics of a run, as JSON.
fn statistics(
    options: &Options,
    records: &[Record],
    purge: Option<&PurgeResult>,
    errors: u64,
    first_error: Option<&str>,
    t0_unix: f64,
    warm: Option<&HashMap<Gen, u64>>,
) -> String {
    let slice_ns = options.slice_ms * 1_000_000;
    let run_ns = nanos(Duration::from_secs_f64(options.seconds));
    let slices = usize::try_from(run_ns.div_ceil(slice_ns))
        .unwrap_or(0)
        .max(1);
    let slice_of = |t: u64| {
        usize::try_from(t / slice_ns)
            .unwrap_or(usize::MAX)
            .min(slices - 1)
    };
    let mut per_slice: HashMap<Gen, Vec<u64>> =
        Gen::ALL.iter().map(|&g| (g, vec![0; slices])).collect();
    let mut responses = vec![0u64; slices];
    let mut slice_latencies: Vec<Vec<u64>> = vec![Vec::new(); slices];
    for r in records {
        let s = slice_of(r.end);
        responses[s] += 1;
        if let Some(v) = per_slice.get_mut(&r.gen) {
            v[s] += 1;
        }
        slice_latencies[s].push(r.end - r.start);
    }
    let purge_ns = purge.map(|p| p.sent);
    let after = |r: &Record| purge_ns.is_some_and(|p| r.start >= p);
    let all: Vec<&Record> = records.iter().collect();
    let before: Vec<&Record> = records.iter().filter(|r| !after(r)).collect();
    let later: Vec<&Record> = records.iter().filter(|r| after(r)).collect();

    let mut j = Json(String::from("{"));
    j.field(
        "url",
        Json::string(&format!("http://{}", options.url.authority)),
    );
    j.field("pages", options.paths.len().to_string());
    j.field("clients", options.clients.to_string());
    j.field("seconds", Json::num(Some(options.seconds)));
    j.field("zipf", Json::num(Some(options.zipf)));
    j.field("slice_ms", options.slice_ms.to_string());
    j.field("t0_unix", format!("{t0_unix:.6}"));
    if let Some(counts) = warm {
        let mut w = Json(String::from("{"));
        for gen in Gen::ALL {
            w.field(
                gen.name(),
                counts.get(&gen).copied().unwrap_or(0).to_string(),
            );
        }
        w.0.push('}');
        j.field("warm", w.0);
    }
    j.field("requests", records.len().to_string());
    j.field("errors", errors.to_string());
    j.field(
        "first_error",
        first_error.map_or("null".into(), Json::string),
    );
    j.field(
        "non200",
        records
            .iter()
            .filter(|r| r.status != 200)
            .count()
            .to_string(),
    );
    j.field(
        "body_min",
        records
            .iter()
            .map(|r| r.body)
            .min()
            .unwrap_or(0)
            .to_string(),
    );
    j.field(
        "body_max",
        records
            .iter()
            .map(|r| r.body)
            .max()
            .unwrap_or(0)
            .to_string(),
    );
    j.field("statuses", counts_json(&all));
    j.field("http_statuses", http_statuses_json(&all));
    j.field(
        "slices",
        list(
            responses
                .iter()
                .map(|&n| Json::num(Some(n as f64 * 1000.0 / options.slice_ms as f64))),
        ),
    );
    for gen in [Gen::Hit, Gen::Miss, Gen::Stale] {
        j.field(
            &format!("slices_{}", gen.name()),
            list(per_slice[&gen].iter()),
        );
    }
    j.field(
        "slices_p99_ms",
        list(slice_latencies.iter_mut().map(|l| {
            l.sort_unstable();
            Json::num(percentile(l, 0.99).map(ms))
        })),
    );
    j.field(
        "latency_ms",
        latency_json(all.iter().map(|r| r.end - r.start).collect()),
    );
    j.field(
        "latency_before_ms",
        latency_json(before.iter().map(|r| r.end - r.start).collect()),
    );

    if let (Some(p), Some(purge)) = (purge_ns, purge) {
        let mut pj = Json(String::from("{"));
        pj.field("sent_s", Json::num(Some(p as f64 / 1e9)));
        pj.field("answered_s", Json::num(Some(purge.answered as f64 / 1e9)));
        pj.field("status", purge.status.to_string());
        pj.field("body", Json::string(&purge.body));
        pj.field(
            "error",
            purge.error.as_deref().map_or("null".into(), Json::string),
        );
        pj.field("slice", slice_of(p).to_string());
        pj.0.push('}');
        j.field("purge", pj.0);
        j.field("statuses_before", counts_json(&before));
        j.field("statuses_after", counts_json(&later));
        j.field(
            "latency_after_ms",
            latency_json(later.iter().map(|r| r.end - r.start).collect()),
        );

        // Per page, the first response after the purge that regenerated it
        // (a MISS, answered first); the requests for it sent before that
        // response arrived and answered HIT after it waited for it.
        let mut regenerated: HashMap<u32, u64> = HashMap::new();
        let mut upstream = 0u64;
        let mut requested: HashMap<u32, ()> = HashMap::new();
        for r in &later {
            requested.insert(r.page, ());
            if r.gen.upstream() {
                upstream += 1;
                let first = regenerated.entry(r.page).or_insert(r.end);
                *first = (*first).min(r.end);
            }
        }
        let mut delays: Vec<u64> = later
            .iter()
            .filter(|r| r.gen == Gen::Hit)
            .filter_map(|r| {
                let first = *regenerated.get(&r.page)?;
                (r.start < first && r.end >= first).then(|| r.end - first)
            })
            .collect();
        delays.sort_unstable();
        let last = regenerated.values().max().map(|&t| (t - p) as f64 / 1e9);
        let mut rj = Json(String::from("{"));
        rj.field("pages_requested", requested.len().to_string());
        rj.field("pages_regenerated", regenerated.len().to_string());
        rj.field("upstream_responses", upstream.to_string());
        rj.field("last_regenerated_s", Json::num(last));
        rj.0.push('}');
        j.field("after_purge", rj.0);
        let mut wj = Json(String::from("{"));
        wj.field("waiters", delays.len().to_string());
        let pages_waited: HashMap<u32, ()> = later
            .iter()
            .filter(|r| r.gen == Gen::Hit)
            .filter(|r| {
                regenerated
                    .get(&r.page)
                    .is_some_and(|&f| r.start < f && r.end >= f)
            })
            .map(|r| (r.page, ()))
            .collect();
        wj.field("pages", pages_waited.len().to_string());
        for (name, q) in [("p50", 0.5), ("p99", 0.99)] {
            wj.field(name, Json::num(percentile(&delays, q).map(ms)));
        }
        wj.field("max", Json::num(delays.last().copied().map(ms)));
        wj.0.push('}');
        j.field("wakeup_ms", wj.0);
    }
    j.0.push('}');
    j.0
}

// ---------------------------------------------------------------------------

fn run(options: &Options) -> Result<String, String> {
    let warmed = if options.warm {
        let counts = warm(options)?;
        let summary: Vec<String> = Gen::ALL
            .iter()
            .filter_map(|g| counts.get(g).map(|n| format!("{n} {}", g.name())))
            .collect();
        eprintln!(
            "loadgen: warm-up: {} pages ({}), then all HIT",
            options.paths.len(),
            summary.join(", ")
        );
        Some(counts)
    } else {
        None
    };
    if options.seconds == 0.0 {
        return Ok(format!(
            "{{\"warm\": {}}}\n",
            warmed.map_or(0, |c| c.values().sum::<u64>())
        ));
    }
    let requests: Vec<Vec<u8>> = options
        .paths
        .iter()
        .zip(&options.cookies)
        .map(|(p, c)| get_request(&options.url, p, c.as_deref()))
        .collect();
    let zipf = Zipf::new(options.paths.len(), options.zipf);
    let ready = Barrier::new(options.clients + 1);
    let go = Barrier::new(options.clients + 1);
    let start = OnceLock::new();
    let (results, purged, t0_unix) = thread::scope(|scope| {
        let handles: Vec<_> = (0..options.clients)
            .map(|id| {
                let (requests, zipf, ready, go, start) = (&requests, &zipf, &ready, &go, &start);
                thread::Builder::new()
                    .stack_size(256 * 1024)
                    .spawn_scoped(scope, move || {
                        client(id, options, requests, zipf, ready, go, start)
                    })
                    .expect("a client thread")
            })
            .collect();
        ready.wait();
        let t0 = Instant::now();
        let t0_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        start.set(t0).expect("set once");
        let purger = options
            .purge_at
            .zip(options.purge_url.clone())
            .map(|(at, url)| scope.spawn(move || purge(&url, t0, Duration::from_secs_f64(at))));
        go.wait();
        let results: Vec<ClientResult> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        let purged = purger.map(|h| h.join().unwrap_or_default());
        (results, purged, t0_unix)
    });
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    let first_error = results.iter().find_map(|r| r.first_error.clone());
    let records: Vec<Record> = results.into_iter().flat_map(|r| r.records).collect();
    let seconds = options.seconds;
    eprintln!(
        "loadgen: {} requests in {seconds} s ({:.0}/s) from {} clients, {errors} errors{}",
        records.len(),
        records.len() as f64 / seconds,
        options.clients,
        purged.as_ref().map_or(String::new(), |p| format!(
            "; purge at {:.3} s: {} {}",
            p.sent as f64 / 1e9,
            p.status,
            p.error.as_deref().unwrap_or(&p.body)
        ))
    );
    Ok(statistics(
        options,
        &records,
        purged.as_ref(),
        errors,
        first_error.as_deref(),
        t0_unix,
        warmed.as_ref(),
    ) + "\n")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let options = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let json = match run(&options) {
        Ok(json) => json,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let written = match &options.out {
        Some(path) => std::fs::write(path, json),
        None => io::stdout().write_all(json.as_bytes()),
    };
    if let Err(e) = written {
        eprintln!("loadgen: writing the result: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Vec<io::Result<Response>> {
        let mut conn = Conn::new(io::Cursor::new(bytes.to_vec()));
        let mut out = Vec::new();
        loop {
            let r = conn.response(false);
            let stop = r.is_err();
            out.push(r);
            if stop {
                return out;
            }
        }
    }

    #[test]
    fn responses_in_a_row() {
        let stream = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-static-gen: HIT\r\n\r\nhello\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Static-Gen: MISS\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: 1\r\n\r\n\
HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let got = parse_all(stream);
        assert_eq!(got.len(), 4);
        let ok: Vec<&Response> = got[..3].iter().map(|r| r.as_ref().unwrap()).collect();
        assert_eq!(
            (ok[0].status, ok[0].gen, ok[0].body, ok[0].close),
            (200, Gen::Hit, 5, false)
        );
        assert_eq!(
            (ok[1].status, ok[1].gen, ok[1].body, ok[1].close),
            (200, Gen::Miss, 5, false)
        );
        assert_eq!(
            (ok[2].status, ok[2].gen, ok[2].body, ok[2].close),
            (404, Gen::None, 0, true)
        );
        assert_eq!(
            got[3].as_ref().unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }

    #[test]
    fn a_body_until_the_end_and_a_long_one() {
        let got = parse_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end");
        let r = got[0].as_ref().unwrap();
        assert_eq!((r.body, r.close), (13, true));
        let big = vec![b'x'; 200_000];
        let mut stream =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", big.len()).into_bytes();
        stream.extend_from_slice(&big);
        assert_eq!(parse_all(&stream)[0].as_ref().unwrap().body, 200_000);
        assert!(parse_all(b"HTTP/1.1 2x0 OK\r\n\r\n")[0].is_err());
    }

    #[test]
    fn zipf_prefers_the_first_pages() {
        let zipf = Zipf::new(200, 1.0);
        let mut rng = Rng::new(7);
        let mut counts = vec![0u32; 200];
        for _ in 0..200_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        // page 0 has 1 / H(200) = 17% of the requests, page 1 half that
        assert!((32_000..36_000).contains(&counts[0]), "{}", counts[0]);
        assert!((16_000..18_000).contains(&counts[1]), "{}", counts[1]);
        assert!(counts[199] > 100);
    }

    #[test]
    fn a_mix_of_paths_and_cookies() {
        let (paths, cookies) = parse_urls("/a/?utm_source=x\n\n/b/\tsessionid=s1\n");
        assert_eq!(paths, ["/a/?utm_source=x", "/b/"]);
        assert_eq!(cookies, [None, Some("sessionid=s1".to_string())]);
        let request = get_request(&Target::parse("http://h:1").unwrap(), "/b/", Some("a=1"));
        assert!(String::from_utf8(request)
            .unwrap()
            .ends_with("loadgen\r\nCookie: a=1\r\n\r\n"));
        let args: Vec<String> = [
            "--url",
            "http://h:1",
            "--urls",
            "/nonexistent",
            "--path",
            "/x",
        ]
        .map(String::from)
        .to_vec();
        assert!(parse_options(&args).unwrap_err().contains("exclude"));
    }

    #[test]
    fn options_and_targets() {
        let args: Vec<String> = "--url http://127.0.0.1:8080 --pages 3 --purge-at 2 --purge-url http://127.0.0.1:8080/_static_gen/purge?hard=1"
            .split(' ')
            .map(String::from)
            .collect();
        let o = parse_options(&args).unwrap();
        assert_eq!(o.paths, ["/stampede/0/", "/stampede/1/", "/stampede/2/"]);
        assert_eq!(o.purge_url.unwrap().path, "/_static_gen/purge?hard=1");
        assert_eq!(
            Target::parse("http://localhost").unwrap().authority,
            "localhost:80"
        );
        assert!(parse_options(&[
            "--url".into(),
            "http://x:1".into(),
            "--purge-at".into(),
            "1".into()
        ])
        .is_err());
    }

    #[test]
    fn statistics_of_a_small_run() {
        let ms = 1_000_000;
        let rec = |start, end, page, gen| Record {
            start: start * ms,
            end: end * ms,
            page,
            status: 200,
            gen,
            body: 10,
        };
        let records = [
            rec(100, 101, 0, Gen::Hit),
            rec(1100, 1400, 0, Gen::Miss), // regenerates page 0 at 1400
            rec(1200, 1405, 0, Gen::Hit),  // waited for it: 5 ms
            rec(1300, 1420, 0, Gen::Hit),  // 20 ms
            rec(1500, 1501, 0, Gen::Hit),  // after: not a waiter
            rec(1100, 1200, 1, Gen::Stale),
        ];
        let args: Vec<String> =
            "--url http://h:1 --pages 2 --seconds 2 --purge-at 1 --purge-url http://h:1/p"
                .split(' ')
                .map(String::from)
                .collect();
        let o = parse_options(&args).unwrap();
        let purge = PurgeResult {
            sent: 1000 * ms,
            answered: 1001 * ms,
            status: 200,
            ..PurgeResult::default()
        };
        let json = statistics(&o, &records, Some(&purge), 0, None, 0.0, None);
        assert!(json.contains("\"slices\": [1, 5]"), "{json}");
        assert!(json.contains("\"wakeup_ms\": {\"waiters\": 2, \"pages\": 1, \"p50\": 5, \"p99\": 20, \"max\": 20}"), "{json}");
        assert!(json.contains("\"pages_regenerated\": 1"), "{json}");
        assert!(json.contains("\"upstream_responses\": 1"), "{json}");
        assert!(json.contains("\"last_regenerated_s\": 0.4"), "{json}");
        assert!(json.contains("\"http_statuses\": {\"200\": 6}"), "{json}");
    }
}
