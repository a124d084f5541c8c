//! Purging without making the caller wait for the deletion: a purge is
//! recorded in the journal under the exclusive tree lock, so no response
//! fetched before it is installed after it; then the pages in scope are
//! made unreachable at once (a new epoch for the whole tree, a few renames
//! into the trash for a prefix, an unlink for one page) and deleted
//! afterwards on a background thread (`sweep`).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use rustix::fs::{renameat, statat, unlinkat, AtFlags, Dir, FileType};
use rustix::io::Errno;

use crate::journal;
use crate::path::{page_file, RESERVED_DIR};
use crate::scope::Scope;
use crate::sweep::Cleanup;
use crate::tree::{path_key, tag_key, Tree, TreeError, TreeLock};

const INDEX_NAME: &[u8] = b"index.html";
const PAGE_SUFFIX: &[u8] = b".html";

/// What a purge did.
#[derive(Debug)]
pub struct Purged {
    /// Entries moved out of the tree or pages removed (hard), or entries
    /// marked stale (soft); none for the whole tree or tags.
    pub count: usize,
    /// Purged pages stay on disk, to be served stale where a location says
    /// so (`static_gen_stale`), and are deleted after that time.
    pub soft: bool,
    /// What remains to be deleted.
    pub cleanup: Cleanup,
    /// A failure the purge worked around (it still took effect), to log.
    pub warning: Option<TreeError>,
}

/// Purges `scope` from `tree`: records it (so no MISS in flight installs
/// its page after this), marks its pages purged (so no HIT serves them as
/// fresh), then removes or moves away its pages, unless they may be served
/// stale (a soft purge while a location serves the tree stale).
pub fn purge(tree: &Tree, scope: &Scope, hard: bool) -> Result<Purged, TreeError> {
    let _lock = TreeLock::exclusive(tree)?;
    let warning = journal::record(tree, scope, hard)?;
    let stale_ms = tree.state().max_stale_ms();
    let soft = !hard && stale_ms > 0;
    let sweep_later = || Cleanup::Stale {
        root: tree.root().to_owned(),
        after: Duration::from_millis(if soft { stale_ms } else { 0 }),
    };
    let (count, cleanup) = match scope {
        Scope::All => (0, sweep_later()),
        Scope::Uri(uri) => {
            let rel = mapped(tree, uri)?;
            mark(tree, &rel, hard)?;
            // the mark covers its argument pages too (`PageKeys`)
            if soft {
                (usize::from(page_exists(tree, &rel)), sweep_later())
            } else {
                let pages = remove_page(tree, &rel)? + remove_arg_pages(tree, &rel)?;
                (pages, Cleanup::None)
            }
        }
        // O(1) per tag: pages carrying one are stale from now, and deleted
        // by the sweep (or replaced when regenerated)
        Scope::Tags(tags) => {
            for tag in tags {
                tree.state()
                    .mark_tag_purged(tag_key(tag), hard)
                    .map_err(|e| TreeError::io("mark", tree.root(), e))?;
            }
            (0, sweep_later())
        }
        Scope::Prefix(prefix) => {
            let Some(entries) = prefix_entries(tree, prefix)? else {
                return Ok(Purged {
                    count: 0,
                    soft,
                    cleanup: Cleanup::None,
                    warning,
                });
            };
            for key in entries.keys() {
                tree.state()
                    .mark_purged(key, hard)
                    .map_err(|e| TreeError::io("mark", tree.root(), e))?;
            }
            if soft {
                (entries.names.len(), sweep_later())
            } else {
                move_entries(tree, entries.dir.as_fd(), entries.names)?
            }
        }
    };
    Ok(Purged {
        count,
        soft,
        cleanup,
        warning,
    })
}

/// The page file of a URI, relative to the root.
fn mapped(tree: &Tree, uri: &[u8]) -> Result<Vec<u8>, TreeError> {
    page_file(uri).map_err(|e| {
        let invalid = io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        TreeError::io("map", tree.root(), invalid)
    })
}

fn mark(tree: &Tree, rel: &[u8], hard: bool) -> Result<(), TreeError> {
    tree.state()
        .mark_purged(path_key(rel), hard)
        .map(|_| ())
        .map_err(|e| TreeError::io("mark", tree.display_path(rel), e))
}

fn page_exists(tree: &Tree, rel: &[u8]) -> bool {
    tree.page_parent(rel, None)
        .is_ok_and(|(dir, name)| statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok())
}

