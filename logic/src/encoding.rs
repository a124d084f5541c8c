//! Content codings of stored pages: which ones to store
//! (`static_gen_compress`), and which one to send a client
//! (`Accept-Encoding`, RFC 9110 §12.5.3).
//!
//! # `static_gen_compress`
//!
//! `static_gen_compress off` or one or more of `gzip`, `br` and `zstd`,
//! each optionally with a level: `gzip=9` (1 to 9), `br=11` (0 to 11),
//! `zstd=19` (1 to 22). Without a level each is stored at its highest
//! useful compression (gzip 9, brotli 11, zstd 19): pages are compressed
//! once, when stored, and served many times. Words are case-insensitive; an
//! encoding named twice, `off` with an encoding, or anything else is an
//! error that names the word. The default, [`CompressConfig::default`], is
//! `gzip br`. zstd frames always declare a window of at most 8 MB
//! (RFC 9659: clients need not accept more), whatever the level.
//!
//! # Negotiation
//!
//! [`negotiate`] picks the variant to send from the request's
//! `Accept-Encoding` lines and the variants a page has:
//!
//! - Every line is split at `,`; empty elements are skipped; each element is
//!   a token, then optional parameters after `;`, with optional whitespace
//!   (space, tab) around the elements and the `;`. Tokens compare
//!   case-insensitively; `x-gzip` is `gzip` (RFC 9110 §8.4.1.3).
//! - An element's weight is its `q=` parameter (the name case-insensitive):
//!   `0`, `0.`, `0.5`, `0.125`, `1`, `1.000`, exactly as RFC 9110 §12.4.2
//!   writes it; none means 1. An element with any other parameter, a
//!   malformed or out-of-range q (`q=1.5`, `q=abc`, `q=0.1234`, `q = 0.5`),
//!   two `q`s, or an empty parameter (`gzip;`) weighs 0, as in nginx: the
//!   coding it names is refused, never sent on a guess. An element whose
//!   token is not a token (`gz ip`, `"gzip"`) is ignored.
//! - A coding named several times (`gzip;q=0.5, gzip` or `gzip, x-gzip;q=0`)
//!   takes its lowest weight: a refusal is never overridden.
//! - A coding not named takes the weight of `*` (the lowest if several),
//!   and is refused without a `*`.
//! - `identity` takes its own weight, else the weight of `*`; when neither
//!   is there it is acceptable, ranking below every coding the client named
//!   acceptable (`gzip;q=0.001` beats an unnamed identity).
//! - The candidates are the identity body and each stored variant that is
//!   acceptable (weight > 0). The highest weight wins; among equal weights,
//!   the smallest body; among equal sizes, the order identity, br, zstd,
//!   gzip.
//! - No `Accept-Encoding` at all, or only empty ones, selects identity
//!   (RFC 9110: an empty value means no coding is wanted).
//! - When no candidate is acceptable (`identity;q=0` or `*;q=0` and no
//!   acceptable variant) the answer is `None`: the caller sends identity
//!   anyway, as nginx's `gzip_static` does, rather than 406 (RFC 9110
//!   allows either, and a 406 for a page the client could probably read
//!   helps nobody).

use std::fmt;
use std::ops::RangeInclusive;

