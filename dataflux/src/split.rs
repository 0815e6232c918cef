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
    let mut alpha: Vec<char> = alphabet
        .iter()
        .copied()
        .chain(lo.chars())
        .chain(hi.into_iter().flat_map(str::chars))
        .collect();
    alpha.sort_unstable();
    alpha.dedup();
    if alpha.is_empty() {
        return Vec::new();
    }
    if alpha.len() > MAX_ALPHABET {
        let step = alpha.len() as f64 / MAX_ALPHABET as f64;
        alpha = (0..MAX_ALPHABET)
            .map(|i| alpha[(i as f64 * step) as usize])
            .collect();
    }
    let base = alpha.len() as u128 + 2;
    let max_char = *alpha.last().unwrap_or(&'~');

    let lo_chars: Vec<char> = lo.chars().collect();
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
    let digit = |c: Option<&char>| -> u128 {
        match c {
            None => 0,
            // Insertion index: monotone for characters outside the alphabet too.
            Some(c) => alpha.partition_point(|a| a < c) as u128 + 1,
        }
    };
    let to_num = |chars: &[char]| -> u128 {
        (0..DIGITS).fold(0u128, |acc, i| acc * base + digit(chars.get(common + i)))
    };
    let lo_num = to_num(&lo_chars);
    let hi_num = if hi.is_some() {
        to_num(&hi_chars)
    } else {
        base.pow(DIGITS as u32) - 1
    };
    if hi_num <= lo_num {
        return Vec::new();
    }
    let span = hi_num - lo_num;
    let head: String = lo_chars[..common].iter().collect();
    let mut points: Vec<String> = Vec::with_capacity(parts - 1);
    for i in 1..parts as u128 {
        let k = parts as u128;
        let num = lo_num + span / k * i + span % k * i / k;
        // Digit 0 inside a number and the past-the-end digit map to the nearest character.
        let s = number_to_string(&head, num, base, &alpha);
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
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Vec::new();
    };
    let (first, last) = (first.as_ref(), last.as_ref());
    if count == 0 || first >= last {
        return Vec::new();
    }
    // The shared head, backed off over trailing letters and digits so that carries can run
    // into them (`…/00000` of `…/000139` and `…/006999`).
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
    let head = &first[..head_len];
    let tails: Vec<Vec<char>> = page
        .iter()
        .map(|n| n.as_ref().get(head_len..).unwrap_or("").chars().collect())
        .collect();
    // One alphabet per position, widened to its class: digits, lower or upper case letters.
    let mut alphabets: Vec<Vec<char>> = Vec::new();
    let mut limit: u128 = 1;
    for pos in 0.. {
        let mut seen: Vec<char> = tails.iter().filter_map(|t| t.get(pos).copied()).collect();
        if seen.is_empty() {
            break;
        }
        seen.sort_unstable();
        seen.dedup();
        let alphabet: Vec<char> = if seen.iter().all(char::is_ascii_digit) {
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
    let to_num = |tail: &[char]| -> u128 {
        alphabets
            .iter()
            .enumerate()
            .fold(0u128, |acc, (pos, alpha)| {
                let d = tail
                    .get(pos)
                    .map_or(0, |c| alpha.partition_point(|a| a < c).min(alpha.len() - 1));
                acc * alpha.len() as u128 + d as u128
            })
    };
    let (lo, hi) = (to_num(&tails[0]), to_num(&tails[tails.len() - 1]));
    let width = hi.saturating_sub(lo);
    let mut points: Vec<String> = Vec::with_capacity(count);
    for i in 1..=count as u128 {
        let Some(mut num) = width
            .checked_mul(i)
            .and_then(|w| w.checked_add(hi))
            .filter(|n| *n < limit)
        else {
            break;
        };
        let mut chars = vec![' '; alphabets.len()];
        for (pos, alpha) in alphabets.iter().enumerate().rev() {
            let radix = alpha.len() as u128;
            chars[pos] = alpha[(num % radix) as usize];
            num /= radix;
        }
        let s: String = head.chars().chain(chars).collect();
        let increasing = points
            .last()
            .map_or(s.as_str() > last, |p| p.as_str() < s.as_str());
        if increasing && s.starts_with(prefix) {
            points.push(s);
        }
    }
    points
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
