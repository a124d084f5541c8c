//! Page tags (surrogate keys): the upstream names the objects a page
//! shows in `X-Static-Gen-Tags`, and a purge by tag (`?tag=article-12`)
//! covers every page that carries it.
//!
//! A tag is 1 to [`MAX_TAG_LEN`] bytes of visible ASCII other than `,`; in
//! the header, tags are separated by spaces and/or commas, and all the
//! header's values together hold at most [`MAX_TAGS_BYTES`]. A tag is only
//! ever hashed into a purge-mark key (`tree::tag_key`), never used as a
//! path: no tag can name a file.

/// Longest tag.
pub const MAX_TAG_LEN: usize = 128;
/// Most bytes of tag header values per page.
pub const MAX_TAGS_BYTES: usize = 16 * 1024;
/// Most tags in one purge request.
pub const MAX_PURGE_TAGS: usize = 256;

/// Why tags cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagError {
    /// An empty tag (`a,,b` in a purge, `tag=`).
    Empty,
    /// A tag longer than [`MAX_TAG_LEN`].
    TooLong,
    /// A byte other than visible ASCII, or a `,` inside a purge's tag.
    InvalidByte(u8),
    /// More than [`MAX_TAGS_BYTES`] in a page's headers.
    TooLarge,
    /// More than [`MAX_PURGE_TAGS`] in one purge.
    TooMany,
}

impl std::fmt::Display for TagError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TagError::Empty => f.write_str("empty tag"),
            TagError::TooLong => write!(f, "tag longer than {MAX_TAG_LEN} bytes"),
            TagError::InvalidByte(b) => write!(f, "invalid byte 0x{b:02x} in a tag"),
            TagError::TooLarge => write!(f, "tags longer than {MAX_TAGS_BYTES} bytes in all"),
            TagError::TooMany => write!(f, "more than {MAX_PURGE_TAGS} tags"),
        }
    }
}

impl std::error::Error for TagError {}

/// The tags of a page, in the order first seen, without duplicates; kept
/// as the page header's line value (tags separated by one space).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags {
    joined: Vec<u8>,
}

impl Tags {
    /// No tags.
    pub const NONE: Tags = Tags { joined: Vec::new() };

    /// The tags of a response: every `X-Static-Gen-Tags` value, split on
    /// spaces, tabs and commas.
    pub fn from_header_values<'a>(
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Tags, TagError> {
        let mut tags = Tags::default();
        let mut total = 0;
        for value in values {
            total += value.len();
            if total > MAX_TAGS_BYTES {
                return Err(TagError::TooLarge);
            }
            for tag in value.split(|&b| matches!(b, b' ' | b'\t' | b',')) {
                if !tag.is_empty() {
                    check_tag(tag)?;
                    tags.add(tag);
                }
            }
        }
        Ok(tags)
    }

    /// The tags of a page header's `tags:` line (written by this module).
    pub fn from_line(line: &[u8]) -> Tags {
        let mut tags = Tags::default();
        line.split(|&b| b == b' ')
            .filter(|t| check_tag(t).is_ok())
            .for_each(|t| tags.add(t));
        tags
    }

    fn add(&mut self, tag: &[u8]) {
        if self.iter().any(|t| t == tag) {
            return;
        }
        if !self.joined.is_empty() {
            self.joined.push(b' ');
        }
        self.joined.extend_from_slice(tag);
    }

    pub fn is_empty(&self) -> bool {
        self.joined.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.joined.split(|&b| b == b' ').filter(|t| !t.is_empty())
    }

    /// The tags separated by one space, as the page header keeps them.
    pub fn as_line(&self) -> &[u8] {
        &self.joined
    }
}

