//! Lexicographic split points for work stealing.
//!
//! Names are read as numbers in base `|alphabet| + 2` (digit 0 marks the end of a string, so
//! a prefix sorts before its extensions); the split points are spread evenly between the
//! two bounds and turned back into strings. Written here because no crate does this; it is
//! the same idea as Google DataFlux's midpoint, generalised to `k` parts, and it never has to
//! be exact: [`split_points`] only returns points that lie strictly between the bounds in
//! string order, so any points it gives partition a range without loss or overlap.

/// Digits carried past the common prefix of the two bounds (fits `u128` for base ≤ 128).
const DIGITS: usize = 18;
/// Largest alphabet kept (base = alphabet + 2 ≤ 128).
const MAX_ALPHABET: usize = 126;

/// Up to `parts - 1` strictly increasing points `p` with `lo < p` and `p < hi` (or, when
/// `hi` is `None`, `p` no greater than any name that starts with `prefix`... that is, every
/// point keeps `prefix`). Ranges `(lo, p1], (p1, p2], …, (pn, hi]` then cover `(lo, hi]`.
///
/// `alphabet` holds characters seen in names so far; characters of the bounds are added.
///
/// ```
/// use dataflux::split::split_points;
/// let pts = split_points("img/", "img/000", Some("img/999"), 3, &['0', '9']);
/// assert_eq!(pts.len(), 2);
/// assert!(pts.iter().all(|p| p.as_str() > "img/000" && p.as_str() < "img/999"));
/// assert!(pts[0] < pts[1]);
/// ```
pub fn split_points(
    prefix: &str,
    lo: &str,
    hi: Option<&str>,
    parts: usize,
    alphabet: &[char],
) -> Vec<String> {
    if parts < 2 {
        return Vec::new();
    }
    let Some(numbering) = Numbering::new(lo, hi, prefix, alphabet) else {
        return Vec::new();
    };
    let lo_num = numbering.num(lo);
    let hi_num = match hi {
        Some(h) => numbering.num(h),
        None => numbering.base.pow(DIGITS as u32) - 1,
    };
    if hi_num <= lo_num {
        return Vec::new();
    }
    let span = hi_num - lo_num;
    let mut points: Vec<String> = Vec::with_capacity(parts - 1);
    for i in 1..parts as u128 {
        let k = parts as u128;
        let num = lo_num + span / k * i + span % k * i / k;
        // Digit 0 inside a number and the past-the-end digit map to the nearest character.
        let s = numbering.string(num);
        let above_lo = s.as_str() > lo;
        let below_hi = match hi {
            Some(h) => s.as_str() < h,
            None => s.starts_with(prefix),
        };
        let increasing = points.last().is_none_or(|p| p.as_str() < s.as_str());
        if above_lo && below_hi && increasing {
            points.push(s);
        }
    }
    points
}

/// The point `fraction` of the way from `lo` to `hi` (`0 < fraction < 1`), read with the same
/// numbering as [`split_points`], if one lies strictly between them.
///
/// ```
/// use dataflux::split::split_at;
/// let alphabet: Vec<char> = "0123456789.gjp".chars().collect();
/// let p = split_at("i/", "i/0000.jpg", "i/9999.jpg", 0.1, &alphabet).unwrap();
/// assert!(p.as_str() > "i/0800" && p.as_str() < "i/1200", "{p}");
/// ```
pub fn split_at(
    prefix: &str,
    lo: &str,
    hi: &str,
    fraction: f64,
    alphabet: &[char],
) -> Option<String> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return None;
    }
    let numbering = Numbering::new(lo, Some(hi), prefix, alphabet)?;
    let (lo_num, hi_num) = (numbering.num(lo), numbering.num(hi));
    let span = hi_num.checked_sub(lo_num).filter(|s| *s > 1)?;
    let step = ((span as f64 * fraction) as u128).clamp(1, span - 1);
    let s = numbering.string(lo_num + step);
    (s.as_str() > lo && s.as_str() < hi).then_some(s)
}

/// Names read as `DIGITS`-digit numbers in base `|alphabet| + 2` past the common head of two
/// bounds (digit 0 ends a string, so a prefix sorts before its extensions).
struct Numbering {
    head: String,
    common: usize,
    alpha: Vec<char>,
    base: u128,
}

