//! The purge journal makes purges race-free across workers: a page whose
//! upstream request started before a purge that covers it is never installed
//! after that purge.
//!
//! A MISS notes the journal when it starts: the tree's identity, the
//! journal's generation (in the mapped state) and its length. A purge,
//! holding the tree lock exclusively, appends its scope to the journal; a
//! whole-tree purge advances the epoch and empties the journal under a new
//! generation instead. A page is installed while holding the lock shared,
//! and only if the tree and generation are still the noted ones and no entry
//! written since the note covers its URI. The generation is a counter that
//! only grows, so a note can never match a later journal by accident (as an
//! inode number reused after two replacements could).

use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use rustix::fs::{fstat, ftruncate, statat, AtFlags, OFlags};
use rustix::io::Errno;

use crate::scope::Scope;
use crate::tags::Tags;
use crate::tree::{Tree, TreeError, STATE_FILE};

const JOURNAL: &str = "purges";
/// A journal longer than this is emptied under a new generation (MISSes in
/// flight at that moment then do not store their page: harmless).
const MAX_JOURNAL_LEN: u64 = 1 << 20;

/// The journal as a MISS found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    tree_id: u64,
    generation: u64,
    len: u64,
}

/// Notes the journal's state (one `stat`).
pub fn mark(tree: &Tree) -> Result<Mark, TreeError> {
    // the generation first: a purge bumps it before emptying the journal,
    // so a note that saw the emptied journal never has the old generation
    // with the new length
    let generation = tree.state().journal_generation();
    let len = match statat(tree.reserved(), JOURNAL, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat.st_size as u64,
        Err(Errno::NOENT) => 0,
        Err(e) => return Err(TreeError::io("stat", tree.reserved_path(JOURNAL), e)),
    };
    Ok(Mark {
        tree_id: tree.state().tree_id(),
        generation,
        len,
    })
}

/// True when a purge recorded after `mark` covers `uri` or one of `tags`
/// (the response's). The caller holds the tree lock shared and has checked
/// that `tree` is current.
pub fn purged_since(tree: &Tree, mark: Mark, uri: &[u8], tags: &Tags) -> Result<bool, TreeError> {
    let state = tree.state();
    if state.tree_id() != mark.tree_id || state.journal_generation() != mark.generation {
        return Ok(true);
    }
    let path = || tree.reserved_path(JOURNAL);
    let journal = tree.reserved_file(JOURNAL, OFlags::RDONLY)?;
    let len = fstat(&journal)
        .map_err(|e| TreeError::io("stat", path(), e))?
        .st_size as u64;
    if len == mark.len {
        return Ok(false);
    }
    if len < mark.len {
        // emptied without a new generation: by hand
        return Ok(true);
    }
    let mut added = vec![0u8; (len - mark.len) as usize];
    journal
        .read_exact_at(&mut added, mark.len)
        .map_err(|e| TreeError::io("read", path(), e))?;
    Ok(added
        .split(|&b| b == b'\n')
        .filter_map(parse_entry)
        .any(|scope| scope.covers(uri, tags)))
}

/// Records a purge; the caller holds the tree lock exclusively.
///
/// A purge must work on a full disk: when its entry cannot be appended,
/// the journal is emptied under a new generation instead (every MISS in
/// flight then counts as purged), and the failure is returned to be logged.
pub fn record(tree: &Tree, scope: &Scope, hard: bool) -> Result<Option<TreeError>, TreeError> {
    let state = tree.state();
    let journal = tree.reserved_file(JOURNAL, OFlags::RDWR | OFlags::APPEND)?;
    let path = || tree.reserved_path(JOURNAL);
    let io_err = |op, e: io::Error| TreeError::io(op, path(), e);
    let Some(line) = entry(scope) else {
        // a new epoch makes every page written before it stale
        state
            .advance_epoch(hard)
            .map_err(|e| TreeError::io("store epoch in", tree.reserved_path(STATE_FILE), e))?;
        return empty(tree, &journal).map(|()| None);
    };
    let len = fstat(&journal)
        .map_err(|e| io_err("stat", e.into()))?
        .st_size as u64;
    if len > MAX_JOURNAL_LEN {
        empty(tree, &journal)?;
    }
    match (&journal).write_all(&line) {
        Ok(()) => Ok(None),
        Err(e) => {
            // drop a partial line, then fall back to a new generation
            let _ = ftruncate(&journal, len);
            empty(tree, &journal)?;
            Ok(Some(io_err("write", e)))
        }
    }
}

