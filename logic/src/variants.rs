//! Compressed variants of stored pages, made off the nginx event loop.
//!
//! A MISS installs the identity page as usual and hands a job to its
//! worker's compressor thread; the thread compresses the body into the
//! configured encodings and writes one new file with the identity body
//! followed by the variants (`page`'s `static_gen 2` format), then renames
//! it over the page, with the page's own time, only if the page is still
//! the file it compressed: a page purged or replaced meanwhile is left
//! alone. So a HIT serves a variant only of the version it would serve as
//! identity, a purge removes all of a page at once, and a crash leaves at
//! worst a temporary file (deleted at the next start), never a half
//! variant. A HIT never waits: until the variants are there, the identity
//! page is served.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryIter, TrySendError};

use rustix::fs::{fstat, openat, Mode, OFlags};

use crate::compress::compress_page;
use crate::encoding::CompressConfig;
use crate::page::{decode_header, encode_variants_header, PageVersion, MAGIC, MAX_HEADER_LEN};
use crate::store::{PageLimits, PageWriter};
use crate::sweep::Priority;
use crate::tree::{FileTime, Tree, TreeError};

/// A page whose variants to make.
#[derive(Debug, Clone)]
pub struct Job {
    pub root: PathBuf,
    /// The page file, relative to the root.
    pub rel: Vec<u8>,
    /// The file as installed: another one at `rel` is left alone.
    pub version: PageVersion,
    pub config: CompressConfig,
}

/// What became of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The page now holds this many variants.
    Stored(usize),
    /// No variant was smaller than the page (or the page is too short).
    NothingSmaller,
    /// The page was purged or replaced before or while compressing.
    Gone,
}

/// Makes the variants of the page `job` names, in `tree`.
pub fn add_variants(tree: &Tree, job: &Job) -> Result<Outcome, TreeError> {
    let path = || tree.display_path(&job.rel);
    let Ok((dir, name)) = tree.page_parent(&job.rel, None) else {
        return Ok(Outcome::Gone);
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(file) = openat(&dir, name, flags, Mode::empty()) else {
        return Ok(Outcome::Gone);
    };
    let stat = fstat(&file).map_err(|e| TreeError::io("stat", path(), e))?;
    let version = PageVersion {
        dev: stat.st_dev,
        ino: stat.st_ino,
        size: stat.st_size as u64,
        mtime_sec: stat.st_mtime,
        mtime_nsec: stat.st_mtime_nsec as i64,
    };
    if version != job.version {
        return Ok(Outcome::Gone);
    }
    let file = std::fs::File::from(file);
    let mut page = vec![0; version.size as usize];
    file.read_exact_at(&mut page, 0)
        .map_err(|e| TreeError::io("read", path(), e))?;
    // only a page with its identity body alone (the module's own, not yet
    // compressed)
    let header_end = page.len().min(MAX_HEADER_LEN);
    let header = match decode_header(&page[..header_end]) {
        Ok(header) if page.starts_with(MAGIC) => header,
        _ => return Ok(Outcome::Gone),
    };
    let body = &page[header.body_offset..];
    let variants =
        compress_page(body, &job.config).map_err(|e| TreeError::io("compress", path(), e))?;
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
        sec: version.mtime_sec,
        nsec: version.mtime_nsec,
    };
    if writer.replace_page(tree, &job.rel, (version.dev, version.ino), modified)? {
        Ok(Outcome::Stored(variants.len()))
    } else {
        Ok(Outcome::Gone)
    }
}

/// The `uri:` value of a page header.
fn uri_of(header: &[u8]) -> &[u8] {
    header
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"uri: "))
        .unwrap_or_default()
}

/// A worker's compressor: one thread, a bounded queue. When the queue is
/// full, a page stays identity only (nginx's own `gzip` still compresses it
/// per request, where it is on). The thread has no nginx log: its failures
/// come back to the worker through [`Compressor::failures`].
pub struct Compressor {
    jobs: SyncSender<Job>,
    failures: Receiver<TreeError>,
}

/// Jobs waiting at most.
const QUEUE: usize = 1024;
/// Trees the thread keeps open.
const KEPT_TREES: usize = 64;
/// Failures kept for the worker to log; more are dropped until it has
/// read them (the log throttles one cause anyway).
const KEPT_FAILURES: usize = 16;

