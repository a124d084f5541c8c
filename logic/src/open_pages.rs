//! The pages a worker keeps open (`static_gen_open_cache`), so that a hot
//! page is served with no file system call but the one that sends it.
//!
//! As nginx's `open_file_cache`, but with no window in which an old version
//! is served: an entry is used only while the tree's shared state says that
//! no other file took the page's place, which every install and replacement
//! records (its bucket's install generation, read before the page was
//! opened, must not have moved). Purges need nothing more: the lookup checks
//! every page against the purge marks, kept open or not. A page changed by
//! hand, not through the module, is seen once the entry is `valid` old, when
//! it is opened again by its path.
//!
//! A page used twice while kept, whose file is at most a sixteenth of the
//! `memory` budget, is also read into memory once (the memory tier): its
//! HITs are then sent from there, with no `sendfile`. The bytes belong to
//! the entry and are checked with it; a page file is never written in
//! place (a new version is a new file), so they are the file's.
//!
//! Entries that can no longer be served (replaced, purged past any stale
//! serving, of a retired tree, unused for `inactive`) are closed by
//! [`OpenPages::sweep`], which the worker runs every second, so that pages
//! deleted by a purge do not keep their disk space.

use std::cell::OnceCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::rc::Rc;

use crate::page::{decode_header, HeaderCache, HeaderInfo, PageVersion, Variants, MAX_HEADER_LEN};
use crate::tree::hash::BuildKey;
use crate::tree::{FileTime, PageKeys, Tree};

/// `static_gen_open_cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenCacheConfig {
    /// Pages kept open at most; 0 for none.
    pub max: usize,
    /// Entries unused for this long are closed.
    pub inactive_ms: u64,
    /// Entries are opened again by their path once this old.
    pub valid_ms: u64,
    /// Bytes of hot pages held in memory at most; 0 for none.
    pub memory: usize,
}

impl Default for OpenCacheConfig {
    fn default() -> Self {
        OpenCacheConfig {
            max: 10_000,
            inactive_ms: 60_000,
            valid_ms: 60_000,
            memory: 4 << 20,
        }
    }
}

impl OpenCacheConfig {
    pub fn off() -> Self {
        OpenCacheConfig {
            max: 0,
            ..OpenCacheConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenCacheConfigError {
    /// Neither `off` nor `max=N` first.
    Expected(String),
    BadValue(String),
    Unknown(String),
    Duplicate(String),
}

impl std::fmt::Display for OpenCacheConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenCacheConfigError::Expected(word) => {
                write!(f, "expected \"off\" or \"max=<number>\", not \"{word}\"")
            }
            OpenCacheConfigError::BadValue(word) => write!(f, "invalid value \"{word}\""),
            OpenCacheConfigError::Unknown(word) => write!(f, "invalid parameter \"{word}\""),
            OpenCacheConfigError::Duplicate(word) => write!(f, "duplicate parameter \"{word}\""),
        }
    }
}

impl std::error::Error for OpenCacheConfigError {}

/// Parses `off`, or `max=N [inactive=time] [valid=time]` (nginx's time
/// syntax: `30s`, `1m`, `1h30m`, `500ms`; a bare number is seconds).
pub fn parse_open_cache<S: AsRef<str>>(
    args: &[S],
) -> Result<OpenCacheConfig, OpenCacheConfigError> {
    let words: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    match words.as_slice() {
        ["off"] => return Ok(OpenCacheConfig::off()),
        [first, ..] if !first.starts_with("max=") => {
            return Err(OpenCacheConfigError::Expected((*first).to_string()))
        }
        _ => {}
    }
    let mut config = OpenCacheConfig::default();
    let mut seen: Vec<&str> = Vec::new();
    for word in words {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| OpenCacheConfigError::Unknown(word.to_string()))?;
        if seen.contains(&name) {
            return Err(OpenCacheConfigError::Duplicate(word.to_string()));
        }
        seen.push(name);
        let bad = || OpenCacheConfigError::BadValue(word.to_string());
        match name {
            "max" => {
                config.max = value
                    .bytes()
                    .all(|b| b.is_ascii_digit())
                    .then(|| value.parse().ok())
                    .flatten()
                    .filter(|&max| max > 0)
                    .ok_or_else(bad)?;
            }
            "inactive" => config.inactive_ms = parse_time_ms(value).ok_or_else(bad)?,
            "valid" => config.valid_ms = parse_time_ms(value).ok_or_else(bad)?,
            "memory" => config.memory = parse_size(value).ok_or_else(bad)?,
            _ => return Err(OpenCacheConfigError::Unknown(word.to_string())),
        }
    }
    Ok(config)
}

