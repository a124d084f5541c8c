//! Compressed variants of stored pages, made off the nginx event loop.
//!
//! A MISS installs the identity page as usual and hands a job to its
//! worker's compressor; a compressor thread compresses the body into the
//! configured encodings and writes one new file with the identity body
//! followed by the variants (`page`'s `static_gen 2` format), then renames
//! it over the page, with the page's own time, only if the page is still
//! the file it compressed: a page purged or replaced meanwhile is left
//! alone. So a HIT serves a variant only of the version it would serve as
//! identity, a purge removes all of a page at once, and a crash leaves at
//! worst a temporary file (deleted at the next start), never a half
//! variant. A HIT never waits: until the variants are there, the identity
//! page is served.
//!
//! # Two passes
//!
//! brotli 11 takes about 60 ms of a core for a 40 KB page, brotli 6 about 2
//! milliseconds: a page's first variants are made at once at fast levels
//! ([`CompressConfig::first_pass`]) by one of several threads, and made
//! again at the configured levels by a thread of the lowest priority, only
//! while no first pass is waiting or running. The second file replaces the
//! first as the first replaced the identity page (one rename), so a HIT
//! sees the fast variants or the better ones, never a part of either. The
//! page's `levels:` line says which it holds.
//!
//! # Pages left behind
//!
//! A queue lives in its worker: a reload or a quit drops it, and a full one
//! refuses pages. The roots are walked again (on [`Compressor::rescan`],
//! which a new generation of workers asks for, and after a page was refused,
//! at most every [`RESCAN_INTERVAL`]) when the compressor is idle: a page
//! without variants that should have them gets its first pass, one with
//! fast variants its second.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustix::fs::{fstat, openat, Mode, OFlags};

use crate::compress::compress_page;
use crate::encoding::{parse_compress, CompressConfig};
use crate::page::{
    decode_header, encode_variants_header, HeaderInfo, PageHeader, PageVersion, MAGIC,
    MAGIC_VARIANTS, MAX_HEADER_LEN,
};
use crate::store::{PageLimits, PageWriter};
use crate::sweep::{walk, Priority, Visit};
use crate::tree::{FileTime, PageKeys, Tree, TreeError};

/// A page whose variants to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub root: PathBuf,
    /// The page file, relative to the root.
    pub rel: Vec<u8>,
    /// The file as installed: another one at `rel` is left alone. `None`:
    /// the page there now (one a walk found, or whose first variants were
    /// just made).
    pub version: Option<PageVersion>,
    /// The configured variants: the levels the page ends with.
    pub config: CompressConfig,
}

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The page now holds this many variants.
    Stored(usize),
    /// No variant was smaller than the page (or the page is too short).
    NothingSmaller,
    /// The page's variants are already at these levels or better.
    UpToDate,
    /// The page was purged or replaced before or while compressing.
    Gone,
}