/// Empties the journal under a new generation: the generation first, so a
/// MISS that sees the emptied journal also sees the new generation.
fn empty(tree: &Tree, journal: &std::fs::File) -> Result<(), TreeError> {
    let path = || tree.reserved_path(JOURNAL);
    tree.state()
        .bump_journal_generation()
        .map_err(|e| TreeError::io("store generation in", path(), e))?;
    ftruncate(journal, 0).map_err(|e| TreeError::io("truncate", path(), e))
}

/// The journal line of a purge: `uri /a/`, `prefix /a/`, `tag a b` (tags
/// hold no space); `None` for the whole tree.
fn entry(scope: &Scope) -> Option<Vec<u8>> {
    let value = match scope {
        Scope::All => return None,
        Scope::Uri(path) | Scope::Prefix(path) => path.clone(),
        Scope::Tags(tags) => tags.join(&b' '),
    };
    let mut line = Vec::with_capacity(value.len() + 8);
    line.extend_from_slice(scope.kind().as_bytes());
    line.push(b' ');
    line.extend_from_slice(&value);
    line.push(b'\n');
    Some(line)
}

fn parse_entry(line: &[u8]) -> Option<Scope> {
    let space = line.iter().position(|&b| b == b' ')?;
    let path = line[space + 1..].to_vec();
    match &line[..space] {
        b"uri" => Some(Scope::Uri(path)),
        b"prefix" => Some(Scope::Prefix(path)),
        b"tag" => Some(Scope::Tags(
            path.split(|&b| b == b' ').map(<[u8]>::to_vec).collect(),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::tests::Scratch;
    use crate::tree::{is_stale, FileTime};

    fn tree(scratch: &Scratch) -> Tree {
        Tree::open(&scratch.0).unwrap()
    }

    #[test]
    fn nothing_purged_since_mark() {
        let scratch = Scratch::new("journal-none");
        let tree = tree(&scratch);
        let mark = mark(&tree).unwrap();
        assert!(!purged_since(&tree, mark, b"/a/", &Tags::NONE).unwrap());
    }

    #[test]
    fn partial_purges_cover_their_uris_only() {
        let scratch = Scratch::new("journal-partial");
        let tree = tree(&scratch);
        let before = mark(&tree).unwrap();
        record(&tree, &Scope::Uri(b"/a/".to_vec()), false).unwrap();
        record(&tree, &Scope::Prefix(b"/blog/".to_vec()), false).unwrap();
        assert!(purged_since(&tree, before, b"/a/", &Tags::NONE).unwrap());
        assert!(purged_since(&tree, before, b"/blog/post/", &Tags::NONE).unwrap());
        assert!(!purged_since(&tree, before, b"/a", &Tags::NONE).unwrap());
        assert!(!purged_since(&tree, before, b"/other/", &Tags::NONE).unwrap());
        let after = mark(&tree).unwrap();
        assert!(
            !purged_since(&tree, after, b"/a/", &Tags::NONE).unwrap(),
            "older entries do not count"
        );
    }

    #[test]
    fn tag_purges_cover_responses_carrying_the_tag() {
        let scratch = Scratch::new("journal-tags");
        let tree = tree(&scratch);
        let tagged = Tags::from_header_values([&b"article-1, home"[..]]).unwrap();
        let before = mark(&tree).unwrap();
        let tags = |t: &[&str]| Scope::Tags(t.iter().map(|t| t.as_bytes().to_vec()).collect());
        record(&tree, &tags(&["article-2", "x"]), false).unwrap();
        assert!(!purged_since(&tree, before, b"/a/", &tagged).unwrap());
        record(&tree, &tags(&["y", "home"]), true).unwrap();
        assert!(purged_since(&tree, before, b"/a/", &tagged).unwrap());
        assert!(!purged_since(&tree, before, b"/a/", &Tags::NONE).unwrap());
        let after = mark(&tree).unwrap();
        assert!(!purged_since(&tree, after, b"/a/", &tagged).unwrap());
    }

    #[test]
    fn whole_tree_purge_invalidates_every_mark() {
        let scratch = Scratch::new("journal-all");
        let tree = tree(&scratch);
        let before = mark(&tree).unwrap();
        record(&tree, &Scope::All, false).unwrap();
        assert!(purged_since(&tree, before, b"/anything", &Tags::NONE).unwrap());
        let after = mark(&tree).unwrap();
        assert!(!purged_since(&tree, after, b"/anything", &Tags::NONE).unwrap());
    }

    /// The hole a fault campaign found: the journal used to be replaced by
    /// rename on a whole purge and noted by (inode, length); after two
    /// replacements ext4 hands the first inode out again, and a note taken
    /// before both purges matched. A generation cannot repeat.
    #[test]
    fn a_note_taken_before_two_whole_purges_never_matches() {
        let scratch = Scratch::new("journal-twice");
        let tree = tree(&scratch);
        let before = mark(&tree).unwrap();
        record(&tree, &Scope::All, false).unwrap();
        record(&tree, &Scope::All, false).unwrap();
        let after = mark(&tree).unwrap();
        assert_eq!(before.len, after.len, "the same length as before");
        assert!(purged_since(&tree, before, b"/x", &Tags::NONE).unwrap());
    }

    #[test]
    fn a_note_from_another_tree_never_matches() {
        let scratch = Scratch::new("journal-tree");
        let old = tree(&scratch);
        let note = mark(&old).unwrap();
        std::fs::remove_dir_all(scratch.0.join(crate::path::RESERVED_DIR)).unwrap();
        let new = tree(&scratch);
        assert!(purged_since(&new, note, b"/x", &Tags::NONE).unwrap());
    }

    #[test]
    fn whole_tree_purge_makes_older_pages_stale() {
        let scratch = Scratch::new("journal-epoch");
        let tree = tree(&scratch);
        let page = scratch.0.join("page.html");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&page, b"old").unwrap();
        let old = FileTime::of(&std::fs::metadata(&page).unwrap());
        assert!(!is_stale(old, tree.state().epoch()));
        record(&tree, &Scope::All, false).unwrap();
        let purged_at = tree.state().epoch();
        assert!(is_stale(old, purged_at));
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&page, b"new").unwrap();
        let new = FileTime::of(&std::fs::metadata(&page).unwrap());
        assert!(!is_stale(new, purged_at));
        record(&tree, &Scope::Uri(b"/x".to_vec()), false).unwrap();
        assert_eq!(
            tree.state().epoch(),
            purged_at,
            "partial purges keep the epoch"
        );
    }

    #[test]
    fn a_long_journal_starts_over() {
        let scratch = Scratch::new("journal-long");
        let tree = tree(&scratch);
        let long = vec![b'a'; 4000];
        let mut uri = b"/".to_vec();
        uri.extend_from_slice(&long);
        let before = mark(&tree).unwrap();
        for _ in 0..(MAX_JOURNAL_LEN / 4000 + 2) {
            record(&tree, &Scope::Uri(uri.clone()), false).unwrap();
        }
        let len = std::fs::metadata(tree.reserved_path(JOURNAL))
            .unwrap()
            .len();
        assert!(len <= MAX_JOURNAL_LEN + 4100, "{len}");
        assert!(purged_since(&tree, before, b"/unrelated", &Tags::NONE).unwrap());
    }
}