/// nginx's size syntax in bytes: a number, optionally followed by `k`,
/// `m` or `g` (either case).
pub fn parse_size(value: &str) -> Option<usize> {
    let (digits, unit) = match value.as_bytes().last()? {
        b'k' | b'K' => (&value[..value.len() - 1], 1 << 10),
        b'm' | b'M' => (&value[..value.len() - 1], 1 << 20),
        b'g' | b'G' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// nginx's time syntax in milliseconds: numbers each followed by a unit
/// (`ms`, `s`, `m`, `h`, `d`), largest first; a bare number is seconds.
pub fn parse_time_ms(value: &str) -> Option<u64> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok()?.checked_mul(1000);
    }
    let mut rest = value;
    let mut total: u64 = 0;
    let mut last_unit = u64::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = match rest.as_bytes() {
            [b'm', b's', ..] => (1, 2),
            [b's', ..] => (1000, 1),
            [b'm', ..] => (60_000, 1),
            [b'h', ..] => (3_600_000, 1),
            [b'd', ..] => (86_400_000, 1),
            _ => return None,
        };
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        rest = &rest[len..];
        total = total.checked_add(number.checked_mul(unit)?)?;
    }
    (!value.is_empty()).then_some(total)
}

/// A page file opened for HITs, with what its header says.
#[derive(Debug)]
pub struct OpenPage {
    pub file: File,
    /// For log lines.
    pub path: PathBuf,
    pub modified: FileTime,
    pub body_offset: u64,
    /// The identity body's length (variants may follow it).
    pub identity_len: u64,
    pub variants: Variants,
    pub content_type: Rc<[u8]>,
    /// The status it is answered with, and a redirect's `Location`.
    pub status: u16,
    pub location: Rc<[u8]>,
    /// Its tags' purge-mark keys.
    pub tag_keys: Rc<[u64]>,
    /// The file's size.
    pub size: u64,
    /// The whole file, once read into memory (the memory tier).
    pub memory: OnceCell<Box<[u8]>>,
}

/// Why a page could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// No page there.
    Missing,
    /// Something the module does not serve: not a page file, or a path
    /// through a symbolic link.
    Foreign,
    Io(io::Error),
}

impl OpenPage {
    /// Opens the page `rel` of `tree` (never through a symbolic link) and
    /// reads its header, unless `headers` knows this version's.
    pub fn open(tree: &Tree, rel: &[u8], headers: &mut HeaderCache) -> Result<OpenPage, OpenError> {
        let file = tree.open_page(rel).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ENAMETOOLONG) => OpenError::Missing,
            Some(libc::ELOOP | libc::EISDIR | libc::EXDEV) => OpenError::Foreign,
            _ => OpenError::Io(e),
        })?;
        let meta = file.metadata().map_err(OpenError::Io)?;
        if !meta.is_file() {
            return Err(OpenError::Foreign);
        }
        let version = PageVersion {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_sec: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        };
        let header = match headers.get(&version) {
            Some(header) => header,
            None => {
                let header = read_header(&file, meta.len())?;
                headers.insert(version, header.clone());
                header
            }
        };
        let identity_len = header
            .identity_len
            .unwrap_or_else(|| meta.len().saturating_sub(header.body_offset));
        Ok(OpenPage {
            content_type: header.content_type,
            status: header.status,
            location: header.location,
            tag_keys: header.tag_keys,
            body_offset: header.body_offset,
            identity_len,
            variants: header.variants,
            modified: FileTime::of(&meta),
            path: tree.display_path(rel),
            size: meta.len(),
            memory: OnceCell::new(),
            file,
        })
    }

    /// The bytes `offset..offset + len` of the file, if it is in memory.
    pub fn in_memory(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let bytes = self.memory.get()?;
        let start = usize::try_from(offset).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        bytes.get(start..end)
    }

    /// Reads the whole file into memory. Returns whether it did (a file
    /// shorter than when it was opened is not a page's: left on disk).
    fn read_into_memory(&self) -> io::Result<bool> {
        let mut bytes = vec![0; self.size as usize].into_boxed_slice();
        let mut done = 0;
        while done < bytes.len() {
            match self.file.read_at(&mut bytes[done..], done as u64)? {
                0 => return Ok(false),
                n => done += n,
            }
        }
        Ok(self.memory.set(bytes).is_ok())
    }

    /// `Last-Modified`, in seconds.
    pub fn mtime(&self) -> i64 {
        self.modified.sec
    }
}