/// Makes the variants of the page at `rel` in `tree` at the levels of
/// `pass`, if it is still `version` (when given) and its variants, if it
/// has any, were made at lower levels.
pub fn add_variants(
    tree: &Tree,
    rel: &[u8],
    version: Option<PageVersion>,
    pass: &CompressConfig,
) -> Result<Outcome, TreeError> {
    let path = || tree.display_path(rel);
    let Ok((dir, name)) = tree.page_parent(rel, None) else {
        return Ok(Outcome::Gone);
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(file) = openat(&dir, name, flags, Mode::empty()) else {
        return Ok(Outcome::Gone);
    };
    let stat = fstat(&file).map_err(|e| TreeError::io("stat", path(), e))?;
    let current = PageVersion {
        dev: stat.st_dev,
        ino: stat.st_ino,
        size: stat.st_size as u64,
        mtime_sec: stat.st_mtime,
        mtime_nsec: stat.st_mtime_nsec as i64,
    };
    if version.is_some_and(|version| version != current) {
        return Ok(Outcome::Gone);
    }
    let file = std::fs::File::from(file);
    let mut page = vec![0; current.size as usize];
    file.read_exact_at(&mut page, 0)
        .map_err(|e| TreeError::io("read", path(), e))?;
    let header_end = page.len().min(MAX_HEADER_LEN);
    let Ok(header) = decode_header(&page[..header_end]) else {
        return Ok(Outcome::Gone);
    };
    if header.status != 200 {
        // a stored redirect or error page keeps its identity body only
        return Ok(Outcome::NothingSmaller);
    }
    if !needs(&header, pass) {
        return Ok(Outcome::UpToDate);
    }
    let Some(body) = identity_body(&page, &header) else {
        return Ok(Outcome::Gone);
    };
    let variants = compress_page(body, pass).map_err(|e| TreeError::io("compress", path(), e))?;
    if variants.is_empty() {
        return Ok(Outcome::NothingSmaller);
    }
    let uri = uri_of(&page[..header.body_offset]);
    let lengths: Vec<_> = variants.iter().map(|(e, v)| (*e, v.len() as u64)).collect();
    let new_header = encode_variants_header(
        header.content_type,
        uri,
        header.tags,
        body.len() as u64,
        &lengths,
        &pass.levels_line(),
    )
    .map_err(|e| TreeError::io("encode", path(), io::Error::other(e)))?;
    let limits = PageLimits {
        mode: stat.st_mode & 0o7777,
        ..PageLimits::default()
    };
    let mut writer = PageWriter::create(tree, &new_header, limits)?;
    writer.write(body)?;
    for (_, bytes) in &variants {
        writer.write(bytes)?;
    }
    let modified = FileTime {
        sec: current.mtime_sec,
        nsec: current.mtime_nsec,
    };
    if writer.replace_page(tree, rel, (current.dev, current.ino), modified)? {
        Ok(Outcome::Stored(variants.len()))
    } else {
        Ok(Outcome::Gone)
    }
}

/// True when a page with `header` is to be compressed at `pass`'s levels:
/// it has no variants, or they were made at lower levels (a page without
/// a `levels:` line was made at the configured ones, before first passes).
fn needs(header: &PageHeader<'_>, pass: &CompressConfig) -> bool {
    if header.identity_len.is_none() {
        return true;
    }
    let words: Vec<&str> = std::str::from_utf8(header.levels)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    match parse_compress(&words) {
        Ok(made) => pass.improves_on(&made),
        Err(_) => false,
    }
}

/// The identity body of a page file (`page`, whole) with `header`.
fn identity_body<'a>(page: &'a [u8], header: &PageHeader<'_>) -> Option<&'a [u8]> {
    let body = page.get(header.body_offset..)?;
    match header.identity_len {
        None if page.starts_with(MAGIC) => Some(body),
        Some(len) if page.starts_with(MAGIC_VARIANTS) => body.get(..usize::try_from(len).ok()?),
        _ => None,
    }
}

/// The `uri:` value of a page header.
fn uri_of(header: &[u8]) -> &[u8] {
    header
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"uri: "))
        .unwrap_or_default()
}

/// How many compressor threads a worker starts:
/// `static_gen_compress_threads auto | number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// The machine's cores shared among the workers: at least one each.
    #[default]
    Auto,
    Count(usize),
}

/// Threads a worker may start at most.
pub const MAX_THREADS: usize = 64;

impl Threads {
    /// Parses the directive's argument.
    pub fn parse(word: &str) -> Result<Threads, String> {
        if word.eq_ignore_ascii_case("auto") {
            return Ok(Threads::Auto);
        }
        match word.parse::<usize>() {
            Ok(n) if (1..=MAX_THREADS).contains(&n) && word.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Threads::Count(n))
            }
            _ => Err(format!(
                "invalid value \"{word}\" (expected \"auto\" or a number from 1 to {MAX_THREADS})"
            )),
        }
    }

    /// The first-pass threads of one of `workers` workers on `cores` cores.
    pub fn count(self, cores: usize, workers: usize) -> usize {
        match self {
            Threads::Auto => (cores / workers.max(1)).clamp(1, MAX_THREADS),
            Threads::Count(n) => n,
        }
    }
}

/// A worker's compressor: first-pass threads and one thread for second
/// passes and walks, two bounded queues. When the first queue is full, a
/// page stays identity only until the next walk (nginx's own `gzip` still
/// compresses it per request, where it is on).
pub struct Compressor {
    shared: Arc<Shared>,
}

