//! Directives and their per-location configuration.

use core::ffi::{c_char, c_void};
use core::{mem, ptr};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nginx_sys::{
    ngx_array_t, ngx_command_t, ngx_conf_full_name, ngx_conf_post_t, ngx_conf_set_flag_slot,
    ngx_conf_set_msec_slot, ngx_conf_set_num_slot, ngx_conf_set_off_slot, ngx_conf_set_sec_slot,
    ngx_conf_t, ngx_flag_t, ngx_hash_key_t, ngx_http_compile_complex_value,
    ngx_http_compile_complex_value_t, ngx_http_complex_value_t, ngx_http_core_srv_conf_t,
    ngx_http_set_predicate_slot, ngx_http_variable_t, ngx_int_t, ngx_msec_t, ngx_parse_time,
    ngx_str_t, ngx_uint_t, off_t, time_t, NGX_CONF_1MORE, NGX_CONF_FLAG, NGX_CONF_NOARGS,
    NGX_CONF_TAKE1, NGX_CONF_TAKE123, NGX_CONF_UNSET, NGX_HTTP_LOC_CONF, NGX_HTTP_LOC_CONF_OFFSET,
    NGX_HTTP_MAIN_CONF, NGX_HTTP_MAIN_CONF_OFFSET, NGX_HTTP_SRV_CONF, NGX_LOG_WARN,
};
use ngx::core::NGX_CONF_OK;
use ngx::http::{
    HttpModuleLocationConf, HttpModuleMainConf, HttpModuleServerConf, NgxHttpCoreModule,
};
use ngx::ngx_string;
use static_gen_logic::access::{parse_access, DEFAULT_FILE_MODE};
use static_gen_logic::args::{parse_ignore_args, parse_key_args, ArgRules, TRACKING_ARGS};
use static_gen_logic::cookie::SessionCookies;
use static_gen_logic::encoding::{parse_compress, CompressConfig};
use static_gen_logic::freshness::Lifetimes;
use static_gen_logic::host::HostNames;
use static_gen_logic::matcher::{looks_like_directive, PatternList, UriFilter};
use static_gen_logic::open_pages::{parse_open_cache, OpenCacheConfig};
use static_gen_logic::rules::parse_types;
use static_gen_logic::validity::{parse_codes, Validity};
use static_gen_logic::variants::Threads;
use static_gen_logic::vars::variable_names;

use crate::access::has_access_rules;
use crate::ext::ConfExt;
use crate::host::HostRule;
use crate::log::log_errno;
use crate::{purge, stats, StaticGenModule};

/// Configuration of one `http`, `server` or `location` level.
#[derive(Debug)]
pub(crate) struct StaticGenConf {
    /// `static_gen on|off`, an `ngx_flag_t` set by nginx's own flag slot.
    enable: ngx_flag_t,
    /// `static_gen_root`, as configured (inherited).
    root: Option<Root>,
    /// The tree this location reads and writes: `static_gen_root`, or the
    /// location's `root`.
    pub tree: Option<Root>,
    include: PatternList,
    exclude: PatternList,
    pub filter: UriFilter,
    cookies: Option<SessionCookies>,
    /// `static_gen_types`, lowercase; `*` for any.
    types: Option<Vec<String>>,
    /// `static_gen_max_size`, an `off_t` set by nginx's off slot.
    max_size: off_t,
    /// `static_gen_access` as a file mode.
    access: Option<u32>,
    /// `static_gen_valid`: the statuses stored and their lifetimes.
    valid: Option<Validity>,
    /// `static_gen_stale`, seconds; 0 for never stale.
    stale: time_t,
    /// `static_gen_stale_updates`.
    stale_updates: ngx_uint_t,
    /// `static_gen_lock`, an `ngx_flag_t` set by nginx's flag slot.
    lock: ngx_flag_t,
    /// `static_gen_lock_timeout`, milliseconds.
    pub lock_timeout: ngx_msec_t,
    /// `static_gen_purge_on_start`, an `ngx_flag_t`.
    purge_on_start: ngx_flag_t,
    /// `static_gen_bypass` and `static_gen_no_store`: nginx predicate arrays
    /// (of complex values), as `proxy_cache_bypass` and `proxy_no_cache`.
    pub bypass: *mut ngx_array_t,
    pub no_store: *mut ngx_array_t,
    /// `static_gen_purge` in this location.
    purge: bool,
    /// The purge location has `allow`/`deny` rules; without, only clients
    /// on this machine may purge.
    pub purge_has_rules: bool,
    /// `static_gen_compress`.
    compress: Option<CompressConfig>,
    /// `static_gen_ignore_args` (empty for `off`) and `static_gen_key_args`,
    /// as configured (inherited).
    ignore_args: Option<Vec<String>>,
    key_args: Option<Vec<String>>,
    /// What a request's arguments make of it, from the two above.
    pub args: ArgRules,
    /// `static_gen_hosts`, as configured (inherited).
    host_names: Option<HostNames>,
    /// The names a request's host must be one of: `static_gen_hosts`, or
    /// the server's names.
    pub hosts: HostRule,
}