/// Reads a page's header: most fit in the first bytes, none in more than
/// [`MAX_HEADER_LEN`].
fn read_header(file: &File, size: u64) -> Result<HeaderInfo, OpenError> {
    const FIRST_READ: usize = 512;
    let mut first = [0u8; FIRST_READ];
    let want = FIRST_READ.min(size as usize);
    let len = file.read_at(&mut first[..want], 0).map_err(OpenError::Io)?;
    if let Ok(header) = decode_header(&first[..len]) {
        return Ok(header.into());
    }
    // a long header (many tags): read up to the longest there may be
    let want = MAX_HEADER_LEN.min(size as usize);
    if want <= len {
        return Err(OpenError::Foreign);
    }
    let mut start = vec![0u8; want];
    start[..len].copy_from_slice(&first[..len]);
    let more = file
        .read_at(&mut start[len..], len as u64)
        .map_err(OpenError::Io)?;
    decode_header(&start[..len + more])
        .map(Into::into)
        .map_err(|_| OpenError::Foreign)
}

/// One page kept open.
struct Entry {
    /// The page file (keys may collide).
    rel: Box<[u8]>,
    page: Rc<OpenPage>,
    /// Its bucket's install generation, read before it was opened.
    generation: u64,
    /// When it was opened by its path.
    opened_ms: u64,
    used_ms: u64,
    /// Tells this entry from an earlier one of the same key in the
    /// eviction queue.
    serial: u64,
    /// Used since it was last queued for eviction (its second chance).
    referenced: bool,
    /// HITs served from it.
    uses: u32,
}

/// The pages kept open of one tree, by key ([`crate::tree::path_key`]).
struct TreePages {
    tree: Rc<Tree>,
    pages: HashMap<u64, Entry, BuildKey>,
}

/// An entry's place in the eviction queue.
#[derive(Debug, Clone, Copy)]
struct Queued {
    tree_id: u64,
    key: u64,
    serial: u64,
}

/// A worker's open pages, by tree (its id) and page.
pub struct OpenPages {
    config: OpenCacheConfig,
    trees: HashMap<u64, TreePages, BuildKey>,
    len: usize,
    /// The entries in the order they were kept, with a second chance for
    /// those used since (the clock algorithm): evicting one costs O(1)
    /// amortized, so a full cache closes one page per page it opens, never
    /// a batch at once. Entries gone otherwise leave records that are
    /// skipped, and dropped when they outnumber the live ones.
    queue: VecDeque<Queued>,
    serial: u64,
    /// Bytes of the kept pages held in memory.
    memory_used: usize,
    /// Headers of pages opened, also those not kept.
    headers: HeaderCache,
}