/// Pages waiting for their first pass at most.
const FIRST_QUEUE: usize = 1024;
/// Pages waiting for their second pass at most (more are found by walks).
const BETTER_QUEUE: usize = 4096;
/// Trees a thread keeps open.
const KEPT_TREES: usize = 64;
/// Failures kept for the worker to log.
const KEPT_FAILURES: usize = 16;
/// Walks after pages were refused are at least this far apart.
pub const RESCAN_INTERVAL: Duration = Duration::from_secs(10);

struct Shared {
    queues: Mutex<Queues>,
    wake: Condvar,
    /// Variants the threads could not write, for the worker to log (the
    /// threads have no nginx log); more than [`KEPT_FAILURES`] are dropped
    /// until it has read them (its log throttles each cause anyway).
    failures: Mutex<VecDeque<TreeError>>,
    /// The roots walks look in, each with its locations' variants.
    roots: Vec<(PathBuf, CompressConfig)>,
}

#[derive(Default)]
struct Queues {
    first: VecDeque<Job>,
    better: VecDeque<Job>,
    /// First passes running.
    busy: usize,
    /// A walk was asked for.
    rescan: bool,
    /// A page was refused since the last walk.
    missed: bool,
    last_walk: Option<Instant>,
}

impl Queues {
    fn idle(&self) -> bool {
        self.first.is_empty() && self.busy == 0
    }

    /// How long until a walk is due (zero: now), if one is.
    fn walk_due(&self) -> Option<Duration> {
        if self.rescan {
            return Some(Duration::ZERO);
        }
        let since = self.last_walk.map_or(RESCAN_INTERVAL, |at| at.elapsed());
        self.missed.then(|| RESCAN_INTERVAL.saturating_sub(since))
    }
}

