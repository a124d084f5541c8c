//! The MISS path: header and body filters that tee a storable response into
//! a temporary file while it streams to the client, and install the page as
//! soon as the whole body has passed (whatever the client does then).
//!
//! The module is loaded dynamically, so its filters sit at the top of the
//! chains: they see the response as the content handler produced it (before
//! gzip, chunked encoding, ranges or 304 handling), and body buffers may live
//! in the proxy's temporary files rather than in memory.

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;

use nginx_sys::{
    ngx_chain_t, ngx_http_output_body_filter_pt, ngx_http_output_header_filter_pt,
    ngx_http_request_t, ngx_http_top_body_filter, ngx_http_top_header_filter, ngx_int_t,
    NGX_LOG_INFO,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, Request};
use static_gen_logic::page::encode_response_header;
use static_gen_logic::rules::{storable_with, ResponseFacts};
use static_gen_logic::stats::{Reason, Unstored};
use static_gen_logic::store::{PageLimits, PageWriter};
use static_gen_logic::tags::{TagError, Tags};
use static_gen_logic::tree::{path_key, TreeError};
use static_gen_logic::variants::Job;

use crate::compressor;
use crate::ctx::{self, HitPage, LookupStatus, MissPage, RequestCtx};
use crate::ext::{chain_bufs, chain_bufs_mut, BufData, BufExt, RequestExt};
use crate::hit;
use crate::lock;
use crate::log::{log_errno, log_tree_error};
use crate::lookup;
use crate::stats;
use crate::tree::current_tree;
use crate::StaticGenModule;

const NOT_STORED: &str = "page not stored";

static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;
static mut NEXT_BODY_FILTER: ngx_http_output_body_filter_pt = None;

/// Puts the filters at the top of nginx's chains (postconfiguration).
pub(crate) fn install_filters() {
    // SAFETY: postconfiguration runs single-threaded, before any request.
    unsafe {
        NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
        NEXT_BODY_FILTER = ngx_http_top_body_filter;
        ngx_http_top_body_filter = Some(body_filter);
    }
}

fn next_header(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: set in install_filters; nginx always has a header filter.
    unsafe { NEXT_HEADER_FILTER.map_or(Status::NGX_ERROR.0, |next| next(r)) }
}

fn next_body(r: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: as above.
    unsafe { NEXT_BODY_FILTER.map_or(Status::NGX_ERROR.0, |next| next(r, chain)) }
}

extern "C" fn header_filter(raw: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: filters are called with a live request.
    let r = unsafe { Request::from_ngx_http_request(raw) };
    let ctx = ctx::get(r);
    // on every response of a `static_gen` location: clients never see tags
    let tags = if ctx.is_some() || in_static_gen_location(r) {
        take_tags(r)
    } else {
        Ok(Tags::NONE)
    };
    if let Some(ctx) = ctx {
        ctx.restore_accept_encoding();
        // on every response of a `static_gen` location, not only a MISS
        let refused = upstream_refuses(r);
        if ctx.fallback.is_some() && r.raw().headers_out.status >= 500 {
            // regenerating failed: the page a lookup would serve now, if any
            ctx.fallback = None;
            let now = ctx
                .miss
                .as_ref()
                .and_then(|miss| lookup::fallback_now(r, miss));
            if let Some((page, status)) = now {
                return match replace_with_fallback(r, ctx, page, status) {
                    Ok(()) => next_header(raw),
                    Err(()) => Status::NGX_ERROR.into(),
                };
            }
        }
        let started = match &ctx.miss {
            Some(_) if refused => {
                ngx::ngx_log_debug_http!(r, "static_gen: not stored: the upstream refused");
                Some(Err(Unstored::UpstreamRefused))
            }
            Some(miss) if r.is_get() && r.is_main() => Some(start_page(r, miss, &tags)),
            _ => None,
        };
        ctx.tags = tags.unwrap_or_default();
        match started {
            Some(Ok(writer)) => ctx.writer = Some(writer),
            Some(Err(reason)) => ctx.refuse_store_of_response(reason, r.raw().headers_out.status),
            None => ctx.abandon_store(),
        }
    }
    next_header(raw)
}

/// Answers with `page` (the stale one, or one installed meanwhile) instead
/// of the failed response: its headers replace the upstream's, and the
/// body filter sends its body.
fn replace_with_fallback(
    r: &mut Request,
    ctx: &mut RequestCtx,
    page: HitPage,
    status: LookupStatus,
) -> Result<(), ()> {
    ctx.abandon_store();
    ctx.hit = Some(page);
    ctx.status = status;
    for header in r.headers_out_mut() {
        header.hash = 0;
    }
    let out = &mut r.raw_mut().headers_out;
    out.status_line.len = 0;
    out.content_length = core::ptr::null_mut();
    out.content_encoding = core::ptr::null_mut();
    out.location = core::ptr::null_mut();
    out.last_modified = core::ptr::null_mut();
    out.etag = core::ptr::null_mut();
    out.expires = core::ptr::null_mut();
    let page = ctx.hit.as_ref().ok_or(())?;
    ctx.replacing = Some(hit::set_headers(r, page)?);
    Ok(())
}

