//! The module's counters (`static_gen_stats`): what they count, their
//! layout (plain atomics, so that they can live in memory every worker
//! shares), and their rendering as Prometheus text and as JSON.
//!
//! Counting is one relaxed atomic addition: no lock, no system call.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::encoding::Encoding;
use crate::rules::NotStored;
use crate::tree::TreeError;

/// `$static_gen_status` of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Hit,
    Miss,
    Expired,
    Stale,
    Bypass,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Hit,
        Status::Miss,
        Status::Expired,
        Status::Stale,
        Status::Bypass,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::Miss => "MISS",
            Status::Expired => "EXPIRED",
            Status::Stale => "STALE",
            Status::Bypass => "BYPASS",
        }
    }
}

/// Why a request bypasses the module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bypass {
    /// Not GET or HEAD.
    Method,
    /// Query arguments that are neither ignored nor key arguments, or key
    /// arguments that cannot make one page (`static_gen_key_args`).
    Args,
    /// A session cookie.
    Cookie,
    /// `Authorization` (credentials mean a private answer).
    Credentials,
    /// A Host that is not one of the site's names.
    Host,
    /// `static_gen_pattern` / `static_gen_exclude`.
    Pattern,
    /// A URI that maps to no page file (not in normal form, too long...).
    Mapping,
    /// `static_gen_bypass`.
    Predicate,
    /// The root could not be used (variables, an unusable tree).
    Root,
}

impl Bypass {
    const ALL: [Bypass; 9] = [
        Bypass::Method,
        Bypass::Args,
        Bypass::Cookie,
        Bypass::Credentials,
        Bypass::Host,
        Bypass::Pattern,
        Bypass::Mapping,
        Bypass::Predicate,
        Bypass::Root,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Bypass::Method => "method",
            Bypass::Args => "args",
            Bypass::Cookie => "cookie",
            Bypass::Credentials => "credentials",
            Bypass::Host => "host",
            Bypass::Pattern => "pattern",
            Bypass::Mapping => "mapping",
            Bypass::Predicate => "predicate",
            Bypass::Root => "root",
        }
    }
}

/// Why a response that went upstream was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unstored {
    /// One of the storage rules (status, cookie, Cache-Control...).
    Rule(NotStored),
    /// Larger than `static_gen_max_size`.
    Size,
    /// `X-Static-Gen: no-store`, `X-Accel-Expires: 0` or
    /// `static_gen_no_store`.
    UpstreamRefused,
    /// The body's end was not marked by the protocol, or the upstream failed.
    Incomplete,
    /// The client did not receive the whole page.
    ClientAbort,
    /// A purge covering the page came while it was fetched.
    PurgedInFlight,
    /// Writing or installing the page failed (disk full, permissions...).
    WriteError,
    /// A lock waiter that waited `static_gen_lock_timeout`.
    LockTimeout,
    /// A malformed or oversized `X-Static-Gen-Tags`.
    Tags,
}