impl Compressor {
    /// Starts `threads` first-pass threads (signals blocked, nice 10: below
    /// the worker, compressing must not slow down the requests being
    /// served) and the second-pass thread (nice 19). `roots`: where walks
    /// look, with the variants their pages should have.
    pub fn start(threads: usize, roots: Vec<(PathBuf, CompressConfig)>) -> io::Result<Compressor> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            wake: Condvar::new(),
            failures: Mutex::new(VecDeque::new()),
            roots,
        });
        for _ in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            crate::sweep::spawn_background("static_gen compress", Priority::Nice(10), move || {
                first_passes(&shared)
            })?;
        }
        let second = Arc::clone(&shared);
        crate::sweep::spawn_background("static_gen upgrade", Priority::Nice(19), move || {
            second_passes(&second)
        })?;
        Ok(Compressor { shared })
    }

    /// Queues a page's first pass; false when the queue is full (the next
    /// walk finds the page).
    pub fn submit(&self, job: Job) -> bool {
        let mut queues = self.shared.lock();
        if queues.first.len() >= FIRST_QUEUE {
            queues.missed = true;
            return false;
        }
        queues.first.push_back(job);
        drop(queues);
        self.shared.wake.notify_all();
        true
    }

    /// The variants that could not be written since the last call (disk
    /// full, ...), for the worker to log.
    pub fn failures(&self) -> Vec<TreeError> {
        let mut failures = self
            .shared
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        failures.drain(..).collect()
    }

    /// Asks for a walk of the roots, once the compressor is idle.
    pub fn rescan(&self) {
        self.shared.lock().rescan = true;
        self.shared.wake.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a page's variants; a failure leaves the identity page (served
    /// as is) and is kept for the worker to log.
    fn add_variants(
        &self,
        tree: &Tree,
        rel: &[u8],
        version: Option<PageVersion>,
        config: &CompressConfig,
    ) -> Option<Outcome> {
        match add_variants(tree, rel, version, config) {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                if failures.len() < KEPT_FAILURES {
                    failures.push_back(err);
                }
                None
            }
        }
    }

    fn wait<'a>(
        &self,
        queues: MutexGuard<'a, Queues>,
        at_most: Option<Duration>,
    ) -> MutexGuard<'a, Queues> {
        match at_most {
            Some(timeout) => {
                self.wake
                    .wait_timeout(queues, timeout)
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
            None => self.wake.wait(queues).unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Waits until no first pass is queued or running.
    fn wait_idle(&self) {
        let mut queues = self.lock();
        while !queues.idle() {
            queues = self.wait(queues, None);
        }
    }

    /// Queues a page's second pass, or notes that a walk must find it.
    fn submit_better(&self, job: Job) {
        let mut queues = self.lock();
        if queues.better.len() >= BETTER_QUEUE {
            queues.missed = true;
        } else {
            queues.better.push_back(job);
        }
    }

    /// Queues a page's first pass, waiting for room (a walk's pages).
    fn submit_first_waiting(&self, job: Job) {
        let mut queues = self.lock();
        while queues.first.len() >= FIRST_QUEUE {
            queues = self.wait(queues, None);
        }
        queues.first.push_back(job);
        drop(queues);
        self.wake.notify_all();
    }
}

/// The trees a thread keeps open, by root.
#[derive(Default)]
struct Trees(HashMap<PathBuf, Tree>);

impl Trees {
    fn get(&mut self, root: &Path) -> Option<&Tree> {
        if !self.0.get(root).is_some_and(Tree::is_current) {
            if self.0.len() >= KEPT_TREES {
                self.0.clear();
            }
            self.0.insert(root.to_owned(), Tree::open_existing(root)?);
        }
        self.0.get(root)
    }
}

/// A first-pass thread: takes the oldest page waiting, makes its fast
/// variants, queues its second pass when the configured levels are better.
fn first_passes(shared: &Shared) {
    let mut trees = Trees::default();
    loop {
        let job = {
            let mut queues = shared.lock();
            loop {
                if let Some(job) = queues.first.pop_front() {
                    queues.busy += 1;
                    break job;
                }
                queues = shared.wait(queues, None);
            }
        };
        // room in the queue for a walk waiting for it
        shared.wake.notify_all();
        let pass = job.config.first_pass();
        let outcome = trees
            .get(&job.root)
            .and_then(|tree| shared.add_variants(tree, &job.rel, job.version, &pass));
        // up to date: another worker (of an older generation, maybe gone
        // since) made these variants, and perhaps not the better ones
        let made = matches!(outcome, Some(Outcome::Stored(_) | Outcome::UpToDate));
        if made && job.config.improves_on(&pass) {
            shared.submit_better(Job {
                version: None,
                ..job
            });
        }
        shared.lock().busy -= 1;
        shared.wake.notify_all();
    }
}

/// The second-pass thread: while no first pass is waiting or running,
/// makes the configured variants of pages that have fast ones, and walks
/// the roots when a walk is due.
fn second_passes(shared: &Shared) {
    let mut trees = Trees::default();
    loop {
        let job = {
            let mut queues = shared.lock();
            loop {
                let due = queues.walk_due();
                if queues.idle() {
                    if let Some(job) = queues.better.pop_front() {
                        break Some(job);
                    }
                    if due == Some(Duration::ZERO) {
                        queues.rescan = false;
                        queues.missed = false;
                        queues.last_walk = Some(Instant::now());
                        break None;
                    }
                }
                queues = shared.wait(queues, due.filter(|d| !d.is_zero()));
            }
        };
        match job {
            Some(job) => {
                if let Some(tree) = trees.get(&job.root) {
                    shared.add_variants(tree, &job.rel, None, &job.config);
                }
            }
            None => {
                for (root, config) in &shared.roots {
                    if let Some(tree) = trees.get(root) {
                        walk_tree(shared, tree, config);
                    }
                }
            }
        }
    }
}

/// Walks a tree for pages whose variants are missing or were made fast:
/// the first are queued for their first pass, the second get their second
/// pass here, each once the compressor is idle.
fn walk_tree(shared: &Shared, tree: &Tree, config: &CompressConfig) {
    if config.is_off() {
        return;
    }
    let mut finder = Finder {
        shared,
        tree,
        config,
    };
    walk(tree.dir(), &mut Vec::new(), true, &mut finder);
}

struct Finder<'a> {
    shared: &'a Shared,
    tree: &'a Tree,
    config: &'a CompressConfig,
}

impl Visit for Finder<'_> {
    fn file(&mut self, dir: BorrowedFd, rel: &[u8], name: &OsStr) {
        match page_needs(self.tree, dir, rel, name, self.config) {
            Some(Need::First) => self.shared.submit_first_waiting(Job {
                root: self.tree.root().to_owned(),
                rel: rel.to_vec(),
                version: None,
                config: self.config.clone(),
            }),
            Some(Need::Better) => {
                self.shared.wait_idle();
                self.shared.add_variants(self.tree, rel, None, self.config);
            }
            None => {}
        }
    }
}