/// A content coding of a stored page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Encoding {
    /// The body as the upstream sent it.
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl Encoding {
    /// The codings a page may be stored in besides identity.
    pub const COMPRESSED: [Encoding; 3] = [Encoding::Gzip, Encoding::Br, Encoding::Zstd];

    /// The `Content-Encoding` value (and the `static_gen_compress` word).
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Identity => "identity",
            Encoding::Gzip => "gzip",
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// What a variant's file name adds to the page file's name, as
    /// `gzip_static`, `brotli_static` and `zstd_static` expect:
    /// `index.html.gz`, `index.html.br`, `index.html.zst`.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Identity => "",
            Encoding::Gzip => ".gz",
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
        }
    }

    /// The levels `static_gen_compress` accepts.
    pub fn levels(self) -> RangeInclusive<u32> {
        match self {
            Encoding::Identity => 0..=0,
            Encoding::Gzip => 1..=9,
            Encoding::Br => 0..=11,
            Encoding::Zstd => 1..=22,
        }
    }

    /// The level used when none is given.
    pub fn default_level(self) -> u32 {
        match self {
            Encoding::Identity => 0,
            Encoding::Gzip => 9,
            Encoding::Br => 11,
            Encoding::Zstd => 19,
        }
    }

    /// The level of a page's first variants, made as soon as it is stored;
    /// the configured level follows when the compressor is idle. Measured
    /// with `compress_bench` on articles of 20, 40 and 60 KB (CPU time per
    /// page, size as a share of identity): gzip 6 1.6 ms 21.9 % (9: 1.7 ms
    /// 21.8 %), brotli 6 1.7 ms 21.7 % (5: 1.5 ms 22.5 %, larger than gzip
    /// 6, so a brotli client would get gzip; 11: 57 ms 19.3 %), zstd 3
    /// 0.14 ms 23.7 % (19: 14 ms 19.7 %).
    pub fn first_level(self) -> u32 {
        match self {
            Encoding::Identity => 0,
            Encoding::Gzip => 6,
            Encoding::Br => 6,
            Encoding::Zstd => 3,
        }
    }

    /// The coding an `Accept-Encoding` token names (case-insensitive;
    /// `x-gzip` is gzip), if it is one of these.
    pub fn from_token(token: &[u8]) -> Option<Encoding> {
        [
            (&b"identity"[..], Encoding::Identity),
            (b"gzip", Encoding::Gzip),
            (b"x-gzip", Encoding::Gzip),
            (b"br", Encoding::Br),
            (b"zstd", Encoding::Zstd),
        ]
        .into_iter()
        .find(|(name, _)| token.eq_ignore_ascii_case(name))
        .map(|(_, encoding)| encoding)
    }

    /// Tie-break among candidates of equal weight and size: lower first.
    fn tie_rank(self) -> u8 {
        match self {
            Encoding::Identity => 0,
            Encoding::Br => 1,
            Encoding::Zstd => 2,
            Encoding::Gzip => 3,
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// One coding to store, at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub encoding: Encoding,
    pub level: u32,
}

impl Variant {
    pub fn new(encoding: Encoding, level: u32) -> Self {
        Variant { encoding, level }
    }
}

/// Bodies shorter than this are not compressed by default (nginx's
/// `gzip_min_length` idea: the saving would not pay for the files).
pub const DEFAULT_MIN_LENGTH: usize = 1024;

/// What to store besides the identity page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressConfig {
    /// In the order configured; each coding at most once. Empty: `off`.
    pub variants: Vec<Variant>,
    /// Bodies shorter than this many bytes are stored identity only.
    pub min_length: usize,
}

impl Default for CompressConfig {
    /// `gzip br`: gzip 9 and brotli 11.
    fn default() -> Self {
        CompressConfig {
            variants: vec![
                Variant::new(Encoding::Gzip, Encoding::Gzip.default_level()),
                Variant::new(Encoding::Br, Encoding::Br.default_level()),
            ],
            min_length: DEFAULT_MIN_LENGTH,
        }
    }
}

impl CompressConfig {
    /// `static_gen_compress off`.
    pub fn off() -> Self {
        CompressConfig {
            variants: Vec::new(),
            min_length: DEFAULT_MIN_LENGTH,
        }
    }

    pub fn is_off(&self) -> bool {
        self.variants.is_empty()
    }

    /// The first pass over a new page: each variant at most at its
    /// coding's [`Encoding::first_level`].
    pub fn first_pass(&self) -> CompressConfig {
        let variants = self
            .variants
            .iter()
            .map(|v| Variant::new(v.encoding, v.level.min(v.encoding.first_level())))
            .collect();
        CompressConfig {
            variants,
            min_length: self.min_length,
        }
    }

    /// True when variants made at `made` (a page's `levels:`) are to be
    /// made again at these levels: a coding configured above the level it
    /// was made at, or not made at all.
    pub fn improves_on(&self, made: &CompressConfig) -> bool {
        self.variants
            .iter()
            .any(|v| made.level(v.encoding).is_none_or(|level| level < v.level))
    }

    /// The variants as `static_gen_compress` writes them (`gzip=6 br=6`),
    /// for a page's `levels:` line; [`parse_compress`] reads it back.
    pub fn levels_line(&self) -> String {
        let words: Vec<String> = self
            .variants
            .iter()
            .map(|v| format!("{}={}", v.encoding, v.level))
            .collect();
        words.join(" ")
    }

    /// The level `encoding` is stored at, if it is stored.
    pub fn level(&self, encoding: Encoding) -> Option<u32> {
        self.variants
            .iter()
            .find(|v| v.encoding == encoding)
            .map(|v| v.level)
    }
}

/// A `static_gen_compress` argument that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompressConfigError {
    /// No argument at all.
    Empty,
    /// Not `off`, `gzip`, `br` or `zstd`.
    UnknownEncoding(String),
    /// A level that is not a number in the coding's range.
    BadLevel { word: String, encoding: Encoding },
    /// The coding was already named.
    Duplicate(String),
    /// `off` together with another word.
    OffNotAlone(String),
}