/// The `server` level: where the block is, for warnings about it (nginx
/// merges its locations at the end of the `http` block).
#[derive(Debug, Default)]
pub(crate) struct StaticGenSrvConf {
    place: String,
}

/// Creates a `server` level's configuration, noting its place.
pub(crate) unsafe extern "C" fn create_srv_conf(cf: *mut ngx_conf_t) -> *mut c_void {
    let cf = &*cf;
    // SAFETY: the configuration pool outlives the configuration.
    let pool = ngx::core::Pool::from_ngx_pool(cf.pool);
    pool.allocate(StaticGenSrvConf {
        place: place_of(cf),
    })
    .cast()
}

/// `file:line` of the directive being parsed.
fn place_of(cf: &ngx_conf_t) -> String {
    // SAFETY: while a directive is parsed, cf->conf_file is its file.
    unsafe { cf.conf_file.as_ref() }.map_or_else(String::new, |file| {
        format!("{}:{}", file.file.name, file.line)
    })
}

/// The `http` level: every plain root, for the cleaning at start.
#[derive(Debug, Default)]
pub(crate) struct StaticGenMainConf {
    pub roots: Vec<PathBuf>,
    /// Each `static_gen_root` without variables and its place, for the
    /// check that the worker user can write it.
    pub static_roots: Vec<(PathBuf, String)>,
    /// Servers already warned about having no names.
    warned_servers: Vec<*const ngx_http_core_srv_conf_t>,
    /// Location roots already warned about holding pages.
    warned_roots: Vec<PathBuf>,
    /// Variables the module's directives use, checked once all are known.
    variables_used: Vec<VariablesUsed>,
    /// `static_gen_open_cache`.
    open_cache: Option<OpenCacheConfig>,
    /// `static_gen_compress_threads`.
    compress_threads: Option<Threads>,
    /// The plain roots pages are stored in, each with the variants of the
    /// first location storing there that compresses: what a worker's walk
    /// looks for.
    pub compress_roots: Vec<(PathBuf, CompressConfig)>,
    /// The plain roots `static_gen_purge_on_start` empties when nginx
    /// starts, each with the longest `static_gen_stale` of its locations.
    pub purge_on_start: Vec<(PathBuf, u64)>,
}

impl StaticGenMainConf {
    /// `static_gen_open_cache` (`max=10000 inactive=60s valid=60s memory=4m` unless
    /// set).
    pub(crate) fn open_cache(&self) -> OpenCacheConfig {
        self.open_cache.unwrap_or_default()
    }

    /// `static_gen_compress_threads` (`auto` unless set).
    pub(crate) fn compress_threads(&self) -> Threads {
        self.compress_threads.unwrap_or_default()
    }

    /// Notes the variants `config` of a location storing in `root`.
    fn note_compress_root(&mut self, root: &PathBuf, config: &CompressConfig) {
        match self.compress_roots.iter_mut().find(|(r, _)| r == root) {
            Some((_, known)) if known.is_off() => known.clone_from(config),
            Some(_) => {}
            None => self.compress_roots.push((root.clone(), config.clone())),
        }
    }
}

/// The variables one directive uses, and where.
#[derive(Debug)]
struct VariablesUsed {
    directive: String,
    names: Vec<Vec<u8>>,
    place: String,
}

/// A generated tree's directory: a plain path, or one with variables whose
/// expansion must extend the text before the first variable.
#[derive(Debug, Clone)]
pub(crate) enum Root {
    Static(PathBuf),
    Variable {
        value: *mut ngx_http_complex_value_t,
        prefix: Vec<u8>,
    },
}

const NGX_CONF_UNSET_PTR: *mut ngx_array_t = NGX_CONF_UNSET as usize as *mut ngx_array_t;
const DEFAULT_MAX_SIZE: off_t = 8 * 1024 * 1024;
const DEFAULT_LOCK_TIMEOUT: ngx_msec_t = 5000;
const DEFAULT_STALE_UPDATES: ngx_uint_t = 2;
const NGX_CONF_UNSET_MSEC: ngx_msec_t = ngx_msec_t::MAX;
const DEFAULT_TYPES: &[&str] = &["text/html"];

impl Default for StaticGenConf {
    fn default() -> Self {
        StaticGenConf {
            enable: NGX_CONF_UNSET as ngx_flag_t,
            root: None,
            tree: None,
            include: PatternList::default(),
            exclude: PatternList::default(),
            filter: UriFilter::default(),
            cookies: None,
            types: None,
            max_size: NGX_CONF_UNSET as off_t,
            access: None,
            valid: None,
            stale: NGX_CONF_UNSET as time_t,
            stale_updates: NGX_CONF_UNSET as ngx_uint_t,
            lock: NGX_CONF_UNSET as ngx_flag_t,
            lock_timeout: NGX_CONF_UNSET_MSEC,
            purge_on_start: NGX_CONF_UNSET as ngx_flag_t,
            bypass: NGX_CONF_UNSET_PTR,
            no_store: NGX_CONF_UNSET_PTR,
            purge: false,
            purge_has_rules: false,
            compress: None,
            ignore_args: None,
            key_args: None,
            args: ArgRules::default(),
            host_names: None,
            hosts: HostRule::default(),
        }
    }
}