impl Unstored {
    const ALL: [Unstored; 14] = [
        Unstored::Rule(NotStored::Status),
        Unstored::Rule(NotStored::SetCookie),
        Unstored::Rule(NotStored::CacheControl),
        Unstored::Rule(NotStored::Vary),
        Unstored::Rule(NotStored::ContentType),
        Unstored::Rule(NotStored::ContentEncoding),
        Unstored::Size,
        Unstored::UpstreamRefused,
        Unstored::Incomplete,
        Unstored::ClientAbort,
        Unstored::PurgedInFlight,
        Unstored::WriteError,
        Unstored::LockTimeout,
        Unstored::Tags,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Unstored::Rule(NotStored::Status) => "status",
            Unstored::Rule(NotStored::SetCookie) => "set_cookie",
            Unstored::Rule(NotStored::CacheControl) => "cache_control",
            Unstored::Rule(NotStored::Vary) => "vary",
            Unstored::Rule(NotStored::ContentType) => "type",
            Unstored::Rule(NotStored::ContentEncoding) => "encoding",
            Unstored::Size => "size",
            Unstored::UpstreamRefused => "upstream_refused",
            Unstored::Incomplete => "incomplete",
            Unstored::ClientAbort => "client_abort",
            Unstored::PurgedInFlight => "purged_in_flight",
            Unstored::WriteError => "write_error",
            Unstored::LockTimeout => "lock_timeout",
            Unstored::Tags => "tags",
        }
    }

    fn index(self) -> usize {
        Unstored::ALL.iter().position(|u| *u == self).unwrap_or(0)
    }

    /// True when the application would give any request of the page a
    /// response like this one (answered with `status`): worth remembering,
    /// so that the page's requests do not wait for each other's unstorable
    /// answers. Not for a failing application (5xx), whose requests are
    /// better kept one at a time, nor for what went wrong in this request.
    pub fn lasting(self, status: usize) -> bool {
        match self {
            Unstored::Rule(_) | Unstored::Size | Unstored::UpstreamRefused | Unstored::Tags => {
                status < 500
            }
            Unstored::Incomplete
            | Unstored::ClientAbort
            | Unstored::PurgedInFlight
            | Unstored::WriteError
            | Unstored::LockTimeout => false,
        }
    }

    /// Why writing or installing a page failed.
    pub fn of(err: &TreeError) -> Unstored {
        match err {
            TreeError::TooLarge { .. } => Unstored::Size,
            TreeError::Incomplete { .. } => Unstored::Incomplete,
            TreeError::Io { .. } => Unstored::WriteError,
        }
    }
}

/// Why a request was answered as it was: `$static_gen_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Bypass(Bypass),
    Unstored(Unstored),
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Bypass(b) => b.label(),
            Reason::Unstored(u) => u.label(),
        }
    }
}

/// The scope of a purge, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeScope {
    All,
    Uri,
    Prefix,
    Tag,
}

impl PurgeScope {
    const ALL: [PurgeScope; 4] = [
        PurgeScope::All,
        PurgeScope::Uri,
        PurgeScope::Prefix,
        PurgeScope::Tag,
    ];

    fn label(self) -> &'static str {
        match self {
            PurgeScope::All => "all",
            PurgeScope::Uri => "uri",
            PurgeScope::Prefix => "prefix",
            PurgeScope::Tag => "tag",
        }
    }
}

const ENCODINGS: [Encoding; 4] = [
    Encoding::Identity,
    Encoding::Gzip,
    Encoding::Br,
    Encoding::Zstd,
];

fn encoding_index(encoding: Encoding) -> usize {
    ENCODINGS.iter().position(|e| *e == encoding).unwrap_or(0)
}

/// Every counter, as laid out in the shared memory zone (zeroed memory is
/// all counters at 0).
#[repr(C)]
#[derive(Debug, Default)]
pub struct Counters {
    requests: [AtomicU64; 5],
    bypasses: [AtomicU64; 9],
    unstored: [AtomicU64; 14],
    stored_pages: AtomicU64,
    stored_bytes: AtomicU64,
    served_bytes: [AtomicU64; 4],
    /// [scope][soft]
    purges: [[AtomicU64; 2]; 4],
    lock_waits: AtomicU64,
    /// HITs by the status their page was stored with: 2xx, 3xx, 4xx.
    hits_by_status: [AtomicU64; 3],
}

