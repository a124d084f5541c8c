//! The HIT path: a content handler that serves a generated page as nginx's
//! static module serves a file: the stored `Content-Type`, `Last-Modified`
//! and `ETag` (so `304` and ranges work), and the body straight from the
//! file (sendfile where nginx uses it) — the identity body, or the stored
//! variant the client's `Accept-Encoding` asks for, as `gzip_static` and
//! `brotli_static` serve precompressed files.

use std::cell::RefCell;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_file_t, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_http_set_etag, ngx_int_t, ngx_str_t, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_OK,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule, Request};
use static_gen_logic::encoding::{AcceptEncodingCache, Encoding};
use static_gen_logic::rules::mime_type;

use crate::ctx::{self, HitPage, Representation};
use crate::ext::RequestExt;
use crate::StaticGenModule;

/// Content handler of a HIT: the page's header, then its body straight
/// from the file (sendfile where nginx uses it).
pub(crate) extern "C" fn serve_hit(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let rc = r.discard_request_body();
    if rc != Status::NGX_OK {
        return rc.into();
    }
    let Some(page) = ctx::get(r).and_then(|c| c.hit.as_ref()) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    match send_page(r, page) {
        Ok(rc) => rc,
        Err(()) => NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t,
    }
}

fn send_page(r: &mut Request, page: &HitPage) -> Result<ngx_int_t, ()> {
    let sent = set_headers(r, page)?;
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: `raw` is the live request.
    unsafe {
        (*raw).set_allow_ranges(1);
        let rc = ngx_http_send_header(raw);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || (*raw).header_only() != 0 {
            return Ok(rc);
        }
        let chain = page_chain(r, page, sent).ok_or(())?;
        Ok(ngx_http_output_filter(raw, chain))
    }
}

thread_local! {
    static ACCEPT: RefCell<AcceptEncodingCache> = RefCell::new(AcceptEncodingCache::default());
}

/// The representation the client asked for (RFC 9110 negotiation of
/// `Accept-Encoding`, the smallest acceptable), identity when none is.
fn representation(r: &Request, page: &HitPage) -> Representation {
    let identity = Representation {
        encoding: Encoding::Identity,
        offset: page.body_offset,
        len: page.identity_len,
    };
    if page.variants.is_empty() {
        return identity;
    }
    let mut lines = [&b""[..]; 4];
    let mut n = 0;
    for header in r.headers_in() {
        if n < lines.len()
            && header
                .key
                .as_bytes()
                .eq_ignore_ascii_case(b"accept-encoding")
        {
            lines[n] = header.value.as_bytes();
            n += 1;
        }
    }
    let mut sizes = [(Encoding::Identity, 0); 3];
    let mut held = 0;
    for (slot, size) in sizes.iter_mut().zip(page.variants.sizes()) {
        *slot = size;
        held += 1;
    }
    let accept = ACCEPT.with(|cache| cache.borrow_mut().parse(&lines[..n]));
    match accept.choose(page.identity_len, &sizes[..held]) {
        Some(encoding) if encoding != Encoding::Identity => {
            page.variants
                .get(encoding)
                .map_or(identity, |range| Representation {
                    encoding,
                    offset: page.body_offset + range.start,
                    len: range.len,
                })
        }
        _ => identity,
    }
}

/// The response headers of a page: status 200, its stored `Content-Type`,
/// `Content-Length`, `Last-Modified` and `ETag` of the representation
/// negotiated, with its `Content-Encoding`, and `Vary: Accept-Encoding`
/// where the page has variants or the location makes them. Returns the
/// representation.
pub(crate) fn set_headers(r: &mut Request, page: &HitPage) -> Result<Representation, ()> {
    let sent = representation(r, page);
    let pool = r.pool().as_ptr();
    // SAFETY: the pool lives as long as the request.
    let content_type = unsafe { ngx_str_t::from_bytes(pool, &page.content_type) }.ok_or(())?;
    {
        let out = &mut r.raw_mut().headers_out;
        out.status = usize::from(page.status);
        out.content_length_n = sent.len as i64;
        out.content_type_len = mime_type(&page.content_type).len();
        out.content_type = content_type;
        out.content_type_lowcase = core::ptr::null_mut();
    }
    if page.status != NGX_HTTP_OK as u16 {
        // a stored redirect or error page: its status and Location, as
        // nginx answers those (no validators, no ranges)
        return set_redirect_headers(r, page).map(|()| sent);
    }
    r.raw_mut().headers_out.last_modified_time = page.mtime();
    // SAFETY: a live request.
    if unsafe { ngx_http_set_etag(r.into()) } != Status::NGX_OK.0 {
        return Err(());
    }
    if sent.encoding != Encoding::Identity {
        // one ETag per representation: equal lengths must not make two
        // variants' tags equal (If-None-Match would answer 304 for another)
        let mut tag = [0u8; 64];
        let tag = variant_etag(&mut tag, page.mtime(), sent).ok_or(())?;
        let etag = r.raw_mut().headers_out.etag;
        // SAFETY: ngx_http_set_etag set it, from the request's pool.
        let etag = unsafe { etag.as_mut() }.ok_or(())?;
        etag.value = unsafe { ngx_str_t::from_bytes(pool, tag) }.ok_or(())?;
        // nginx's gzip filter leaves a response with a Content-Encoding be
        let encoding = r
            .push_header_out("Content-Encoding", sent.encoding.token())
            .ok_or(())?;
        r.raw_mut().headers_out.content_encoding = encoding;
    }
    let compressing = StaticGenModule::location_conf(r).is_some_and(|c| !c.compress().is_off());
    if compressing || !page.variants.is_empty() {
        vary_on_accept_encoding(r)?;
    }
    Ok(sent)
}

