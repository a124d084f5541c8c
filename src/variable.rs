//! `$static_gen_status`: HIT, MISS or BYPASS; empty where the module is off.

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_VAR_NOCACHEABLE,
};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_string;

use crate::ctx;

/// Declares the variable (preconfiguration).
pub(crate) fn register(cf: &mut ngx_conf_t) -> Status {
    let mut name: ngx_str_t = ngx_string!("static_gen_status");
    // SAFETY: `cf` is the configuration being parsed.
    let var = unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as usize) };
    // SAFETY: non-NULL results point at the variable nginx keeps.
    match unsafe { var.as_mut() } {
        Some(var) => {
            var.get_handler = Some(get_status);
            Status::NGX_OK
        }
        None => Status::NGX_ERROR,
    }
}

unsafe extern "C" fn get_status(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    let r = Request::from_ngx_http_request(r);
    let v = &mut *v;
    match ctx::get(r) {
        Some(ctx) => {
            let value = ctx.status.as_str();
            v.data = value.as_ptr().cast_mut();
            v.set_len(value.len() as u32);
            v.set_valid(1);
            v.set_no_cacheable(0);
            v.set_not_found(0);
        }
        None => v.set_not_found(1),
    }
    Status::NGX_OK.into()
}