impl fmt::Display for CompressConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompressConfigError::Empty => f.write_str("no encoding given"),
            CompressConfigError::UnknownEncoding(word) => write!(
                f,
                "unknown encoding \"{word}\" (expected \"off\" or some of \"gzip\", \"br\", \"zstd\")"
            ),
            CompressConfigError::BadLevel { word, encoding } => {
                let levels = encoding.levels();
                write!(
                    f,
                    "invalid level in \"{word}\" ({encoding} levels are {} to {})",
                    levels.start(),
                    levels.end()
                )
            }
            CompressConfigError::Duplicate(word) => {
                write!(f, "\"{word}\" names an encoding already given")
            }
            CompressConfigError::OffNotAlone(word) => {
                write!(f, "\"{word}\" cannot be combined with \"off\"")
            }
        }
    }
}

impl std::error::Error for CompressConfigError {}

/// Parses the arguments of `static_gen_compress` (see the module's
/// documentation). The result's `min_length` is [`DEFAULT_MIN_LENGTH`].
pub fn parse_compress<S: AsRef<str>>(args: &[S]) -> Result<CompressConfig, CompressConfigError> {
    let words: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    if words.is_empty() {
        return Err(CompressConfigError::Empty);
    }
    if let Some(off) = words.iter().find(|w| w.eq_ignore_ascii_case("off")) {
        return match words.iter().find(|w| !w.eq_ignore_ascii_case("off")) {
            None if words.len() == 1 => Ok(CompressConfig::off()),
            None => Err(CompressConfigError::OffNotAlone((*off).to_string())),
            Some(other) => Err(CompressConfigError::OffNotAlone((*other).to_string())),
        };
    }
    let mut config = CompressConfig::off();
    for word in words {
        let (name, level) = match word.split_once('=') {
            Some((name, level)) => (name, Some(level)),
            None => (word, None),
        };
        let encoding = Encoding::COMPRESSED
            .into_iter()
            .find(|e| name.eq_ignore_ascii_case(e.token()))
            .ok_or_else(|| CompressConfigError::UnknownEncoding(word.to_string()))?;
        let level = match level {
            None => encoding.default_level(),
            Some(level) => level
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| level.parse::<u32>().ok())
                .flatten()
                .filter(|level| encoding.levels().contains(level))
                .ok_or_else(|| CompressConfigError::BadLevel {
                    word: word.to_string(),
                    encoding,
                })?,
        };
        if config.level(encoding).is_some() {
            return Err(CompressConfigError::Duplicate(word.to_string()));
        }
        config.variants.push(Variant::new(encoding, level));
    }
    Ok(config)
}

/// A weight (q-value) in thousandths: 0 (refused) to 1000.
type Weight = u16;

/// What the `Accept-Encoding` lines of a request say about the codings a
/// page may be stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptEncoding {
    /// Lowest weight of the elements naming each coding, indexed by
    /// [`slot`]; `None`: not named.
    named: [Option<Weight>; 4],
    /// Lowest weight of the `*` elements.
    star: Option<Weight>,
}

fn slot(encoding: Encoding) -> usize {
    match encoding {
        Encoding::Identity => 0,
        Encoding::Gzip => 1,
        Encoding::Br => 2,
        Encoding::Zstd => 3,
    }
}

impl AcceptEncoding {
    /// Parses every `Accept-Encoding` line of a request (none: no header).
    pub fn parse<V: AsRef<[u8]>>(lines: &[V]) -> Self {
        let mut accept = AcceptEncoding {
            named: [None; 4],
            star: None,
        };
        let lower = |old: Option<Weight>, q: Weight| Some(old.map_or(q, |old| old.min(q)));
        for element in lines.iter().flat_map(|l| l.as_ref().split(|&b| b == b',')) {
            let Some((token, q)) = parse_element(element) else {
                continue;
            };
            if token == b"*" {
                accept.star = lower(accept.star, q);
            } else if let Some(encoding) = Encoding::from_token(token) {
                let named = &mut accept.named[slot(encoding)];
                *named = lower(*named, q);
            }
        }
        accept
    }

    /// The weight `encoding` gets, doubled so that an identity named by
    /// neither itself nor `*` ranks 1: acceptable, below every coding
    /// named acceptable. 0: refused.
    fn rank(&self, encoding: Encoding) -> u16 {
        match (self.named[slot(encoding)].or(self.star), encoding) {
            (Some(q), _) => q * 2,
            (None, Encoding::Identity) => 1,
            (None, _) => 0,
        }
    }

    /// True when the client accepts `encoding`.
    pub fn acceptable(&self, encoding: Encoding) -> bool {
        self.rank(encoding) > 0
    }

