//! Writing a page: into a temporary file under the root's reserved
//! directory, renamed into place only once the whole body is there, so a
//! reader never sees a partial page and a failed or abandoned write leaves
//! nothing behind.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::access::{dir_mode, DEFAULT_FILE_MODE};
use crate::epoch::{coarse_now, just_after, SharedEpoch};
use crate::journal::{self, FileTime, Mark, TreeLock};
use crate::path::RESERVED_DIR;

const COPY_CHUNK: usize = 64 * 1024;
/// Bytes gathered before a write: nginx passes a body in buffers of a few
/// KB, and most pages fit here whole, so they take one `write`.
const WRITE_BUFFER: usize = 32 * 1024;

/// What a page may be, and how it is written.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// The announced body length (`Content-Length`), if any.
    pub expected: Option<u64>,
    /// `static_gen_max_size`: a longer body is not stored.
    pub max: Option<u64>,
    /// `static_gen_access`.
    pub mode: u32,
}

impl Default for PageLimits {
    fn default() -> Self {
        PageLimits {
            expected: None,
            max: None,
            mode: DEFAULT_FILE_MODE,
        }
    }
}

/// A failed step of storing a page, with the path it concerned.
#[derive(Debug)]
pub enum StoreError {
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The body ended with another length than the response announced.
    Incomplete { expected: u64, written: u64 },
    /// The body is longer than `static_gen_max_size`.
    TooLarge { max: u64 },
}

impl StoreError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// The OS error number, for nginx's log line.
    pub fn errno(&self) -> i32 {
        match self {
            StoreError::Io { source, .. } => source.raw_os_error().unwrap_or(0),
            _ => 0,
        }
    }

    /// The failed operation, or `None` when the response itself was at fault.
    pub fn io_op(&self) -> Option<&'static str> {
        match self {
            StoreError::Io { op, .. } => Some(op),
            _ => None,
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io { op, path, .. } => write!(f, "{op} \"{}\" failed", path.display()),
            StoreError::Incomplete { expected, written } => {
                write!(f, "body has {written} bytes, {expected} announced")
            }
            StoreError::TooLarge { max } => write!(f, "body is larger than {max} bytes"),
        }
    }
}

impl std::error::Error for StoreError {}

/// The reserved directory under a root: temporary files and purged trees.
pub fn reserved_dir(root: &Path) -> PathBuf {
    root.join(RESERVED_DIR)
}

/// Mode of the reserved directory, which every worker reads.
pub(crate) const RESERVED_MODE: u32 = 0o755;

/// Opens (creating it, and the reserved directory, if needed) one of the
/// module's own files under `root`, for reading and writing.
pub(crate) fn open_reserved_file(root: &Path, name: &str) -> Result<(File, PathBuf), StoreError> {
    let path = reserved_dir(root).join(name);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
    };
    let file = match open() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_dirs(&reserved_dir(root), RESERVED_MODE)?;
            open()
        }
        other => other,
    }
    .map_err(|e| StoreError::io("open", &path, e))?;
    Ok((file, path))
}

/// A page being written. Dropping it before [`PageWriter::commit`] removes
/// the temporary file.
#[derive(Debug)]
pub struct PageWriter {
    file: File,
    /// Header and body bytes not yet written.
    pending: Vec<u8>,
    /// No later than the file's time, whenever it is written.
    started: FileTime,
    temp: PathBuf,
    body_written: u64,
    limits: PageLimits,
    committed: bool,
}

