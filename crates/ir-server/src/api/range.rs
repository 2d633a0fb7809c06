//! `Range` header handling for blobs (RFC 9110 §14).
//!
//! One satisfiable range is answered with 206. Several ranges are answered
//! with a single 200 of the whole blob, which RFC 9110 allows (a server may
//! ignore `Range`); registry clients only ever ask for one range, and this
//! keeps multipart bodies, and the amplification they invite, out of the
//! server. A header that does not parse is ignored the same way.

/// Most ranges read from one header before it is ignored as abusive.
pub const MAX_RANGES: usize = 64;

/// What to answer for a `Range` header against content of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Send everything with 200.
    Full,
    /// Send bytes `start..=end` with 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// 416 with `Content-Range: bytes */size`.
    Unsatisfiable,
}

/// Evaluates `header` (the `Range` value) for content of `size` bytes.
pub fn evaluate(header: &str, size: u64) -> RangeOutcome {
    let Some(set) = header.trim().strip_prefix("bytes=") else {
        return RangeOutcome::Full; // unknown unit: ignore
    };
    let mut satisfiable = None;
    let mut count = 0usize;
    for spec in set.split(',') {
        count += 1;
        if count > MAX_RANGES {
            return RangeOutcome::Full;
        }
        let Some(r) = parse_spec(spec.trim()) else {
            return RangeOutcome::Full; // malformed: ignore the header
        };
        if let Some((start, end)) = resolve(r, size) {
            if satisfiable.is_some() {
                return RangeOutcome::Full; // several ranges: whole blob
            }
            satisfiable = Some((start, end));
        }
    }
    match satisfiable {
        Some((start, end)) => RangeOutcome::Partial { start, end },
        None => RangeOutcome::Unsatisfiable,
    }
}

enum Spec {
    FromTo(u64, Option<u64>),
    Suffix(u64),
}

fn number(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_spec(s: &str) -> Option<Spec> {
    let (a, b) = s.split_once('-')?;
    if a.is_empty() {
        return number(b).map(Spec::Suffix);
    }
    let first = number(a)?;
    if b.is_empty() {
        return Some(Spec::FromTo(first, None));
    }
    let last = number(b)?;
    (last >= first).then_some(Spec::FromTo(first, Some(last)))
}

fn resolve(spec: Spec, size: u64) -> Option<(u64, u64)> {
    match spec {
        Spec::FromTo(first, last) if first < size => {
            Some((first, last.map_or(size - 1, |l| l.min(size - 1))))
        }
        Spec::FromTo(..) => None,
        Spec::Suffix(0) => None,
        Spec::Suffix(n) if size > 0 => Some((size.saturating_sub(n), size - 1)),
        Spec::Suffix(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::*;

    #[test]
    fn single_ranges() {
        assert_eq!(evaluate("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(evaluate("bytes=90-", 100), Partial { start: 90, end: 99 });
        assert_eq!(evaluate("bytes=-10", 100), Partial { start: 90, end: 99 });
        assert_eq!(evaluate("bytes=-1000", 100), Partial { start: 0, end: 99 });
        assert_eq!(
            evaluate("bytes=50-1000", 100),
            Partial { start: 50, end: 99 }
        );
        assert_eq!(evaluate(" bytes=5-5 ", 100), Partial { start: 5, end: 5 });
    }

    #[test]
    fn unsatisfiable() {
        assert_eq!(evaluate("bytes=100-", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=200-300", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=-0", 100), Unsatisfiable);
        assert_eq!(evaluate("bytes=0-", 0), Unsatisfiable);
        assert_eq!(evaluate("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn ignored_headers_give_full() {
        assert_eq!(evaluate("items=0-1", 100), Full);
        assert_eq!(evaluate("bytes=abc", 100), Full);
        assert_eq!(evaluate("bytes=5-1", 100), Full);
        assert_eq!(evaluate("bytes=0-1,5-6", 100), Full);
        assert_eq!(evaluate("bytes=99999999999999999999-", 100), Full);
        let many = format!("bytes={}", vec!["0-0"; 10_000].join(","));
        assert_eq!(evaluate(&many, 100), Full);
        // one satisfiable among unsatisfiable ones is still a single range
        assert_eq!(
            evaluate("bytes=0-1,500-600", 100),
            Partial { start: 0, end: 1 }
        );
    }
}
