//! Who may purge. A purge location protected by `allow`/`deny` answers
//! whom they let through (nginx's access phase decides before the purge
//! handler runs). One without any, which would let anyone empty the tree,
//! answers only clients on this machine (loopback addresses and unix
//! sockets), and `nginx -t` says so.

use core::ffi::{c_void, CStr};

use nginx_sys::{ngx_array_t, ngx_conf_t, ngx_http_conf_ctx_t, ngx_module_t};
use ngx::http::Request;

use crate::ext::RequestExt;

/// `ngx_http_access_loc_conf_t`, which nginx does not export: its arrays of
/// IPv4, IPv6 and unix-socket rules (Linux builds have all three).
#[repr(C)]
struct AccessLocConf {
    rules: *mut ngx_array_t,
    rules6: *mut ngx_array_t,
    rules_un: *mut ngx_array_t,
}

/// True when the location being configured has `allow` or `deny` rules
/// (its own or inherited; nginx's access module merges before this module,
/// which is loaded last).
pub(crate) fn has_access_rules(cf: &ngx_conf_t) -> bool {
    let Some(module) = access_module() else {
        return false;
    };
    // SAFETY: while locations are merged, cf->ctx is an http conf context
    // whose loc_conf array has a slot for every http module.
    let conf = unsafe {
        let ctx = &*cf.ctx.cast::<ngx_http_conf_ctx_t>();
        *ctx.loc_conf.add(module.ctx_index)
    };
    // SAFETY: the access module's location configuration, merged.
    let Some(conf) = (unsafe { conf.cast::<AccessLocConf>().as_ref() }) else {
        return false;
    };
    !conf.rules.is_null() || !conf.rules6.is_null() || !conf.rules_un.is_null()
}

/// nginx's access module, when nginx was built with it.
fn access_module() -> Option<&'static ngx_module_t> {
    const NAME: &CStr = c"ngx_http_access_module";
    // SAFETY: looks a data symbol up in the running nginx binary.
    let symbol: *mut c_void = unsafe { libc::dlsym(libc::RTLD_DEFAULT, NAME.as_ptr()) };
    // SAFETY: the symbol, when present, is nginx's module structure.
    unsafe { symbol.cast::<ngx_module_t>().as_ref() }
}

/// True when the client is on this machine: a loopback address or a unix
/// socket.
pub(crate) fn client_is_local(r: &Request) -> bool {
    // SAFETY: a request's connection and its address live as long as it.
    let sockaddr = unsafe { (*r.raw().connection).sockaddr };
    let Some(family) = (unsafe { sockaddr.as_ref() }).map(|sa| i32::from(sa.sa_family)) else {
        return false;
    };
    match family {
        libc::AF_UNIX => true,
        libc::AF_INET => {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*sockaddr.cast::<libc::sockaddr_in>() };
            u32::from_be(sin.sin_addr.s_addr) >> 24 == 127
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6 = unsafe { &*sockaddr.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => false,
    }
}