impl Numbering {
    /// The numbering of the range `(lo, hi]` (`hi = None`: every name under `prefix`), with
    /// `alphabet` and the bounds' own characters; `None` when there are no characters at all.
    fn new(lo: &str, hi: Option<&str>, prefix: &str, alphabet: &[char]) -> Option<Self> {
        let mut alpha: Vec<char> = alphabet
            .iter()
            .copied()
            .chain(lo.chars())
            .chain(hi.into_iter().flat_map(str::chars))
            .collect();
        alpha.sort_unstable();
        alpha.dedup();
        if alpha.is_empty() {
            return None;
        }
        if alpha.len() > MAX_ALPHABET {
            let step = alpha.len() as f64 / MAX_ALPHABET as f64;
            alpha = (0..MAX_ALPHABET)
                .map(|i| alpha[(i as f64 * step) as usize])
                .collect();
        }
        let lo_chars: Vec<char> = lo.chars().collect();
        let max_char = *alpha.last()?;
        // Without an upper bound, the range ends with the largest name under `prefix`.
        let hi_chars: Vec<char> = match hi {
            Some(h) => h.chars().collect(),
            None => prefix
                .chars()
                .chain(std::iter::repeat_n(max_char, lo_chars.len() + DIGITS))
                .collect(),
        };
        let common = lo_chars
            .iter()
            .zip(&hi_chars)
            .take_while(|(a, b)| a == b)
            .count();
        Some(Self {
            head: lo_chars[..common].iter().collect(),
            common,
            base: alpha.len() as u128 + 2,
            alpha,
        })
    }

    fn digit(&self, c: Option<&char>) -> u128 {
        match c {
            None => 0,
            // Insertion index: monotone for characters outside the alphabet too.
            Some(c) => self.alpha.partition_point(|a| a < c) as u128 + 1,
        }
    }

    /// The number of `name` (its characters past the common head; names that do not share
    /// the head still map monotonically as long as they lie between the bounds).
    fn num(&self, name: &str) -> u128 {
        let chars: Vec<char> = name.chars().skip(self.common).take(DIGITS).collect();
        (0..DIGITS).fold(0u128, |acc, i| acc * self.base + self.digit(chars.get(i)))
    }

    /// The head followed by the characters of `num`'s digits (trailing zeros dropped).
    fn string(&self, num: u128) -> String {
        number_to_string(&self.head, num, self.base, &self.alpha)
    }
}

/// Up to `count` strictly increasing points above the last of `page` (a page of names just
/// listed, in order), spaced as far apart as the page spans, all keeping `prefix`.
///
/// For an open-ended range an even split has no real upper bound to aim at: padding with the
/// largest character puts nearly every point past the last name, and each empty piece costs
/// a request. Assuming the names go on as densely as the page just listed cuts pieces of
/// about one page each. Names are read as mixed-radix numbers, one radix per character
/// position, learned from the page (a position that held only digits counts in base 10), so
/// `…/000999.jpg` + one page of 1,000 is `…/001999.jpg`. The caller keeps the last piece
/// open-ended, so nothing depends on the guess being right.
///
/// ```
/// use dataflux::split::extrapolate_points;
/// let page: Vec<String> = (0..1000).map(|i| format!("i/{:06}.jpg", i)).collect();
/// let pts = extrapolate_points("i/", &page, 3);
/// assert_eq!(pts, ["i/001998.jpg", "i/002997.jpg", "i/003996.jpg"]);
/// ```
pub fn extrapolate_points<S: AsRef<str>>(prefix: &str, page: &[S], count: usize) -> Vec<String> {
    let multiples: Vec<u128> = (1..=count as u128).collect();
    extrapolate_at(prefix, page, &multiples)
}

/// Points above the last of `page` at the given multiples of the page's span: multiple `m`
/// is where the names would reach after `m` more pages as dense as this one (see
/// [`extrapolate_points`]). Multiples must increase; points that would not increase, would
/// leave `prefix` or fall outside the positions learned from the page are left out, so fewer
/// points than multiples may come back.
///
/// ```
/// use dataflux::split::extrapolate_at;
/// let page: Vec<String> = (0..1000).map(|i| format!("i/{:06}.jpg", i)).collect();
/// // Geometric pieces: 1, 2 and 4 pages further on.
/// assert_eq!(
///     extrapolate_at("i/", &page, &[1, 3, 7]),
///     ["i/001998.jpg", "i/003996.jpg", "i/007992.jpg"]
/// );
/// ```
pub fn extrapolate_at<S: AsRef<str>>(prefix: &str, page: &[S], multiples: &[u128]) -> Vec<String> {
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Vec::new();
    };
    let (first, last) = (first.as_ref(), last.as_ref());
    let Some(radix) = Radix::learn(prefix, page) else {
        return Vec::new();
    };
    let (lo, hi) = (radix.num(first), radix.num(last));
    let width = hi.saturating_sub(lo);
    let mut points: Vec<String> = Vec::with_capacity(multiples.len());
    for &m in multiples {
        let Some(s) = width
            .checked_mul(m)
            .and_then(|w| w.checked_add(hi))
            .and_then(|n| radix.name(n))
        else {
            break;
        };
        let increasing = points
            .last()
            .map_or(s.as_str() > last, |p| p.as_str() < s.as_str());
        if increasing && s.starts_with(prefix) {
            points.push(s);
        }
    }
    points
}

