//! Writing a page: into a temporary file under the tree's reserved
//! directory, renamed into place only once the whole body is there, so a
//! reader never sees a partial page and a failed or abandoned write leaves
//! nothing behind.

use std::ffi::OsString;
use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};

use rustix::fs::{
    fstat, futimens, openat, renameat, statat, unlinkat, AtFlags, Mode, OFlags, Timestamps,
};

use crate::access::{dir_mode, DEFAULT_FILE_MODE};
use crate::journal::{self, Mark};
use crate::page::PageVersion;
use crate::tags::Tags;
use crate::tree::{
    coarse_now, path_key, tag_key, unique_name, FileTime, PageKeys, Tree, TreeError, TreeLock,
    STATE_FILE,
};

/// Fails where this process cannot record installs in the tree's state
/// (a state file it may not write): workers that keep pages open would not
/// learn of them.
fn check_installs_recorded(tree: &Tree) -> Result<(), TreeError> {
    tree.state()
        .check_writable()
        .map_err(|e| TreeError::io("record an install in", tree.reserved_path(STATE_FILE), e))
}

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

/// A page being written. Dropping it before [`PageWriter::commit`] removes
/// the temporary file.
#[derive(Debug)]
pub struct PageWriter {
    file: File,
    /// Header and body bytes not yet written.
    pending: Vec<u8>,
    /// No later than the file's time, whenever it is written.
    started: FileTime,
    temp_dir: OwnedFd,
    temp_name: OsString,
    /// The temporary file's path, for messages.
    temp_path: std::path::PathBuf,
    body_written: u64,
    limits: PageLimits,
    committed: bool,
}

impl PageWriter {
    /// Opens a temporary file in `tree` and writes the page header.
    pub fn create(tree: &Tree, header: &[u8], limits: PageLimits) -> Result<Self, TreeError> {
        if let (Some(expected), Some(max)) = (limits.expected, limits.max) {
            if expected > max {
                return Err(TreeError::TooLarge { max });
            }
        }
        let started = coarse_now();
        let temp_dir = tree.temp_dir(dir_mode(limits.mode))?;
        let temp_name = OsString::from(unique_name());
        let temp_path = tree.reserved_path("tmp").join(&temp_name);
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC;
        let file = openat(
            &temp_dir,
            temp_name.as_os_str(),
            flags | OFlags::NOFOLLOW,
            Mode::from(limits.mode),
        )
        .map(File::from)
        .map_err(|e| TreeError::io("open", &temp_path, e))?;
        let whole_page = limits.expected.map_or(usize::MAX, |len| {
            usize::try_from(len).map_or(usize::MAX, |len| len.saturating_add(header.len()))
        });
        let mut writer = PageWriter {
            file,
            pending: Vec::with_capacity(WRITE_BUFFER.min(whole_page)),
            started,
            temp_dir,
            temp_name,
            temp_path,
            body_written: 0,
            limits,
            committed: false,
        };
        writer.append(header)?;
        Ok(writer)
    }

    /// Appends body bytes.
    pub fn write(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.check_room(data.len() as u64)?;
        self.append(data)?;
        self.body_written += data.len() as u64;
        Ok(())
    }

