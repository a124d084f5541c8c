//! Extension traits over nginx structures, so that the handlers read as
//! plain Rust and raw pointer access stays here.

use core::ffi::c_char;
use core::fmt;
use core::marker::PhantomData;

use nginx_sys::{
    ngx_array_push, ngx_array_t, ngx_buf_t, ngx_chain_t, ngx_conf_t, ngx_http_handler_pt,
    ngx_http_output_filter, ngx_http_phases, ngx_http_request_t, ngx_http_send_header,
    ngx_http_test_predicates, ngx_int_t, ngx_list_part_t, ngx_list_push, ngx_list_t, ngx_str_t,
    ngx_table_elt_t, NGX_ERROR, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR,
    NGX_LOG_EMERG, NGX_LOG_WARN, NGX_OK,
};
use ngx::core::NGX_CONF_ERROR;
use ngx::http::{HttpModuleMainConf, NgxHttpCoreModule, Request};

/// Configuration parsing helpers.
pub(crate) trait ConfExt {
    /// The current directive's arguments, its name first.
    fn args(&self) -> &[ngx_str_t];
    /// Logs an `emerg` error in the context of the current directive and
    /// returns the value that fails the configuration.
    fn emerg(&self, args: fmt::Arguments) -> *mut c_char;
    /// Logs a warning in the context of the current directive.
    fn warn(&self, args: fmt::Arguments);
}

impl ConfExt for ngx_conf_t {
    fn args(&self) -> &[ngx_str_t] {
        // SAFETY: cf->args is an array of ngx_str_t while a directive is parsed.
        unsafe { self.args.as_ref().map(|a| a.as_slice()).unwrap_or_default() }
    }

    fn emerg(&self, args: fmt::Arguments) -> *mut c_char {
        let cf = core::ptr::from_ref(self).cast_mut();
        ngx::ngx_conf_log_error!(NGX_LOG_EMERG, cf, "{}", args);
        NGX_CONF_ERROR
    }

    fn warn(&self, args: fmt::Arguments) {
        let cf = core::ptr::from_ref(self).cast_mut();
        ngx::ngx_conf_log_error!(NGX_LOG_WARN, cf, "{}", args);
    }
}

/// Request fields the module reads.
pub(crate) trait RequestExt {
    fn raw(&self) -> &ngx_http_request_t;
    fn raw_mut(&mut self) -> &mut ngx_http_request_t;

    /// nginx's decoded, normalised path.
    fn uri(&self) -> &[u8] {
        self.raw().uri.as_bytes()
    }

    /// The path as the client sent it, without the query string.
    fn raw_path(&self) -> &[u8] {
        let unparsed = self.raw().unparsed_uri.as_bytes();
        let end = memchr_byte(b'?', unparsed).unwrap_or(unparsed.len());
        &unparsed[..end]
    }

    fn has_query(&self) -> bool {
        !self.raw().args.is_empty()
            || memchr_byte(b'?', self.raw().unparsed_uri.as_bytes()).is_some()
    }

    /// An `Authorization` header (HTTP authentication).
    fn has_credentials(&self) -> bool {
        !self.raw().headers_in.authorization.is_null()
    }

    fn is_get(&self) -> bool {
        self.raw().method == NGX_HTTP_GET as usize
    }

    fn is_get_or_head(&self) -> bool {
        self.raw().method & (NGX_HTTP_GET | NGX_HTTP_HEAD) as usize != 0
    }

    fn method_name(&self) -> &[u8] {
        self.raw().method_name.as_bytes()
    }

    /// The host nginx validated (lowercase, without port), empty without
    /// one.
    fn host(&self) -> &[u8] {
        self.raw().headers_in.server.as_bytes()
    }

    /// Request headers (1.22 and 1.23+ keep cookies differently, but both
    /// in this list).
    fn headers_in(&self) -> impl Iterator<Item = &ngx_table_elt_t> {
        headers(&self.raw().headers_in.headers)
    }

    /// Adds a response header; the element, for nginx's own pointers to
    /// it (`headers_out.content_encoding`).
    fn push_header_out(
        &mut self,
        key: &'static str,
        value: &'static str,
    ) -> Option<*mut ngx_table_elt_t> {
        let value = ngx_str_t {
            len: value.len(),
            data: value.as_ptr().cast_mut(),
        };
        self.push_header_out_value(key, value)
    }

    /// Adds a response header whose value is copied into the request's
    /// pool.
    fn push_header_out_bytes(
        &mut self,
        key: &'static str,
        value: &[u8],
    ) -> Option<*mut ngx_table_elt_t> {
        let pool = self.raw().pool;
        // SAFETY: the request's pool lives as long as the request.
        let value = unsafe { ngx_str_t::from_bytes(pool, value) }?;
        self.push_header_out_value(key, value)
    }

