//! The worker's compressor (`static_gen_logic::variants`): started with the
//! worker, with the threads `static_gen_compress_threads` gives it. The
//! first worker of each generation has it walk the plain roots: the pages a
//! reload or a quit left without their variants are found again.

use std::sync::OnceLock;

use nginx_sys::{
    ngx_core_conf_t, ngx_core_module, ngx_cycle_t, ngx_log_t, NGX_LOG_ALERT, NGX_LOG_NOTICE,
};
use static_gen_logic::variants::{Compressor, Job};

use crate::conf::StaticGenMainConf;
use crate::log::{log_errno, log_tree_error};

static COMPRESSOR: OnceLock<Compressor> = OnceLock::new();

/// Starts this worker's compressor (worker `worker` of the cycle's).
pub(crate) fn start(cycle: &ngx_cycle_t, main: &StaticGenMainConf, worker: usize) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = main
        .compress_threads()
        .count(cores, worker_processes(cycle));
    match Compressor::start(threads, main.compress_roots.clone()) {
        Ok(compressor) => {
            if worker == 0 && !main.compress_roots.is_empty() {
                compressor.rescan();
            }
            let _ = COMPRESSOR.set(compressor);
            log_errno(
                NGX_LOG_NOTICE,
                cycle.log,
                0,
                format_args!("static_gen: {threads} compressor threads"),
            );
        }
        Err(err) => log_errno(
            NGX_LOG_ALERT,
            cycle.log,
            err.raw_os_error().unwrap_or(0),
            format_args!("static_gen: cannot start the compressor: pages stay identity"),
        ),
    }
}

/// `worker_processes` (1 when it cannot be read).
fn worker_processes(cycle: &ngx_cycle_t) -> usize {
    // SAFETY: the core module's configuration is made before any worker
    // starts and lives as long as the cycle; its index is the core's.
    let workers = unsafe {
        let conf = *cycle.conf_ctx.add(ngx_core_module.index);
        conf.cast::<ngx_core_conf_t>()
            .as_ref()
            .map_or(1, |ccf| ccf.worker_processes)
    };
    usize::try_from(workers).unwrap_or(1).max(1)
}

/// Hands a page to the compressor; with none, or a full queue, the page
/// stays identity only until a walk finds it. Logs, to `log`, the variants
/// the compressor could not write since the last page.
pub(crate) fn submit(log: *mut ngx_log_t, job: Job) {
    if let Some(compressor) = COMPRESSOR.get() {
        for err in compressor.failures() {
            log_tree_error(log, "variants not stored", &err);
        }
        compressor.submit(job);
    }
}
