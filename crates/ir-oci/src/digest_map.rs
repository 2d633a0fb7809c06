//! An immutable map keyed by digest, built once per load.

use std::ops::Index;

use crate::digest::Digest;

/// A map from digests to values, frozen when built: a sorted boxed slice
/// searched by bisection.
///
/// The model is built once and then only read, so it needs no room to
/// grow: against a `HashMap` this saves the empty buckets (a hash table is
/// up to half empty) and 32 bytes of header per map, which for registries
/// of many small applications is most of the model's memory. A lookup
/// compares at most log2(n) + 1 digests, which for the largest application
/// the loader accepts (a million descriptors) is 21 comparisons of 33
/// bytes.
#[derive(Debug, Clone)]
pub struct DigestMap<V> {
    entries: Box<[(Digest, V)]>,
}

impl<V> Default for DigestMap<V> {
    fn default() -> Self {
        DigestMap {
            entries: Box::new([]),
        }
    }
}

impl<V> DigestMap<V> {
    fn position(&self, digest: &Digest) -> Option<usize> {
        self.entries.binary_search_by(|(d, _)| d.cmp(digest)).ok()
    }

    /// The value for `digest`.
    pub fn get(&self, digest: &Digest) -> Option<&V> {
        self.position(digest).map(|i| &self.entries[i].1)
    }

    /// The stored key and the value for `digest`.
    pub fn get_key_value(&self, digest: &Digest) -> Option<(&Digest, &V)> {
        self.position(digest).map(|i| {
            let (d, v) = &self.entries[i];
            (d, v)
        })
    }

    /// True when `digest` is a key.
    pub fn contains_key(&self, digest: &Digest) -> bool {
        self.position(digest).is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in digest order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Digest, &V)> {
        self.entries.iter().map(|(d, v)| (d, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Digest> {
        self.entries.iter().map(|(d, _)| d)
    }

    /// Values in key order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<V> FromIterator<(Digest, V)> for DigestMap<V> {
    /// Builds the map; of several entries with the same digest, the last
    /// one stays (as with inserting into a map one after the other).
    fn from_iter<I: IntoIterator<Item = (Digest, V)>>(iter: I) -> Self {
        let mut entries: Vec<(Digest, V)> = iter.into_iter().collect();
        // Stable: equal keys keep their order, so dedup can keep the last.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.reverse();
        entries.dedup_by(|a, b| a.0 == b.0);
        entries.reverse();
        DigestMap {
            entries: entries.into_boxed_slice(),
        }
    }
}

impl<V> Index<&Digest> for DigestMap<V> {
    type Output = V;
    fn index(&self, digest: &Digest) -> &V {
        self.get(digest).expect("digest not in the map")
    }
}

impl<'a, V> IntoIterator for &'a DigestMap<V> {
    type Item = (&'a Digest, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Digest, V)>,
        fn(&'a (Digest, V)) -> (&'a Digest, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(d, v)| (d, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;

    fn d(n: u32) -> Digest {
        Digest::of_bytes(Algorithm::Sha256, &n.to_le_bytes())
    }

    #[test]
    fn finds_every_key_and_nothing_else() {
        let map: DigestMap<u32> = (0..1000).map(|n| (d(n), n)).collect();
        assert_eq!(map.len(), 1000);
        for n in 0..1000 {
            assert_eq!(map.get(&d(n)), Some(&n));
            assert!(map.contains_key(&d(n)));
            assert_eq!(map[&d(n)], n);
        }
        assert_eq!(map.get(&d(1000)), None);
        let sha512 = Digest::of_bytes(Algorithm::Sha512, b"x");
        assert!(!map.contains_key(&sha512));
        let keys: Vec<&Digest> = map.keys().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn last_duplicate_wins_and_empty_works() {
        let map: DigestMap<&str> = [(d(1), "first"), (d(2), "other"), (d(1), "last")]
            .into_iter()
            .collect();
        assert_eq!(map.len(), 2);
        assert_eq!(map[&d(1)], "last");
        let empty: DigestMap<()> = DigestMap::default();
        assert!(empty.is_empty() && empty.get(&d(1)).is_none());
    }
}
