//! Whether a page found in the tree may be served: fresh, or stale (purged
//! since it was written, or older than `static_gen_valid`) and then maybe
//! still servable as such (`static_gen_stale`).

use crate::tree::{FileTime, Staleness};

/// What a page found in the tree is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    Fresh,
    Stale {
        /// Older than `static_gen_valid` (rather than purged).
        expired: bool,
        /// It may still be served stale, while it is regenerated or when
        /// regenerating fails.
        servable: bool,
    },
}

/// How long pages live and may be served stale, for one location.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lifetimes {
    /// `static_gen_valid`, in nanoseconds; 0 for no limit.
    pub valid: u64,
    /// `static_gen_stale`, in nanoseconds; 0 for never stale.
    pub stale: u64,
}

/// Decides what a page written at `written` is worth `now`, given the
/// purges that covered it since (`purged`).
pub fn freshness(
    written: FileTime,
    purged: Option<Staleness>,
    lifetimes: Lifetimes,
    now: FileTime,
) -> Freshness {
    let expires = (lifetimes.valid > 0).then(|| written.as_nanos() + lifetimes.valid);
    let expired = expires.filter(|&at| now.as_nanos() >= at);
    let since = match (purged, expired) {
        (None, None) => return Freshness::Fresh,
        // stale since the earlier of its expiry and the purge
        (Some(p), Some(at)) => p.since.as_nanos().min(at),
        (Some(p), None) => p.since.as_nanos(),
        (None, Some(at)) => at,
    };
    let hard = purged.is_some_and(|p| p.hard);
    let servable =
        !hard && lifetimes.stale > 0 && now.as_nanos() < since.saturating_add(lifetimes.stale);
    Freshness::Stale {
        expired: purged.is_none(),
        servable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn at(seconds: u64) -> FileTime {
        FileTime::from_nanos(seconds * S)
    }

    fn purged(seconds: u64, hard: bool) -> Option<Staleness> {
        Some(Staleness {
            since: at(seconds),
            hard,
        })
    }

    #[test]
    fn fresh_until_purged_or_expired() {
        let none = Lifetimes::default();
        assert_eq!(freshness(at(100), None, none, at(200)), Freshness::Fresh);
        let valid = Lifetimes {
            valid: 60 * S,
            stale: 0,
        };
        assert_eq!(freshness(at(100), None, valid, at(159)), Freshness::Fresh);
        assert_eq!(
            freshness(at(100), None, valid, at(160)),
            Freshness::Stale {
                expired: true,
                servable: false
            }
        );
    }

    #[test]
    fn stale_pages_are_servable_within_the_stale_time_unless_hard() {
        let stale = Lifetimes {
            valid: 0,
            stale: 30 * S,
        };
        let servable = |expired| Freshness::Stale {
            expired,
            servable: true,
        };
        let not = |expired| Freshness::Stale {
            expired,
            servable: false,
        };
        assert_eq!(
            freshness(at(100), purged(110, false), stale, at(139)),
            servable(false)
        );
        assert_eq!(
            freshness(at(100), purged(110, false), stale, at(140)),
            not(false)
        );
        assert_eq!(
            freshness(at(100), purged(110, true), stale, at(111)),
            not(false)
        );
        let both = Lifetimes {
            valid: 60 * S,
            stale: 30 * S,
        };
        // expired at 160: stale since then, whatever purge came later
        assert_eq!(freshness(at(100), None, both, at(189)), servable(true));
        assert_eq!(
            freshness(at(100), purged(170, false), both, at(195)),
            not(false)
        );
        assert_eq!(
            freshness(at(100), purged(120, false), both, at(149)),
            servable(false)
        );
    }
}