impl OpenPages {
    /// A cache as configured, holding at most `limit` pages (the share of
    /// the worker's open-file limit it may use).
    pub fn new(config: OpenCacheConfig, limit: usize) -> Self {
        OpenPages {
            config: OpenCacheConfig {
                max: config.max.min(limit),
                ..config
            },
            trees: HashMap::default(),
            len: 0,
            queue: VecDeque::new(),
            serial: 0,
            memory_used: 0,
            headers: HeaderCache::default(),
        }
    }

    /// Pages kept open now.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of kept pages held in memory now.
    pub fn memory_used(&self) -> usize {
        self.memory_used
    }

    /// The page `rel` (whose key is `key`, from [`crate::tree::path_key`])
    /// of `tree`: the one kept open while no other file took its place,
    /// else opened now (and kept). `now_ms` is a monotonic clock. When
    /// descriptors run out, half the kept pages are closed and the page
    /// opened again.
    pub fn open(
        &mut self,
        tree: &Rc<Tree>,
        rel: &[u8],
        key: u64,
        now_ms: u64,
    ) -> Result<Rc<OpenPage>, OpenError> {
        if let Some(page) = self.kept(tree, rel, key, now_ms) {
            return Ok(page);
        }
        let generation = tree.state().install_generation(key);
        let page = match OpenPage::open(tree, rel, &mut self.headers) {
            Err(OpenError::Io(e)) if out_of_descriptors(&e) && !self.is_empty() => {
                self.shrink(self.len / 2 + 1);
                OpenPage::open(tree, rel, &mut self.headers)
            }
            other => other,
        };
        let page = Rc::new(page?);
        self.keep(tree, rel, key, generation, page.clone(), now_ms);
        Ok(page)
    }

    /// The entry of `rel`, if it is still the page's file.
    fn kept(&mut self, tree: &Tree, rel: &[u8], key: u64, now_ms: u64) -> Option<Rc<OpenPage>> {
        let state = tree.state();
        let pages = &mut self.trees.get_mut(&state.tree_id())?.pages;
        let entry = pages.get_mut(&key)?;
        if *entry.rel != *rel {
            return None;
        }
        let current = entry.generation == state.install_generation(key)
            && now_ms.saturating_sub(entry.opened_ms) < self.config.valid_ms;
        if !current {
            let gone = pages.remove(&key);
            self.len -= 1;
            self.memory_used -= gone.map_or(0, |e| held(&e));
            return None;
        }
        entry.referenced = true;
        entry.used_ms = now_ms;
        entry.uses = entry.uses.saturating_add(1);
        let page = entry.page.clone();
        if entry.uses == 2 {
            self.hold_in_memory(&page);
        }
        Some(page)
    }

    /// Reads a page used again into memory, if the budget has room for it
    /// (a page takes at most a sixteenth of it). A failed read leaves the
    /// page served from its file.
    fn hold_in_memory(&mut self, page: &OpenPage) {
        let size = page.size as usize;
        let budget = self.config.memory;
        if size == 0 || size > budget / 16 || self.memory_used + size > budget {
            return;
        }
        if let Ok(true) = page.read_into_memory() {
            self.memory_used += size;
        }
    }

    fn keep(
        &mut self,
        tree: &Rc<Tree>,
        rel: &[u8],
        key: u64,
        generation: u64,
        page: Rc<OpenPage>,
        now_ms: u64,
    ) {
        if self.config.max == 0 || !tree.state().writable() {
            return;
        }
        if self.len >= self.config.max {
            self.evict_one();
        }
        if self.queue.len() > 2 * self.len + 64 {
            self.drop_stale_records();
        }
        self.serial += 1;
        let entry = Entry {
            rel: rel.into(),
            page,
            generation,
            opened_ms: now_ms,
            used_ms: now_ms,
            serial: self.serial,
            referenced: false,
            uses: 1,
        };
        let tree_id = tree.state().tree_id();
        let tree_pages = self.trees.entry(tree_id).or_insert_with(|| TreePages {
            tree: tree.clone(),
            pages: HashMap::default(),
        });
        match tree_pages.pages.insert(key, entry) {
            None => self.len += 1,
            Some(replaced) => self.memory_used -= held(&replaced),
        }
        self.queue.push_back(Queued {
            tree_id,
            key,
            serial: self.serial,
        });
    }