    fn append(&mut self, data: &[u8]) -> Result<(), TreeError> {
        if self.pending.len() + data.len() > WRITE_BUFFER {
            self.flush()?;
        }
        if data.len() >= WRITE_BUFFER {
            self.write_out(data)
        } else {
            self.pending.extend_from_slice(data);
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), TreeError> {
        let pending = std::mem::take(&mut self.pending);
        let written = self.write_out(&pending);
        self.pending = pending;
        self.pending.clear();
        written
    }

    fn write_out(&mut self, data: &[u8]) -> Result<(), TreeError> {
        self.file
            .write_all(data)
            .map_err(|e| TreeError::io("write", &self.temp_path, e))
    }

    /// Appends `len` body bytes read from `src` at `offset` (a buffer that
    /// nginx keeps in a temporary file rather than in memory).
    pub fn copy_from(&mut self, src: &File, offset: u64, len: u64) -> Result<(), TreeError> {
        self.check_room(len)?;
        let mut chunk = vec![0u8; COPY_CHUNK.min(len as usize)];
        let mut done = 0u64;
        while done < len {
            let want = chunk.len().min((len - done) as usize);
            let got = src
                .read_at(&mut chunk[..want], offset + done)
                .map_err(|e| TreeError::io("read buffer of", &self.temp_path, e))?;
            if got == 0 {
                let eof = io::Error::from(io::ErrorKind::UnexpectedEof);
                return Err(TreeError::io("read buffer of", &self.temp_path, eof));
            }
            self.write(&chunk[..got])?;
            done += got as u64;
        }
        Ok(())
    }

    pub fn body_written(&self) -> u64 {
        self.body_written
    }

    /// True once the body has the length the response announced: the
    /// protocol marks that end, so the page is complete even before the
    /// upstream module has noticed it.
    pub fn has_announced_length(&self) -> bool {
        self.limits.expected == Some(self.body_written)
    }

    /// Renames the complete page to `rel` (a path from
    /// [`crate::path::page_file`]) in `tree`, creating its directories,
    /// and records the install in the shared state; returns the installed
    /// file's version.
    pub fn commit(mut self, tree: &Tree, rel: &[u8]) -> Result<PageVersion, TreeError> {
        check_installs_recorded(tree)?;
        if let Some(expected) = self.limits.expected {
            if expected != self.body_written {
                return Err(TreeError::Incomplete {
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
                .map_err(|e| TreeError::io("chmod", &self.temp_path, e))?;
        }
        let version = self.version()?;
        self.rename_into(tree, rel)?;
        self.committed = true;
        tree.state().note_install(path_key(rel));
        Ok(version)
    }

    /// The version the file will have once renamed (rename keeps it).
    fn version(&self) -> Result<PageVersion, TreeError> {
        let stat = fstat(&self.file).map_err(|e| TreeError::io("stat", &self.temp_path, e))?;
        Ok(PageVersion {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size as u64,
            mtime_sec: stat.st_mtime,
            mtime_nsec: stat.st_mtime_nsec as i64,
        })
    }

    /// Replaces the page at `rel` with this file, with the time `modified`
    /// (the page's own: whether it is fresh does not change), but only if
    /// `rel` is still the file `identity` (device, inode): a page purged or
    /// replaced meanwhile is left alone and `Ok(false)` returned. Holds the
    /// tree lock exclusively for the check and the rename.
    pub fn replace_page(
        mut self,
        tree: &Tree,
        rel: &[u8],
        identity: (u64, u64),
        modified: FileTime,
    ) -> Result<bool, TreeError> {
        check_installs_recorded(tree)?;
        self.flush()?;
        if self.limits.mode & process_umask() != 0 {
            self.file
                .set_permissions(Permissions::from_mode(self.limits.mode))
                .map_err(|e| TreeError::io("chmod", &self.temp_path, e))?;
        }
        self.set_modified(modified)?;
        let _lock = TreeLock::exclusive(tree)?;
        let Ok((dir, name)) = tree.page_parent(rel, None) else {
            return Ok(false);
        };
        let current = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW);
        if !current.is_ok_and(|s| (s.st_dev, s.st_ino) == identity) {
            return Ok(false);
        }
        renameat(&self.temp_dir, self.temp_name.as_os_str(), &dir, name)
            .map_err(|e| TreeError::io("rename to", tree.display_path(rel), e))?;
        self.committed = true;
        tree.state().note_install(path_key(rel));
        Ok(true)
    }

    /// Renames the temporary file to `rel`. A background deletion may
    /// remove the page's directories, emptied, between their creation and
    /// the rename: they are then made again.
    fn rename_into(&self, tree: &Tree, rel: &[u8]) -> Result<(), TreeError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            let (op, result) = match tree.page_parent(rel, Some(dir_mode(self.limits.mode))) {
                Ok((dir, name)) => (
                    "rename to",
                    renameat(&self.temp_dir, self.temp_name.as_os_str(), &dir, name)
                        .map_err(io::Error::from),
                ),
                Err(e) => ("open directory of", Err(e)),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempt < ATTEMPTS => attempt += 1,
                other => return other.map_err(|e| TreeError::io(op, tree.display_path(rel), e)),
            }
        }
    }

    /// Installs the page at `rel` unless the tree changed or a purge
    /// recorded since `mark` covers `uri` or one of the page's `tags` (then
    /// the page is dropped and `Ok(None)` returned). The caller has checked
    /// that `tree` is current.
    pub fn commit_unless_purged(
        mut self,
        tree: &Tree,
        rel: &[u8],
        mark: Mark,
        uri: &[u8],
        tags: &Tags,
    ) -> Result<Option<PageVersion>, TreeError> {
        self.flush()?;
        let _lock = TreeLock::shared(tree)?;
        if journal::purged_since(tree, mark, uri, tags)? {
            return Ok(None);
        }
        // A page fetched after a purge must not count as stale, but file
        // times are coarse: one written within a clock tick of the purge
        // may bear a time no later than it. Such a page gets the time just
        // after the purge (rare: only when the write began that close).
        let keys = PageKeys::of(rel);
        let tag_keys: Vec<u64> = tags.iter().map(tag_key).collect();
        if let Some(purged) = tree.state().staleness(&keys, &tag_keys, self.started) {
            self.set_modified(purged.since.just_after())?;
        }
        self.commit(tree, rel).map(Some)
    }

    fn set_modified(&self, time: FileTime) -> Result<(), TreeError> {
        let times = Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: time.sec,
                tv_nsec: time.nsec,
            },
        };
        futimens(self.file.as_fd(), &times)
            .map_err(|e| TreeError::io("futimens", &self.temp_path, e))
    }

    fn check_room(&self, more: u64) -> Result<(), TreeError> {
        let total = self.body_written + more;
        if let Some(max) = self.limits.max.filter(|&max| total > max) {
            return Err(TreeError::TooLarge { max });
        }
        match self.limits.expected {
            Some(expected) if total > expected => Err(TreeError::Incomplete {
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
            let _ = unlinkat(&self.temp_dir, self.temp_name.as_os_str(), AtFlags::empty());
        }
    }
}

/// The process's file mode creation mask, read once (reading it means
/// setting it; nginx workers do not change it).
fn process_umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let mask = rustix::process::umask(Mode::from(0o022));
        rustix::process::umask(mask);
        mask.bits()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::is_stale;
    use crate::tree::tests::Scratch;
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    fn expecting(len: u64) -> PageLimits {
        PageLimits {
            expected: Some(len),
            ..PageLimits::default()
        }
    }

    fn tree(scratch: &Scratch) -> Tree {
        Tree::open(&scratch.0).unwrap()
    }

    #[test]
    fn access_mode_applies_to_pages_and_directories() {
        let root = Scratch::new("mode");
        let tree = tree(&root);
        let limits = PageLimits {
            mode: 0o640,
            ..PageLimits::default()
        };
        let mut writer = PageWriter::create(&tree, b"", limits).unwrap();
        writer.write(b"x").unwrap();
        writer.commit(&tree, b"d/e.html").unwrap();
        let dest = root.0.join("d/e.html");
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o640);
        assert_eq!(
            fs::metadata(root.0.join("d")).unwrap().mode() & 0o777,
            0o750
        );
    }

    #[test]
    fn larger_than_max_is_refused_early_or_while_writing() {
        let root = Scratch::new("max");
        let tree = tree(&root);
        let limits = PageLimits {
            expected: Some(11),
            max: Some(10),
            ..PageLimits::default()
        };
        assert!(matches!(
            PageWriter::create(&tree, b"", limits),
            Err(TreeError::TooLarge { max: 10 })
        ));
        let limits = PageLimits {
            max: Some(10),
            ..PageLimits::default()
        };
        let mut writer = PageWriter::create(&tree, b"header does not count\n", limits).unwrap();
        writer.write(b"0123456789").unwrap();
        assert!(matches!(
            writer.write(b"!"),
            Err(TreeError::TooLarge { max: 10 })
        ));
        drop(writer);
        assert_eq!(temp_files(&root.0), 0);
    }

    fn temp_files(root: &Path) -> usize {
        fs::read_dir(root.join(".static_gen/tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    #[test]
    fn commit_creates_directories_and_page() {
        let root = Scratch::new("commit");
        let tree = tree(&root);
        let mut writer = PageWriter::create(&tree, b"H\n", expecting(5)).unwrap();
        writer.write(b"he").unwrap();
        writer.write(b"llo").unwrap();
        writer.commit(&tree, b"a/b/index.html").unwrap();
        let dest = root.0.join("a/b/index.html");
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
        let tree = tree(&root);
        let body: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let (small, rest) = body.split_at(100_000);
        let (large, tail) = rest.split_at(40_000);
        let mut writer = PageWriter::create(&tree, b"H\n", expecting(150_000)).unwrap();
        small
            .chunks(4096)
            .for_each(|piece| writer.write(piece).unwrap());
        writer.write(large).unwrap();
        writer.write(tail).unwrap();
        writer.commit(&tree, b"big.html").unwrap();
        assert_eq!(
            fs::read(root.0.join("big.html")).unwrap(),
            [b"H\n".as_slice(), &body].concat()
        );
    }

    #[test]
    fn commit_replaces_an_older_page() {
        let root = Scratch::new("replace");
        let tree = tree(&root);
        for body in [&b"old"[..], b"new"] {
            let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
            writer.write(body).unwrap();
            writer.commit(&tree, b"about.html").unwrap();
        }
        assert_eq!(fs::read(root.0.join("about.html")).unwrap(), b"new");
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let root = Scratch::new("drop");
        let tree = tree(&root);
        let mut writer = PageWriter::create(&tree, b"H\n", PageLimits::default()).unwrap();
        writer.write(b"partial").unwrap();
        assert_eq!(temp_files(&root.0), 1);
        drop(writer);
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn short_or_long_body_is_not_committed() {
        let root = Scratch::new("short");
        let tree = tree(&root);
        let mut writer = PageWriter::create(&tree, b"", expecting(10)).unwrap();
        writer.write(b"12345").unwrap();
        assert!(matches!(
            writer.commit(&tree, b"x.html"),
            Err(TreeError::Incomplete {
                expected: 10,
                written: 5
            })
        ));
        let mut writer = PageWriter::create(&tree, b"", expecting(3)).unwrap();
        assert!(writer.write(b"12345").is_err());
        drop(writer);
        assert!(!root.0.join("x.html").exists());
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn a_page_is_never_installed_through_a_symlink() {
        let root = Scratch::new("store-link");
        let outside = Scratch::new("store-outside");
        let tree = tree(&root);
        std::os::unix::fs::symlink(&outside.0, root.0.join("articles")).unwrap();
        let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
        writer.write(b"x").unwrap();
        assert!(writer.commit(&tree, b"articles/a/index.html").is_err());
        assert_eq!(fs::read_dir(&outside.0).unwrap().count(), 0);
        assert_eq!(temp_files(&root.0), 0);
    }

    #[test]
    fn a_page_purged_while_it_was_fetched_is_not_installed() {
        use crate::purge::purge;
        use crate::scope::Scope;
        let root = Scratch::new("race");
        let tree = tree(&root);
        let dest = root.0.join("a/index.html");
        for (scope, installed) in [
            (Scope::All, false),
            (Scope::Uri(b"/a/".to_vec()), false),
            (Scope::Prefix(b"/a".to_vec()), false),
            (Scope::Uri(b"/b/".to_vec()), true),
            (Scope::Tags(vec![b"x".to_vec(), b"home".to_vec()]), false),
            (Scope::Tags(vec![b"article-2".to_vec()]), true),
        ] {
            let tags = Tags::from_header_values([&b"article-1 home"[..]]).unwrap();
            let mark = journal::mark(&tree).unwrap();
            let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
            writer.write(b"fetched before the purge").unwrap();
            purge(&tree, &scope, false).unwrap();
            assert_eq!(
                writer
                    .commit_unless_purged(&tree, b"a/index.html", mark, b"/a/", &tags)
                    .unwrap()
                    .is_some(),
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
        let tree = tree(&root);
        for n in 0..50 {
            // a whole-tree purge's new epoch (without its other file
            // changes, which can make the kernel hand out precise file
            // times for a while)
            tree.state().advance_epoch(false).unwrap();
            let mark = journal::mark(&tree).unwrap();
            let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
            writer.write(b"fetched after the purge").unwrap();
            let rel = format!("a/{n}.html");
            let installed =
                writer.commit_unless_purged(&tree, rel.as_bytes(), mark, b"/a/", &Tags::NONE);
            assert!(installed.unwrap().is_some());
            let written = FileTime::of(&fs::metadata(root.0.join(&rel)).unwrap());
            let epoch = tree.state().epoch();
            assert!(!is_stale(written, epoch), "{written:?} not after {epoch:?}");
        }
    }

    /// As above, for a purge by tag and a page carrying the tag.
    #[test]
    fn a_page_fetched_right_after_a_tag_purge_is_fresh() {
        let root = Scratch::new("after-tag-purge");
        let tree = tree(&root);
        let tags = Tags::from_header_values([&b"home"[..]]).unwrap();
        for n in 0..50 {
            let at = tree
                .state()
                .mark_tag_purged(tag_key(b"home"), false)
                .unwrap();
            let mark = journal::mark(&tree).unwrap();
            let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
            writer.write(b"fetched after the purge").unwrap();
            let rel = format!("a/{n}.html");
            let installed = writer.commit_unless_purged(&tree, rel.as_bytes(), mark, b"/a/", &tags);
            assert!(installed.unwrap().is_some());
            let written = FileTime::of(&fs::metadata(root.0.join(&rel)).unwrap());
            assert!(written > at, "{written:?} not after {at:?}");
        }
    }

    /// A whole purge's background deletion removes emptied directories
    /// while new pages go into them: every install still lands.
    #[test]
    fn installs_survive_a_deletion_of_their_directories() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let root = Scratch::new("store-sweep");
        let tree = tree(&root);
        tree.state().advance_epoch(false).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let sweeper = {
            let (stop, path) = (stop.clone(), root.0.clone());
            std::thread::spawn(move || {
                let tree = Tree::open(&path).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    crate::sweep::remove_stale(&tree);
                }
            })
        };
        for n in 0..300 {
            let mark = journal::mark(&tree).unwrap();
            let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
            writer.write(b"new").unwrap();
            let rel = format!("a/b{}/c/index.html", n % 3);
            let installed =
                writer.commit_unless_purged(&tree, rel.as_bytes(), mark, b"/a/", &Tags::NONE);
            assert!(installed.unwrap().is_some());
            assert!(root.0.join(&rel).exists(), "{rel}");
            fs::remove_file(root.0.join(&rel)).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        sweeper.join().unwrap();
    }

    #[test]
    fn copies_from_file_ranges() {
        let root = Scratch::new("copy");
        let tree = tree(&root);
        let src_path = root.0.join("src");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        let mut writer = PageWriter::create(&tree, b"", PageLimits::default()).unwrap();
        writer.copy_from(&src, 10, 150_000).unwrap();
        writer.commit(&tree, b"copy.html").unwrap();
        assert_eq!(
            fs::read(root.0.join("copy.html")).unwrap(),
            &data[10..150_010]
        );
    }

    #[test]
    fn unwritable_root_reports_path_and_errno() {
        let err = Tree::open(Path::new("/proc/static-gen-nope")).unwrap_err();
        assert!(err.to_string().contains("/proc/static-gen-nope"), "{err}");
        assert_ne!(err.errno(), 0);
    }
}