/// The `Location` of a stored redirect (none for an error page), exactly
/// as stored: not as `headers_out.location`, which nginx would make
/// absolute (`absolute_redirect`) where the upstream's was sent as it was.
fn set_redirect_headers(r: &mut Request, page: &HitPage) -> Result<(), ()> {
    if !page.location.is_empty() {
        r.push_header_out_bytes("Location", &page.location)
            .ok_or(())?;
    }
    Ok(())
}

/// A variant's ETag, `"<mtime hex>-<length hex>-<coding>"`, written into
/// `buf` (no heap allocation on a HIT).
fn variant_etag(buf: &mut [u8; 64], mtime: i64, sent: Representation) -> Option<&[u8]> {
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(
        cursor,
        "\"{:x}-{:x}-{}\"",
        mtime,
        sent.len,
        sent.encoding.token()
    )
    .ok()?;
    let len = cursor.position() as usize;
    Some(&buf[..len])
}

/// `Vary: Accept-Encoding`, once: nginx's own (`r->gzip_vary`, which gzip
/// also sets) where `gzip_vary on`, else a header of the module's.
fn vary_on_accept_encoding(r: &mut Request) -> Result<(), ()> {
    let gzip_vary = NgxHttpCoreModule::location_conf(r).is_some_and(|clcf| clcf.gzip_vary != 0);
    if gzip_vary {
        r.raw_mut().set_gzip_vary(1);
        return Ok(());
    }
    r.push_header_out("Vary", "Accept-Encoding")
        .map(|_| ())
        .ok_or(())
}

/// One buffer pointing at the representation: in memory when the page is
/// held there, else in the page file.
pub(crate) fn page_chain(
    r: &Request,
    page: &HitPage,
    sent: Representation,
) -> Option<*mut ngx_chain_t> {
    let pool = r.pool();
    let buf = pool.calloc_type::<ngx_buf_t>();
    let chain = pool.calloc_type::<ngx_chain_t>();
    // SAFETY: zeroed pool allocations, filled in before use.
    let (buf, chain) = unsafe { (buf.as_mut()?, chain.as_mut()?) };
    if let Some(bytes) = page
        .in_memory(sent.offset, sent.len)
        .filter(|_| sent.len > 0)
    {
        // the page (in the request's context) outlives the request's output
        let range = bytes.as_ptr_range();
        buf.pos = range.start.cast_mut();
        buf.last = range.end.cast_mut();
        buf.start = buf.pos;
        buf.end = buf.last;
        buf.set_memory(1);
    } else if sent.len > 0 {
        let file = pool.calloc_type::<ngx_file_t>();
        let file = unsafe { file.as_mut()? };
        file.fd = page.file.as_raw_fd();
        // the page (in the request's context) outlives the request's output
        let name = page.path.as_os_str().as_bytes();
        file.name = ngx_str_t {
            len: name.len(),
            data: name.as_ptr().cast_mut(),
        };
        file.log = r.log();
        buf.file = file;
        buf.file_pos = sent.offset as i64;
        buf.file_last = (sent.offset + sent.len) as i64;
        buf.set_in_file(1);
    }
    buf.set_last_buf(1);
    buf.set_last_in_chain(1);
    chain.buf = buf;
    chain.next = core::ptr::null_mut();
    Some(chain)
}