impl Compressor {
    /// Starts the thread (signals blocked, a lower priority than the
    /// worker: compressing must not slow down the requests being served).
    pub fn start() -> io::Result<Compressor> {
        let (jobs, queue) = sync_channel(QUEUE);
        let (failed, failures) = sync_channel(KEPT_FAILURES);
        crate::sweep::spawn_background("static_gen compress", Priority::Nice(10), move || {
            run(queue, failed)
        })?;
        Ok(Compressor { jobs, failures })
    }

    /// The jobs that failed since the last call (a variant not written:
    /// disk full, ...), for the worker to log.
    pub fn failures(&self) -> TryIter<'_, TreeError> {
        self.failures.try_iter()
    }

    /// Queues a job; false when the queue is full (or the thread is gone).
    pub fn submit(&self, job: Job) -> bool {
        match self.jobs.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn run(queue: Receiver<Job>, failed: SyncSender<TreeError>) {
    let mut trees: HashMap<PathBuf, Tree> = HashMap::new();
    for job in queue {
        if !trees.get(&job.root).is_some_and(Tree::is_current) {
            if trees.len() >= KEPT_TREES {
                trees.clear();
            }
            match Tree::open_existing(&job.root) {
                Some(tree) => trees.insert(job.root.clone(), tree),
                None => continue,
            };
        }
        if let Some(tree) = trees.get(&job.root) {
            // a failure leaves the identity page, which is served as is
            if let Err(err) = add_variants(tree, &job) {
                let _ = failed.try_send(err);
            }
        }
    }
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

    fn html(len: usize) -> Vec<u8> {
        let words = ["static ", "pages ", "<p>nginx</p> ", "module ", "purge "];
        let mut body = Vec::new();
        let mut i = 0;
        while body.len() < len {
            body.extend_from_slice(words[i % words.len()].as_bytes());
            i += 7;
        }
        body
    }

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
            version,
            config: CompressConfig::default(),
        }
    }

    #[test]
    fn variants_join_the_page_and_decode_to_it() {
        let root = Scratch::new("variants");
        let tree = Tree::open(&root.0).unwrap();
        let body = html(20_000);
        let job = store(&tree, "a/index.html", "/a/", &body);
        let before = fs::metadata(root.0.join("a/index.html")).unwrap();
        assert_eq!(add_variants(&tree, &job).unwrap(), Outcome::Stored(2));
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
        assert_eq!(add_variants(&tree, &job).unwrap(), Outcome::Gone);
        assert!(!root.0.join("a.html").exists(), "a purged page came back");
        let old = store(&tree, "b.html", "/b", &html(20_000));
        store(&tree, "b.html", "/b", &html(30_000));
        assert_eq!(add_variants(&tree, &old).unwrap(), Outcome::Gone);
        let file = fs::read(root.0.join("b.html")).unwrap();
        assert!(file.starts_with(MAGIC), "the newer page was replaced");
    }

    #[test]
    fn short_or_incompressible_pages_stay_identity() {
        let root = Scratch::new("variants-short");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "s.html", "/s", b"<p>short</p>");
        assert_eq!(add_variants(&tree, &job).unwrap(), Outcome::NothingSmaller);
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
        assert_eq!(add_variants(&tree, &job).unwrap(), Outcome::NothingSmaller);
    }

    #[test]
    fn the_compressor_thread_does_the_work() {
        let root = Scratch::new("variants-thread");
        let tree = Tree::open(&root.0).unwrap();
        let job = store(&tree, "t.html", "/t", &html(20_000));
        let compressor = Compressor::start().unwrap();
        assert!(compressor.submit(job));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !fs::read(root.0.join("t.html"))
            .unwrap()
            .starts_with(crate::page::MAGIC_VARIANTS)
        {
            assert!(std::time::Instant::now() < deadline, "no variants made");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
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
        let compressor = Compressor::start().unwrap();
        assert!(compressor.submit(job));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let failure = loop {
            if let Some(failure) = compressor.failures().next() {
                break failure;
            }
            assert!(std::time::Instant::now() < deadline, "no failure reported");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_ne!(failure.errno(), 0, "{failure}");
        assert!(failure.to_string().contains(".static_gen/tmp"), "{failure}");
        assert!(compressor.failures().next().is_none(), "reported once");
        assert!(fs::read(root.0.join("f.html")).unwrap().starts_with(MAGIC));
    }
}
