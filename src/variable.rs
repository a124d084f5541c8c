//! `$static_gen_status` (HIT, MISS, ...; empty where the module is off) and
//! `$static_gen_reason`.

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    ngx_str_t, NGX_HTTP_VAR_NOCACHEABLE,
};
use ngx::core::Status;
use ngx::http::Request;
use ngx::ngx_string;

use crate::ctx;
use crate::stats;

/// Declares the variables (preconfiguration).
pub(crate) fn register(cf: &mut ngx_conf_t) -> Status {
    let variables: [(ngx_str_t, VariableGetter); 2] = [
        (ngx_string!("static_gen_status"), get_status),
        (ngx_string!("static_gen_reason"), get_reason),
    ];
    for (mut name, getter) in variables {
        // SAFETY: `cf` is the configuration being parsed.
        let var =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as usize) };
        // SAFETY: non-NULL results point at the variable nginx keeps.
        match unsafe { var.as_mut() } {
            Some(var) => var.get_handler = Some(getter),
            None => return Status::NGX_ERROR,
        }
    }
    Status::NGX_OK
}

type VariableGetter = unsafe extern "C" fn(
    *mut ngx_http_request_t,
    *mut ngx_http_variable_value_t,
    usize,
) -> ngx_int_t;

/// `$static_gen_status`: HIT, MISS...; not found where the module is off.
unsafe extern "C" fn get_status(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    let r = Request::from_ngx_http_request(r);
    set_value(&mut *v, ctx::get(r).map(|ctx| ctx.status.as_str()));
    Status::NGX_OK.into()
}

/// `$static_gen_reason`: why the request bypassed, or its response was not
/// stored (`cookie`, `set_cookie`...); not found otherwise.
unsafe extern "C" fn get_reason(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    let r = Request::from_ngx_http_request(r);
    set_value(&mut *v, stats::reason(r));
    Status::NGX_OK.into()
}

fn set_value(v: &mut ngx_http_variable_value_t, value: Option<&'static str>) {
    match value {
        Some(value) => {
            v.data = value.as_ptr().cast_mut();
            v.set_len(value.len() as u32);
            v.set_valid(1);
            v.set_no_cacheable(0);
            v.set_not_found(0);
        }
        None => v.set_not_found(1),
    }
}