/// True when the upstream asks not to store its response, with
/// `X-Static-Gen: no-store` or `X-Accel-Expires: 0` (as for nginx's own
/// caches). `X-Static-Gen` is the module's own header: it is removed here,
/// so the client sees only what `add_header ... $static_gen_status` says.
fn upstream_refuses(r: &mut Request) -> bool {
    let mut refused = false;
    for header in r.headers_out_mut() {
        if header.key.as_bytes().eq_ignore_ascii_case(b"x-static-gen") {
            refused |= header.value.as_bytes().eq_ignore_ascii_case(b"no-store");
            header.hash = 0;
        }
    }
    // SAFETY: a request's upstream, when it has one, lives as long as it.
    let accel_expires = r
        .upstream()
        .and_then(|u| unsafe { (*u).headers_in.x_accel_expires.as_ref() });
    refused || accel_expires.is_some_and(|h| h.value.as_bytes() == b"0")
}

fn in_static_gen_location(r: &Request) -> bool {
    StaticGenModule::location_conf(r).is_some_and(|conf| conf.enabled())
}

/// Removes `X-Static-Gen-Tags` from the response and returns the tags all
/// such headers name.
fn take_tags(r: &mut Request) -> Result<Tags, TagError> {
    let mut values = Vec::new();
    for header in r.headers_out_mut() {
        if header.hash != 0
            && header
                .key
                .as_bytes()
                .eq_ignore_ascii_case(b"x-static-gen-tags")
        {
            header.hash = 0;
            values.push(header.value.as_bytes());
        }
    }
    Tags::from_header_values(values)
}

/// Opens the temporary file of a storable response, or says why not.
fn start_page(
    r: &mut Request,
    miss: &MissPage,
    tags: &Result<Tags, TagError>,
) -> Result<PageWriter, Unstored> {
    if !r.predicates_pass(miss.conf.no_store) {
        return Err(Unstored::UpstreamRefused);
    }
    let mut cache_control = Vec::new();
    let mut vary = Vec::new();
    let mut has_set_cookie = false;
    let mut content_encoding: &[u8] = b"";
    // in the list, not always in headers_out.location (nginx sets it only
    // when proxy_redirect rewrote it)
    let mut location: &[u8] = b"";
    for header in r.headers_out().filter(|h| h.hash != 0) {
        let key = header.key.as_bytes();
        let value = header.value.as_bytes();
        if key.eq_ignore_ascii_case(b"location") {
            location = value;
        } else if key.eq_ignore_ascii_case(b"set-cookie") {
            has_set_cookie = true;
        } else if key.eq_ignore_ascii_case(b"cache-control") {
            cache_control.extend_from_slice(value);
            cache_control.push(b',');
        } else if key.eq_ignore_ascii_case(b"vary") {
            vary.extend_from_slice(value);
            vary.push(b',');
        } else if key.eq_ignore_ascii_case(b"content-encoding") {
            content_encoding = value;
        }
    }
    let out = &r.raw().headers_out;
    let facts = ResponseFacts {
        status: out.status,
        content_type: out.content_type.as_bytes(),
        content_encoding,
        has_set_cookie,
        cache_control: &cache_control,
        vary: &vary,
        location,
    };
    let validity = miss.conf.validity();
    if let Err(reason) = storable_with(&facts, miss.conf.types(), validity) {
        ngx::ngx_log_debug_http!(r, "static_gen: not stored: {}", reason);
        return Err(Unstored::Rule(reason));
    }
    let tags = match tags {
        Ok(tags) => tags,
        Err(err) => {
            // the page could not be purged by its tags: not stored
            log_errno(
                NGX_LOG_INFO,
                r.log(),
                0,
                format_args!("static_gen: {NOT_STORED}: X-Static-Gen-Tags: {err}"),
            );
            return Err(Unstored::Tags);
        }
    };
    let status = u16::try_from(facts.status).unwrap_or(0);
    let header = encode_response_header(
        facts.content_type,
        r.uri(),
        tags.as_line(),
        status,
        facts.location,
    )
    .map_err(|_| Unstored::WriteError)?;
    let limits = PageLimits {
        expected: u64::try_from(out.content_length_n).ok(),
        max: miss.conf.max_size(),
        mode: miss.conf.file_mode(),
    };
    PageWriter::create(&miss.tree, &header, limits).map_err(|err| {
        log_tree_error(r.log(), NOT_STORED, &err);
        Unstored::of(&err)
    })
}

