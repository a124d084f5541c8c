//! `static_gen_purge`: a content handler that empties the generated tree.
//! The tree is moved aside (a few renames) before the reply, so no request
//! after it is served an old page; the moved tree is deleted in the
//! background.

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header,
    ngx_int_t, NGX_HTTP_BAD_REQUEST, NGX_HTTP_DELETE, NGX_HTTP_FORBIDDEN,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_NOT_ALLOWED, NGX_HTTP_OK, NGX_HTTP_POST, NGX_LOG_ERR,
    NGX_LOG_NOTICE, NGX_LOG_WARN,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, Request};
use std::path::Path;

use static_gen_logic::purge::{purge, reply, Purged};
use static_gen_logic::scope::{PurgeArgs, Scope};
use static_gen_logic::sweep::{clean_up_in_background, Cleanup};

use crate::access::client_is_local;
use crate::ext::RequestExt;
use crate::log::log_errno;
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
            send_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR, "purge failed")
        }
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
    let line = format!("{body}\n");
    let pool = r.pool();
    let Some(mut buffer) = pool.create_buffer_from_str(&line) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    {
        let out = &mut r.raw_mut().headers_out;
        out.status = status as usize;
        out.content_length_n = line.len() as i64;
        out.content_type = ngx::ngx_string!("application/json");
        out.content_type_len = out.content_type.len;
        out.content_type_lowcase = core::ptr::null_mut();
    }
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: `raw` is the live request; buffers come from its pool.
    unsafe {
        let rc = ngx_http_send_header(raw);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || (*raw).header_only() != 0 {
            return rc;
        }
        let buf: *mut ngx_buf_t = ngx::core::Buffer::as_ngx_buf_mut(&mut buffer);
        (*buf).set_last_buf(1);
        (*buf).set_last_in_chain(1);
        let mut chain = ngx_chain_t {
            buf,
            next: core::ptr::null_mut(),
        };
        ngx_http_output_filter(raw, &mut chain)
    }
}