    /// Adds a response header with a value that lives as long as the
    /// request.
    fn push_header_out_value(
        &mut self,
        key: &'static str,
        value: ngx_str_t,
    ) -> Option<*mut ngx_table_elt_t> {
        let out = &mut self.raw_mut().headers_out.headers;
        // SAFETY: the request's header list; the element is filled at once.
        let elt = unsafe { ngx_list_push(out).cast::<ngx_table_elt_t>().as_mut()? };
        elt.hash = 1;
        elt.key = ngx_str_t {
            len: key.len(),
            data: key.as_ptr().cast_mut(),
        };
        elt.value = value;
        elt.lowcase_key = core::ptr::null_mut();
        // headers with the same name are linked from nginx 1.23 on
        #[cfg(nginx1_23)]
        {
            elt.next = core::ptr::null_mut();
        }
        Some(elt)
    }

    /// Request headers, to modify.
    fn headers_in_mut(&mut self) -> impl Iterator<Item = &mut ngx_table_elt_t> {
        // SAFETY: the list belongs to this request, borrowed mutably here.
        HeaderIter::new(&self.raw_mut().headers_in.headers).map(|h| unsafe { &mut *h })
    }

    /// Response headers, to modify.
    fn headers_out_mut(&mut self) -> impl Iterator<Item = &mut ngx_table_elt_t> {
        // SAFETY: the list belongs to this request, borrowed mutably here.
        HeaderIter::new(&self.raw_mut().headers_out.headers).map(|h| unsafe { &mut *h })
    }

    /// False when one of `predicates` (`static_gen_bypass`,
    /// `static_gen_no_store`) is a non-empty value other than "0".
    fn predicates_pass(&mut self, predicates: *mut ngx_array_t) -> bool {
        // SAFETY: a live request; NULL predicates pass.
        unsafe { ngx_http_test_predicates(self.raw_mut(), predicates) == NGX_OK as ngx_int_t }
    }

    /// Live response headers (entries cleared by other modules skipped).
    fn headers_out(&self) -> impl Iterator<Item = &ngx_table_elt_t> {
        headers(&self.raw().headers_out.headers).filter(|h| h.hash != 0)
    }

    /// True when the response's end was marked by its protocol: the
    /// `Content-Length` reached, the last chunk, FastCGI's end of request.
    /// A body that ended because the upstream closed its connection is not
    /// (a dying application closes it too). A response nginx made itself,
    /// without an upstream, is whole.
    fn body_end_marked(&self) -> bool {
        // SAFETY: a request's upstream, when set, lives as long as it, and
        // so does its pipe.
        let Some(u) = (unsafe { self.raw().upstream.as_ref() }) else {
            return true;
        };
        if u.buffering() == 0 {
            // nginx finishes an unbuffered body at length 0, or at close
            // with a length of -1 (unknown)
            return u.length == 0;
        }
        unsafe { u.pipe.as_ref() }.is_some_and(|pipe| pipe.upstream_done() != 0)
    }

    /// True when the client connection has failed.
    fn connection_error(&self) -> bool {
        // SAFETY: a request always has its connection.
        unsafe { (*self.raw().connection).error() != 0 }
    }
}

impl RequestExt for Request {
    fn raw(&self) -> &ngx_http_request_t {
        self.as_ref()
    }

    fn raw_mut(&mut self) -> &mut ngx_http_request_t {
        self.as_mut()
    }
}

fn memchr_byte(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Iterates the elements of an `ngx_list_t` of `ngx_table_elt_t`.
pub(crate) fn headers(list: &ngx_list_t) -> impl Iterator<Item = &ngx_table_elt_t> {
    // SAFETY: elements of a live list, borrowed with it.
    HeaderIter::new(list).map(|h| unsafe { &*h })
}

/// Walks the parts of a header list, yielding element pointers.
struct HeaderIter<'a> {
    part: *const ngx_list_part_t,
    index: usize,
    _list: PhantomData<&'a ngx_list_t>,
}

impl HeaderIter<'_> {
    fn new(list: &ngx_list_t) -> HeaderIter<'_> {
        HeaderIter {
            part: &list.part,
            index: 0,
            _list: PhantomData,
        }
    }
}

impl Iterator for HeaderIter<'_> {
    type Item = *mut ngx_table_elt_t;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // SAFETY: parts of a live list; `elts` holds `nelts` table elements.
            let part = unsafe { self.part.as_ref()? };
            if self.index < part.nelts {
                let item = unsafe { part.elts.cast::<ngx_table_elt_t>().add(self.index) };
                self.index += 1;
                return Some(item);
            }
            self.part = part.next;
            self.index = 0;
        }
    }
}

