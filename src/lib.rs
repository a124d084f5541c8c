//! ngx_http_static_gen_module: serves pages generated earlier from a
//! directory tree, stores anonymous upstream responses into it as they stream
//! to the client, and purges the tree on demand.
//!
//! This file only declares the module; see `conf` for the directives,
//! `lookup` for the precontent phase, `hit` for serving pages, `store` for
//! the MISS path, `purge` for the purge handler and `variable` for
//! `$static_gen_status`.

use core::ptr;

use nginx_sys::{
    ngx_conf_t, ngx_cycle_t, ngx_http_module_t, ngx_int_t, ngx_module_t, ngx_uint_t,
    NGX_HTTP_MODULE,
};
use ngx::core::Status;
use ngx::http::{HttpModule, HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf};
use static_gen_logic::sweep::clean_in_background;

mod access;
mod compressor;
mod conf;
mod ctx;
mod ext;
mod hit;
mod host;
mod lock;
mod log;
mod lookup;
mod notify;
mod pages;
mod purge;
mod stats;
mod store;
mod tree;
mod variable;
mod wait;
mod worker_user;

use conf::{StaticGenConf, StaticGenMainConf, StaticGenSrvConf, COMMANDS};

pub(crate) struct StaticGenModule;

static MODULE_CTX: ngx_http_module_t = ngx_http_module_t {
    preconfiguration: Some(StaticGenModule::preconfiguration),
    postconfiguration: Some(StaticGenModule::postconfiguration),
    create_main_conf: Some(StaticGenModule::create_main_conf),
    init_main_conf: None,
    create_srv_conf: Some(conf::create_srv_conf),
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
    init_module: Some(init_module),
    init_process: Some(init_worker),
    exit_process: Some(exit_worker),
    ..ngx_module_t::default()
};

/// When nginx starts (not on a reload, a signal or `nginx -t`), the trees
/// of `static_gen_purge_on_start` are purged whole, before any worker
/// serves: a server back from a pause may have missed purges.
extern "C" fn init_module(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle; its old cycle is the bare init
    // cycle (no configuration) only when nginx starts.
    let (cycle, testing, process) =
        unsafe { (&*cycle, nginx_sys::ngx_test_config, nginx_sys::ngx_process) };
    let starting = unsafe { (*cycle.old_cycle).conf_ctx.is_null() };
    if testing != 0 || process == nginx_sys::NGX_PROCESS_SIGNALLER as ngx_uint_t || !starting {
        return Status::NGX_OK.into();
    }
    if let Some(main) = StaticGenModule::main_conf(cycle) {
        purge::purge_at_start(cycle, &main.purge_on_start);
    }
    Status::NGX_OK.into()
}

/// Every worker opens the trees of plain roots, starts its compressor and
/// deletes temporary files of dead workers (one killed while it stored a
/// page is started again); the first also deletes what a crash may have
/// left in them, and has its compressor look for pages without variants.
extern "C" fn init_worker(cycle: *mut ngx_cycle_t) -> ngx_int_t {
    // SAFETY: nginx passes the live cycle; ngx_worker is set before this.
    let (cycle, worker) = unsafe { (&*cycle, nginx_sys::ngx_worker) };
    let Some(main) = StaticGenModule::main_conf(cycle) else {
        return Status::NGX_OK.into();
    };
    notify::open();
    pages::start(cycle, main.open_cache());
    tree::open_at_start(&main.roots);
    compressor::start(cycle, main, worker);
    if let Err(err) = clean_in_background(main.roots.clone(), worker == 0) {
        log::log_errno(
            nginx_sys::NGX_LOG_ALERT,
            cycle.log,
            err.raw_os_error().unwrap_or(0),
            format_args!("static_gen: cannot start cleaning"),
        );
    }
    Status::NGX_OK.into()
}

/// A worker leaves the event loop: its wake-up socket, watches and kept
/// pages close.
extern "C" fn exit_worker(_cycle: *mut ngx_cycle_t) {
    notify::close();
    pages::stop();
}

unsafe impl HttpModuleMainConf for StaticGenModule {
    type MainConf = StaticGenMainConf;
}

unsafe impl HttpModuleServerConf for StaticGenModule {
    type ServerConf = StaticGenSrvConf;
}

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
        conf::warn_unknown_variables(cf);
        worker_user::warn_unwritable_roots(cf);
        if lookup::install(cf).is_err() {
            return Status::NGX_ERROR.into();
        }
        if stats::install(cf).is_err() {
            return Status::NGX_ERROR.into();
        }
        store::install_filters();
        Status::NGX_OK.into()
    }
}