/// Why a purge failed, for its reply: the OS error in words
/// (`permission denied`), or `purge failed` without one.
pub fn failure_reason(errno: i32) -> String {
    if errno == 0 {
        return "purge failed".into();
    }
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    let reason: String = match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => return "purge failed".into(),
    };
    reason.replace(['"', '\\'], "")
}

/// The purge reply: one line of JSON.
pub fn reply(scope: &Scope, purged: &Purged, removal: &str) -> String {
    let mode = if purged.soft { "soft" } else { "hard" };
    let mut json = format!(
        "{{\"status\":\"ok\",\"scope\":\"{}\",\"mode\":\"{mode}\"",
        scope.kind()
    );
    if let Some(path) = scope.path() {
        json.push_str(&format!(",\"{}\":{}", scope.kind(), json_string(path)));
    }
    if let Scope::Tags(tags) = scope {
        let tags: Vec<String> = tags.iter().map(|t| json_string(t)).collect();
        json.push_str(&format!(",\"tags\":[{}]", tags.join(",")));
    }
    let count = purged.count;
    match (scope, purged.soft) {
        // no count: pages carrying the tags are found lazily
        (Scope::All | Scope::Tags(_), _) => json.push_str(&format!(",\"removal\":\"{removal}\"}}")),
        (_, true) => json.push_str(&format!(",\"stale\":{count},\"removal\":\"{removal}\"}}")),
        (Scope::Uri(_), false) => json.push_str(&format!(",\"removed\":{count}}}")),
        (Scope::Prefix(_), false) => {
            json.push_str(&format!(",\"moved\":{count},\"removal\":\"{removal}\"}}"))
        }
    }
    json
}

fn json_string(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for c in String::from_utf8_lossy(bytes).chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The entries of one directory that a prefix purge covers.
struct PrefixEntries {
    dir: OwnedFd,
    /// The directory, relative to the root (`""` or `articles/`).
    rel: Vec<u8>,
    names: Vec<(OsString, bool)>,
}

impl PrefixEntries {
    /// The purge-mark keys of the entries (a directory's with its `/`).
    fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.names.iter().map(|(name, is_dir)| {
            let mut rel = self.rel.clone();
            rel.extend_from_slice(name.as_bytes());
            if *is_dir {
                rel.push(b'/');
            }
            path_key(&rel)
        })
    }
}

/// The entries that hold the pages of every URI starting with `prefix`:
/// the directory a prefix ending in `/` names (as an entry of its parent),
/// or the entries of the last directory whose URI segment starts with the
/// rest. Never the reserved directory. `None` when there is no such
/// directory.
fn prefix_entries(tree: &Tree, prefix: &[u8]) -> Result<Option<PrefixEntries>, TreeError> {
    let cut = prefix.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let dir_rel = prefix.get(1..cut).unwrap_or_default();
    let stem = &prefix[cut + 1..];
    if stem.is_empty() {
        let (parent, name) = match dir_rel.iter().rposition(|&b| b == b'/') {
            Some(slash) => (&dir_rel[..slash], &dir_rel[slash + 1..]),
            None => (&b""[..], dir_rel),
        };
        if parent.is_empty() && name == RESERVED_DIR.as_bytes() {
            return Ok(None);
        }
        let Some(dir) = existing_page_dir(tree, parent)? else {
            return Ok(None);
        };
        return Ok(Some(PrefixEntries {
            dir,
            rel: dir_rel_of(parent),
            names: vec![(OsStr::from_bytes(name).to_owned(), true)],
        }));
    }
    let Some(dir) = existing_page_dir(tree, dir_rel)? else {
        return Ok(None);
    };
    let at_top = dir_rel.is_empty();
    let names = list_dir(tree, dir.as_fd(), dir_rel)?
        .into_iter()
        .filter(|(name, kind)| {
            let name = name.as_bytes();
            if at_top && name == RESERVED_DIR.as_bytes() {
                return false;
            }
            // a page file (or an argument page: `?` and its arguments
            // after it) stands for the URI segment before `.html`; the
            // directory's own pages (`index.html`) are not under the prefix
            let page_name = match *kind {
                FileType::Directory => name,
                _ => name.split(|&b| b == b'?').next().unwrap_or(name),
            };
            let segment = match page_name.strip_suffix(PAGE_SUFFIX) {
                Some(_) if page_name == INDEX_NAME => return false,
                Some(page) if *kind != FileType::Directory => page,
                _ => name,
            };
            segment.starts_with(stem)
        })
        .map(|(name, kind)| (name, kind == FileType::Directory))
        .collect();
    Ok(Some(PrefixEntries {
        dir,
        rel: dir_rel_of(dir_rel),
        names,
    }))
}