/// Iterates the buffers of an output chain.
pub(crate) fn chain_bufs<'a>(chain: *mut ngx_chain_t) -> impl Iterator<Item = &'a ngx_buf_t> {
    let mut link = chain;
    core::iter::from_fn(move || {
        // SAFETY: a chain handed to a body filter is a valid linked list of
        // links with valid buffers, alive during the filter call.
        let current = unsafe { link.as_ref()? };
        link = current.next;
        unsafe { current.buf.as_ref() }
    })
}

/// Iterates the buffers of an output chain, to modify them.
pub(crate) fn chain_bufs_mut<'a>(
    chain: *mut ngx_chain_t,
) -> impl Iterator<Item = &'a mut ngx_buf_t> {
    let mut link = chain;
    core::iter::from_fn(move || {
        // SAFETY: as in `chain_bufs`; the filter owns the chain for the call.
        let current = unsafe { link.as_ref()? };
        link = current.next;
        unsafe { current.buf.as_mut() }
    })
}

/// What a buffer holds.
pub(crate) enum BufData<'a> {
    Memory(&'a [u8]),
    /// `len` bytes at `offset` of the file open as `fd`.
    File {
        fd: i32,
        offset: u64,
        len: u64,
    },
    None,
}

pub(crate) trait BufExt {
    fn data(&self) -> BufData<'_>;
    fn is_last(&self) -> bool;
    /// Marks the buffer as sent, without sending it.
    fn consume(&mut self);
}

impl BufExt for ngx_buf_t {
    fn data(&self) -> BufData<'_> {
        let in_memory = self.temporary() != 0 || self.memory() != 0 || self.mmap() != 0;
        if in_memory && !self.pos.is_null() && self.last > self.pos {
            // SAFETY: pos..last of an in-memory buffer is initialised data.
            let len = unsafe { self.last.offset_from(self.pos) } as usize;
            return BufData::Memory(unsafe { core::slice::from_raw_parts(self.pos, len) });
        }
        if self.in_file() != 0 && !self.file.is_null() && self.file_last > self.file_pos {
            // SAFETY: an in-file buffer points at an open ngx_file_t.
            let fd = unsafe { (*self.file).fd };
            let len = (self.file_last - self.file_pos) as u64;
            return BufData::File {
                fd,
                offset: self.file_pos as u64,
                len,
            };
        }
        BufData::None
    }

    fn is_last(&self) -> bool {
        self.last_buf() != 0
    }

    fn consume(&mut self) {
        self.pos = self.last;
        self.file_pos = self.file_last;
    }
}

/// Sends a whole response from memory: `body` with `status` and
/// `content_type` (a content handler's last step). The reply is always
/// sent whole: conditional request headers do not apply to it (without
/// validators of its own, nginx would answer `If-None-Match: *` with an
/// empty 304 and `If-Match` with 412).
pub(crate) fn send_body(
    r: &mut Request,
    status: u32,
    content_type: ngx_str_t,
    body: &str,
) -> ngx_int_t {
    let Some(mut buffer) = r.pool().create_buffer_from_str(body) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as ngx_int_t;
    };
    r.raw_mut().set_disable_not_modified(1);
    {
        let out = &mut r.raw_mut().headers_out;
        out.status = status as usize;
        out.content_length_n = body.len() as i64;
        out.content_type = content_type;
        out.content_type_len = out.content_type.len;
        out.content_type_lowcase = core::ptr::null_mut();
    }
    let raw: *mut ngx_http_request_t = r.into();
    // SAFETY: `raw` is the live request; buffers come from its pool.
    unsafe {
        let rc = ngx_http_send_header(raw);
        if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || (*raw).header_only() != 0 {
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

/// Adds `handler` to the HTTP `phase` (postconfiguration).
pub(crate) fn add_phase_handler(
    cf: &mut ngx_conf_t,
    phase: ngx_http_phases,
    handler: ngx_http_handler_pt,
) -> Result<(), ()> {
    let cmcf = NgxHttpCoreModule::main_conf_mut(cf).ok_or(())?;
    let handlers = &mut cmcf.phases[phase as usize].handlers;
    // SAFETY: the phase array holds ngx_http_handler_pt elements.
    let slot = unsafe {
        ngx_array_push(handlers)
            .cast::<ngx_http_handler_pt>()
            .as_mut()
    }
    .ok_or(())?;
    *slot = handler;
    Ok(())
}