/// Names read as mixed-radix numbers, one radix per character position past a head, learned
/// from a page of names (see [`extrapolate_points`]): `…/000999.jpg` and `…/001000.jpg` are
/// one apart, so fractions of a range of numbered names are fractions of its names.
///
/// ```
/// use dataflux::split::Radix;
/// let page: Vec<String> = (0..1000).map(|i| format!("i/{:06}.jpg", i)).collect();
/// let radix = Radix::learn("i/", &page).unwrap();
/// let left = radix.pages_left(&page[0], &page[999], &page[999], "i/009999.jpg").unwrap();
/// assert!((left - 9.0).abs() < 0.01, "{left}");
/// assert_eq!(radix.between("i/000999.jpg", "i/009999.jpg", 0.5).as_deref(), Some("i/005499.jpg"));
/// assert!(!radix.covers("j/000001.jpg"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Radix {
    head: String,
    alphabets: Vec<Vec<char>>,
    limit: u128,
}

impl Radix {
    /// The numbering of `page` (names in ascending order, all under `prefix`); `None` when
    /// the page has fewer than two distinct names.
    pub fn learn<S: AsRef<str>>(prefix: &str, page: &[S]) -> Option<Self> {
        let (first, last) = (page.first()?.as_ref(), page.last()?.as_ref());
        if first >= last {
            return None;
        }
        // The shared head, backed off over trailing letters and digits so that carries can
        // run into them (`…/00000` of `…/000139` and `…/006999`).
        let mut head_len = first
            .char_indices()
            .zip(last.chars())
            .take_while(|((_, a), b)| a == b)
            .last()
            .map_or(0, |((i, c), _)| i + c.len_utf8());
        while head_len > prefix.len() {
            match first[..head_len].chars().next_back() {
                Some(c) if c.is_ascii_alphanumeric() => head_len -= c.len_utf8(),
                _ => break,
            }
        }
        let mut seen_at: Vec<Vec<char>> = Vec::new();
        for name in page {
            for (pos, c) in name
                .as_ref()
                .get(head_len..)
                .unwrap_or("")
                .chars()
                .enumerate()
            {
                if pos == seen_at.len() {
                    seen_at.push(Vec::new());
                }
                if !seen_at[pos].contains(&c) {
                    seen_at[pos].push(c);
                }
            }
        }
        // Hex names (ids, hashes): a position that held both digits and `a`–`f` only. Then
        // the positions that held only digits so far count in base 16 too: a page of random
        // hex ids often starts with the same digit.
        let is_hex = |c: &char| c.is_ascii_digit() || ('a'..='f').contains(c);
        let hex = seen_at.iter().any(|seen| {
            seen.iter().all(is_hex)
                && seen.iter().any(char::is_ascii_digit)
                && seen.iter().any(char::is_ascii_lowercase)
        });
        // One alphabet per position, widened to its class: digits (or hex), lower or upper
        // case letters.
        let mut alphabets: Vec<Vec<char>> = Vec::new();
        let mut limit: u128 = 1;
        for mut seen in seen_at {
            seen.sort_unstable();
            let alphabet: Vec<char> = if hex && seen.iter().all(is_hex) {
                ('0'..='9').chain('a'..='f').collect()
            } else if seen.iter().all(char::is_ascii_digit) {
                ('0'..='9').collect()
            } else if seen.iter().all(char::is_ascii_lowercase) {
                ('a'..='z').collect()
            } else if seen.iter().all(char::is_ascii_uppercase) {
                ('A'..='Z').collect()
            } else {
                seen
            };
            match limit.checked_mul(alphabet.len() as u128) {
                Some(l) if l < (1u128 << 100) => limit = l,
                _ => break,
            }
            alphabets.push(alphabet);
        }
        Some(Self {
            head: first[..head_len].to_string(),
            alphabets,
            limit,
        })
    }