/// A directory relative to the root, as purge-mark keys spell it: empty,
/// or with a trailing `/`.
fn dir_rel_of(dir: &[u8]) -> Vec<u8> {
    let mut rel = dir.to_vec();
    if !rel.is_empty() {
        rel.push(b'/');
    }
    rel
}

/// A directory of pages, or `None` where there is none (missing, or a path
/// that goes through a file or a symbolic link).
fn existing_page_dir(tree: &Tree, rel: &[u8]) -> Result<Option<OwnedFd>, TreeError> {
    match tree.page_dir(rel, None) {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(TreeError::io("open", tree.display_path(rel), e)),
    }
}

/// True for errors that mean "nothing there to purge".
fn gone(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP)
    )
}

/// The directory of the page file `rel` and its name there, or `None`
/// where there is none.
fn existing_page_parent<'a>(
    tree: &Tree,
    rel: &'a [u8],
) -> Result<Option<(OwnedFd, &'a OsStr)>, TreeError> {
    match tree.page_parent(rel, None) {
        Ok(found) => Ok(Some(found)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(TreeError::io(
            "open directory of",
            tree.display_path(rel),
            e,
        )),
    }
}

/// Removes one page file.
fn remove_page(tree: &Tree, rel: &[u8]) -> Result<usize, TreeError> {
    let Some((dir, name)) = existing_page_parent(tree, rel)? else {
        return Ok(0);
    };
    match unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => Ok(1),
        Err(Errno::NOENT) => Ok(0),
        Err(e) => Err(TreeError::io("unlink", tree.display_path(rel), e)),
    }
}

/// Removes the argument pages of the page file `rel` (`rel?...`, beside
/// it in its directory).
fn remove_arg_pages(tree: &Tree, rel: &[u8]) -> Result<usize, TreeError> {
    let Some((dir, name)) = existing_page_parent(tree, rel)? else {
        return Ok(0);
    };
    let mut prefix = name.as_bytes().to_vec();
    prefix.push(b'?');
    let mut removed = 0;
    for (entry, kind) in list_dir(tree, dir.as_fd(), rel)? {
        if kind != FileType::RegularFile || !entry.as_bytes().starts_with(&prefix) {
            continue;
        }
        match unlinkat(&dir, &entry, AtFlags::empty()) {
            Ok(()) => removed += 1,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(TreeError::io("unlink", tree.display_path(rel), e)),
        }
    }
    Ok(removed)
}

/// Names and types in the page directory `dir`.
fn list_dir(
    tree: &Tree,
    dir: BorrowedFd,
    rel: &[u8],
) -> Result<Vec<(OsString, FileType)>, TreeError> {
    let error = |e: Errno| TreeError::io("read directory", tree.display_path(rel), e);
    let mut names = Vec::new();
    for entry in Dir::read_from(dir).map_err(error)? {
        let entry = entry.map_err(error)?;
        let name = entry.file_name().to_bytes();
        if matches!(name, b"." | b"..") {
            continue;
        }
        let name = OsStr::from_bytes(name).to_owned();
        let kind = match entry.file_type() {
            FileType::Unknown => statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .map_or(FileType::Unknown, |s| FileType::from_raw_mode(s.st_mode)),
            kind => kind,
        };
        names.push((name, kind));
    }
    Ok(names)
}