extern "C" fn body_filter(raw: *mut ngx_http_request_t, chain: *mut ngx_chain_t) -> ngx_int_t {
    // SAFETY: filters are called with a live request.
    let r = unsafe { Request::from_ngx_http_request(raw) };
    if let Some(ctx) = ctx::get(r) {
        if let Some(sent) = ctx.replacing {
            return send_fallback_body(r, ctx, chain, sent);
        }
        if ctx.writer.is_some() {
            tee_and_install(r, ctx, chain);
        }
    }

    let rc = next_body(raw, chain);

    if let Some(ctx) = ctx::get(r) {
        if ctx.writer.is_some() && (rc == Status::NGX_ERROR.0 || r.connection_error()) {
            // the body did not arrive whole before the client went away
            ctx.refuse_store(Unstored::ClientAbort);
        }
    }
    rc
}

/// Copies the chain into the page being written and, once the body is
/// complete (its last buffer, and an end the protocol marked), installs
/// the page at once: a complete body is a complete page whatever the
/// client does, and the requests that follow (and the lock's waiters)
/// find it before this client has read it.
fn tee_and_install(r: &mut Request, ctx: &mut RequestCtx, chain: *mut ngx_chain_t) {
    let Some(writer) = ctx.writer.as_mut() else {
        return;
    };
    match tee(writer, chain) {
        Err(err) => {
            log_tree_error(r.log(), NOT_STORED, &err);
            let status = r.raw().headers_out.status;
            ctx.refuse_store_of_response(Unstored::of(&err), status);
        }
        // the client may have the whole body, by its Content-Length, before
        // nginx sends the last buffer: install now
        Ok(false) if writer.has_announced_length() => install_now(r, ctx),
        Ok(false) => {}
        Ok(true) if !r.body_end_marked() && !writer.has_announced_length() => {
            ngx::ngx_log_debug_http!(
                r,
                "static_gen: not stored: body ended at a connection close"
            );
            ctx.refuse_store(Unstored::Incomplete);
        }
        Ok(true) => install_now(r, ctx),
    }
}

/// Installs the complete page being written.
fn install_now(r: &Request, ctx: &mut RequestCtx) {
    if let (Some(writer), Some(miss)) = (ctx.writer.take(), &ctx.miss) {
        if let Err(reason) = install(r, writer, miss, &ctx.tags) {
            ctx.reason.get_or_insert(Reason::Unstored(reason));
        }
    }
    // installed or not: waiters look now
    ctx.abandon_store();
}

/// The body of the stale page, once, instead of the failed response's
/// (whose buffers are marked as sent, so the upstream can reuse them).
fn send_fallback_body(
    r: &mut Request,
    ctx: &mut RequestCtx,
    chain: *mut ngx_chain_t,
    sent: ctx::Representation,
) -> ngx_int_t {
    for buf in chain_bufs_mut(chain) {
        buf.consume();
    }
    let Some(page) = ctx.hit.take() else {
        return Status::NGX_OK.into();
    };
    let rc = match hit::page_chain(r, &page, sent) {
        Some(body) => next_body(r.into(), body),
        None => Status::NGX_ERROR.into(),
    };
    // the page file stays open until the request ends
    ctx.fallback = Some(page);
    rc
}

/// Copies the chain's data into the page; true when it held the last buffer.
fn tee(writer: &mut PageWriter, chain: *mut ngx_chain_t) -> Result<bool, TreeError> {
    let mut last = false;
    for buf in chain_bufs(chain) {
        match buf.data() {
            BufData::Memory(bytes) => writer.write(bytes)?,
            BufData::File { fd, offset, len } => {
                // SAFETY: nginx owns the descriptor; ManuallyDrop keeps it open.
                let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
                writer.copy_from(&file, offset, len)?;
            }
            BufData::None => {}
        }
        last |= buf.is_last();
    }
    Ok(last)
}

/// Installs a complete page, in the tree as the path leads to it now,
/// unless a purge since the request started covers it or one of its
/// `tags`; then has its compressed variants made in the background.
fn install(r: &Request, writer: PageWriter, miss: &MissPage, tags: &Tags) -> Result<(), Unstored> {
    let body_len = writer.body_written();
    let installed = current_tree(miss.tree.root())
        .and_then(|tree| writer.commit_unless_purged(&tree, &miss.rel, miss.mark, r.uri(), tags));
    match installed {
        Ok(Some(version)) => {
            stats::stored(body_len);
            lock::clear_unstorable(&miss.tree, path_key(&miss.rel));
            let config = miss.conf.compress();
            if !config.is_off() && body_len >= config.min_length as u64 {
                compress_later(
                    r,
                    Job {
                        root: miss.tree.root().to_owned(),
                        rel: miss.rel.clone(),
                        version: Some(version),
                        config: config.clone(),
                    },
                );
            }
            Ok(())
        }
        Ok(None) => {
            ngx::ngx_log_debug_http!(r, "static_gen: not stored: purged meanwhile");
            Err(Unstored::PurgedInFlight)
        }
        Err(err) => {
            log_tree_error(r.log(), NOT_STORED, &err);
            Err(Unstored::of(&err))
        }
    }
}

/// Hands a page to this worker's compressor: its first variants are made
/// at once, better ones when the compressor is idle. The MISS never waits.
fn compress_later(r: &Request, job: Job) {
    compressor::submit(r.log(), job);
}
