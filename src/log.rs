//! Logging with an OS error number, which `ngx_log_error!` cannot pass, and
//! logging tree failures without flooding the log.

use std::cell::RefCell;
use std::time::Instant;

use nginx_sys::{ngx_err_t, ngx_log_t, ngx_uint_t, NGX_LOG_ERR, NGX_LOG_INFO};
use static_gen_logic::throttle::ErrorThrottle;
use static_gen_logic::tree::TreeError;

/// Logs `args` at `level`; nginx appends `(errno: strerror)` when `err` is
/// not 0, as it does for its own file errors.
pub(crate) fn log_errno(level: u32, log: *mut ngx_log_t, err: i32, args: core::fmt::Arguments) {
    // SAFETY: `log` comes from a live request or cycle.
    let log_level = unsafe { (*log).log_level };
    if level as ngx_uint_t > log_level {
        return;
    }
    let mut buf = [const { core::mem::MaybeUninit::<u8>::uninit() }; ngx::log::LOG_BUFFER_SIZE];
    let message = ngx::log::write_fmt(&mut buf, args);
    // SAFETY: as above; the message is formatted into a local buffer.
    unsafe { ngx::log::log_error(level as ngx_uint_t, log, err as ngx_err_t, message) };
}

/// Logs a failed step on a tree: an I/O failure at `error` once per cause
/// and minute, then at `info`; a response that was not what it announced at
/// `info`.
/// `context` says what the failure cost ("page not stored").
pub(crate) fn log_tree_error(log: *mut ngx_log_t, context: &str, err: &TreeError) {
    thread_local! {
        static THROTTLE: RefCell<ErrorThrottle> = RefCell::new(ErrorThrottle::default());
    }
    let loud = err
        .io_op()
        .is_some_and(|op| THROTTLE.with(|t| t.borrow_mut().loud(op, err.errno(), Instant::now())));
    let level = if loud { NGX_LOG_ERR } else { NGX_LOG_INFO };
    log_errno(
        level,
        log,
        err.errno(),
        format_args!("static_gen: {context}: {err}"),
    );
}