impl PageWriter {
    /// Opens a temporary file under `root` and writes the page header.
    pub fn create(root: &Path, header: &[u8], limits: PageLimits) -> Result<Self, StoreError> {
        if let (Some(expected), Some(max)) = (limits.expected, limits.max) {
            if expected > max {
                return Err(StoreError::TooLarge { max });
            }
        }
        let started = coarse_now();
        let temp_dir = reserved_dir(root).join("tmp");
        let temp = temp_dir.join(unique_name());
        let file = match open_new(&temp, limits.mode) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs(&temp_dir, dir_mode(limits.mode))?;
                open_new(&temp, limits.mode)
            }
            other => other,
        }
        .map_err(|e| StoreError::io("open", &temp, e))?;
        let whole_page = limits.expected.map_or(usize::MAX, |len| {
            usize::try_from(len).map_or(usize::MAX, |len| len.saturating_add(header.len()))
        });
        let mut writer = PageWriter {
            file,
            pending: Vec::with_capacity(WRITE_BUFFER.min(whole_page)),
            started,
            temp,
            body_written: 0,
            limits,
            committed: false,
        };
        writer.append(header)?;
        Ok(writer)
    }

    /// Appends body bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        self.check_room(data.len() as u64)?;
        self.append(data)?;
        self.body_written += data.len() as u64;
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.pending.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
        }
        if data.len() >= WRITE_BUFFER {
            write_to(&mut self.file, &self.temp, data)
        } else {
            self.pending.extend_from_slice(data);
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let written = write_to(&mut self.file, &self.temp, &self.pending);
        self.pending.clear();
        written
    }

    /// Appends `len` body bytes read from `src` at `offset` (a buffer that
    /// nginx keeps in a temporary file rather than in memory).
    pub fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> Result<(), StoreError> {
        self.check_room(len)?;
        let mut chunk = vec![0u8; COPY_CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let want = chunk.len().min((len - done) as usize);
            let got = src
                .read_at(&mut chunk[..want], offset + done)
                .map_err(|e| StoreError::io("read buffer of", &self.temp, e))?;
            if got == 0 {
                let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(StoreError::io("read buffer of", &self.temp, eof));
            }
            self.write(&chunk[..got])?;
            done += got as u64;
        }
        Ok(())
    }

    pub fn body_written(&self) -> u64 {
        self.body_written
    }

    /// Renames the complete page to `dest`, creating its directories.
    pub fn commit(mut self, dest: &Path) -> Result<(), StoreError> {
        if let Some(expected) = self.limits.expected {
            if expected != self.body_written {
                return Err(StoreError::Incomplete {
                    expected,
                    written: self.body_written,
                });
            }
        }
        self.flush()?;
        // the process umask must not make pages unreadable to other workers
        if self.limits.mode & process_umask() != 0 {
            self.file
                .set_permissions(Permissions::from_mode(self.limits.mode))
                .map_err(|e| StoreError::io("chmod", &self.temp, e))?;
        }
        let renamed = match fs::rename(&self.temp, dest) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = dest.parent() {
                    create_dirs(parent, dir_mode(self.limits.mode))?;
                }
                fs::rename(&self.temp, dest)
            }
            other => other,
        };
        renamed.map_err(|e| StoreError::io("rename to", dest, e))?;
        self.committed = true;
        Ok(())
    }

    /// Installs the page at `dest` unless a purge recorded since `mark`
    /// covers `uri` (then the page is dropped and `Ok(false)` returned).
    /// `epoch` is the tree's, mapped.
    pub fn commit_unless_purged(
        mut self,
        dest: &Path,
        root: &Path,
        mark: Mark,
        uri: &[u8],
        epoch: &SharedEpoch,
    ) -> Result<bool, StoreError> {
        self.flush()?;
        let _lock = TreeLock::shared(root)?;
        if journal::purged_since(root, mark, uri)? {
            return Ok(false);
        }
        if let Some(epoch) = epoch.load() {
            self.stamp_after(epoch)?;
        }
        self.commit(dest).map(|()| true)
    }

    /// A page fetched after a whole-tree purge must not count as stale, but
    /// file times are coarse: one written within a clock tick of the purge
    /// may bear a time no later than its epoch. Such a page gets the time
    /// just after the epoch (rare: only when the write began that close).
    fn stamp_after(&self, epoch: FileTime) -> Result<(), StoreError> {
        if self.started > epoch {
            return Ok(());
        }
        let after = just_after(epoch);
        let times = [
            libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            libc::timespec {
                tv_sec: after.sec,
                tv_nsec: after.nsec,
            },
        ];
        // SAFETY: futimens on a descriptor we own, with two timespecs.
        if unsafe { libc::futimens(self.file.as_raw_fd(), times.as_ptr()) } != 0 {
            return Err(StoreError::io(
                "futimens",
                &self.temp,
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn check_room(&self, more: u64) -> Result<(), StoreError> {
        let total = self.body_written + more;
        if let Some(max) = self.limits.max.filter(|&max| total > max) {
            return Err(StoreError::TooLarge { max });
        }
        match self.limits.expected {
            Some(expected) if total > expected => Err(StoreError::Incomplete {
                expected,
                written: total,
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for PageWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// The process's file mode creation mask, read once (reading it means
/// setting it; nginx workers do not change it).
fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        // SAFETY: umask only swaps the mask; the old one is put back.
        unsafe {
            let mask = libc::umask(0o022);
            libc::umask(mask);
            mask as u32
        }
    })
}

fn write_to(file: &mut File, path: &Path, data: &[u8]) -> Result<(), StoreError> {
    file.write_all(data)
        .map_err(|e| StoreError::io("write", path, e))
}

fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

pub(crate) fn create_dirs(dir: &Path, mode: u32) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| StoreError::io("mkdir", dir, e))
}

/// A name no other writer in any process uses: pid, then a per-process
/// sequence.
pub(crate) fn unique_name() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    format!("{}.{n}", std::process::id())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A scratch directory removed at drop.
    pub struct Scratch(pub PathBuf);

    impl Scratch {
        pub fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("sg-logic-{name}-{}", unique_name()));
            fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn expecting(len: u64) -> PageLimits {
        PageLimits {
            expected: Some(len),
            ..PageLimits::default()
        }
    }

    #[test]
    fn access_mode_applies_to_pages_and_directories() {
        let root = Scratch::new("mode");
        let limits = PageLimits {
            mode: 0o640,
            ..PageLimits::default()
        };
        let mut writer = PageWriter::create(&root.0, b"", limits).unwrap();
        writer.write(b"x").unwrap();
        let dest = root.0.join("d/e.html");
        writer.commit(&dest).unwrap();
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            fs::metadata(root.0.join("d")).unwrap().mode() & 0o777,
            0o750
        );
    }

    #[test]
    fn larger_than_max_is_refused_early_or_while_writing() {
        let root = Scratch::new("max");
        let limits = PageLimits {
            expected: Some(11),
            max: Some(10),
            ..PageLimits::default()
        };
        assert!(matches!(
            PageWriter::create(&root.0, b"", limits),
            Err(StoreError::TooLarge { max: 10 })
        ));
        let limits = PageLimits {
            max: Some(10),
            ..PageLimits::default()
        };
        let mut writer = PageWriter::create(&root.0, b"header does not count\n", limits).unwrap();
        writer.write(b"0123456789").unwrap();
        assert!(matches!(
            writer.write(b"!"),
            Err(StoreError::TooLarge { max: 10 })
        ));
        drop(writer);
        assert_eq!(temp_files(&root.0), 0);
    }

    fn temp_files(root: &Path) -> usize {
        fs::read_dir(reserved_dir(root).join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn commit_creates_directories_and_page() {
        let root = Scratch::new("commit");
        let mut writer = PageWriter::create(&root.0, b"H\n", expecting(5)).unwrap();
        writer.write(b"he").unwrap();
        writer.write(b"llo").unwrap();
        let dest = root.0.join("a/b/index.html");
        writer.commit(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"H\nhello");
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o644);
        assert_eq!(
            fs::metadata(root.0.join("a/b")).unwrap().mode() & 0o777,
            0o755
        );
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn pieces_of_any_size_make_the_page() {
        let root = Scratch::new("pieces");
        let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let (small, rest) = body.split_at(100_000);
        let (large, tail) = rest.split_at(40_000);
        let mut writer = PageWriter::create(&root.0, b"H\n", expecting(150_000)).unwrap();
        small
            .chunks(4096)
            .for_each(|piece| writer.write(piece).unwrap());
        writer.write(large).unwrap();
        writer.write(tail).unwrap();
        let dest = root.0.join("big.html");
        writer.commit(&dest).unwrap();
        assert_eq!(
            fs::read(&dest).unwrap(),
            [b"H\n".as_slice(), &body].concat()
        );
    }

    #[test]
    fn commit_replaces_an_older_page() {
        let root = Scratch::new("replace");
        let dest = root.0.join("about.html");
        for body in [&b"old"[..], b"new"] {
            let mut writer = PageWriter::create(&root.0, b"", PageLimits::default()).unwrap();
            writer.write(body).unwrap();
            writer.commit(&dest).unwrap();
        }
        assert_eq!(fs::read(&dest).unwrap(), b"new");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let root = Scratch::new("drop");
        let mut writer = PageWriter::create(&root.0, b"H\n", PageLimits::default()).unwrap();
        writer.write(b"partial").unwrap();
        assert_eq!(temp_files(&root.0), 1);
        drop(writer);
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn short_or_long_body_is_not_committed() {
        let root = Scratch::new("short");
        let dest = root.0.join("x.html");
        let mut writer = PageWriter::create(&root.0, b"", expecting(10)).unwrap();
        writer.write(b"12345").unwrap();
        assert!(matches!(
            writer.commit(&dest),
            Err(StoreError::Incomplete {
                expected: 10,
                written: 5
            })
        ));
        let mut writer = PageWriter::create(&root.0, b"", expecting(3)).unwrap();
        assert!(writer.write(b"12345").is_err());
        drop(writer);
        assert!(!dest.exists());
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn a_page_purged_while_it_was_fetched_is_not_installed() {
        use crate::purge::purge;
        use crate::scope::Scope;
        let root = Scratch::new("race");
        let dest = root.0.join("a/index.html");
        let epoch = SharedEpoch::open(&root.0).unwrap();
        for (scope, installed) in [
            (Scope::All, false),
            (Scope::Uri(b"/a/".to_vec()), false),
            (Scope::Prefix(b"/a".to_vec()), false),
            (Scope::Uri(b"/b/".to_vec()), true),
        ] {
            let mark = journal::mark(&root.0).unwrap();
            let mut writer = PageWriter::create(&root.0, b"", PageLimits::default()).unwrap();
            writer.write(b"fetched before the purge").unwrap();
            purge(&root.0, &scope).unwrap();
            assert_eq!(
                writer
                    .commit_unless_purged(&dest, &root.0, mark, b"/a/", &epoch)
                    .unwrap(),
                installed
            );
            assert_eq!(dest.exists(), installed, "{scope:?}");
            assert_eq!(temp_files(&root.0), 0);
            let _ = fs::remove_file(&dest);
        }
    }

    #[test]
    fn a_page_fetched_right_after_a_whole_purge_is_fresh() {
        let root = Scratch::new("after-purge");
        let epoch = SharedEpoch::open(&root.0).unwrap();
        for n in 0..50 {
            // a whole-tree purge, as `journal::record` stores it (without
            // its other file changes, which can make the kernel hand out
            // precise file times for a while)
            epoch.store(crate::epoch::now());
            let mark = journal::mark(&root.0).unwrap();
            let mut writer = PageWriter::create(&root.0, b"", PageLimits::default()).unwrap();
            writer.write(b"fetched after the purge").unwrap();
            let dest = root.0.join(format!("a/{n}.html"));
            let installed = writer.commit_unless_purged(&dest, &root.0, mark, b"/a/", &epoch);
            assert!(installed.unwrap());
            let written = FileTime::of(&fs::metadata(&dest).unwrap());
            assert!(
                !journal::is_stale(written, epoch.load()),
                "{written:?} not after {:?}",
                epoch.load()
            );
        }
    }

    #[test]
    fn copies_from_file_ranges() {
        let root = Scratch::new("copy");
        let src_path = root.0.join("src");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let mut writer = PageWriter::create(&root.0, b"", PageLimits::default()).unwrap();
        writer.copy_from(&src, 10, 150_000).unwrap();
        let dest = root.0.join("copy.html");
        writer.commit(&dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), &data[10..150_010]);
    }

    #[test]
    fn unwritable_root_reports_path_and_errno() {
        let err = PageWriter::create(
            Path::new("/proc/static-gen-nope"),
            b"",
            PageLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/proc/static-gen-nope"), "{err}");
        assert_ne!(err.errno(), 0);
    }
}