    /// Closes about the `n` least recently used pages (all when `n` is
    /// the number kept).
    pub fn shrink(&mut self, n: usize) {
        if n >= self.len {
            self.trees.clear();
            self.queue.clear();
            self.len = 0;
            self.memory_used = 0;
            return;
        }
        for _ in 0..n {
            self.evict_one();
        }
    }

    /// Closes the page longest kept and not used since it was queued
    /// (those used get a second chance: queued again, unmarked).
    fn evict_one(&mut self) {
        while let Some(queued) = self.queue.pop_front() {
            let Some(tree_pages) = self.trees.get_mut(&queued.tree_id) else {
                continue;
            };
            let Some(entry) = tree_pages.pages.get_mut(&queued.key) else {
                continue;
            };
            if entry.serial != queued.serial {
                continue;
            }
            if entry.referenced {
                entry.referenced = false;
                self.queue.push_back(queued);
                continue;
            }
            let gone = tree_pages.pages.remove(&queued.key);
            if tree_pages.pages.is_empty() {
                self.trees.remove(&queued.tree_id);
            }
            self.len -= 1;
            self.memory_used -= gone.map_or(0, |e| held(&e));
            return;
        }
    }

    /// Forgets the queue's records of entries no longer kept.
    fn drop_stale_records(&mut self) {
        let trees = &self.trees;
        self.queue.retain(|q| {
            trees
                .get(&q.tree_id)
                .and_then(|t| t.pages.get(&q.key))
                .is_some_and(|e| e.serial == q.serial)
        });
    }

    /// Closes the pages that cannot be served any more: replaced, purged
    /// past any stale serving, of a retired tree, or unused for `inactive`.
    /// `now` is the wall clock of purge marks. Returns how many it closed.
    pub fn sweep(&mut self, now_ms: u64, now: FileTime) -> usize {
        let before = self.len;
        let inactive_ms = self.config.inactive_ms;
        self.trees.retain(|_, t| !t.tree.state().retired());
        self.retain(|tree, entry| {
            let state = tree.state();
            let keys = PageKeys::of(&entry.rel);
            let purged = state
                .staleness(&keys, &entry.page.tag_keys, entry.page.modified)
                .is_some_and(|s| {
                    let stale_ms = now.as_nanos().saturating_sub(s.since.as_nanos()) / 1_000_000;
                    s.hard || stale_ms >= state.max_stale_ms()
                });
            entry.generation == state.install_generation(keys.page())
                && now_ms.saturating_sub(entry.used_ms) < inactive_ms
                && !purged
        });
        before - self.len
    }

    /// Keeps the entries `keep` says yes to, with their tree.
    fn retain(&mut self, mut keep: impl FnMut(&Tree, &Entry) -> bool) {
        let (mut len, mut memory) = (0, 0);
        self.trees.retain(|_, t| {
            let tree = &t.tree;
            t.pages.retain(|_, entry| keep(tree, entry));
            len += t.pages.len();
            memory += t.pages.values().map(held).sum::<usize>();
            !t.pages.is_empty()
        });
        self.len = len;
        self.memory_used = memory;
    }
}

