//! The lookup: in the precontent phase, decide whether the request takes
//! part, look for its page, and when there is a fresh one, replace the
//! location's content handler with the one in `hit` that serves it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nginx_sys::{
    ngx_array_push, ngx_conf_t, ngx_http_handler_pt,
    ngx_http_phases_NGX_HTTP_PRECONTENT_PHASE as PRECONTENT_PHASE, ngx_http_request_t, ngx_int_t,
    ngx_str_t, ngx_table_elt_t, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_LOG_ERR, NGX_LOG_INFO,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule, Request};
use static_gen_logic::epoch::SharedEpoch;
use static_gen_logic::journal;
use static_gen_logic::page::{decode_header, HeaderCache, HeaderInfo, PageVersion, MAX_HEADER_LEN};
use static_gen_logic::path::{check_canonical, check_expanded_root, page_file, PathError};
use static_gen_logic::store::StoreError;

use crate::conf::{Root, StaticGenConf};
use crate::ctx::{self, HitPage, LookupStatus, MissPage, RequestCtx};
use crate::ext::RequestExt;
use crate::hit;
use crate::log::log_errno;
use crate::store::log_store_error;
use crate::StaticGenModule;

/// Adds the lookup handler to the precontent phase.
pub(crate) fn install(cf: &mut ngx_conf_t) -> Result<(), ()> {
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    let handlers = &mut cmcf.phases[PRECONTENT_PHASE as usize].handlers;
    // SAFETY: the phase array holds ngx_http_handler_pt elements.
    let slot = unsafe {
        ngx_array_push(handlers)
            .cast::<ngx_http_handler_pt>()
            .as_mut()
    }
    .ok_or(())?;
    *slot = Some(lookup_handler);
    Ok(())
}

extern "C" fn lookup_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let Some(conf) = StaticGenModule::location_conf(r) else {
        return Status::NGX_DECLINED.into();
    };
    if !conf.enabled() || !r.is_main() || ctx::get(r).is_some() {
        return Status::NGX_DECLINED.into();
    }
    let request_ctx = lookup(r, conf);
    let hit = request_ctx.status == LookupStatus::Hit;
    if ctx::set(r, request_ctx).is_err() {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    }
    if hit {
        r.raw_mut().content_handler = Some(hit::serve_hit);
    }
    Status::NGX_DECLINED.into()
}

/// Classifies the request and, for an eligible one, opens its page.
fn lookup(r: &mut Request, conf: &'static StaticGenConf) -> RequestCtx {
    let Some((root, file)) = eligible_page(r, conf) else {
        return RequestCtx::new(LookupStatus::Bypass);
    };
    match open_page(&file) {
        Ok(page) if purged(r, &root, &page) => miss(r, conf, root, file, LookupStatus::Miss),
        Ok(page) if !conf.expired(page.mtime) => RequestCtx {
            hit: Some(page),
            ..RequestCtx::new(LookupStatus::Hit)
        },
        Ok(_) => miss(r, conf, root, file, LookupStatus::Expired),
        Err(OpenError::Missing) => miss(r, conf, root, file, LookupStatus::Miss),
        Err(OpenError::Foreign) => {
            log_errno(
                NGX_LOG_INFO,
                r.log(),
                0,
                format_args!(
                    "static_gen: \"{}\" is not a generated page, bypassing",
                    file.display()
                ),
            );
            RequestCtx::new(LookupStatus::Bypass)
        }
        Err(OpenError::Io(err)) => {
            log_errno(
                NGX_LOG_ERR,
                r.log(),
                err.raw_os_error().unwrap_or(0),
                format_args!("static_gen: open \"{}\" failed", file.display()),
            );
            RequestCtx::new(LookupStatus::Bypass)
        }
    }
}

/// True for a page written before the last whole-tree purge (and not yet
/// deleted by it). When the epoch cannot be read, the page is not trusted.
fn purged(r: &Request, root: &Path, page: &HitPage) -> bool {
    match with_epoch(root, SharedEpoch::load) {
        Ok(epoch) => journal::is_stale(page.modified, epoch),
        Err(err) => {
            log_store_error(r, &err);
            true
        }
    }
}

/// Calls `f` with the epoch of the tree under `root`, mapped once per
/// worker.
pub(crate) fn with_epoch<T>(
    root: &Path,
    f: impl FnOnce(&SharedEpoch) -> T,
) -> Result<T, StoreError> {
    EPOCHS.with(|epochs| {
        let mut epochs = epochs.borrow_mut();
        // keyed by the path's bytes: hashing a `Path` walks its components
        if let Some(mapped) = epochs.get(root.as_os_str()) {
            return Ok(f(mapped));
        }
        let mapped = SharedEpoch::open(root)?;
        // roots with variables can be many: start over when full
        if epochs.len() >= MAX_MAPPED_EPOCHS {
            epochs.clear();
        }
        Ok(f(epochs
            .entry(root.as_os_str().to_owned())
            .or_insert(mapped)))
    })
}

