//! The HIT path: a content handler that serves a generated page as nginx's
//! static module serves a file: the stored `Content-Type`, `Last-Modified`
//! and `ETag` (so `304` and ranges work), and the body straight from the
//! file (sendfile where nginx uses it).

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;

use nginx_sys::{
    ngx_buf_t, ngx_chain_t, ngx_file_t, ngx_http_output_filter, ngx_http_request_t,
    ngx_http_send_header, ngx_http_set_etag, ngx_int_t, ngx_str_t, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_HTTP_OK,
};
use ngx::core::Status;
use ngx::http::Request;
use static_gen_logic::rules::mime_type;

use crate::ctx::{self, HitPage};
use crate::ext::RequestExt;

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
    set_headers(r, page)?;
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: `raw` is the live request.
    unsafe {
        (*raw).set_allow_ranges(1);
        let rc = ngx_http_send_header(raw);
        if rc == Status::NGX_ERROR.0 || rc > Status::NGX_OK.0 || (*raw).header_only() != 0 {
            return Ok(rc);
        }
        let chain = page_chain(r, page).ok_or(())?;
        Ok(ngx_http_output_filter(raw, chain))
    }
}

/// The response headers of a page: status 200, its stored `Content-Type`,
/// `Content-Length`, `Last-Modified` and `ETag`.
pub(crate) fn set_headers(r: &mut Request, page: &HitPage) -> Result<(), ()> {
    let pool = r.pool().as_ptr();
    let body_len = page.size - page.body_offset;
    // SAFETY: the pool lives as long as the request.
    let content_type = unsafe { ngx_str_t::from_bytes(pool, &page.content_type) }.ok_or(())?;
    {
        let out = &mut r.raw_mut().headers_out;
        out.status = NGX_HTTP_OK as usize;
        out.content_length_n = body_len as i64;
        out.last_modified_time = page.mtime;
        out.content_type_len = mime_type(&page.content_type).len();
        out.content_type = content_type;
        out.content_type_lowcase = core::ptr::null_mut();
    }
    // SAFETY: a live request.
    if unsafe { ngx_http_set_etag(r.into()) } != Status::NGX_OK.0 {
        return Err(());
    }
    Ok(())
}

/// One buffer pointing at the body in the page file.
pub(crate) fn page_chain(r: &Request, page: &HitPage) -> Option<*mut ngx_chain_t> {
    let body_len = page.size - page.body_offset;
    let pool = r.pool();
    let buf = pool.calloc_type::<ngx_buf_t>();
    let chain = pool.calloc_type::<ngx_chain_t>();
    // SAFETY: zeroed pool allocations, filled in before use.
    let (buf, chain) = unsafe { (buf.as_mut()?, chain.as_mut()?) };
    if body_len > 0 {
        let file = pool.calloc_type::<ngx_file_t>();
        let file = unsafe { file.as_mut()? };
        file.fd = page.file.as_raw_fd();
        file.name =
            unsafe { ngx_str_t::from_bytes(pool.as_ptr(), page.path.as_os_str().as_bytes())? };
        file.log = r.log();
        buf.file = file;
        buf.file_pos = page.body_offset as i64;
        buf.file_last = page.size as i64;
        buf.set_in_file(1);
    }
    buf.set_last_buf(1);
    buf.set_last_in_chain(1);
    chain.buf = buf;
    chain.next = core::ptr::null_mut();
    Some(chain)
}
