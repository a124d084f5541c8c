//! The host names a location stores pages for: `static_gen_hosts`, or the
//! names of its `server` block (see `static_gen_logic::host`). Regular
//! expression server names are matched with nginx's own regex engine
//! (without touching the request's captures, which `$1` in the location
//! may still use).

use nginx_sys::{ngx_http_core_srv_conf_t, ngx_http_server_name_t, ngx_regex_exec, ngx_regex_t};
use static_gen_logic::host::HostNames;

/// The names a request's host must be one of.
#[derive(Debug, Clone, Default)]
pub(crate) struct HostRule {
    names: HostNames,
    /// Compiled regular expressions of `server_name ~...`, alive with the
    /// configuration.
    regexes: Vec<*mut ngx_regex_t>,
}

impl HostRule {
    pub(crate) fn from_names(names: HostNames) -> HostRule {
        HostRule {
            names,
            regexes: Vec::new(),
        }
    }

    /// The names of a `server` block; invalid plain names are skipped (nginx
    /// accepted them, but no validated host can equal them).
    pub(crate) fn from_server(cscf: &ngx_http_core_srv_conf_t) -> HostRule {
        let mut rule = HostRule::default();
        // SAFETY: `server_names` is an array of ngx_http_server_name_t.
        let names = unsafe { cscf.server_names.as_slice::<ngx_http_server_name_t>() };
        for name in names {
            // SAFETY: a regex server name keeps its compiled expression.
            match unsafe { name.regex.as_ref() } {
                Some(regex) => rule.regexes.push(regex.regex),
                None => {
                    let _ = rule.names.add(name.name.as_bytes());
                }
            }
        }
        rule
    }

    /// True when no host can match: a server with only `""` or `_`.
    pub(crate) fn is_empty(&self) -> bool {
        self.names.is_empty() && self.regexes.is_empty()
    }

    /// True when `host` (validated by nginx: lowercase, no port) is one of
    /// the names.
    pub(crate) fn allows(&self, host: &[u8]) -> bool {
        if host.is_empty() {
            return false;
        }
        self.names.matches(host) || self.regexes.iter().any(|&re| regex_matches(re, host))
    }
}

fn regex_matches(re: *mut ngx_regex_t, host: &[u8]) -> bool {
    let mut subject = nginx_sys::ngx_str_t {
        len: host.len(),
        data: host.as_ptr().cast_mut(),
    };
    // SAFETY: a compiled expression alive with the configuration, and a
    // subject that outlives the call; no captures are asked for.
    unsafe { ngx_regex_exec(re, &mut subject, core::ptr::null_mut(), 0) >= 0 }
}