/// Checks one tag: 1-128 bytes of visible ASCII, no `,`.
pub fn check_tag(tag: &[u8]) -> Result<(), TagError> {
    if tag.is_empty() {
        return Err(TagError::Empty);
    }
    if tag.len() > MAX_TAG_LEN {
        return Err(TagError::TooLong);
    }
    match tag
        .iter()
        .find(|&&b| !(0x21..=0x7e).contains(&b) || b == b',')
    {
        Some(&b) => Err(TagError::InvalidByte(b)),
        None => Ok(()),
    }
}

/// Adds the tags of one purge argument (already percent-decoded; several
/// separated by commas) to `tags`, strictly: an empty or invalid one fails.
pub fn add_purge_value(tags: &mut Vec<Vec<u8>>, value: &[u8]) -> Result<(), TagError> {
    for tag in value.split(|&b| b == b',') {
        check_tag(tag)?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_vec());
        }
        if tags.len() > MAX_PURGE_TAGS {
            return Err(TagError::TooMany);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(values: &[&str]) -> Result<Vec<String>, TagError> {
        Tags::from_header_values(values.iter().map(|v| v.as_bytes())).map(|tags| {
            tags.iter()
                .map(|t| String::from_utf8(t.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn header_values_split_on_spaces_and_commas() {
        assert_eq!(
            header(&["article-12 category-3, home", "home,x\ty"]),
            Ok(vec![
                "article-12".into(),
                "category-3".into(),
                "home".into(),
                "x".into(),
                "y".into()
            ])
        );
        assert_eq!(header(&[]), Ok(vec![]));
        assert_eq!(header(&[" , ,"]), Ok(vec![]));
        assert_eq!(header(&["a\u{e9}"]), Err(TagError::InvalidByte(0xc3)));
        assert_eq!(header(&["a\x01b"]), Err(TagError::InvalidByte(1)));
        assert_eq!(header(&[&"x".repeat(129)]), Err(TagError::TooLong));
        assert!(header(&[&"x".repeat(128)]).is_ok());
    }

    #[test]
    fn at_most_16_kb_of_header_values() {
        let tag = "t".repeat(127);
        let value = |n: usize| {
            (0..n)
                .map(|i| format!("{}{i:03}", &tag[..125]))
                .collect::<Vec<_>>()
                .join(" ")
        };
        // 128 tags of 128 bytes and their separators: 16,511 bytes
        assert_eq!(header(&[&value(128)]), Err(TagError::TooLarge));
        assert_eq!(header(&[&value(127)]).unwrap().len(), 127);
        let half = value(64);
        assert_eq!(header(&[&half, &half]), Err(TagError::TooLarge));
    }

    #[test]
    fn line_round_trip() {
        let tags = Tags::from_header_values([&b"b a,b  c"[..]]).unwrap();
        assert_eq!(tags.as_line(), b"b a c");
        assert_eq!(Tags::from_line(tags.as_line()), tags);
    }

    #[test]
    fn purge_values() {
        let mut tags = Vec::new();
        add_purge_value(&mut tags, b"a,b").unwrap();
        add_purge_value(&mut tags, b"b").unwrap();
        assert_eq!(tags, [b"a".to_vec(), b"b".to_vec()]);
        for (bad, error) in [
            (&b""[..], TagError::Empty),
            (b"a,,b", TagError::Empty),
            (b"a,", TagError::Empty),
            (b"a b", TagError::InvalidByte(b' ')),
            (b"../x\0", TagError::InvalidByte(0)),
            (b"\xff", TagError::InvalidByte(0xff)),
        ] {
            assert_eq!(add_purge_value(&mut Vec::new(), bad), Err(error), "{bad:?}");
        }
        assert_eq!(
            add_purge_value(&mut Vec::new(), &[b'x'; 200]),
            Err(TagError::TooLong)
        );
        let many: Vec<String> = (0..=MAX_PURGE_TAGS).map(|i| i.to_string()).collect();
        assert_eq!(
            add_purge_value(&mut Vec::new(), many.join(",").as_bytes()),
            Err(TagError::TooMany)
        );
    }
}