/// Renames the named entries of `dir` into a new trash directory (one per
/// purge, so names cannot clash).
fn move_entries(
    tree: &Tree,
    dir: BorrowedFd,
    names: Vec<(OsString, bool)>,
) -> Result<(usize, Cleanup), TreeError> {
    if names.is_empty() {
        return Ok((0, Cleanup::None));
    }
    let (trash, trash_name) = tree.new_trash()?;
    let mut moved = 0;
    for (name, _) in names {
        match renameat(dir, &name, &trash, &name) {
            Ok(()) => moved += 1,
            // another worker's purge took it first
            Err(Errno::NOENT) => {}
            Err(e) => return Err(TreeError::io("rename", tree.root().join(&name), e)),
        }
    }
    let parent = tree.trash_dir().ok_or_else(|| {
        TreeError::io("open", tree.reserved_path("trash"), io::ErrorKind::NotFound)
    })?;
    if moved == 0 {
        let _ = unlinkat(&parent, &trash_name, AtFlags::REMOVEDIR);
        return Ok((0, Cleanup::None));
    }
    Ok((
        moved,
        Cleanup::Trash {
            parent,
            name: trash_name,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_name_the_os_error() {
        assert_eq!(failure_reason(libc::EACCES), "permission denied");
        assert_eq!(failure_reason(libc::EROFS), "read-only file system");
        assert_eq!(failure_reason(libc::ENOSPC), "no space left on device");
        assert_eq!(failure_reason(0), "purge failed");
    }
    use crate::sweep::{clean_up_in_background, remove_stale, tests::tree_files};
    use crate::tree::tests::Scratch;
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, Instant};

    fn remaining(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_name() == RESERVED_DIR {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(
                        path.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    /// Page files (with the module's header) at these paths.
    fn pages(root: &Path, files: &[&str]) {
        for file in files {
            let path = root.join(file);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, crate::page::MAGIC).unwrap();
        }
    }

    const SITE: &[&str] = &[
        "index.html",
        "about.html",
        "articles/index.html",
        "articles/hello/index.html",
        "articles/hello.html",
        "articles/help.html.html",
        "articles/world/index.html",
        "articlesx/index.html",
    ];

    #[test]
    fn whole_tree_purge_is_instant_and_stale_pages_are_removed_later() {
        let root = Scratch::new("whole");
        let tree = Tree::open(&root.0).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        pages(&root.0, SITE);
        tree_files(&root.0, &["by-hand.html"]);
        let purged = purge(&tree, &Scope::All, false).unwrap();
        assert_eq!(purged.count, 0);
        assert!(!purged.soft, "no location serves the tree stale");
        let Cleanup::Stale { after, .. } = purged.cleanup else {
            panic!("{:?}", purged.cleanup);
        };
        assert_eq!(after, Duration::ZERO);
        assert_eq!(
            remaining(&root.0).len(),
            SITE.len() + 1,
            "nothing deleted yet"
        );
        std::thread::sleep(Duration::from_millis(20));
        pages(&root.0, &["articles/new/index.html"]);
        remove_stale(&tree);
        assert_eq!(
            remaining(&root.0),
            ["articles/new/index.html", "by-hand.html"]
        );
        assert!(!root.0.join("about").exists());
        assert!(
            !root.0.join("articles/hello").exists(),
            "emptied directories go too"
        );
        assert!(
            root.0.join(".static_gen/purges").exists(),
            "the reserved directory stays"
        );
    }

    #[test]
    fn prefix_purges() {
        let cases: &[(&str, &[&str])] = &[
            (
                "/articles/",
                &["about.html", "articlesx/index.html", "index.html"],
            ),
            (
                "/articles/hel",
                &[
                    "about.html",
                    "articles/index.html",
                    "articles/world/index.html",
                    "articlesx/index.html",
                    "index.html",
                ],
            ),
            ("/articles", &["about.html", "index.html"]),
            ("/articles/ind", SITE),
        ];
        for (prefix, left) in cases {
            let root = Scratch::new("prefix");
            let tree = Tree::open(&root.0).unwrap();
            tree_files(&root.0, SITE);
            let scope = Scope::Prefix(prefix.as_bytes().to_vec());
            purge(&tree, &scope, false).unwrap();
            let mut expected: Vec<String> = left.iter().map(|s| s.to_string()).collect();
            expected.sort();
            assert_eq!(remaining(&root.0), expected, "{prefix}");
        }
    }

    #[test]
    fn moved_entries_are_deleted_in_the_background() {
        let root = Scratch::new("prefix-bg");
        let tree = Tree::open(&root.0).unwrap();
        tree_files(&root.0, SITE);
        let purged = purge(&tree, &Scope::Prefix(b"/articles/".to_vec()), false).unwrap();
        assert_eq!(purged.count, 1);
        let trash = root.0.join(".static_gen/trash");
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 1);
        assert!(clean_up_in_background(purged.cleanup).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::read_dir(&trash).unwrap().count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fs::read_dir(&trash).unwrap().count(), 0);
    }

    /// The hole a fault campaign found: `?prefix=/.static_gen/e` moved the
    /// tree's own files away. Scopes refuse such prefixes; the purge itself
    /// refuses them too.
    #[test]
    fn the_reserved_directory_is_never_purged() {
        let root = Scratch::new("prefix-reserved");
        let tree = Tree::open(&root.0).unwrap();
        tree_files(&root.0, SITE);
        for prefix in [
            "/.static_gen/",
            "/.static_gen/s",
            "/.static_gen/tmp/",
            "/.st",
        ] {
            let _ = purge(&tree, &Scope::Prefix(prefix.as_bytes().to_vec()), false);
            assert!(tree.is_current(), "{prefix}");
            assert!(root.0.join(".static_gen/state").exists(), "{prefix}");
        }
        assert_eq!(remaining(&root.0).len(), SITE.len());
    }

    #[test]
    fn purges_never_follow_symlinks() {
        let root = Scratch::new("purge-link");
        let outside = Scratch::new("purge-outside");
        let tree = Tree::open(&root.0).unwrap();
        tree_files(&outside.0, &["index.html", "a.html", "a/index.html"]);
        std::os::unix::fs::symlink(&outside.0, root.0.join("link")).unwrap();
        for scope in [
            Scope::Uri(b"/link/".to_vec()),
            Scope::Uri(b"/link/a".to_vec()),
            Scope::Prefix(b"/link/".to_vec()),
            Scope::Prefix(b"/link/a".to_vec()),
        ] {
            purge(&tree, &scope, false).unwrap();
        }
        assert_eq!(remaining(&outside.0).len(), 3, "nothing outside touched");
    }

    #[test]
    fn uri_purge_removes_one_page() {
        let root = Scratch::new("uri");
        let tree = Tree::open(&root.0).unwrap();
        tree_files(&root.0, SITE);
        let purged = purge(&tree, &Scope::Uri(b"/articles/hello/".to_vec()), false).unwrap();
        assert_eq!(purged.count, 1);
        assert!(!root.0.join("articles/hello/index.html").exists());
        assert!(root.0.join("articles/hello.html").exists());
        let again = purge(&tree, &Scope::Uri(b"/articles/hello/".to_vec()), false).unwrap();
        assert_eq!(again.count, 0);
    }

    #[test]
    fn prefix_purges_cover_argument_pages_as_their_uris() {
        let root = Scratch::new("prefix-args");
        let tree = Tree::open(&root.0).unwrap();
        pages(
            &root.0,
            &[
                "articles/index.html?page=2",
                "articles/about.html?page=2",
                "articles/other.html?page=2",
            ],
        );
        let purged = purge(&tree, &Scope::Prefix(b"/articles/ab".to_vec()), true).unwrap();
        assert_eq!(purged.count, 1);
        assert_eq!(
            remaining(&root.0),
            ["articles/index.html?page=2", "articles/other.html?page=2"]
        );
    }

    #[test]
    fn uri_purge_removes_the_argument_pages_of_the_page() {
        let root = Scratch::new("uri-args");
        let tree = Tree::open(&root.0).unwrap();
        pages(
            &root.0,
            &[
                "articles/index.html",
                "articles/index.html?page=2",
                "articles/index.html?page=3&sort=new",
                "articles/index.htmlx",
                "articles/hello/index.html?page=2",
            ],
        );
        let purged = purge(&tree, &Scope::Uri(b"/articles/".to_vec()), false).unwrap();
        assert_eq!(purged.count, 3);
        assert_eq!(
            remaining(&root.0),
            ["articles/hello/index.html?page=2", "articles/index.htmlx"]
        );
    }

    #[test]
    fn replies() {
        let done = |count, soft| Purged {
            count,
            soft,
            cleanup: Cleanup::None,
            warning: None,
        };
        assert_eq!(
            reply(&Scope::All, &done(0, false), "background"),
            r#"{"status":"ok","scope":"all","mode":"hard","removal":"background"}"#
        );
        assert_eq!(
            reply(
                &Scope::Prefix(b"/a\"b/".to_vec()),
                &done(3, false),
                "background"
            ),
            r#"{"status":"ok","scope":"prefix","mode":"hard","prefix":"/a\"b/","moved":3,"removal":"background"}"#
        );
        assert_eq!(
            reply(&Scope::Uri(b"/x/".to_vec()), &done(1, false), "none"),
            r#"{"status":"ok","scope":"uri","mode":"hard","uri":"/x/","removed":1}"#
        );
        assert_eq!(
            reply(
                &Scope::Tags(vec![b"a".to_vec(), b"b\\".to_vec()]),
                &done(0, true),
                "background"
            ),
            r#"{"status":"ok","scope":"tag","mode":"soft","tags":["a","b\\"],"removal":"background"}"#
        );
        assert_eq!(
            reply(&Scope::Uri(b"/x/".to_vec()), &done(1, true), "background"),
            r#"{"status":"ok","scope":"uri","mode":"soft","uri":"/x/","stale":1,"removal":"background"}"#
        );
    }

    /// Where a location serves the tree stale, purges keep the pages on
    /// disk, marked; a hard purge removes them at once.
    #[test]
    fn soft_purges_mark_and_keep_hard_ones_remove() {
        use crate::tree::{now, PageKeys};
        let root = Scratch::new("purge-soft");
        let tree = Tree::open(&root.0).unwrap();
        tree.state().note_stale_ms(30_000);
        std::thread::sleep(Duration::from_millis(2));
        pages(&root.0, SITE);
        let written = now();
        let stale = |rel: &str| {
            tree.state()
                .staleness(&PageKeys::of(rel.as_bytes()), &[], written)
        };
        let purged = purge(&tree, &Scope::Uri(b"/about".to_vec()), false).unwrap();
        assert!(purged.soft);
        assert_eq!(purged.count, 1);
        assert!(
            root.0.join("about.html").exists(),
            "kept to be served stale"
        );
        assert!(!stale("about.html").unwrap().hard);
        assert_eq!(stale("index.html"), None);
        purge(&tree, &Scope::Prefix(b"/articles/hel".to_vec()), false).unwrap();
        assert!(stale("articles/hello/index.html").is_some());
        assert!(stale("articles/hello.html").is_some());
        assert_eq!(stale("articles/world/index.html"), None);
        assert_eq!(remaining(&root.0).len(), SITE.len());
        let hard = purge(&tree, &Scope::Prefix(b"/articles/".to_vec()), true).unwrap();
        assert!(!hard.soft);
        assert!(stale("articles/world/index.html").unwrap().hard);
        assert!(!root.0.join("articles").exists(), "moved away at once");
        // the sweep after the stale time deletes only what is past it
        remove_stale(&tree);
        assert!(
            root.0.join("about.html").exists(),
            "still within its stale time"
        );
    }

    /// A tag purge touches no page: it marks the tags, and the sweep
    /// deletes the pages that carry one (after their stale time, if any).
    #[test]
    fn tag_purges_mark_and_the_sweep_deletes_tagged_pages() {
        let root = Scratch::new("purge-tags");
        let tree = Tree::open(&root.0).unwrap();
        std::thread::sleep(Duration::from_millis(2));
        let page = |rel: &str, tags: &[u8]| {
            let header = crate::page::encode_header(b"text/html", b"/", tags).unwrap();
            fs::create_dir_all(root.0.join(rel).parent().unwrap()).unwrap();
            fs::write(root.0.join(rel), [&header[..], b"body"].concat()).unwrap();
        };
        page("a.html", b"article-1 home");
        page("d/b.html", b"article-2");
        page("c.html", b"");
        let tags = |t: &[&str]| Scope::Tags(t.iter().map(|t| t.as_bytes().to_vec()).collect());
        tree.state().note_stale_ms(30_000);
        let soft = purge(&tree, &tags(&["home"]), false).unwrap();
        assert!(soft.soft);
        remove_stale(&tree);
        assert_eq!(remaining(&root.0).len(), 3, "kept to be served stale");
        let hard = purge(&tree, &tags(&["nothing", "article-2"]), true).unwrap();
        assert!(!hard.soft);
        assert!(matches!(hard.cleanup, Cleanup::Stale { .. }));
        assert_eq!(remaining(&root.0).len(), 3, "deleted lazily");
        remove_stale(&tree);
        assert_eq!(remaining(&root.0), ["a.html", "c.html"]);
        assert!(!root.0.join("d").exists());
    }

    #[test]
    fn empty_or_missing_tree() {
        let root = Scratch::new("purge-empty");
        let tree = Tree::open(&root.0).unwrap();
        let purged = purge(&tree, &Scope::Prefix(b"/nothing/".to_vec()), false).unwrap();
        assert_eq!(purged.count, 0);
        assert!(matches!(purged.cleanup, Cleanup::None));
    }
}
