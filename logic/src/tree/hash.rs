//! Hashing of page paths: 64-bit FNV-1a, byte by byte, so that a path's
//! prefixes hash as it goes (a page's keys, [`super::PageKeys`]); and the
//! hashers of the worker's maps, which must cost a HIT little: FNV-1a for
//! path bytes, and the key itself for keys that are such hashes already.

use std::hash::{BuildHasherDefault, Hasher};

/// 64-bit FNV-1a.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Fnv {
    pub const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Self {
        Fnv(Self::OFFSET)
    }

    pub fn push(&mut self, byte: u8) {
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(Self::PRIME);
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        bytes.iter().for_each(|&b| self.push(b));
    }
}

/// For maps keyed by paths (few, chosen by the configuration).
pub type BuildFnv = BuildHasherDefault<Fnv>;

/// For maps keyed by a hash already ([`super::path_key`], a tree's id):
/// the key is its own hash, mixed so that its high bits count too.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut fnv = Fnv(self.0 ^ Fnv::OFFSET);
        fnv.write(bytes);
        self.0 = fnv.0;
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = (key ^ (key >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    }
}

pub type BuildKey = BuildHasherDefault<KeyHasher>;