    /// The variant to send: see the module's documentation. `identity_size`
    /// is the identity body's length, `variants` the stored variants and
    /// their lengths (an identity entry there is ignored).
    pub fn choose(&self, identity_size: u64, variants: &[(Encoding, u64)]) -> Option<Encoding> {
        std::iter::once((Encoding::Identity, identity_size))
            .chain(
                variants
                    .iter()
                    .copied()
                    .filter(|&(e, _)| e != Encoding::Identity),
            )
            .map(|(encoding, size)| (self.rank(encoding), encoding, size))
            .filter(|&(rank, _, _)| rank > 0)
            .min_by_key(|&(rank, encoding, size)| {
                (std::cmp::Reverse(rank), size, encoding.tie_rank())
            })
            .map(|(_, encoding, _)| encoding)
    }
}

/// The last `Accept-Encoding` value a worker parsed: browsers send the
/// same few values, so most HITs compare bytes instead of parsing.
#[derive(Debug, Default)]
pub struct AcceptEncodingCache {
    last: Vec<u8>,
    parsed: Option<AcceptEncoding>,
}

impl AcceptEncodingCache {
    /// What the request's `lines` say, parsed again only when they are not
    /// the one line parsed last.
    pub fn parse<V: AsRef<[u8]>>(&mut self, lines: &[V]) -> AcceptEncoding {
        let [line] = lines else {
            return AcceptEncoding::parse(lines);
        };
        let line = line.as_ref();
        match self.parsed {
            Some(parsed) if self.last == line => parsed,
            _ => {
                let parsed = AcceptEncoding::parse(&[line]);
                self.last.clear();
                self.last.extend_from_slice(line);
                self.parsed = Some(parsed);
                parsed
            }
        }
    }
}

/// [`AcceptEncoding::parse`] then [`AcceptEncoding::choose`].
pub fn negotiate<V: AsRef<[u8]>>(
    lines: &[V],
    identity_size: u64,
    variants: &[(Encoding, u64)],
) -> Option<Encoding> {
    AcceptEncoding::parse(lines).choose(identity_size, variants)
}