    /// Whether `name` is a numeral of this numbering: it starts with the head and each of
    /// its next characters is in its position's alphabet, so that its number says where it
    /// lies among the names like the page's. Other names only get the first or the last
    /// number (`…/cam-1/g42…` is not a number of `…/cam-1/000123.jpg`'s digits).
    ///
    /// ```
    /// use dataflux::split::Radix;
    /// let radix = Radix::learn("i/", &["i/000100.jpg", "i/000199.jpg"]).unwrap();
    /// assert!(radix.covers("i/000150.jpg"));
    /// assert!(radix.covers("i/0005"));
    /// assert!(!radix.covers("i/00g500.jpg"));
    /// assert!(!radix.covers("j/000150.jpg"));
    /// ```
    pub fn covers(&self, name: &str) -> bool {
        name.strip_prefix(self.head.as_str()).is_some_and(|tail| {
            tail.chars()
                .zip(&self.alphabets)
                .all(|(c, alpha)| alpha.binary_search(&c).is_ok())
        })
    }

    /// The number of `name`: monotone in name order (names before the head are 0, names
    /// after every name with the head are the largest number).
    pub fn num(&self, name: &str) -> u128 {
        let Some(tail) = name.strip_prefix(self.head.as_str()) else {
            return if name < self.head.as_str() {
                0
            } else {
                self.limit - 1
            };
        };
        let mut chars = tail.chars();
        self.alphabets.iter().fold(0u128, |acc, alpha| {
            let d = chars.next().map_or(0, |c| {
                alpha.partition_point(|a| *a < c).min(alpha.len() - 1)
            });
            acc * alpha.len() as u128 + d as u128
        })
    }

    /// The name of `num`, if it is below the numbering's limit.
    pub fn name(&self, num: u128) -> Option<String> {
        if num >= self.limit {
            return None;
        }
        let mut n = num;
        let mut chars = vec![' '; self.alphabets.len()];
        for (pos, alpha) in self.alphabets.iter().enumerate().rev() {
            let radix = alpha.len() as u128;
            chars[pos] = alpha[(n % radix) as usize];
            n /= radix;
        }
        Some(self.head.chars().chain(chars).collect())
    }

    /// How many pages as dense as the one from `first` to `last` fill `(from, hi]`; `None`
    /// when the page's ends are one number.
    pub fn pages_left(&self, first: &str, last: &str, from: &str, hi: &str) -> Option<f64> {
        let (a, b) = (self.num(first), self.num(last));
        let left = self.num(hi).saturating_sub(self.num(from));
        (b > a).then(|| left as f64 / (b - a) as f64)
    }

    /// How many pages as dense as the one from `first` to `last` the numbering holds before
    /// `name` (from its smallest number on); `None` when the page's ends are one number. For
    /// numbered files in a folder this is how far into the folder `name` lies, the best guess
    /// of how much more the folder holds when its end is not known.
    pub fn pages_before(&self, first: &str, last: &str, name: &str) -> Option<f64> {
        let (a, b) = (self.num(first), self.num(last));
        (b > a).then(|| self.num(name) as f64 / (b - a) as f64)
    }

    /// The name `pages` pages as dense as the one from `first` to `last` past `from`, if the
    /// numbering reaches that far.
    pub fn pages_after(&self, first: &str, last: &str, from: &str, pages: f64) -> Option<String> {
        let width = self
            .num(last)
            .checked_sub(self.num(first))
            .filter(|w| *w > 0)?;
        let step = (width as f64 * pages.max(0.0)) as u128;
        self.name(self.num(from).checked_add(step.max(1))?)
    }

    /// The name `fraction` of the way from `lo` to `hi`, if one lies strictly between them.
    pub fn between(&self, lo: &str, hi: &str, fraction: f64) -> Option<String> {
        let (a, b) = (self.num(lo), self.num(hi));
        let span = b.checked_sub(a).filter(|s| *s > 1)?;
        let step = ((span as f64 * fraction) as u128).clamp(1, span - 1);
        self.name(a + step)
            .filter(|s| s.as_str() > lo && s.as_str() < hi)
    }
}

