//! Logging with an OS error number, which `ngx_log_error!` cannot pass.

use nginx_sys::{ngx_err_t, ngx_log_t, ngx_uint_t};

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