/// The labels of [`Counters::hit_of_status`]'s classes.
const STATUS_CLASSES: [&str; 3] = ["2xx", "3xx", "4xx"];

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    /// A request ended with `status` (and why, if it bypassed or was not
    /// stored); `served` bytes of a page's body went out in `encoding`
    /// (HIT and STALE answers).
    pub fn request(&self, status: Status, reason: Option<Reason>, served: Option<(Encoding, u64)>) {
        add(&self.requests[status as usize], 1);
        match reason {
            Some(Reason::Bypass(b)) => add(&self.bypasses[b as usize], 1),
            Some(Reason::Unstored(u)) => add(&self.unstored[u.index()], 1),
            None => {}
        }
        if let Some((encoding, bytes)) = served {
            add(&self.served_bytes[encoding_index(encoding)], bytes);
        }
    }

    /// A HIT answered with a page stored with `status`.
    pub fn hit_of_status(&self, status: u16) {
        let class = usize::from(status / 100).clamp(2, 4) - 2;
        add(&self.hits_by_status[class], 1);
    }

    /// A page of `bytes` (its identity body) was installed.
    pub fn stored(&self, bytes: u64) {
        add(&self.stored_pages, 1);
        add(&self.stored_bytes, bytes);
    }

    /// A purge replied.
    pub fn purged(&self, scope: PurgeScope, soft: bool) {
        add(&self.purges[scope as usize][usize::from(soft)], 1);
    }

    /// A request waited for another's page (`static_gen_lock`).
    pub fn lock_wait(&self) {
        add(&self.lock_waits, 1);
    }

    /// The counters in the Prometheus text format (version 0.0.4).
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "static_gen_requests_total",
            "Requests of static_gen locations by $static_gen_status.",
        );
        for s in Status::ALL {
            sample(
                &mut out,
                "static_gen_requests_total",
                &[("status", s.label())],
                get(&self.requests[s as usize]),
            );
        }
        family(
            &mut out,
            "static_gen_bypasses_total",
            "Requests that bypassed the module, by reason.",
        );
        for b in Bypass::ALL {
            sample(
                &mut out,
                "static_gen_bypasses_total",
                &[("reason", b.label())],
                get(&self.bypasses[b as usize]),
            );
        }
        family(
            &mut out,
            "static_gen_not_stored_total",
            "Upstream responses not stored, by reason.",
        );
        for u in Unstored::ALL {
            sample(
                &mut out,
                "static_gen_not_stored_total",
                &[("reason", u.label())],
                get(&self.unstored[u.index()]),
            );
        }
        family(
            &mut out,
            "static_gen_stored_pages_total",
            "Pages installed in the tree.",
        );
        sample(
            &mut out,
            "static_gen_stored_pages_total",
            &[],
            get(&self.stored_pages),
        );
        family(
            &mut out,
            "static_gen_stored_bytes_total",
            "Bytes of the identity bodies of installed pages.",
        );
        sample(
            &mut out,
            "static_gen_stored_bytes_total",
            &[],
            get(&self.stored_bytes),
        );
        family(
            &mut out,
            "static_gen_served_bytes_total",
            "Body bytes of HIT and STALE answers, by content coding.",
        );
        for e in ENCODINGS {
            sample(
                &mut out,
                "static_gen_served_bytes_total",
                &[("encoding", e.token())],
                get(&self.served_bytes[encoding_index(e)]),
            );
        }
        family(
            &mut out,
            "static_gen_purges_total",
            "Purges answered, by scope and mode.",
        );
        for scope in PurgeScope::ALL {
            for (soft, mode) in [(false, "hard"), (true, "soft")] {
                let n = get(&self.purges[scope as usize][usize::from(soft)]);
                sample(
                    &mut out,
                    "static_gen_purges_total",
                    &[("scope", scope.label()), ("mode", mode)],
                    n,
                );
            }
        }
        family(
            &mut out,
            "static_gen_hits_by_status_total",
            "HITs by the status of the stored page.",
        );
        for (class, label) in STATUS_CLASSES.iter().enumerate() {
            sample(
                &mut out,
                "static_gen_hits_by_status_total",
                &[("status", label)],
                get(&self.hits_by_status[class]),
            );
        }
        family(
            &mut out,
            "static_gen_lock_waits_total",
            "Requests that waited for another request's page.",
        );
        sample(
            &mut out,
            "static_gen_lock_waits_total",
            &[],
            get(&self.lock_waits),
        );
        out
    }

    /// The counters as one JSON object.
    pub fn json(&self) -> String {
        let object = |pairs: Vec<(&str, u64)>| {
            let fields: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
            format!("{{{}}}", fields.join(","))
        };
        let requests = object(
            Status::ALL
                .iter()
                .map(|s| (s.label(), get(&self.requests[*s as usize])))
                .collect(),
        );
        let bypasses = object(
            Bypass::ALL
                .iter()
                .map(|b| (b.label(), get(&self.bypasses[*b as usize])))
                .collect(),
        );
        let unstored = object(
            Unstored::ALL
                .iter()
                .map(|u| (u.label(), get(&self.unstored[u.index()])))
                .collect(),
        );
        let served = object(
            ENCODINGS
                .iter()
                .map(|e| (e.token(), get(&self.served_bytes[encoding_index(*e)])))
                .collect(),
        );
        let purges: Vec<String> = PurgeScope::ALL
            .iter()
            .map(|s| {
                let p = &self.purges[*s as usize];
                format!(
                    "\"{}\":{}",
                    s.label(),
                    object(vec![("hard", get(&p[0])), ("soft", get(&p[1]))])
                )
            })
            .collect();
        let hits_by_status = object(
            STATUS_CLASSES
                .iter()
                .enumerate()
                .map(|(class, label)| (*label, get(&self.hits_by_status[class])))
                .collect(),
        );
        format!(
            "{{\"requests\":{requests},\"bypasses\":{bypasses},\"not_stored\":{unstored},\
             \"stored_pages\":{},\"stored_bytes\":{},\"served_bytes\":{served},\
             \"purges\":{{{}}},\"lock_waits\":{},\"hits_by_status\":{hits_by_status}}}",
            get(&self.stored_pages),
            get(&self.stored_bytes),
            purges.join(","),
            get(&self.lock_waits),
        )
    }
}