impl StaticGenConf {
    pub(crate) fn enabled(&self) -> bool {
        self.enable == 1
    }

    pub(crate) fn cookies(&self) -> &SessionCookies {
        static DEFAULT: std::sync::OnceLock<SessionCookies> = std::sync::OnceLock::new();
        self.cookies
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(SessionCookies::default))
    }

    /// The root `static_gen_purge` empties.
    pub(crate) fn purge_root(&self) -> Option<&Root> {
        self.root.as_ref()
    }

    /// MIME types to store.
    pub(crate) fn types(&self) -> &[impl AsRef<[u8]>] {
        match &self.types {
            Some(types) => types.as_slice(),
            None => &[],
        }
    }

    /// `static_gen_max_size`; `None` when 0 (no limit).
    pub(crate) fn max_size(&self) -> Option<u64> {
        u64::try_from(self.max_size).ok().filter(|&max| max > 0)
    }

    /// `static_gen_valid` for a page stored with `status`, and
    /// `static_gen_stale`.
    pub(crate) fn lifetimes(&self, status: u16) -> Lifetimes {
        let nanos = |seconds: u64| seconds.saturating_mul(1_000_000_000);
        Lifetimes {
            valid: nanos(self.validity().lifetime(status)),
            stale: nanos(u64::try_from(self.stale).unwrap_or(0)),
        }
    }

    /// The statuses stored, and how long each lives (`static_gen_valid`).
    pub(crate) fn validity(&self) -> &Validity {
        static DEFAULT: Validity = Validity::new();
        self.valid.as_ref().unwrap_or(&DEFAULT)
    }

    /// `static_gen_stale` in milliseconds, 0 when off.
    pub(crate) fn stale_ms(&self) -> u64 {
        u64::try_from(self.stale).unwrap_or(0) * 1000
    }

    /// `static_gen_compress`: the variants to store (`gzip br` unless set).
    pub(crate) fn compress(&self) -> &CompressConfig {
        static DEFAULT: std::sync::OnceLock<CompressConfig> = std::sync::OnceLock::new();
        self.compress
            .as_ref()
            .unwrap_or_else(|| DEFAULT.get_or_init(CompressConfig::default))
    }

    /// `static_gen_stale_updates`: stale pages a worker regenerates at once.
    pub(crate) fn stale_updates(&self) -> usize {
        self.stale_updates
    }

    /// `static_gen_lock on`.
    pub(crate) fn lock(&self) -> bool {
        self.lock == 1
    }

    pub(crate) fn file_mode(&self) -> u32 {
        self.access.unwrap_or(DEFAULT_FILE_MODE)
    }
}

type SetHandler =
    unsafe extern "C" fn(*mut ngx_conf_t, *mut ngx_command_t, *mut c_void) -> *mut c_char;

const ANY_LEVEL: u32 = NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF;

/// A directive on the location configuration.
const fn directive(name: ngx_str_t, type_: u32, set: SetHandler, offset: usize) -> ngx_command_t {
    ngx_command_t {
        name,
        type_: type_ as ngx_uint_t,
        set: Some(set),
        conf: NGX_HTTP_LOC_CONF_OFFSET,
        offset,
        post: ptr::null_mut(),
    }
}

/// Checks a number directive is 1 or more, naming the directive.
unsafe extern "C" fn at_least_one(
    cf: *mut ngx_conf_t,
    _post: *mut c_void,
    data: *mut c_void,
) -> *mut c_char {
    let cf = &*cf;
    if *data.cast::<ngx_int_t>() >= 1 {
        return NGX_CONF_OK;
    }
    let name = cf.args().first().copied().unwrap_or_default();
    cf.emerg(format_args!("\"{name}\" must be at least 1"))
}

static mut AT_LEAST_ONE: ngx_conf_post_t = ngx_conf_post_t {
    post_handler: Some(at_least_one),
};