/// How many pages as dense as the one from `first` to `last` would fill `(last, hi]`, read
/// with the same numbering as [`split_points`]; `None` when the page is too narrow for that
/// numbering to tell its ends apart (then the range is large against the page).
///
/// ```
/// use dataflux::split::pages_left;
/// let alphabet: Vec<char> = "0123456789.gjp".chars().collect();
/// let left = pages_left("i/0000.jpg", "i/0999.jpg", "i/9999.jpg", &alphabet).unwrap();
/// // Nine pages of numbered names are left; this numbering counts each position in base
/// // `|alphabet| + 2`, so for them it is only right within a small factor. `Radix`, learned
/// // from the page, counts digits in base 10.
/// assert!((5.0..30.0).contains(&left), "{left}");
/// ```
pub fn pages_left(first: &str, last: &str, hi: &str, alphabet: &[char]) -> Option<f64> {
    if !(first < last && last < hi) {
        return Some(0.0);
    }
    let numbering = Numbering::new(first, Some(hi), "", alphabet)?;
    let (a, b, c) = (numbering.num(first), numbering.num(last), numbering.num(hi));
    (b > a).then(|| (c.saturating_sub(b)) as f64 / (b - a) as f64)
}

/// `head` followed by the characters of `num`'s base-`base` digits (trailing zeros dropped).
fn number_to_string(head: &str, num: u128, base: u128, alpha: &[char]) -> String {
    let mut digits = [0u128; DIGITS];
    let mut n = num;
    for d in digits.iter_mut().rev() {
        *d = n % base;
        n /= base;
    }
    let used = digits.iter().rposition(|&d| d != 0).map_or(0, |p| p + 1);
    let mut s = head.to_string();
    for &d in &digits[..used] {
        let idx = (d as usize).saturating_sub(1).min(alpha.len() - 1);
        s.push(alpha[idx]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numeric_names_split_evenly() {
        let alphabet: Vec<char> = "0123456789./gijmp".chars().collect();
        let pts = split_points(
            "img/",
            "img/000000.jpg",
            Some("img/999999.jpg"),
            4,
            &alphabet,
        );
        assert_eq!(pts.len(), 3);
        // Each quarter starts with the digit a quarter of the way through 0..9.
        let firsts: Vec<char> = pts
            .iter()
            .map(|p| p.chars().nth(4).unwrap_or(' '))
            .collect();
        assert_eq!(firsts, vec!['2', '4', '7']);
    }

    #[test]
    fn unbounded_range_stays_under_prefix() {
        let alphabet: Vec<char> = "abc/".chars().collect();
        let pts = split_points("p/", "p/a", None, 8, &alphabet);
        assert!(!pts.is_empty());
        assert!(pts
            .iter()
            .all(|p| p.starts_with("p/") && p.as_str() > "p/a"));
    }

    #[test]
    fn adjacent_bounds_give_no_points() {
        assert!(split_points("", "a", Some("a"), 4, &['a']).is_empty());
        assert!(split_points("", "b", Some("a"), 4, &['a', 'b']).is_empty());
        assert!(split_points("", "a", Some("b"), 1, &['a', 'b']).is_empty());
    }

    #[test]
    fn extrapolation_cuts_page_sized_pieces() {
        let page: Vec<String> = (0..1000)
            .map(|i| format!("coco/val2017/{:012}.jpg", 139 + 7 * i))
            .collect();
        let pts = extrapolate_points("coco/", &page, 4);
        assert_eq!(
            pts,
            [
                "coco/val2017/000000014125.jpg",
                "coco/val2017/000000021118.jpg",
                "coco/val2017/000000028111.jpg",
                "coco/val2017/000000035104.jpg"
            ]
        );
        let letters: Vec<String> = ["p/aa", "p/ab", "p/az", "p/bc"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(extrapolate_points("p/", &letters, 2), ["p/ce", "p/dg"]);
    }

    proptest! {
        #[test]
        fn extrapolated_points_increase_above_the_page(
            a in "[a-c0-2/]{1,10}",
            b in "[a-c0-2/]{1,10}",
            count in 1usize..40,
        ) {
            let (first, last) = if a < b { (a, b) } else { (b, a) };
            let pts = extrapolate_points("", &[first, last.clone()], count);
            prop_assert!(pts.len() <= count);
            for w in pts.windows(2) {
                prop_assert!(w[0] < w[1]);
            }
            for p in &pts {
                prop_assert!(p.as_str() > last.as_str());
            }
        }

        #[test]
        fn points_lie_strictly_between_and_increase(
            lo in "[a-d/0-3]{0,12}",
            hi in "[a-d/0-3]{0,12}",
            parts in 2usize..40,
            alphabet in proptest::collection::vec(proptest::char::range('!', '~'), 0..20),
        ) {
            let pts = split_points("", &lo, Some(&hi), parts, &alphabet);
            prop_assert!(pts.len() < parts);
            for w in pts.windows(2) {
                prop_assert!(w[0] < w[1]);
            }
            for p in &pts {
                prop_assert!(p.as_str() > lo.as_str() && p.as_str() < hi.as_str());
            }
        }
    }
}