/// What a page a walk found needs.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    /// Its first variants.
    First,
    /// Its variants at the configured levels.
    Better,
}

/// What the page file `name` in `dir` (`rel` in `tree`) needs for
/// `config`'s variants: nothing for a file that is not a page, a page too
/// short, or one a purge covers (it is served fresh no more).
fn page_needs(
    tree: &Tree,
    dir: BorrowedFd,
    rel: &[u8],
    name: &OsStr,
    config: &CompressConfig,
) -> Option<Need> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = openat(
        dir,
        OsStr::from_bytes(name.as_bytes()),
        flags,
        Mode::empty(),
    )
    .ok()?;
    let stat = fstat(&file).ok()?;
    // most headers are short; a long one (many tags) is read whole
    let mut start = vec![0u8; 4096];
    let mut len = rustix::io::pread(&file, &mut start, 0).ok()?;
    if decode_header(&start[..len]).is_err() && len == start.len() {
        start.resize(MAX_HEADER_LEN, 0);
        len = rustix::io::pread(&file, &mut start, 0).ok()?;
    }
    let header = decode_header(&start[..len])
        .ok()
        .filter(|h| h.status == 200)?;
    let body_len = (stat.st_size as u64).saturating_sub(header.body_offset as u64);
    let identity_len = header.identity_len.unwrap_or(body_len);
    let need = match header.identity_len {
        _ if identity_len < config.min_length as u64 => return None,
        None => Need::First,
        Some(_) if needs(&header, config) => Need::Better,
        Some(_) => return None,
    };
    let tags = HeaderInfo::from(header).tag_keys;
    let written = FileTime::of_stat(&stat);
    let purged = tree.state().staleness(&PageKeys::of(rel), &tags, written);
    purged.is_none().then_some(need)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::Encoding;
    use crate::journal;
    use crate::page::encode_header;
    use crate::purge::purge;
    use crate::scope::Scope;
    use crate::tree::tests::Scratch;
    use std::fs;
    use std::time::{Duration, Instant};

    /// HTML as real pages compress (words in a varying order).
    use crate::compress::tests::html;

    /// Stores a page (with tags) as a MISS does; returns the job for its
    /// variants.
    fn store(tree: &Tree, rel: &str, uri: &str, body: &[u8]) -> Job {
        let mark = journal::mark(tree).unwrap();
        let header = encode_header(b"text/html", uri.as_bytes(), b"article-1 home").unwrap();
        let mut writer = PageWriter::create(tree, &header, PageLimits::default()).unwrap();
        writer.write(body).unwrap();
        let version = writer
            .commit_unless_purged(
                tree,
                rel.as_bytes(),
                mark,
                uri.as_bytes(),
                &crate::tags::Tags::NONE,
            )
            .unwrap()
            .unwrap();
        Job {
            root: tree.root().to_owned(),
            rel: rel.as_bytes().to_vec(),
            version: Some(version),
            config: CompressConfig::default(),
        }
    }

    /// [`add_variants`] for `job` at its configured levels.
    fn compress_job(tree: &Tree, job: &Job) -> Outcome {
        add_variants(tree, &job.rel, job.version, &job.config).unwrap()
    }

    #[test]
    fn variants_join_the_page_and_decode_to_it() {
        let root = Scratch::new("variants");
        let tree = Tree::open(&root.0).unwrap();
        let body = html(20_000);
        let job = store(&tree, "a/index.html", "/a/", &body);
        let before = fs::metadata(root.0.join("a/index.html")).unwrap();
        assert_eq!(compress_job(&tree, &job), Outcome::Stored(2));
        let file = fs::read(root.0.join("a/index.html")).unwrap();
        let header = decode_header(&file).unwrap();
        let start = header.body_offset;
        assert_eq!(header.tags, b"article-1 home", "tags carried over");
        assert_eq!(header.identity_len, Some(body.len() as u64));
        assert_eq!(&file[start..start + body.len()], body.as_slice());
        for encoding in [Encoding::Gzip, Encoding::Br] {
            let range = header.variants.get(encoding).unwrap();
            let from = start + range.start as usize;
            let bytes = &file[from..from + range.len as usize];
            let decoded = match encoding {
                Encoding::Gzip => {
                    let mut out = Vec::new();
                    io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
                        .unwrap();
                    out
                }
                _ => {
                    let mut out = Vec::new();
                    brotli::BrotliDecompress(&mut &bytes[..], &mut out).unwrap();
                    out
                }
            };
            assert_eq!(decoded, body, "{encoding}");
        }
        let after = fs::metadata(root.0.join("a/index.html")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            (after.mtime(), after.mtime_nsec()),
            (before.mtime(), before.mtime_nsec()),
            "the page keeps its time: it is as fresh as before"
        );
        assert_eq!(
            fs::read_dir(root.0.join(".static_gen/tmp"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_page_purged_or_replaced_meanwhile_is_left_alone() {
        let root = Scratch::new("variants-gone");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "a.html", "/a", &html(20_000));
        purge(&tree, &Scope::Uri(b"/a".to_vec()), false).unwrap();
        assert_eq!(compress_job(&tree, &job), Outcome::Gone);
        assert!(!root.0.join("a.html").exists(), "a purged page came back");
        let old = store(&tree, "b.html", "/b", &html(20_000));
        store(&tree, "b.html", "/b", &html(30_000));
        assert_eq!(compress_job(&tree, &old), Outcome::Gone);
        let file = fs::read(root.0.join("b.html")).unwrap();
        assert!(file.starts_with(MAGIC), "the newer page was replaced");
    }

    #[test]
    fn short_or_incompressible_pages_stay_identity() {
        let root = Scratch::new("variants-short");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "s.html", "/s", b"<p>short</p>");
        assert_eq!(compress_job(&tree, &job), Outcome::NothingSmaller);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let job = store(&tree, "n.html", "/n", &noise);
        assert_eq!(compress_job(&tree, &job), Outcome::NothingSmaller);
    }

    /// The `levels:` line of the page file at `path` (empty: none, or no
    /// variants), once `done` says the file is as expected (20 s at most).
    fn levels_when(path: &std::path::Path, done: impl Fn(&[u8]) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let file = fs::read(path).unwrap();
            let levels = decode_header(&file).unwrap().levels.to_vec();
            if done(&levels) {
                return String::from_utf8(levels).unwrap();
            }
            assert!(Instant::now() < deadline, "{:?}", String::from_utf8(levels));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_compressor_makes_fast_variants_then_better_ones() {
        let root = Scratch::new("variants-thread");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "t.html", "/t", &html(20_000));
        let compressor = Compressor::start(2, Vec::new()).unwrap();
        assert!(compressor.submit(job));
        let path = root.0.join("t.html");
        let levels = levels_when(&path, |l| !l.is_empty());
        let levels = match levels.as_str() {
            "gzip=6 br=6" => levels_when(&path, |l| l != b"gzip=6 br=6"),
            _ => levels,
        };
        assert_eq!(levels, "gzip=9 br=11", "the configured levels last");
    }

    #[test]
    fn a_second_pass_makes_better_variants_of_the_same_page() {
        let root = Scratch::new("variants-second");
        let tree = Tree::open(&root.0).unwrap();
        let body = html(40_000);
        let job = store(&tree, "p.html", "/p", &body);
        let first = job.config.first_pass();
        let rel = job.rel.clone();
        let outcome = add_variants(&tree, &rel, job.version, &first).unwrap();
        assert_eq!(outcome, Outcome::Stored(2));
        let path = root.0.join("p.html");
        let fast = fs::read(&path).unwrap();
        let fast_header = decode_header(&fast).unwrap();
        assert_eq!(fast_header.levels, b"gzip=6 br=6");
        // the first pass again, or a job for the old version: nothing to do
        assert_eq!(
            add_variants(&tree, &rel, None, &first).unwrap(),
            Outcome::UpToDate
        );
        assert_eq!(compress_job(&tree, &job), Outcome::Gone, "a new file");
        assert_eq!(
            add_variants(&tree, &rel, None, &job.config).unwrap(),
            Outcome::Stored(2)
        );
        let better = fs::read(&path).unwrap();
        let header = decode_header(&better).unwrap();
        assert_eq!(header.levels, b"gzip=9 br=11");
        assert_eq!(header.tags, b"article-1 home", "tags carried over");
        let start = header.body_offset;
        assert_eq!(&better[start..start + body.len()], body.as_slice());
        let br = |h: &PageHeader<'_>| h.variants.get(Encoding::Br).unwrap().len;
        assert!(br(&header) < br(&fast_header), "brotli 11 is smaller");
        let range = header.variants.get(Encoding::Br).unwrap();
        let from = start + range.start as usize;
        let mut decoded = Vec::new();
        brotli::BrotliDecompress(&mut &better[from..from + range.len as usize], &mut decoded)
            .unwrap();
        assert_eq!(decoded, body);
        assert_eq!(
            add_variants(&tree, &rel, None, &job.config).unwrap(),
            Outcome::UpToDate
        );
    }

    #[test]
    fn a_walk_finds_pages_without_variants_or_with_fast_ones() {
        let root = Scratch::new("variants-walk");
        let tree = Tree::open(&root.0).unwrap();
        let config = CompressConfig::default();
        let lost = store(&tree, "a/lost.html", "/a/lost", &html(20_000));
        let fast = store(&tree, "a/b/fast.html", "/a/b/fast", &html(20_000));
        add_variants(&tree, &fast.rel, None, &config.first_pass()).unwrap();
        store(&tree, "short.html", "/short", &html(500));
        let purged = store(&tree, "purged.html", "/purged", &html(20_000));
        purge(&tree, &Scope::Uri(b"/purged".to_vec()), false).unwrap();
        fs::write(root.0.join("hand.html"), html(20_000)).unwrap();
        // nothing was queued: the walk, asked for, finds them
        let roots = vec![(root.0.clone(), config)];
        let compressor = Compressor::start(1, roots).unwrap();
        compressor.rescan();
        for job in [&lost, &fast] {
            let path = root.0.join(std::str::from_utf8(&job.rel).unwrap());
            let levels = levels_when(&path, |l| l == b"gzip=9 br=11");
            assert_eq!(levels, "gzip=9 br=11");
        }
        let short = fs::read(root.0.join("short.html")).unwrap();
        assert!(short.starts_with(MAGIC), "a short page stays identity");
        let hand = fs::read(root.0.join("hand.html")).unwrap();
        assert_eq!(hand, html(20_000), "a file put there by hand");
        if let Ok(file) = fs::read(root.0.join(std::str::from_utf8(&purged.rel).unwrap())) {
            assert!(file.starts_with(MAGIC), "a purged page is left alone");
        }
    }

    #[test]
    fn threads_are_auto_or_a_number() {
        assert_eq!(Threads::parse("auto"), Ok(Threads::Auto));
        assert_eq!(Threads::parse("AUTO"), Ok(Threads::Auto));
        assert_eq!(Threads::parse("4"), Ok(Threads::Count(4)));
        for bad in ["0", "65", "-1", "+2", "two", "", "1.5"] {
            assert!(Threads::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Threads::Auto.count(8, 2), 4);
        assert_eq!(Threads::Auto.count(2, 4), 1, "at least one");
        assert_eq!(Threads::Auto.count(2, 0), 2);
        assert_eq!(Threads::Count(3).count(2, 1), 3);
    }

    #[test]
    fn a_failed_variant_comes_back_to_the_worker() {
        let root = Scratch::new("variants-failed");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "f.html", "/f", &html(20_000));
        // no room for the new file: its temporary directory is a file
        let tmp = root.0.join(".static_gen/tmp");
        fs::remove_dir_all(&tmp).unwrap();
        fs::write(&tmp, b"").unwrap();
        let compressor = Compressor::start(1, Vec::new()).unwrap();
        assert!(compressor.submit(job));
        let deadline = Instant::now() + Duration::from_secs(20);
        let failure = loop {
            if let Some(failure) = compressor.failures().pop() {
                break failure;
            }
            assert!(Instant::now() < deadline, "no failure reported");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_ne!(failure.errno(), 0, "{failure}");
        assert!(failure.to_string().contains(".static_gen/tmp"), "{failure}");
        assert!(compressor.failures().is_empty(), "reported once");
        assert!(fs::read(root.0.join("f.html")).unwrap().starts_with(MAGIC));
    }
}