/// One list element: its token and weight, or `None` for an empty element
/// or one whose token is not a token.
fn parse_element(element: &[u8]) -> Option<(&[u8], Weight)> {
    let element = trim_ows(element);
    if element.is_empty() {
        return None;
    }
    let mut parts = element.split(|&b| b == b';');
    let token = trim_ows(parts.next().unwrap_or_default());
    if token.is_empty() || !token.iter().all(|&b| is_tchar(b)) {
        return None;
    }
    let mut q = None;
    for param in parts {
        let weight = trim_ows(param)
            .split_at_checked(2)
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"q="))
            .and_then(|(_, value)| parse_qvalue(value));
        match (weight, q) {
            (Some(weight), None) => q = Some(weight),
            // another parameter, a malformed or a second q
            _ => return Some((token, 0)),
        }
    }
    Some((token, q.unwrap_or(1000)))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`, in
/// thousandths.
fn parse_qvalue(value: &[u8]) -> Option<Weight> {
    let (whole, fraction) = match value.split_first()? {
        (b'0', rest) => (0, rest),
        (b'1', rest) => (1000, rest),
        _ => return None,
    };
    let digits = match fraction.split_first() {
        None => return Some(whole),
        Some((b'.', digits)) => digits,
        Some(_) => return None,
    };
    if digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut thousandths = 0;
    for i in 0..3 {
        thousandths = thousandths * 10 + digits.get(i).map_or(0, |d| Weight::from(d - b'0'));
    }
    match whole {
        0 => Some(thousandths),
        _ if thousandths == 0 => Some(1000),
        _ => None,
    }
}

fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_as_parsing_does() {
        let mut cache = AcceptEncodingCache::default();
        for lines in [
            &[&b"gzip, deflate, br, zstd"[..]][..],
            &[b"gzip, deflate, br, zstd"],
            &[b"identity"],
            &[b"gzip;q=0, br"],
            &[b"gzip", b"br;q=0"],
            &[],
            &[b"gzip;q=0, br"],
        ] {
            assert_eq!(
                cache.parse(lines),
                AcceptEncoding::parse(lines),
                "{lines:?}"
            );
        }
    }
    use Encoding::{Br, Gzip, Identity, Zstd};

    #[test]
    fn the_first_pass_is_fast_and_the_configured_levels_improve_on_it() {
        let config = parse("br gzip=4 zstd=19").unwrap();
        let first = config.first_pass();
        assert_eq!(variants(&first), [(Br, 6), (Gzip, 4), (Zstd, 3)]);
        assert_eq!(first.min_length, config.min_length);
        assert!(config.improves_on(&first));
        assert!(!config.improves_on(&config));
        assert!(!first.improves_on(&config), "never a worse level");
        assert!(
            config.improves_on(&parse("br gzip=9").unwrap()),
            "zstd missing"
        );
        // the levels line reads back as the same configuration
        assert_eq!(first.levels_line(), "br=6 gzip=4 zstd=3");
        let line = first.levels_line();
        assert_eq!(parse(&line).unwrap(), first);
        // levels at or below the first ones: one pass only
        let fast = parse("gzip=1 br=4").unwrap();
        assert_eq!(fast.first_pass(), fast);
        assert!(!fast.improves_on(&fast.first_pass()));
    }

    fn parse(args: &str) -> Result<CompressConfig, CompressConfigError> {
        parse_compress(&args.split_whitespace().collect::<Vec<_>>())
    }

    fn variants(config: &CompressConfig) -> Vec<(Encoding, u32)> {
        config
            .variants
            .iter()
            .map(|v| (v.encoding, v.level))
            .collect()
    }

    #[test]
    fn directive_words_and_default_levels() {
        assert_eq!(parse("gzip br").unwrap(), CompressConfig::default());
        assert_eq!(variants(&CompressConfig::default()), [(Gzip, 9), (Br, 11)]);
        assert_eq!(
            variants(&parse("zstd br=5 gzip=1").unwrap()),
            [(Zstd, 19), (Br, 5), (Gzip, 1)]
        );
        assert_eq!(
            variants(&parse("ZSTD=22 Br=0 GZIP=09").unwrap()),
            [(Zstd, 22), (Br, 0), (Gzip, 9)]
        );
        let off = parse("off").unwrap();
        assert!(off.is_off());
        assert_eq!(off.min_length, DEFAULT_MIN_LENGTH);
        assert_eq!(parse("br=7").unwrap().level(Br), Some(7));
        assert_eq!(parse("br=7").unwrap().level(Gzip), None);
    }

    #[test]
    fn directive_errors_name_the_word() {
        let error = |args| parse(args).unwrap_err();
        assert_eq!(error(""), CompressConfigError::Empty);
        for (args, word) in [
            ("gzip deflate", "deflate"),
            ("identity", "identity"),
            ("x-gzip", "x-gzip"),
            ("on", "on"),
            ("=9", "=9"),
        ] {
            assert_eq!(
                error(args),
                CompressConfigError::UnknownEncoding(word.into()),
                "{args}"
            );
            assert!(error(args).to_string().contains(&format!("\"{word}\"")));
        }
        for (args, word, encoding) in [
            ("gzip=0", "gzip=0", Gzip),
            ("gzip=10", "gzip=10", Gzip),
            ("br=12", "br=12", Br),
            ("br=", "br=", Br),
            ("br=-1", "br=-1", Br),
            ("br=+5", "br=+5", Br),
            ("br=5x", "br=5x", Br),
            ("br=99999999999999999999", "br=99999999999999999999", Br),
            ("zstd=0", "zstd=0", Zstd),
            ("gzip zstd=23", "zstd=23", Zstd),
            ("zstd=1=2", "zstd=1=2", Zstd),
        ] {
            assert_eq!(
                error(args),
                CompressConfigError::BadLevel {
                    word: word.into(),
                    encoding
                },
                "{args}"
            );
        }
        assert_eq!(
            error("br=12").to_string(),
            "invalid level in \"br=12\" (br levels are 0 to 11)"
        );
        assert_eq!(
            error("gzip br gzip=5"),
            CompressConfigError::Duplicate("gzip=5".into())
        );
        assert!(error("gzip br GZIP").to_string().contains("\"GZIP\""));
        assert_eq!(
            error("off gzip"),
            CompressConfigError::OffNotAlone("gzip".into())
        );
        assert_eq!(
            error("br off"),
            CompressConfigError::OffNotAlone("br".into())
        );
        assert_eq!(
            error("off off"),
            CompressConfigError::OffNotAlone("off".into())
        );
        assert!(error("off zstd").to_string().contains("\"zstd\""));
    }

    #[test]
    fn tokens_and_suffixes() {
        for encoding in [Identity, Gzip, Br, Zstd] {
            assert_eq!(
                Encoding::from_token(encoding.token().as_bytes()),
                Some(encoding)
            );
            assert_eq!(
                Encoding::from_token(encoding.token().to_uppercase().as_bytes()),
                Some(encoding)
            );
            assert!(encoding.levels().contains(&encoding.default_level()));
        }
        assert_eq!(Encoding::from_token(b"X-GZIP"), Some(Gzip));
        assert_eq!(Encoding::from_token(b"deflate"), None);
        assert_eq!(Encoding::from_token(b"*"), None);
        let suffixes: Vec<_> = [Identity, Gzip, Br, Zstd].map(Encoding::suffix).into();
        assert_eq!(suffixes, ["", ".gz", ".br", ".zst"]);
    }

    #[test]
    fn qvalues_as_rfc_9110_writes_them() {
        for (text, q) in [
            ("0", Some(0)),
            ("0.", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.125", Some(125)),
            ("0.001", Some(1)),
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.0000", None),
            ("1.001", None),
            ("1.5", None),
            ("0.1234", None),
            ("2", None),
            (".5", None),
            ("", None),
            ("0,5", None),
            ("0.5 ", None),
            ("-0", None),
            ("abc", None),
        ] {
            assert_eq!(parse_qvalue(text.as_bytes()), q, "{text:?}");
        }
    }

    const IDENTITY_SIZE: u64 = 1000;
    /// A page with every variant; br smallest, then zstd, then gzip.
    const ALL: [(Encoding, u64); 3] = [(Gzip, 300), (Br, 250), (Zstd, 280)];

    fn pick(lines: &[&str]) -> Option<Encoding> {
        negotiate(lines, IDENTITY_SIZE, &ALL)
    }

    #[test]
    fn no_header_or_empty_header_is_identity() {
        assert_eq!(pick(&[]), Some(Identity));
        assert_eq!(pick(&[""]), Some(Identity));
        assert_eq!(pick(&[" , ,\t", ""]), Some(Identity));
    }

    #[test]
    fn browsers_and_curl() {
        // Chrome and Firefox both send this (the smallest variant wins)
        assert_eq!(pick(&["gzip, deflate, br, zstd"]), Some(Br));
        let zstd_smallest = [(Gzip, 300), (Br, 250), (Zstd, 240)];
        assert_eq!(
            negotiate(&["gzip, deflate, br, zstd"], 1000, &zstd_smallest),
            Some(Zstd)
        );
        // older browsers, without zstd
        assert_eq!(pick(&["gzip, deflate, br"]), Some(Br));
        // curl --compressed (without brotli)
        assert_eq!(pick(&["deflate, gzip"]), Some(Gzip));
        // a page stored with gzip only
        assert_eq!(
            negotiate(&["gzip, deflate, br, zstd"], 1000, &[(Gzip, 300)]),
            Some(Gzip)
        );
        // or not compressed at all (smaller than static_gen's min length)
        assert_eq!(
            negotiate(&["gzip, deflate, br, zstd"], 100, &[]),
            Some(Identity)
        );
    }

    #[test]
    fn higher_q_wins_over_smaller_size() {
        assert_eq!(pick(&["gzip;q=1.0, br;q=0.5"]), Some(Gzip));
        assert_eq!(
            pick(&["br;q=0.5, gzip;q=0.8, zstd;q=0.9, identity;q=0.1"]),
            Some(Zstd)
        );
        assert_eq!(pick(&["gzip;q=0.5, identity"]), Some(Identity));
        assert_eq!(
            pick(&["gzip;q=0.001"]),
            Some(Gzip),
            "above unnamed identity"
        );
        assert_eq!(
            pick(&["gzip;q=0.5, br;q=0.5"]),
            Some(Br),
            "smaller at equal q"
        );
        let same_size = [(Gzip, 250), (Br, 250), (Zstd, 250)];
        assert_eq!(
            negotiate(&["gzip, zstd, br"], 1000, &same_size),
            Some(Br),
            "br, zstd, gzip at equal q and size"
        );
        assert_eq!(negotiate(&["gzip, zstd"], 1000, &same_size), Some(Zstd));
    }

    #[test]
    fn q_zero_refuses() {
        assert_eq!(pick(&["gzip;q=0, br;q=0, zstd;q=0"]), Some(Identity));
        assert_eq!(pick(&["gzip;q=0.000, br;q=0."]), Some(Identity));
        assert_eq!(pick(&["identity;q=0"]), None);
        assert_eq!(pick(&["identity;q=0, gzip"]), Some(Gzip));
        assert_eq!(
            negotiate(&["identity;q=0, br"], 1000, &[(Gzip, 300)]),
            None,
            "no acceptable variant stored"
        );
        assert_eq!(pick(&["gzip;q=0, br;q=0, zstd;q=0, identity;q=0"]), None);
    }

    #[test]
    fn star() {
        assert_eq!(pick(&["*"]), Some(Br));
        assert_eq!(pick(&["*;q=0.5"]), Some(Br), "identity gets 0.5 too");
        assert_eq!(pick(&["gzip;q=0, *"]), Some(Br));
        assert_eq!(pick(&["br;q=0, zstd;q=0, *;q=0.2"]), Some(Gzip));
        assert_eq!(pick(&["*;q=0.5, gzip"]), Some(Gzip));
        assert_eq!(pick(&["*;q=0.5, identity"]), Some(Identity));
        assert_eq!(pick(&["*;q=0"]), None);
        assert_eq!(pick(&["*;q=0, identity"]), Some(Identity));
        assert_eq!(pick(&["*;q=0, identity;q=0.1"]), Some(Identity));
        assert_eq!(pick(&["*;q=0, gzip"]), Some(Gzip));
        assert_eq!(pick(&["*;q=0, deflate"]), None);
        assert_eq!(pick(&["*, *;q=0"]), None, "lowest of several");
        assert_eq!(negotiate(&["*"], 1000, &[]), Some(Identity));
    }

    #[test]
    fn tokens_are_case_insensitive_and_x_gzip_is_gzip() {
        assert_eq!(pick(&["GZIP"]), Some(Gzip));
        assert_eq!(pick(&["Br;Q=0.5, GZip;q=0.4"]), Some(Br));
        assert_eq!(pick(&["ZSTD, Gzip"]), Some(Zstd));
        assert_eq!(pick(&["x-gzip"]), Some(Gzip));
        assert_eq!(pick(&["X-Gzip;q=0.3"]), Some(Gzip));
        assert_eq!(pick(&["IDENTITY;Q=0"]), None);
        assert_eq!(pick(&["gzip;q=0, x-gzip"]), Some(Identity));
    }

    #[test]
    fn unknown_encodings_only() {
        assert_eq!(pick(&["deflate"]), Some(Identity));
        assert_eq!(
            pick(&["deflate, compress, exi, pack200-gzip"]),
            Some(Identity)
        );
        assert_eq!(pick(&["deflate, identity;q=0"]), None);
    }

    #[test]
    fn duplicates_take_the_lowest_weight() {
        assert_eq!(pick(&["br;q=0.9, br;q=0"]), Some(Identity));
        assert_eq!(pick(&["br;q=0, br"]), Some(Identity));
        assert_eq!(pick(&["br;q=0.9, br;q=0, gzip;q=0.1"]), Some(Gzip));
        assert_eq!(pick(&["br, gzip, br;q=0.1"]), Some(Gzip));
        assert_eq!(pick(&["identity, identity;q=0"]), None);
    }

    #[test]
    fn malformed_weights_refuse() {
        for header in [
            "br;q=abc",
            "br;q=1.5",
            "br;q=0.1234",
            "br;q=",
            "br;q",
            "br;",
            "br;;q=1",
            "br;level=5",
            "br;q=1;q=1",
            "br;q=1;x=y",
            "br;q = 0.5",
            "br;q=0.5 x",
        ] {
            assert_eq!(
                negotiate(&[header], 1000, &[(Br, 250)]),
                Some(Identity),
                "{header}"
            );
        }
        assert_eq!(pick(&["identity;q=x"]), None);
        assert_eq!(pick(&["*;q=2"]), None);
    }

    #[test]
    fn garbage_is_ignored() {
        for header in [
            "gz ip, br",
            "\"gzip\", br",
            "gzip\u{0}, br",
            "gzip/1, br",
            ";q=1, br",
            "=, br",
            "br,,,",
            "ü, br",
        ] {
            assert_eq!(pick(&[header]), Some(Br), "{header}");
        }
        assert_eq!(
            negotiate(&[&b"\xff\xfe, gzip"[..], b"\x00;q=0"], 1000, &ALL),
            Some(Gzip)
        );
    }

    #[test]
    fn whitespace_around_elements_and_semicolons() {
        assert_eq!(pick(&[" gzip ; q=0.5 ,\tbr\t;\tq=0.4 "]), Some(Gzip));
        assert_eq!(pick(&["  br  "]), Some(Br));
        assert_eq!(pick(&["gzip;  q=0"]), Some(Identity));
    }

    #[test]
    fn several_lines_are_one_list() {
        assert_eq!(pick(&["gzip;q=0.2", "br;q=0.1"]), Some(Gzip));
        assert_eq!(pick(&["identity;q=0", "gzip"]), Some(Gzip));
        assert_eq!(pick(&["br", "br;q=0"]), Some(Identity));
        assert_eq!(pick(&["*;q=0", "identity"]), Some(Identity));
        assert_eq!(pick(&["", "gzip"]), Some(Gzip));
    }

    #[test]
    fn variants_not_stored_are_not_chosen() {
        assert_eq!(negotiate(&["br"], 1000, &[(Gzip, 300)]), Some(Identity));
        assert_eq!(
            negotiate(&["br, gzip"], 1000, &[(Identity, 1), (Gzip, 300)]),
            Some(Gzip),
            "an identity entry among the variants is ignored"
        );
        assert!(AcceptEncoding::parse(&["br"]).acceptable(Br));
        assert!(AcceptEncoding::parse(&["br"]).acceptable(Identity));
        assert!(!AcceptEncoding::parse(&["br"]).acceptable(Gzip));
        assert!(!AcceptEncoding::parse(&["br, identity;q=0"]).acceptable(Identity));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// One element of a generated header, kept as data so that the
        /// expected weights come from it, not from parsing the text.
        #[derive(Debug, Clone)]
        struct Element {
            token: &'static str,
            /// The `;q=` text, if any.
            q: Option<&'static str>,
            pad: (&'static str, &'static str),
        }

        const TOKENS: &[&str] = &[
            "gzip", "GZip", "x-gzip", "br", "BR", "zstd", "Zstd", "identity", "Identity", "*",
            "deflate", "compress",
        ];
        const QS: &[(&str, Option<Weight>)] = &[
            ("0", Some(0)),
            ("0.0", Some(0)),
            ("0.001", Some(1)),
            ("0.5", Some(500)),
            ("0.7", Some(700)),
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("1.5", None),
            ("abc", None),
            ("", None),
        ];
        const PADS: &[&str] = &["", " ", "\t", "  "];

        fn element() -> impl Strategy<Value = Element> {
            (
                proptest::sample::select(TOKENS),
                proptest::option::of(proptest::sample::select(QS)),
                proptest::sample::select(PADS),
                proptest::sample::select(PADS),
            )
                .prop_map(|(token, q, before, after)| Element {
                    token,
                    q: q.map(|(text, _)| text),
                    pad: (before, after),
                })
        }

        fn render(element: &Element) -> String {
            let q = element.q.map(|q| format!(";q={q}")).unwrap_or_default();
            format!("{}{}{q}{}", element.pad.0, element.token, element.pad.1)
        }

        /// The weight (thousandths) an element gives; invalid q: 0.
        fn weight(element: &Element) -> Weight {
            match element.q {
                None => 1000,
                Some(text) => QS
                    .iter()
                    .find(|(t, _)| *t == text)
                    .and_then(|(_, q)| *q)
                    .unwrap_or(0),
            }
        }

        /// The expected rank of `encoding`: twice its weight, 1 for an
        /// identity named by nothing, 0 when refused.
        fn expected_rank(elements: &[Element], encoding: Encoding) -> u16 {
            let names = |e: &Element| match encoding {
                Gzip => ["gzip", "x-gzip"]
                    .iter()
                    .any(|t| e.token.eq_ignore_ascii_case(t)),
                _ => e.token.eq_ignore_ascii_case(encoding.token()),
            };
            let lowest =
                |f: &dyn Fn(&Element) -> bool| elements.iter().filter(|e| f(e)).map(weight).min();
            match lowest(&names).or_else(|| lowest(&|e: &Element| e.token == "*")) {
                Some(q) => 2 * q,
                None if encoding == Identity => 1,
                None => 0,
            }
        }

        fn stored() -> impl Strategy<Value = Vec<(Encoding, u64)>> {
            proptest::collection::vec(
                (proptest::sample::select(&[Gzip, Br, Zstd][..]), 1u64..1200),
                0..4,
            )
            .prop_map(|mut v| {
                v.sort_by_key(|&(e, _)| e);
                v.dedup_by_key(|&mut (e, _)| e);
                v
            })
        }

        proptest! {
            #[test]
            fn never_panics_on_any_bytes(
                lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4),
                identity in any::<u64>(),
                variants in stored(),
            ) {
                let choice = negotiate(&lines, identity, &variants);
                if let Some(encoding) = choice {
                    prop_assert!(
                        encoding == Identity || variants.iter().any(|&(e, _)| e == encoding)
                    );
                }
            }

            #[test]
            fn the_choice_is_acceptable_and_best(
                elements in proptest::collection::vec(element(), 0..8),
                split in 0usize..8,
                identity in 1u64..1200,
                variants in stored(),
            ) {
                let rendered: Vec<String> = elements.iter().map(render).collect();
                let split = split.min(rendered.len());
                let lines = [rendered[..split].join(","), rendered[split..].join(", ")];
                let candidates: Vec<(Encoding, u64, u16)> = std::iter::once((Identity, identity))
                    .chain(variants.iter().copied())
                    .map(|(e, size)| (e, size, expected_rank(&elements, e)))
                    .filter(|&(_, _, rank)| rank > 0)
                    .collect();
                match negotiate(&lines, identity, &variants) {
                    None => prop_assert!(candidates.is_empty(), "{lines:?}"),
                    Some(chosen) => {
                        let &(_, size, rank) = candidates
                            .iter()
                            .find(|c| c.0 == chosen)
                            .expect("the choice is acceptable");
                        for &(other, other_size, other_rank) in &candidates {
                            prop_assert!(
                                other_rank < rank || (other_rank == rank && other_size >= size),
                                "{lines:?}: {chosen:?} chosen over {other:?}"
                            );
                        }
                    }
                }
            }

            #[test]
            fn order_of_elements_does_not_matter(
                elements in proptest::collection::vec(element(), 0..8),
                variants in stored(),
            ) {
                let forward: Vec<String> = elements.iter().map(render).collect();
                let backward: Vec<String> = forward.iter().rev().cloned().collect();
                prop_assert_eq!(
                    negotiate(&[forward.join(",")], 1000, &variants),
                    negotiate(&[backward.join(",")], 1000, &variants)
                );
            }
        }
    }
}
