//! Says at `nginx -t` when nginx's worker user cannot create or write a
//! `static_gen_root` (a warning: the directories may be made before the
//! first request, and ACLs may allow what the bits deny).

use std::ffi::{CStr, CString};

use nginx_sys::{
    ngx_conf_t, ngx_core_conf_t, ngx_core_module, ngx_cycle_t, ngx_uid_t, NGX_GROUP, NGX_LOG_WARN,
    NGX_USER,
};
use ngx::http::HttpModuleMainConf;
use static_gen_logic::writable::{check_writable, Identity};

use crate::log::log_errno;
use crate::StaticGenModule;

/// `user` not set (nginx's `(uid_t) NGX_CONF_UNSET_UINT`).
const UNSET_USER: ngx_uid_t = ngx_uid_t::MAX;

/// Checks each `static_gen_root` without variables for the user the
/// workers will run as (postconfiguration: every root is known).
pub(crate) fn warn_unwritable_roots(cf: &ngx_conf_t) {
    let Some(main) = StaticGenModule::main_conf(cf) else {
        return;
    };
    if main.static_roots.is_empty() {
        return;
    }
    // SAFETY: the cycle being configured.
    let Some((who, name)) = worker_user(unsafe { &*cf.cycle }) else {
        return;
    };
    for (root, place) in &main.static_roots {
        if let Err(denied) = check_writable(root, &who) {
            log_errno(
                NGX_LOG_WARN,
                cf.log,
                0,
                format_args!(
                    "\"static_gen_root\" \"{}\": the worker user \"{name}\" {denied} \
                     (no page can be stored) in {place}",
                    root.display()
                ),
            );
        }
    }
}

/// The workers' user: as nginx's `user` directive set it, else nginx's
/// default (`NGX_USER`, `NGX_GROUP`) when it runs as root, else the
/// current user (nginx does not switch). `None` when the default user does
/// not exist (nginx will say so).
fn worker_user(cycle: &ngx_cycle_t) -> Option<(Identity, String)> {
    // SAFETY: the core module's configuration is created before the
    // configuration is parsed.
    let ccf = unsafe {
        cycle
            .conf_ctx
            .add(ngx_core_module.index)
            .read()
            .cast::<ngx_core_conf_t>()
            .as_ref()
    }?;
    if ccf.user != UNSET_USER && !ccf.username.is_null() {
        // SAFETY: nginx keeps the name it resolved as a C string.
        let name = unsafe { CStr::from_ptr(ccf.username) };
        return Some(named(name, ccf.user, ccf.group));
    }
    // SAFETY: a plain query.
    if unsafe { libc::geteuid() } != 0 {
        let who = Identity::current();
        let name = format!("uid {}", who.uid);
        return Some((who, name));
    }
    // SAFETY: getpwnam/getgrnam with C strings; the records are read at once.
    let (uid, gid) = unsafe {
        let pwd = libc::getpwnam(NGX_USER.as_ptr()).as_ref()?;
        let grp = libc::getgrnam(NGX_GROUP.as_ptr()).as_ref()?;
        (pwd.pw_uid, grp.gr_gid)
    };
    Some(named(&CString::from(NGX_USER), uid, gid))
}

fn named(name: &CStr, uid: u32, gid: u32) -> (Identity, String) {
    (
        Identity::of_user(name, uid, gid),
        name.to_string_lossy().into_owned(),
    )
}