/// The bytes an entry holds in memory.
fn held(entry: &Entry) -> usize {
    entry.page.memory.get().map_or(0, |bytes| bytes.len())
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::path_key;
    use crate::tree::tests::Scratch;

    fn open(cache: &mut OpenPages, tree: &Rc<Tree>, rel: &[u8], now_ms: u64) -> Rc<OpenPage> {
        cache.open(tree, rel, path_key(rel), now_ms).unwrap()
    }

    #[test]
    fn parses_the_directive() {
        assert_eq!(parse_open_cache(&["off"]), Ok(OpenCacheConfig::off()));
        assert_eq!(
            parse_open_cache(&["max=10"]),
            Ok(OpenCacheConfig {
                max: 10,
                ..OpenCacheConfig::default()
            })
        );
        assert_eq!(
            parse_open_cache(&["max=5000", "inactive=20s", "valid=1m30s"]),
            Ok(OpenCacheConfig {
                max: 5000,
                inactive_ms: 20_000,
                valid_ms: 90_000,
                memory: 4 << 20,
            })
        );
        assert_eq!(
            parse_open_cache(&["max=10", "memory=512k"]).map(|c| c.memory),
            Ok(512 << 10)
        );
        assert_eq!(
            parse_open_cache(&["max=10", "memory=0"]).map(|c| c.memory),
            Ok(0)
        );
        for bad in [
            &["max=0"][..],
            &["max=x"],
            &["max=-1"],
            &["max=1", "inactive=soon"],
            &["inactive=1s"],
            &["max=1", "max=2"],
            &["max=1", "size=2"],
            &["max=1", "memory=1x"],
            &["max=1", "memory="],
            &["max=1", "memory=k"],
            &["max=1", "memory=-1m"],
            &["off", "max=1"],
            &["on"],
        ] {
            assert!(parse_open_cache(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn parses_nginx_sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("4k"), Some(4096));
        assert_eq!(parse_size("4M"), Some(4 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "m", "1.5m", "1mb", "-1", "99999999999999999999g"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_nginx_times() {
        assert_eq!(parse_time_ms("30"), Some(30_000));
        assert_eq!(parse_time_ms("30s"), Some(30_000));
        assert_eq!(parse_time_ms("500ms"), Some(500));
        assert_eq!(parse_time_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_time_ms("2d"), Some(172_800_000));
        for bad in ["", "s", "1x", "30m1h", "1s1s", "-1s", "1.5s"] {
            assert_eq!(parse_time_ms(bad), None, "{bad}");
        }
    }

    /// A new tree, a clock tick old: pages written now are not older than
    /// its creation (which counts as a purge).
    fn new_tree(name: &str) -> (Scratch, Rc<Tree>) {
        let scratch = Scratch::new(name);
        let tree = Rc::new(Tree::open(&scratch.0).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(10));
        (scratch, tree)
    }

    fn page(tree: &Tree, rel: &str, body: &str) {
        let uri = format!("/{rel}");
        let header = crate::page::encode_header(b"text/html", uri.as_bytes(), b"").unwrap();
        let limits = crate::store::PageLimits::default();
        let mut writer = crate::store::PageWriter::create(tree, &header, limits).unwrap();
        writer.write(body.as_bytes()).unwrap();
        writer.commit(tree, rel.as_bytes()).unwrap();
    }

    fn body(page: &OpenPage) -> String {
        let mut buf = vec![0; page.identity_len as usize];
        page.file.read_exact_at(&mut buf, page.body_offset).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn same(a: &Rc<OpenPage>, b: &Rc<OpenPage>) -> bool {
        Rc::ptr_eq(a, b)
    }

    #[test]
    fn a_kept_page_serves_until_another_file_takes_its_place() {
        let (_scratch, tree) = new_tree("open-pages");
        page(&tree, "a.html", "one");
        let mut cache = OpenPages::new(OpenCacheConfig::default(), usize::MAX);
        let first = open(&mut cache, &tree, b"a.html", 0);
        assert_eq!(body(&first), "one");
        assert!(same(&first, &open(&mut cache, &tree, b"a.html", 1)));
        page(&tree, "a.html", "two");
        let second = open(&mut cache, &tree, b"a.html", 2);
        assert_eq!(body(&second), "two");
        assert!(!same(&first, &second));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn entries_are_opened_again_once_valid_old() {
        let (_scratch, tree) = new_tree("open-pages-valid");
        page(&tree, "a.html", "one");
        let config = OpenCacheConfig {
            valid_ms: 100,
            ..OpenCacheConfig::default()
        };
        let mut cache = OpenPages::new(config, usize::MAX);
        let first = open(&mut cache, &tree, b"a.html", 0);
        assert!(same(&first, &open(&mut cache, &tree, b"a.html", 99)));
        assert!(!same(&first, &open(&mut cache, &tree, b"a.html", 100)));
    }

    #[test]
    fn bounded_least_recently_used_go_first() {
        let (_scratch, tree) = new_tree("open-pages-max");
        for i in 0..20 {
            page(&tree, &format!("{i}.html"), "x");
        }
        let config = OpenCacheConfig {
            max: 16,
            ..OpenCacheConfig::default()
        };
        let mut cache = OpenPages::new(config, 8);
        let hot = open(&mut cache, &tree, b"0.html", 0);
        for i in 1..20 {
            open(&mut cache, &tree, format!("{i}.html").as_bytes(), i);
            open(&mut cache, &tree, b"0.html", i);
            assert!(cache.len() <= 8, "{}", cache.len());
        }
        assert!(same(&hot, &open(&mut cache, &tree, b"0.html", 30)));
    }

    #[test]
    fn a_full_cache_closes_one_page_per_page_it_opens() {
        let (_scratch, tree) = new_tree("open-pages-evict");
        for i in 0..100 {
            page(&tree, &format!("{i}.html"), "x");
        }
        page(&tree, "hot.html", "hot");
        let config = OpenCacheConfig {
            max: 64,
            ..OpenCacheConfig::default()
        };
        let mut cache = OpenPages::new(config, usize::MAX);
        let hot = open(&mut cache, &tree, b"hot.html", 0);
        for round in 0..3 {
            for i in 0..100 {
                let rel = format!("{i}.html");
                let before = cache.len();
                open(&mut cache, &tree, rel.as_bytes(), round);
                assert!(cache.len() <= 64, "{} kept", cache.len());
                assert!(cache.len() + 1 >= before, "a batch closed at once");
                let again = open(&mut cache, &tree, b"hot.html", round);
                assert!(same(&hot, &again), "the hot page was closed");
                // a page replaced leaves its record behind
                tree.state().note_install(path_key(rel.as_bytes()));
                assert!(cache.queue.len() <= 2 * cache.len() + 64 + 1);
            }
        }
    }

    #[test]
    fn sweeps_close_replaced_purged_and_inactive_pages() {
        let (_scratch, tree) = new_tree("open-pages-sweep");
        for name in ["kept.html", "replaced.html", "purged.html", "idle.html"] {
            page(&tree, name, "x");
        }
        let config = OpenCacheConfig {
            inactive_ms: 1000,
            ..OpenCacheConfig::default()
        };
        let mut cache = OpenPages::new(config, usize::MAX);
        for name in ["kept.html", "replaced.html", "purged.html", "idle.html"] {
            open(&mut cache, &tree, name.as_bytes(), 0);
        }
        open(&mut cache, &tree, b"kept.html", 900);
        open(&mut cache, &tree, b"replaced.html", 900);
        open(&mut cache, &tree, b"purged.html", 900);
        page(&tree, "replaced.html", "y");
        std::thread::sleep(std::time::Duration::from_millis(2));
        tree.state()
            .mark_purged(path_key(b"purged.html"), false)
            .unwrap();
        assert_eq!(cache.sweep(1000, crate::tree::now()), 3);
        assert_eq!(cache.len(), 1);
        // a tree retired closes all its pages
        tree.state().retire();
        assert_eq!(cache.sweep(1000, crate::tree::now()), 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn soft_purged_pages_stay_open_while_they_may_be_served_stale() {
        let (_scratch, tree) = new_tree("open-pages-stale");
        page(&tree, "a.html", "x");
        tree.state().note_stale_ms(60_000);
        let mut cache = OpenPages::new(OpenCacheConfig::default(), usize::MAX);
        open(&mut cache, &tree, b"a.html", 0);
        std::thread::sleep(std::time::Duration::from_millis(2));
        tree.state()
            .mark_purged(path_key(b"a.html"), false)
            .unwrap();
        assert_eq!(cache.sweep(1, crate::tree::now()), 0);
        tree.state().mark_purged(path_key(b"a.html"), true).unwrap();
        assert_eq!(cache.sweep(2, crate::tree::now()), 1);
    }

    #[test]
    fn pages_whose_keys_collide_are_told_apart() {
        let (_scratch, tree) = new_tree("open-pages-collide");
        page(&tree, "a.html", "a");
        page(&tree, "b.html", "b");
        let mut cache = OpenPages::new(OpenCacheConfig::default(), usize::MAX);
        let a = cache.open(&tree, b"a.html", 7, 0).unwrap();
        let b = cache.open(&tree, b"b.html", 7, 0).unwrap();
        assert_eq!((body(&a), body(&b)), ("a".into(), "b".into()));
        assert_eq!(body(&cache.open(&tree, b"a.html", 7, 0).unwrap()), "a");
    }

    #[test]
    fn pages_used_again_are_held_in_memory_within_the_budget() {
        let (_scratch, tree) = new_tree("open-pages-memory");
        let body_of = |i: usize| format!("{i:04}").repeat(25); // 100 bytes
        for i in 0..8 {
            page(&tree, &format!("{i}.html"), &body_of(i));
        }
        let size = open(
            &mut OpenPages::new(OpenCacheConfig::off(), 0),
            &tree,
            b"0.html",
            0,
        )
        .size;
        // a page may take a sixteenth of the budget: room for all eight
        let config = OpenCacheConfig {
            memory: size as usize * 16,
            ..OpenCacheConfig::default()
        };
        let mut cache = OpenPages::new(config, usize::MAX);
        let first = open(&mut cache, &tree, b"0.html", 0);
        assert!(first.memory.get().is_none(), "held on its first use");
        let again = open(&mut cache, &tree, b"0.html", 1);
        let bytes = again
            .in_memory(again.body_offset, again.identity_len)
            .unwrap();
        assert_eq!(bytes, body_of(0).as_bytes());
        assert_eq!(cache.memory_used(), size as usize);
        for i in 1..8 {
            let rel = format!("{i}.html");
            open(&mut cache, &tree, rel.as_bytes(), 2);
            open(&mut cache, &tree, rel.as_bytes(), 3);
        }
        assert!(cache.memory_used() <= config.memory);
        // a replaced page's bytes go with its entry
        page(&tree, "0.html", &body_of(9));
        let replaced = open(&mut cache, &tree, b"0.html", 4);
        assert_eq!(body(&replaced), body_of(9));
        assert!(replaced.memory.get().is_none());
        let held_now = cache.memory_used();
        assert!(held_now < config.memory, "the old version's bytes freed");
        let replaced = open(&mut cache, &tree, b"0.html", 5);
        assert_eq!(
            replaced.in_memory(replaced.body_offset, replaced.identity_len),
            Some(body_of(9).as_bytes())
        );
        assert_eq!(cache.memory_used(), held_now + size as usize);
        cache.shrink(cache.len());
        assert_eq!(cache.memory_used(), 0);
    }

    #[test]
    fn memory_off_or_pages_too_large_stay_on_disk() {
        let (_scratch, tree) = new_tree("open-pages-memory-off");
        page(&tree, "a.html", &"x".repeat(1000));
        for memory in [0, 1000] {
            let config = OpenCacheConfig {
                memory,
                ..OpenCacheConfig::default()
            };
            let mut cache = OpenPages::new(config, usize::MAX);
            open(&mut cache, &tree, b"a.html", 0);
            let page = open(&mut cache, &tree, b"a.html", 1);
            assert!(page.memory.get().is_none(), "memory={memory}");
            assert_eq!(cache.memory_used(), 0);
        }
    }

    #[test]
    fn off_keeps_nothing() {
        let (_scratch, tree) = new_tree("open-pages-off");
        page(&tree, "a.html", "x");
        let mut cache = OpenPages::new(OpenCacheConfig::off(), usize::MAX);
        let first = open(&mut cache, &tree, b"a.html", 0);
        assert!(!same(&first, &open(&mut cache, &tree, b"a.html", 0)));
        assert!(cache.is_empty());
    }
}