pub(crate) static mut COMMANDS: [ngx_command_t; 25] = [
    directive(
        ngx_string!("static_gen"),
        ANY_LEVEL | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        mem::offset_of!(StaticGenConf, enable),
    ),
    directive(
        ngx_string!("static_gen_root"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        set_root,
        0,
    ),
    directive(
        ngx_string!("static_gen_pattern"),
        ANY_LEVEL | NGX_CONF_1MORE,
        add_include,
        0,
    ),
    directive(
        ngx_string!("static_gen_exclude"),
        ANY_LEVEL | NGX_CONF_1MORE,
        add_exclude,
        0,
    ),
    directive(
        ngx_string!("static_gen_session_cookie"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_session_cookies,
        0,
    ),
    directive(
        ngx_string!("static_gen_ignore_args"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_ignore_args,
        0,
    ),
    directive(
        ngx_string!("static_gen_key_args"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_key_args,
        0,
    ),
    directive(
        ngx_string!("static_gen_types"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_types,
        0,
    ),
    directive(
        ngx_string!("static_gen_max_size"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        ngx_conf_set_off_slot,
        mem::offset_of!(StaticGenConf, max_size),
    ),
    directive(
        ngx_string!("static_gen_access"),
        ANY_LEVEL | NGX_CONF_TAKE123,
        set_access,
        0,
    ),
    directive(
        ngx_string!("static_gen_valid"),
        ANY_LEVEL | NGX_CONF_1MORE,
        add_valid,
        0,
    ),
    directive(
        ngx_string!("static_gen_compress"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_compress,
        0,
    ),
    directive(
        ngx_string!("static_gen_stale"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        ngx_conf_set_sec_slot,
        mem::offset_of!(StaticGenConf, stale),
    ),
    ngx_command_t {
        post: ptr::addr_of_mut!(AT_LEAST_ONE).cast(),
        ..directive(
            ngx_string!("static_gen_stale_updates"),
            ANY_LEVEL | NGX_CONF_TAKE1,
            ngx_conf_set_num_slot,
            mem::offset_of!(StaticGenConf, stale_updates),
        )
    },
    directive(
        ngx_string!("static_gen_lock"),
        ANY_LEVEL | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        mem::offset_of!(StaticGenConf, lock),
    ),
    directive(
        ngx_string!("static_gen_purge_on_start"),
        ANY_LEVEL | NGX_CONF_FLAG,
        ngx_conf_set_flag_slot,
        mem::offset_of!(StaticGenConf, purge_on_start),
    ),
    directive(
        ngx_string!("static_gen_lock_timeout"),
        ANY_LEVEL | NGX_CONF_TAKE1,
        ngx_conf_set_msec_slot,
        mem::offset_of!(StaticGenConf, lock_timeout),
    ),
    directive(
        ngx_string!("static_gen_bypass"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_predicates,
        mem::offset_of!(StaticGenConf, bypass),
    ),
    directive(
        ngx_string!("static_gen_no_store"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_predicates,
        mem::offset_of!(StaticGenConf, no_store),
    ),
    directive(
        ngx_string!("static_gen_hosts"),
        ANY_LEVEL | NGX_CONF_1MORE,
        set_hosts,
        0,
    ),
    ngx_command_t {
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        ..directive(
            ngx_string!("static_gen_compress_threads"),
            NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
            set_compress_threads,
            0,
        )
    },
    ngx_command_t {
        conf: NGX_HTTP_MAIN_CONF_OFFSET,
        ..directive(
            ngx_string!("static_gen_open_cache"),
            NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
            set_open_cache,
            0,
        )
    },
    directive(
        ngx_string!("static_gen_purge"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        set_purge,
        0,
    ),
    directive(
        ngx_string!("static_gen_stats"),
        NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
        set_stats,
        0,
    ),
    ngx_command_t::empty(),
];

/// Defines a directive handler: nginx's `set` callback, run on our
/// configuration with safe references and the directive's arguments (its
/// name first). `name: StaticGenMainConf` for a directive of the `http`
/// level only (`NGX_HTTP_MAIN_CONF_OFFSET`).
macro_rules! directive_handler {
    ($name:ident, |$cf:ident, $conf:ident, $args:ident| $body:expr) => {
        directive_handler!($name: StaticGenConf, |$cf, $conf, $args| $body);
    };
    ($name:ident: $conf_type:ty, |$cf:ident, $conf:ident, $args:ident| $body:expr) => {
        extern "C" fn $name(
            cf: *mut ngx_conf_t,
            _cmd: *mut ngx_command_t,
            conf: *mut c_void,
        ) -> *mut c_char {
            // SAFETY: nginx calls `set` with the configuration being parsed
            // and this module's configuration of the directive's offset.
            let ($cf, $conf) = unsafe { (&mut *cf, &mut *conf.cast::<$conf_type>()) };
            let $args = $cf.args().to_vec();
            $body
        }
    };
}

const NGX_CONF_DUPLICATE: *mut c_char = c"is duplicate".as_ptr().cast_mut();

/// The directive's arguments as UTF-8 (its name left out).
fn utf8_args<'a>(cf: &ngx_conf_t, args: &'a [ngx_str_t]) -> Result<Vec<&'a str>, *mut c_char> {
    args[1..]
        .iter()
        .map(|arg| {
            arg.to_str().map_err(|_| {
                cf.emerg(format_args!(
                    "\"{}\": \"{arg}\" is not valid UTF-8",
                    args[0]
                ))
            })
        })
        .collect()
}

/// Sets `slot` once, from the arguments through `parse`; a parse error
/// fails the configuration naming the directive.
fn set_once<T, E: core::fmt::Display>(
    cf: &ngx_conf_t,
    slot: &mut Option<T>,
    args: &[ngx_str_t],
    parse: impl FnOnce(&[&str]) -> Result<T, E>,
) -> *mut c_char {
    if slot.is_some() {
        return NGX_CONF_DUPLICATE;
    }
    let words = match utf8_args(cf, args) {
        Ok(words) => words,
        Err(e) => return e,
    };
    match parse(&words) {
        Ok(value) => {
            *slot = Some(value);
            NGX_CONF_OK
        }
        Err(err) => cf.emerg(format_args!("\"{}\": {err}", args[0])),
    }
}

directive_handler!(set_root, |cf, conf, args| {
    if conf.root.is_some() {
        return NGX_CONF_DUPLICATE;
    }
    let mut value = args[1];
    if value.is_empty() {
        return cf.emerg(format_args!("\"static_gen_root\": empty path"));
    }
    note_variables(cf, &args);
    // relative to the prefix, as `root` is
    // SAFETY: `cf.cycle` is the cycle being configured.
    if unsafe { ngx_conf_full_name(cf.cycle, &mut value, 0) } != 0 {
        return ngx::core::NGX_CONF_ERROR;
    }
    match compile_root(cf, value) {
        Some(root) => {
            if let (Root::Static(path), Some(main)) = (&root, StaticGenModule::main_conf_mut(cf)) {
                main.static_roots.push((path.clone(), place_of(cf)));
            }
            conf.root = Some(root);
            NGX_CONF_OK
        }
        // nginx said what is wrong; name the directive too
        None => invalid_value(cf, &args),
    }
});

/// `static_gen_bypass` and `static_gen_no_store`: nginx's own predicate
/// slot, with the variables noted; an invalid value is named with its
/// directive (nginx's own message names neither).
extern "C" fn set_predicates(
    cf: *mut ngx_conf_t,
    cmd: *mut ngx_command_t,
    conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx calls `set` with the configuration being parsed.
    let args = unsafe { &*cf }.args().to_vec();
    note_variables(unsafe { &*cf }, &args);
    // SAFETY: as above, with the command and this module's configuration.
    let rv = unsafe { ngx_http_set_predicate_slot(cf, cmd, conf) };
    if rv != ngx::core::NGX_CONF_ERROR {
        return rv;
    }
    // SAFETY: as above.
    invalid_value(unsafe { &*cf }, &args)
}

/// Fails a directive whose value nginx refused (nginx said why, without
/// the directive's name): names the directive and its arguments.
fn invalid_value(cf: &ngx_conf_t, args: &[ngx_str_t]) -> *mut c_char {
    let values: Vec<String> = args[1..].iter().map(ToString::to_string).collect();
    cf.emerg(format_args!(
        "\"{}\": invalid value \"{}\"",
        args[0],
        values.join(" ")
    ))
}

/// Notes the variables a directive's arguments use, with the directive's
/// name and place, for [`warn_unknown_variables`].
fn note_variables(cf: &ngx_conf_t, args: &[ngx_str_t]) {
    let names: Vec<Vec<u8>> = args[1..]
        .iter()
        .flat_map(|arg| variable_names(arg.as_bytes()))
        .collect();
    if names.is_empty() {
        return;
    }
    let place = place_of(cf);
    if let Some(main) = StaticGenModule::main_conf_mut(cf) {
        main.variables_used.push(VariablesUsed {
            directive: args[0].to_string(),
            names,
            place,
        });
    }
}

/// Names the directive and place of a variable nobody defined (nginx's own
/// error, which follows, names only the variable). A warning, not an
/// error: nginx has the last word.
pub(crate) fn warn_unknown_variables(cf: &ngx_conf_t) {
    let (Some(main), Some(cmcf)) = (
        StaticGenModule::main_conf(cf),
        NgxHttpCoreModule::main_conf(cf),
    ) else {
        return;
    };
    // SAFETY: until nginx initialises variables (after postconfiguration),
    // variables_keys holds every declared name.
    let Some(keys) = (unsafe { cmcf.variables_keys.as_ref() }) else {
        return;
    };
    // SAFETY: arrays of ngx_hash_key_t and ngx_http_variable_t.
    let declared = unsafe { keys.keys.as_slice::<ngx_hash_key_t>() };
    let prefixes = unsafe { cmcf.prefix_variables.as_slice::<ngx_http_variable_t>() };
    for used in &main.variables_used {
        for name in &used.names {
            let known = declared
                .iter()
                .any(|k| k.key.as_bytes().eq_ignore_ascii_case(name))
                || prefixes
                    .iter()
                    .any(|p| name.starts_with(&p.name.as_bytes().to_ascii_lowercase()));
            if !known {
                log_errno(
                    NGX_LOG_WARN,
                    cf.log,
                    0,
                    format_args!(
                        "\"{}\" uses the unknown variable \"${}\" in {}",
                        used.directive,
                        String::from_utf8_lossy(name),
                        used.place
                    ),
                );
            }
        }
    }
}

/// Compiles a root path; variables make it a complex value.
fn compile_root(cf: &mut ngx_conf_t, mut value: ngx_str_t) -> Option<Root> {
    let Some(dollar) = value.as_bytes().iter().position(|&b| b == b'$') else {
        return Some(Root::Static(path_from(value.as_bytes())));
    };
    let prefix = value.as_bytes()[..dollar].to_vec();
    // SAFETY: the configuration pool outlives the configuration.
    let pool = unsafe { ngx::core::Pool::from_ngx_pool(cf.pool) };
    let complex = pool.calloc_type::<ngx_http_complex_value_t>();
    if complex.is_null() {
        return None;
    }
    // SAFETY: a zeroed compile request is its documented initial state.
    let mut ccv: ngx_http_compile_complex_value_t = unsafe { mem::zeroed() };
    ccv.cf = cf;
    ccv.value = &mut value;
    ccv.complex_value = complex;
    // SAFETY: all fields nginx reads are set above.
    if unsafe { ngx_http_compile_complex_value(&mut ccv) } != 0 {
        return None;
    }
    Some(Root::Variable {
        value: complex,
        prefix,
    })
}

fn path_from(bytes: &[u8]) -> PathBuf {
    let trimmed = match bytes {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        _ => bytes,
    };
    PathBuf::from(OsStr::from_bytes(trimmed))
}

directive_handler!(add_include, |cf, conf, args| add_patterns(
    cf,
    &mut conf.include,
    &args
));
directive_handler!(add_exclude, |cf, conf, args| add_patterns(
    cf,
    &mut conf.exclude,
    &args
));

fn add_patterns(cf: &ngx_conf_t, list: &mut PatternList, args: &[ngx_str_t]) -> *mut c_char {
    let patterns = match utf8_args(cf, args) {
        Ok(patterns) => patterns,
        Err(e) => return e,
    };
    for pattern in patterns {
        if let Err(err) = list.add(pattern) {
            return cf.emerg(format_args!(
                "\"{}\": invalid regular expression \"{pattern}\": {err}",
                args[0]
            ));
        }
        if looks_like_directive(pattern) {
            cf.warn(format_args!(
                "\"{}\": the pattern \"{pattern}\" looks like a directive name: \
                 is the \";\" of this line missing?",
                args[0]
            ));
        }
    }
    NGX_CONF_OK
}

directive_handler!(set_session_cookies, |cf, conf, args| {
    set_once(cf, &mut conf.cookies, &args, |words: &[&str]| {
        SessionCookies::new(words)
    })
});

directive_handler!(set_ignore_args, |cf, conf, args| set_once(
    cf,
    &mut conf.ignore_args,
    &args,
    |words: &[&str]| parse_ignore_args(words)
));

directive_handler!(set_key_args, |cf, conf, args| set_once(
    cf,
    &mut conf.key_args,
    &args,
    |words: &[&str]| parse_key_args(words)
));

// `static_gen_valid [code ...] time`: one more line; the time is parsed
// by nginx's own `ngx_parse_time` (as `proxy_cache_valid`).
directive_handler!(add_valid, |cf, conf, args| {
    let words = match utf8_args(cf, &args) {
        Ok(words) => words,
        Err(e) => return e,
    };
    let Some((time, codes)) = words.split_last() else {
        return ngx::core::NGX_CONF_ERROR;
    };
    let codes = match parse_codes(codes) {
        Ok(codes) => codes,
        Err(err) => return cf.emerg(format_args!("\"{}\": {err}", args[0])),
    };
    let mut value = args[args.len() - 1];
    // SAFETY: nginx parses the string it is given and keeps nothing of it.
    let secs = unsafe { ngx_parse_time(&mut value, 1) };
    let Ok(secs) = u64::try_from(secs) else {
        return cf.emerg(format_args!("\"{}\": invalid time \"{time}\"", args[0]));
    };
    conf.valid
        .get_or_insert_with(Validity::default)
        .add(codes, secs);
    NGX_CONF_OK
});

directive_handler!(set_types, |cf, conf, args| set_once(
    cf,
    &mut conf.types,
    &args,
    |words: &[&str]| parse_types(words)
));

directive_handler!(set_access, |cf, conf, args| set_once(
    cf,
    &mut conf.access,
    &args,
    |words: &[&str]| parse_access(words)
));

directive_handler!(set_open_cache: StaticGenMainConf, |cf, conf, args| set_once(
    cf,
    &mut conf.open_cache,
    &args,
    |words: &[&str]| parse_open_cache(words)
));

directive_handler!(set_compress_threads: StaticGenMainConf, |cf, conf, args| set_once(
    cf,
    &mut conf.compress_threads,
    &args,
    |words: &[&str]| Threads::parse(words[0])
));

directive_handler!(set_compress, |cf, conf, args| set_once(
    cf,
    &mut conf.compress,
    &args,
    |words: &[&str]| parse_compress(words)
));

directive_handler!(set_hosts, |cf, conf, args| set_once(
    cf,
    &mut conf.host_names,
    &args,
    |words: &[&str]| HostNames::from_directive(words)
));

directive_handler!(set_purge, |cf, conf, _args| {
    if conf.purge {
        return NGX_CONF_DUPLICATE;
    }
    conf.purge = true;
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
        return ngx::core::NGX_CONF_ERROR;
    };
    clcf.handler = Some(purge::purge_handler);
    NGX_CONF_OK
});

directive_handler!(set_stats, |cf, _conf, _args| {
    let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
        return ngx::core::NGX_CONF_ERROR;
    };
    if clcf.handler.is_some() {
        return NGX_CONF_DUPLICATE;
    }
    clcf.handler = Some(stats::stats_handler);
    NGX_CONF_OK
});

/// Merges a level with the one above it, then works out which tree the
/// level uses, failing the configuration where none can be known.
pub(crate) unsafe extern "C" fn merge_loc_conf(
    cf: *mut ngx_conf_t,
    prev: *mut c_void,
    conf: *mut c_void,
) -> *mut c_char {
    let cf = &mut *cf;
    let prev = &*prev.cast::<StaticGenConf>();
    let conf = &mut *conf.cast::<StaticGenConf>();
    conf.inherit(prev);
    if let Err(message) = conf.resolve_tree(cf) {
        return cf.emerg(format_args!("{message}"));
    }
    conf.resolve_hosts(cf);
    conf.resolve_purge_access(cf);
    if let Err(message) = conf.note_purge_on_start(cf) {
        return cf.emerg(format_args!("{message}"));
    }
    if let Some(main) = StaticGenModule::main_conf_mut(cf) {
        for root in [&conf.root, &conf.tree] {
            if let Some(Root::Static(path)) = root {
                if !main.roots.contains(path) {
                    main.roots.push(path.clone());
                }
            }
        }
        if let (true, Some(Root::Static(path))) = (conf.enabled(), &conf.tree) {
            main.note_compress_root(path, conf.compress());
        }
    }
    NGX_CONF_OK
}

/// An `ngx_flag_t` left unset takes the level above's value, else off.
fn inherit_flag(own: &mut ngx_flag_t, above: ngx_flag_t) {
    const UNSET: ngx_flag_t = NGX_CONF_UNSET as ngx_flag_t;
    if *own == UNSET {
        *own = if above == UNSET { 0 } else { above };
    }
}

impl StaticGenConf {
    /// With `static_gen_purge_on_start on`, the tree of a location that
    /// serves or purges pages is noted for the purge when nginx starts; its
    /// root must be known without a request.
    fn note_purge_on_start(&self, cf: &mut ngx_conf_t) -> Result<(), &'static str> {
        if self.purge_on_start != 1 || !(self.enabled() || self.purge) {
            return Ok(());
        }
        let root = if self.purge { &self.root } else { &self.tree };
        let Some(Root::Static(path)) = root else {
            return Err(
                "\"static_gen_purge_on_start\" needs a root without variables: \
                        a start can only purge the trees it can name",
            );
        };
        let stale_ms = self.stale_ms();
        let Some(main) = StaticGenModule::main_conf_mut(cf) else {
            return Ok(());
        };
        match main.purge_on_start.iter_mut().find(|(p, _)| p == path) {
            Some((_, ms)) => *ms = (*ms).max(stale_ms),
            None => main.purge_on_start.push((path.clone(), stale_ms)),
        }
        Ok(())
    }

    fn inherit(&mut self, prev: &StaticGenConf) {
        if self.enable == NGX_CONF_UNSET as ngx_flag_t {
            self.enable = if prev.enable == NGX_CONF_UNSET as ngx_flag_t {
                0
            } else {
                prev.enable
            };
        }
        if self.root.is_none() {
            self.root.clone_from(&prev.root);
        }
        if self.include.is_empty() {
            self.include = prev.include.clone();
        }
        if self.exclude.is_empty() {
            self.exclude = prev.exclude.clone();
        }
        if self.cookies.is_none() {
            self.cookies.clone_from(&prev.cookies);
        }
        if self.types.is_none() {
            self.types = Some(match &prev.types {
                Some(types) => types.clone(),
                None => DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
            });
        }
        if self.max_size == NGX_CONF_UNSET as off_t {
            self.max_size = if prev.max_size == NGX_CONF_UNSET as off_t {
                DEFAULT_MAX_SIZE
            } else {
                prev.max_size
            };
        }
        if self.access.is_none() {
            self.access = prev.access;
        }
        if self.host_names.is_none() {
            self.host_names.clone_from(&prev.host_names);
        }
        let ignore = self
            .ignore_args
            .get_or_insert_with(|| match &prev.ignore_args {
                Some(names) => names.clone(),
                None => TRACKING_ARGS.iter().map(|n| n.to_string()).collect(),
            });
        let key = self
            .key_args
            .get_or_insert_with(|| prev.key_args.clone().unwrap_or_default());
        self.args = ArgRules::new(ignore.iter(), key.iter());
        if self.compress.is_none() {
            self.compress.clone_from(&prev.compress);
        }
        if self.valid.is_none() {
            // a level's own lines replace those above, as proxy_cache_valid's
            self.valid.clone_from(&prev.valid);
        }
        if self.stale == NGX_CONF_UNSET as time_t {
            self.stale = if prev.stale == NGX_CONF_UNSET as time_t {
                0
            } else {
                prev.stale
            };
        }
        if self.stale_updates == NGX_CONF_UNSET as ngx_uint_t {
            self.stale_updates = if prev.stale_updates == NGX_CONF_UNSET as ngx_uint_t {
                DEFAULT_STALE_UPDATES
            } else {
                prev.stale_updates
            };
        }
        inherit_flag(&mut self.lock, prev.lock);
        inherit_flag(&mut self.purge_on_start, prev.purge_on_start);
        if self.lock_timeout == NGX_CONF_UNSET_MSEC {
            self.lock_timeout = if prev.lock_timeout == NGX_CONF_UNSET_MSEC {
                DEFAULT_LOCK_TIMEOUT
            } else {
                prev.lock_timeout
            };
        }
        for (own, above) in [
            (&mut self.bypass, prev.bypass),
            (&mut self.no_store, prev.no_store),
        ] {
            if *own == NGX_CONF_UNSET_PTR {
                *own = if above == NGX_CONF_UNSET_PTR {
                    ptr::null_mut()
                } else {
                    above
                };
            }
        }
        self.filter = UriFilter::new(&self.include, &self.exclude);
    }

    /// The names a request's host must be one of; a server whose names no
    /// host can carry (`server_name _;`, or none) without
    /// `static_gen_hosts` is told at `nginx -t`, once.
    fn resolve_hosts(&mut self, cf: &ngx_conf_t) {
        if let Some(names) = &self.host_names {
            self.hosts = HostRule::from_names(names.clone());
            return;
        }
        let Some(cscf) = NgxHttpCoreModule::server_conf(cf) else {
            return;
        };
        self.hosts = HostRule::from_server(cscf);
        if !self.enabled() || !self.hosts.is_empty() {
            return;
        }
        let Some(main) = StaticGenModule::main_conf_mut(cf) else {
            return;
        };
        let server = core::ptr::from_ref(cscf);
        if !main.warned_servers.contains(&server) {
            main.warned_servers.push(server);
            let place = StaticGenModule::server_conf(cf).map_or("", |s| s.place.as_str());
            log_errno(
                NGX_LOG_WARN,
                cf.log,
                0,
                format_args!(
                    "\"static_gen\" in a server without a server_name that a Host header \
                     can carry: no request will take part; set \"server_name\" or \
                     \"static_gen_hosts\" in {place}"
                ),
            );
        }
    }

    /// A purge location without `allow`/`deny` answers only local clients,
    /// and `nginx -t` says so.
    fn resolve_purge_access(&mut self, cf: &ngx_conf_t) {
        if !self.purge {
            return;
        }
        self.purge_has_rules = has_access_rules(cf);
        if !self.purge_has_rules {
            cf.warn(format_args!(
                "\"static_gen_purge\" without \"allow\"/\"deny\": only clients on this \
                 machine (loopback, unix sockets) may purge"
            ));
        }
    }

    /// `static_gen_root`, else the location's `root` when it is a plain
    /// path. `static_gen_purge` needs an explicit `static_gen_root`: it
    /// deletes everything under it, and a document root holds more than
    /// generated pages.
    fn resolve_tree(&mut self, cf: &ngx_conf_t) -> Result<(), String> {
        if self.purge && self.root.is_none() {
            return Err("\"static_gen_purge\" requires \"static_gen_root\" \
                        (the directory whose generated pages it deletes)"
                .into());
        }
        self.tree = self.root.clone();
        if self.tree.is_some() || !self.enabled() {
            return Ok(());
        }
        let clcf = NgxHttpCoreModule::location_conf(cf).ok_or("no core location configuration")?;
        if !clcf.root_lengths.is_null() || clcf.alias != 0 {
            return Err(
                "\"static_gen\" requires \"static_gen_root\" where \"root\" has \
                        variables or \"alias\" is used"
                    .into(),
            );
        }
        let root = path_from(clcf.root.as_bytes());
        self.warn_root_fallback(cf, &root);
        self.tree = Some(Root::Static(root));
        Ok(())
    }

    /// Says at `nginx -t` (once per directory) that pages go to the
    /// location's `root`: a document root holds more than pages.
    fn warn_root_fallback(&self, cf: &ngx_conf_t, root: &Path) {
        let Some(main) = StaticGenModule::main_conf_mut(cf) else {
            return;
        };
        if !main.warned_roots.iter().any(|warned| warned == root) {
            main.warned_roots.push(root.to_owned());
            cf.warn(format_args!(
                "\"static_gen\" without \"static_gen_root\": pages are stored in the \
                 location's root \"{}\" (a directory of their own is safer)",
                root.display()
            ));
        }
    }
}