fn family(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let _ = write!(out, "{{{}}}", labels.join(","));
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_both_formats() {
        let c = Counters::default();
        c.request(Status::Hit, None, Some((Encoding::Br, 100)));
        c.request(Status::Hit, None, Some((Encoding::Br, 50)));
        c.request(Status::Bypass, Some(Reason::Bypass(Bypass::Cookie)), None);
        c.request(
            Status::Miss,
            Some(Reason::Unstored(Unstored::Rule(NotStored::SetCookie))),
            None,
        );
        c.stored(2000);
        c.purged(PurgeScope::Prefix, true);
        c.lock_wait();
        c.hit_of_status(200);
        c.hit_of_status(301);
        c.hit_of_status(404);
        c.hit_of_status(410);
        let text = c.prometheus();
        for line in [
            "static_gen_requests_total{status=\"HIT\"} 2",
            "static_gen_requests_total{status=\"MISS\"} 1",
            "static_gen_bypasses_total{reason=\"cookie\"} 1",
            "static_gen_not_stored_total{reason=\"set_cookie\"} 1",
            "static_gen_stored_pages_total 1",
            "static_gen_stored_bytes_total 2000",
            "static_gen_served_bytes_total{encoding=\"br\"} 150",
            "static_gen_purges_total{scope=\"prefix\",mode=\"soft\"} 1",
            "static_gen_purges_total{scope=\"prefix\",mode=\"hard\"} 0",
            "static_gen_lock_waits_total 1",
            "static_gen_hits_by_status_total{status=\"2xx\"} 1",
            "static_gen_hits_by_status_total{status=\"4xx\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        let json = c.json();
        for part in [
            "\"requests\":{\"HIT\":2,\"MISS\":1,",
            "\"cookie\":1",
            "\"set_cookie\":1",
            "\"stored_pages\":1,\"stored_bytes\":2000",
            "\"br\":150",
            "\"prefix\":{\"hard\":0,\"soft\":1}",
            "\"lock_waits\":1,",
            "\"hits_by_status\":{\"2xx\":1,\"3xx\":1,\"4xx\":2}}",
        ] {
            assert!(json.contains(part), "{part} in {json}");
        }
    }

    #[test]
    fn every_family_has_help_and_type_once() {
        let text = Counters::default().prometheus();
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .collect();
        assert_eq!(families.len(), 9);
        for family in families {
            let name = family.split(' ').next().unwrap();
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1);
        }
    }

    #[test]
    fn labels_are_distinct() {
        let labels: Vec<&str> = Unstored::ALL.iter().map(|u| u.label()).collect();
        let mut sorted = labels.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len());
        assert_eq!(Unstored::ALL.len(), 14);
    }
}
