//! ngx_http_static_gen_module: serves pages generated earlier from a
//! directory tree, stores anonymous upstream responses into it as they stream
//! to the client, and purges the tree on demand.
//!
//! This file only declares the module; see `conf` for the directives,
//! `lookup` for the HIT path, `store` for the MISS path, `purge` for the
//! purge handler and `variable` for `$static_gen_status`.

use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t, NGX_HTTP_MODULE,
};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleLocationConf};

mod conf;
mod ctx;
mod ext;
mod log;
mod lookup;
mod purge;
mod store;
mod variable;

use conf::{StaticGenConf, COMMANDS};

pub(crate) struct StaticGenModule;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(StaticGenModule::preconfiguration),
    postconfiguration: Some(StaticGenModule::postconfiguration),
    create_main_conf: None,
    init_main_conf: None,
    create_srv_conf: None,
    merge_srv_conf: None,
    create_loc_conf: Some(StaticGenModule::create_loc_conf),
    merge_loc_conf: Some(conf::merge_loc_conf),
};

ngx::ngx_modules!(ngx_http_static_gen_module);

#[used]
#[allow(non_upper_case_globals)]
pub static mut ngx_http_static_gen_module: ngx_module_t = ngx_module_t {
    ctx: ptr::addr_of!(MODULE_CTX).cast_mut().cast(),
    commands: unsafe { ptr::addr_of_mut!(COMMANDS[0]) },
    type_: NGX_HTTP_MODULE as ngx_uint_t,
    ..ngx_module_t::default()
};

unsafe impl HttpModuleLocationConf for StaticGenModule {
    type LocationConf = StaticGenConf;
}

impl HttpModule for StaticGenModule {
    fn module() -> &'static ngx_module_t {
        unsafe { &*ptr::addr_of!(ngx_http_static_gen_module) }
    }

    unsafe extern "C" fn preconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        variable::register(&mut *cf).into()
    }

    unsafe extern "C" fn postconfiguration(cf: *mut ngx_conf_t) -> ngx_int_t {
        let cf = &mut *cf;
        if lookup::install(cf).is_err() {
            return Status::NGX_ERROR.into();
        }
        store::install_filters();
        Status::NGX_OK.into()
    }
}
