//! `static_gen_purge`: a content handler that empties the generated tree.
//! The tree is moved aside (a few renames) before the reply, so no request
//! after it is served an old page; the moved tree is deleted in the
//! background.

use nginx_sys::{
    ngx_cycle_t, ngx_http_request_t, ngx_int_t, NGX_HTTP_BAD_REQUEST, NGX_HTTP_DELETE,
    NGX_HTTP_FORBIDDEN, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK,
    NGX_HTTP_POST, NGX_LOG_ALERT, NGX_LOG_ERR, NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, Request};
use std::path::{Path, PathBuf};

use static_gen_logic::purge::{failure_reason, purge, reply, Purged};
use static_gen_logic::scope::{PurgeArgs, Scope};
use static_gen_logic::stats::PurgeScope;
use static_gen_logic::sweep::{clean_up_in_background, Cleanup};
use static_gen_logic::tree::Tree;

use crate::access::client_is_local;
use crate::ext::{send_body, RequestExt};
use crate::log::log_errno;
use crate::stats;
use crate::tree::{current_tree, expand_root};
use crate::StaticGenModule;

const ALLOWED: &str = "POST, PURGE, DELETE";

pub(crate) extern "C" fn purge_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let allowed = r.raw().method & (NGX_HTTP_POST | NGX_HTTP_DELETE) as usize != 0
        || r.method_name() == b"PURGE";
    let rc = r.discard_request_body();
    if rc != Status::NGX_OK {
        return rc.into();
    }
    if !allowed {
        if r.add_header_out("Allow", ALLOWED).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
        }
        return send_error(r, NGX_HTTP_NOT_ALLOWED, "method not allowed");
    }
    let Some(conf) = StaticGenModule::location_conf(r) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    if !conf.purge_has_rules && !client_is_local(r) {
        return send_error(
            r,
            NGX_HTTP_FORBIDDEN,
            "purge allowed from this machine only: protect the location with allow/deny",
        );
    }
    let PurgeArgs { scope, hard } = match PurgeArgs::parse(r.raw().args.as_bytes()) {
        Ok(args) => args,
        Err(err) => return send_error(r, NGX_HTTP_BAD_REQUEST, &err.to_string()),
    };
    let Some(root) = conf.purge_root() else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    let Some(root) = expand_root(r, root) else {
        return send_error(r, NGX_HTTP_BAD_REQUEST, "invalid root");
    };
    match current_tree(&root).and_then(|tree| purge(&tree, &scope, hard)) {
        Ok(mut purged) => {
            log_purge(r, &root, &scope, &purged);
            stats::purged(counted_scope(&scope), purged.soft);
            let cleanup = std::mem::replace(&mut purged.cleanup, Cleanup::None);
            let removal = delete_later(r, &root, cleanup);
            send_json(r, NGX_HTTP_OK, &reply(&scope, &purged, removal))
        }
        Err(err) => {
            log_errno(
                NGX_LOG_ERR,
                r.log(),
                err.errno(),
                format_args!("static_gen: purge failed: {err}"),
            );
            send_error(
                r,
                NGX_HTTP_INTERNAL_SERVER_ERROR,
                &failure_reason(err.errno()),
            )
        }
    }
}

/// A purge's scope, as counted.
fn counted_scope(scope: &Scope) -> PurgeScope {
    match scope {
        Scope::All => PurgeScope::All,
        Scope::Uri(_) => PurgeScope::Uri,
        Scope::Prefix(_) => PurgeScope::Prefix,
        Scope::Tags(_) => PurgeScope::Tag,
    }
}

/// Logs what a purge did, and what it worked around.
fn log_purge(r: &Request, root: &Path, scope: &Scope, purged: &Purged) {
    if let Some(warning) = &purged.warning {
        log_errno(
            NGX_LOG_WARN,
            r.log(),
            warning.errno(),
            format_args!(
                "static_gen: purge journal not written, every store in flight dropped: {warning}"
            ),
        );
    }
    let what = match (scope, purged.soft) {
        (Scope::All, false) => "every page (stale at once, deleted in the background)".into(),
        (Scope::All, true) => {
            "every page (stale at once, deleted after their stale time)".to_string()
        }
        (Scope::Tags(_), true) => {
            "pages carrying them (stale at once, deleted after their stale time)".into()
        }
        (Scope::Tags(_), false) => {
            "pages carrying them (stale at once, deleted in the background)".into()
        }
        (_, true) => format!("{} entries marked stale", purged.count),
        (Scope::Uri(_), false) => format!("{} page removed", purged.count),
        (Scope::Prefix(_), false) => format!("{} entries moved to the trash", purged.count),
    };
    log_errno(
        NGX_LOG_NOTICE,
        r.log(),
        0,
        format_args!(
            "static_gen: purged {} {}of \"{}\": {what}",
            scope.kind(),
            scope_argument(scope),
            root.display()
        ),
    );
}

/// The purge's argument for the log line: `"/path" ` or `"a b" `.
fn scope_argument(scope: &Scope) -> String {
    let text = match scope {
        Scope::All => return String::new(),
        Scope::Tags(tags) => tags.join(&b' '),
        Scope::Uri(path) | Scope::Prefix(path) => path.clone(),
    };
    format!("\"{}\" ", String::from_utf8_lossy(&text))
}

/// Starts deleting what the purge left; it stays (deleted by the next
/// start) when no thread can be started.
fn delete_later(r: &Request, root: &Path, cleanup: Cleanup) -> &'static str {
    match clean_up_in_background(cleanup) {
        Ok(true) => "background",
        Ok(false) => "none",
        Err(err) => {
            log_errno(
                NGX_LOG_ERR,
                r.log(),
                err.raw_os_error().unwrap_or(0),
                format_args!(
                    "static_gen: cannot start deleting under \"{}\"",
                    root.display()
                ),
            );
            "pending"
        }
    }
}

fn send_error(r: &mut Request, status: u32, message: &str) -> ngx_int_t {
    send_json(
        r,
        status,
        &format!("{{\"status\":\"error\",\"error\":\"{message}\"}}"),
    )
}

/// Sends a one-line JSON body with `status`.
fn send_json(r: &mut Request, status: u32, body: &str) -> ngx_int_t {
    send_body(
        r,
        status,
        ngx::ngx_string!("application/json"),
        &format!("{body}\n"),
    )
}

/// `static_gen_purge_on_start`: purges each tree whole as nginx starts,
/// softly where its locations serve stale pages. What the purge moved aside
/// is left to the first worker's cleaning at start.
pub(crate) fn purge_at_start(cycle: &ngx_cycle_t, roots: &[(PathBuf, u64)]) {
    for (root, stale_ms) in roots {
        let Some(tree) = Tree::open_existing(root) else {
            continue;
        };
        tree.state().note_stale_ms(*stale_ms);
        match purge(&tree, &Scope::All, false) {
            Ok(purged) => log_errno(
                NGX_LOG_NOTICE,
                cycle.log,
                0,
                format_args!(
                    "static_gen: purged every page of \"{}\" at start ({})",
                    root.display(),
                    if purged.soft { "soft" } else { "hard" }
                ),
            ),
            Err(err) => log_errno(
                NGX_LOG_ALERT,
                cycle.log,
                err.errno(),
                format_args!(
                    "static_gen: purge at start of \"{}\" failed: {err}",
                    root.display()
                ),
            ),
        }
    }
}