/// A request that goes upstream and whose response may replace `file`:
/// notes the purge journal first, so a purge during the fetch wins.
fn miss(
    r: &mut Request,
    conf: &'static StaticGenConf,
    root: PathBuf,
    file: PathBuf,
    status: LookupStatus,
) -> RequestCtx {
    let mut ctx = RequestCtx::new(status);
    match journal::mark(&root) {
        Ok(mark) => {
            ctx.miss = Some(MissPage {
                root,
                file,
                conf,
                mark,
            });
            if r.is_get() {
                ctx.upstream_identity = ask_identity(r);
            }
        }
        Err(err) => log_store_error(r, &err),
    }
    ctx
}

/// The root and page file of an eligible request, or `None` when it must
/// bypass.
fn eligible_page(r: &mut Request, conf: &StaticGenConf) -> Option<(PathBuf, PathBuf)> {
    // credentials mean a private answer, as for a session cookie
    if !r.is_get_or_head() || r.has_query() || r.has_credentials() {
        return None;
    }
    let cookies = conf.cookies();
    if r.cookie_headers().any(|value| cookies.present_in(value)) {
        return None;
    }
    let uri = r.uri();
    if !conf.filter.allows(uri) {
        return None;
    }
    let relative = check_canonical(r.raw_path(), uri)
        .and_then(|()| page_file(uri))
        .map_err(|err: PathError| debug_bypass(r, err))
        .ok()?;
    if !r.predicates_pass(conf.bypass) {
        return None;
    }
    let root = expand_root(r, conf.tree.as_ref()?)?;
    let file = root.join(OsStr::from_bytes(&relative));
    Some((root, file))
}

/// The directory of a tree for this request; a root with variables whose
/// expansion leaves its intended tree is logged and refused.
pub(crate) fn expand_root(r: &Request, root: &Root) -> Option<PathBuf> {
    let (value, prefix) = match root {
        Root::Static(path) => return Some(path.clone()),
        // SAFETY: compiled at configuration time, alive with the cycle.
        Root::Variable { value, prefix } => (unsafe { &**value }, prefix),
    };
    let expanded = r.get_complex_value(value)?.as_bytes();
    match check_expanded_root(expanded, prefix) {
        Ok(()) => Some(PathBuf::from(OsStr::from_bytes(expanded))),
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

/// Makes the upstream answer a MISS uncompressed, so the page is stored as
/// identity (nginx's gzip filter still compresses it for the client): every
/// `Accept-Encoding` request header is set to `identity` until the response
/// header arrives. Returns what to restore.
fn ask_identity(r: &mut Request) -> Vec<(*mut ngx_table_elt_t, ngx_str_t)> {
    let mut saved = Vec::new();
    for header in r.headers_in_mut() {
        if header
            .key
            .as_bytes()
            .eq_ignore_ascii_case(b"accept-encoding")
        {
            saved.push((core::ptr::from_mut(header), header.value));
            header.value = ngx::ngx_string!("identity");
        }
    }
    saved
}

fn debug_bypass(r: &Request, err: PathError) {
    ngx::ngx_log_debug_http!(r, "static_gen: bypass: {}", err);
}

enum OpenError {
    Missing,
    Foreign,
    Io(io::Error),
}

thread_local! {
    /// Headers of pages served by this worker.
    static HEADERS: RefCell<HeaderCache> = RefCell::new(HeaderCache::default());
    /// The epochs of the trees this worker served, mapped.
    static EPOCHS: RefCell<HashMap<OsString, SharedEpoch>> = RefCell::new(HashMap::new());
}

const MAX_MAPPED_EPOCHS: usize = 256;

/// Reads a page's header: most fit in the first bytes, none in more than
/// [`MAX_HEADER_LEN`].
fn read_header(file: &File, size: u64) -> Result<HeaderInfo, OpenError> {
    const FIRST_READ: usize = 512;
    let mut start = [0u8; MAX_HEADER_LEN];
    let mut len = 0;
    for want in [FIRST_READ, MAX_HEADER_LEN] {
        let want = want.min(size as usize);
        if want <= len {
            break;
        }
        len += file
            .read_at(&mut start[len..want], len as u64)
            .map_err(OpenError::Io)?;
        if let Ok(header) = decode_header(&start[..len]) {
            return Ok(header.into());
        }
    }
    Err(OpenError::Foreign)
}

/// Opens a page and reads its header.
fn open_page(path: &Path) -> Result<HitPage, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ENAMETOOLONG) => {
                OpenError::Missing
            }
            Some(libc::ELOOP) | Some(libc::EISDIR) => OpenError::Foreign,
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
    let header = match HEADERS.with(|cache| cache.borrow().get(&version)) {
        Some(header) => header,
        None => {
            let header = read_header(&file, meta.len())?;
            HEADERS.with(|cache| cache.borrow_mut().insert(version, header.clone()));
            header
        }
    };
    Ok(HitPage {
        content_type: header.content_type,
        body_offset: header.body_offset,
        size: meta.len(),
        mtime: meta.mtime(),
        modified: journal::FileTime::of(&meta),
        path: path.to_owned(),
        file,
    })
}
