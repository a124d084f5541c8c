//! The trees this worker serves, opened once and kept: the root's and the
//! reserved directory's descriptors and the mapped shared state. A HIT
//! checks a kept tree without a system call (its state says whether some
//! process retired it); a MISS being installed and a purge, which make
//! system calls anyway, check with one `stat` that the path still leads to
//! the same tree, and retire it for every worker when it does not (a tree
//! deleted or replaced by hand).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use nginx_sys::NGX_LOG_INFO;
use ngx::http::Request;
use static_gen_logic::path::check_expanded_root;
use static_gen_logic::tree::hash::BuildFnv;
use static_gen_logic::tree::{Tree, TreeError};

use crate::conf::Root;
use crate::log::log_errno;

thread_local! {
    static TREES: RefCell<HashMap<OsString, Rc<Tree>, BuildFnv>> = RefCell::new(HashMap::default());
}

/// Roots with variables can be many: the cache starts over when full.
const MAX_KEPT_TREES: usize = 256;

/// The tree under `root` for a lookup: the kept one unless retired.
pub(crate) fn tree(root: &Path) -> Result<Rc<Tree>, TreeError> {
    // keyed by the path's bytes: hashing a `Path` walks its components
    let kept = TREES.with(|trees| trees.borrow().get(root.as_os_str()).cloned());
    match kept {
        Some(tree) if !tree.state().retired() => Ok(tree),
        _ => reopen(root),
    }
}

/// The tree under `root` as the path leads to it now. A kept tree that is
/// no longer there is retired, so every process that maps its state looks
/// again.
pub(crate) fn current_tree(root: &Path) -> Result<Rc<Tree>, TreeError> {
    let tree = tree(root)?;
    if tree.is_current() {
        return Ok(tree);
    }
    tree.state().retire();
    reopen(root)
}

fn reopen(root: &Path) -> Result<Rc<Tree>, TreeError> {
    let tree = Rc::new(Tree::open(root)?);
    TREES.with(|trees| {
        let mut trees = trees.borrow_mut();
        if trees.len() >= MAX_KEPT_TREES {
            trees.clear();
        }
        trees.insert(root.as_os_str().to_owned(), tree.clone());
    });
    Ok(tree)
}

/// Opens the trees of plain roots when a worker starts, so that the first
/// worker to find one replaced by hand can retire what all others map.
/// Failures wait for the first request, which logs them.
pub(crate) fn open_at_start(roots: &[PathBuf]) {
    for root in roots {
        let _ = tree(root);
    }
}

/// The directory of a tree for this request; a root with variables whose
/// expansion leaves its intended tree is logged and refused.
pub(crate) fn expand_root<'a>(r: &Request, root: &'a Root) -> Option<Cow<'a, Path>> {
    let (value, prefix) = match root {
        Root::Static(path) => return Some(Cow::Borrowed(path)),
        // SAFETY: compiled at configuration time, alive with the cycle.
        Root::Variable { value, prefix } => (unsafe { &**value }, prefix),
    };
    let expanded = r.get_complex_value(value)?.as_bytes();
    match check_expanded_root(expanded, prefix) {
        Ok(()) => Some(Cow::Owned(PathBuf::from(OsStr::from_bytes(expanded)))),
        Err(err) => {
            log_errno(
                NGX_LOG_INFO,
                r.log(),
                0,
                format_args!(
                    "static_gen: root \"{}\" refused: {err}",
                    String::from_utf8_lossy(expanded)
                ),
            );
            None
        }
    }
}
