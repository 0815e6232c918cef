//! Synthetic bucket contents for the listing benches: `N` object names under `images/` in one of
//! a few naming schemes, plus a few objects outside it, generated deterministically from a seed
//! and held compactly (one byte buffer and an offset per name) so that 10,000,000 names fit in
//! a few hundred MB. `list_server` serves them; `list_scale` checks a listing against them.
//!
//! Everything here is a pure function of `(scheme, n, seed)`: the server and the bench agree
//! on the names and on each object's size, generation and CRC32C ([`object_info`]) without
//! talking to each other.

use std::fmt::Write as _;

/// The prefix the `N` generated objects live under.
pub const PREFIX: &str = "images/";

/// How the names under [`PREFIX`] look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// `images/00000000.jpg`, `images/00000001.jpg`, …: zero-padded ordinals (width 8, more
    /// when `N` needs it).
    Seq,
    /// `images/<32 random hex chars>.jpg`, like uuids: uniform over the whole id space.
    Hex,
    /// `images/2024-03-17/cam-07/000123.jpg`: a skewed hierarchy. Days hold very different
    /// counts (heavy-tailed, some nearly empty), each day has 1 to 16 of 32 cameras, some
    /// cameras hold a handful of frames, others most of the day.
    Tree,
    /// `images/000000xxxxxx.jpg`: 12-digit ordinals with random gaps (mostly small, some
    /// large), like COCO's file names.
    Coco,
    /// `images/00/00000000.jpg` … `images/96/…`: 97 folders, object `i` in folder `i % 97`,
    /// the layout cloud providers recommend to spread request load.
    Folders,
    /// `images/<2 hex digits>/<16 hex digits>.jpg`: 256 hashed folders, each name's folder
    /// the first byte of its hash.
    Hashed,
}

impl Scheme {
    /// The scheme's name, as `--names` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Seq => "seq",
            Scheme::Hex => "hex",
            Scheme::Tree => "tree",
            Scheme::Coco => "coco",
            Scheme::Folders => "folders",
            Scheme::Hashed => "hashed",
        }
    }
}

impl std::fmt::Display for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SplitMix64: a small, fast, seedable generator whose output never changes between versions
/// (unlike `rand`'s), so a seed names the same bucket forever.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `(0, 1]`.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// SplitMix64's finaliser: a good 64-bit mixing function.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// 64-bit FNV-1a of `bytes`, continuing from `h` (start with [`FNV_OFFSET`]).
pub fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// FNV-1a's initial state.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Names in ascending byte order, without duplicates, packed into one buffer.
#[derive(Debug, Default, Clone)]
pub struct Names {
    bytes: String,
    /// `ends[i]` is where name `i` ends in `bytes` (it starts where name `i - 1` ends).
    ends: Vec<u64>,
}

impl Names {
    /// How many names.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Name `i`.
    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    /// Every name, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Bytes held (names and offsets).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 8
    }

    /// The first index whose name does not satisfy `pred`, which must hold for a leading run of
    /// the names and not after it (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(&str) -> bool) -> usize {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.get(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The first index whose name is `>= name`.
    pub fn lower_bound(&self, name: &str) -> usize {
        self.partition_point(|n| n < name)
    }

    /// The index range of the names starting with `prefix`.
    pub fn prefix_range(&self, prefix: &str) -> std::ops::Range<usize> {
        let lo = self.lower_bound(prefix);
        let hi = self.partition_point(|n| n < prefix || n.starts_with(prefix));
        lo..hi
    }

    fn push(&mut self, name: &str) {
        self.bytes.push_str(name);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Appends the name `write` formats (without allocating a string per name).
    fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.bytes);
        self.ends.push(self.bytes.len() as u64);
    }

    /// Panics unless the names are strictly increasing (the generators' contract).
    fn check_sorted(&self) {
        for i in 1..self.len() {
            assert!(
                self.get(i - 1) < self.get(i),
                "generated names out of order at {i}: {:?} then {:?}",
                self.get(i - 1),
                self.get(i)
            );
        }
    }
}

/// The bucket for `(scheme, n, seed)`: exactly `n` names under [`PREFIX`] and a few outside
/// it (`annotations/…` and `images.txt` sort before it, `images0/…`, `images_backup/…` and
/// `other/…` after), in ascending order.
pub fn generate(scheme: Scheme, n: usize, seed: u64) -> Names {
    let mut rng = SplitMix64::new(mix64(
        seed ^ (scheme as u64 + 1).wrapping_mul(0x1234_5678_9abc),
    ));
    let extras = 2 + n / 100_000;
    let mut before: Vec<String> = (0..extras)
        .map(|k| format!("annotations/captions_{k:04}.json"))
        .collect();
    before.push("images.txt".into());
    let mut after: Vec<String> = vec![
        "images0/readme.txt".into(),
        "images_backup/000000.jpg".into(),
    ];
    after.extend((0..extras).map(|k| format!("other/{k:06}.bin")));
    before.sort();
    after.sort();
    debug_assert!(before.iter().all(|b| b.as_str() < PREFIX));
    debug_assert!(after
        .iter()
        .all(|a| a.as_str() > PREFIX && !a.starts_with(PREFIX)));

    let mut names = Names {
        bytes: String::with_capacity(n * 32 + 1024),
        ends: Vec::with_capacity(n + before.len() + after.len()),
    };
    for b in &before {
        names.push(b);
    }
    match scheme {
        Scheme::Seq => {
            let width = digits(n.saturating_sub(1) as u64).max(8);
            for i in 0..n {
                names.push_with(|s| {
                    let _ = write!(s, "{PREFIX}{i:0width$}.jpg");
                });
            }
        }
        Scheme::Hex => {
            // Hex digits sort as the bytes they encode: sort the numbers, then print them.
            let mut ids: Vec<u128> = Vec::with_capacity(n);
            while ids.len() < n {
                while ids.len() < n {
                    ids.push(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
                }
                ids.sort_unstable();
                ids.dedup();
            }
            for id in ids {
                names.push_with(|s| {
                    let _ = write!(s, "{PREFIX}{id:032x}.jpg");
                });
            }
        }
        Scheme::Tree => tree(&mut names, n, &mut rng),
        Scheme::Folders => {
            // Folder f holds the i with i % 97 == f, in order: sorted by (folder, i).
            for f in 0..97usize {
                for i in (f..n).step_by(97) {
                    names.push_with(|s| {
                        let _ = write!(s, "{PREFIX}{f:02}/{i:08}.jpg");
                    });
                }
            }
        }
        Scheme::Hashed => {
            // 64 random bits per name; the folder is the top byte: sorted numbers print sorted.
            let mut ids: Vec<u64> = Vec::with_capacity(n);
            while ids.len() < n {
                while ids.len() < n {
                    ids.push(rng.next_u64());
                }
                ids.sort_unstable();
                ids.dedup();
            }
            for id in ids {
                names.push_with(|s| {
                    let _ = write!(s, "{PREFIX}{:02x}/{id:016x}.jpg", id >> 56);
                });
            }
        }
        Scheme::Coco => {
            let mut v = rng.below(1000);
            for _ in 0..n {
                names.push_with(|s| {
                    let _ = write!(s, "{PREFIX}{v:012}.jpg");
                });
                let r = rng.below(100);
                v += 1 + match r {
                    0..=89 => rng.below(8),
                    90..=98 => rng.below(200),
                    _ => rng.below(100_000),
                };
            }
        }
    }
    for a in &after {
        names.push(a);
    }
    names.bytes.shrink_to_fit();
    names.ends.shrink_to_fit();
    names.check_sorted();
    debug_assert_eq!(names.prefix_range(PREFIX).len(), n);
    names
}

/// Decimal digits of `v` (1 for 0).
fn digits(v: u64) -> usize {
    v.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// A Pareto-like heavy-tailed weight, `u^-exponent` for `u` uniform in (0, 1]: most small,
/// a few very large (tail index `1 / exponent`).
fn heavy(rng: &mut SplitMix64, exponent: f64) -> f64 {
    rng.unit().powf(-exponent)
}

/// `images/YYYY-MM-DD/cam-CC/NNNNNN.jpg`, `n` of them, in order.
fn tree(names: &mut Names, n: usize, rng: &mut SplitMix64) {
    if n == 0 {
        return;
    }
    let days = ((n as f64).sqrt() / 4.0).clamp(3.0, 730.0) as usize;
    // Cells (day, camera) with weights, in name order.
    let mut cells: Vec<(i64, u32, f64)> = Vec::new();
    let mut day = days_from_civil(2023, 1, 1);
    for _ in 0..days {
        let day_weight = if rng.below(10) == 0 {
            0.002 // a nearly empty day
        } else {
            heavy(rng, 0.9)
        };
        let cams = 1 + rng.below(16) as usize;
        let mut ids: Vec<u32> = (0..32).collect();
        // A seeded partial shuffle picks the day's cameras.
        for i in 0..cams {
            let j = i + rng.below((32 - i) as u64) as usize;
            ids.swap(i, j);
        }
        let mut chosen = ids[..cams].to_vec();
        chosen.sort_unstable();
        for cam in chosen {
            let cam_weight = if rng.below(4) == 0 {
                0.001 // a camera with a handful of frames
            } else {
                heavy(rng, 0.7)
            };
            cells.push((day, cam, day_weight * cam_weight));
        }
        // Some days are skipped: gaps in the calendar.
        day += 1 + i64::from(rng.below(3) == 0) * rng.below(5) as i64;
    }
    let total: f64 = cells.iter().map(|c| c.2).sum();
    let mut counts: Vec<usize> = cells
        .iter()
        .map(|c| (n as f64 * c.2 / total) as usize)
        .collect();
    // Tiny cells keep at least one frame where the budget allows.
    let mut assigned: usize = counts.iter().sum();
    for c in counts.iter_mut() {
        if *c == 0 && assigned < n {
            *c = 1;
            assigned += 1;
        }
    }
    // The rounding remainder goes to the largest cells, round robin.
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by(|&a, &b| cells[b].2.total_cmp(&cells[a].2));
    let mut k = 0;
    while assigned < n {
        counts[order[k % order.len().min(8)]] += 1;
        assigned += 1;
        k += 1;
    }
    while assigned > n {
        // Only reachable through float rounding: take from the largest.
        counts[order[0]] -= 1;
        assigned -= 1;
    }
    for (&(day, cam, _), &count) in cells.iter().zip(&counts) {
        if count == 0 {
            continue;
        }
        let (y, m, d) = civil_from_days(day);
        let first = rng.below(1000);
        // Frames mostly consecutive, with a dropped frame now and then.
        let mut frames = Vec::with_capacity(count);
        let mut f = first;
        for _ in 0..count {
            frames.push(f);
            f += 1 + u64::from(rng.below(50) == 0);
        }
        let width = digits(*frames.last().unwrap_or(&0)).max(6);
        for f in frames {
            names.push_with(|s| {
                let _ = write!(
                    s,
                    "{PREFIX}{y:04}-{m:02}-{d:02}/cam-{cam:02}/{f:0width$}.jpg"
                );
            });
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// What the server reports for an object, derived from its name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes (never 0).
    pub size: u64,
    /// GCS generation.
    pub generation: i64,
    /// CRC32C (not of any real content: a stand-in the client must carry through unchanged).
    pub crc32c: u32,
    /// MD5 stand-in, 16 bytes.
    pub md5: [u8; 16],
}

/// The metadata of the object called `name`.
pub fn object_info(name: &str) -> ObjectInfo {
    let h = mix64(fnv1a(FNV_OFFSET, name.as_bytes()));
    let h2 = mix64(h ^ 0x5bd1_e995);
    let mut md5 = [0u8; 16];
    md5[..8].copy_from_slice(&h.to_be_bytes());
    md5[8..].copy_from_slice(&h2.to_be_bytes());
    ObjectInfo {
        size: 1024 + h % 500_000,
        generation: 1_700_000_000_000_000 + (h2 % 100_000_000_000_000) as i64,
        crc32c: mix64(h ^ 0xc2b2_ae35) as u32,
        md5,
    }
}

/// An order-sensitive fingerprint of a sequence of names: how many, and FNV-1a over them with
/// a `\n` after each. Two listings with the same digest hold the same names in the same order
/// (barring a 64-bit collision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Digest {
    /// Names seen.
    pub count: u64,
    /// FNV-1a of `name\n` for every name, in order.
    pub hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Self {
            count: 0,
            hash: FNV_OFFSET,
        }
    }
}

impl Digest {
    /// Adds the next name.
    pub fn add(&mut self, name: &str) {
        self.count += 1;
        self.hash = fnv1a(fnv1a(self.hash, name.as_bytes()), b"\n");
    }

    /// The digest of `names`.
    pub fn of<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut d = Self::default();
        for n in names {
            d.add(n);
        }
        d
    }
}

/// Standard base64 (with padding) of `bytes`, as GCS encodes `crc32c` and `md5Hash`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let v = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_has_exactly_n_sorted_names_under_the_prefix() {
        for scheme in [Scheme::Seq, Scheme::Hex, Scheme::Tree, Scheme::Coco] {
            for n in [0, 1, 7, 5000] {
                let names = generate(scheme, n, 42);
                let range = names.prefix_range(PREFIX);
                assert_eq!(range.len(), n, "{scheme} {n}");
                assert!(names.len() > n, "objects outside the prefix too");
                let again = generate(scheme, n, 42);
                assert_eq!(Digest::of(names.iter()), Digest::of(again.iter()));
            }
        }
        assert_ne!(
            Digest::of(generate(Scheme::Hex, 100, 1).iter()),
            Digest::of(generate(Scheme::Hex, 100, 2).iter())
        );
    }

    #[test]
    fn tree_names_look_like_a_camera_hierarchy() {
        let names = generate(Scheme::Tree, 20_000, 7);
        let r = names.prefix_range(PREFIX);
        let first = names.get(r.start);
        assert!(first.starts_with("images/2023-01-"), "{first}");
        assert_eq!(first.len(), "images/2023-01-01/cam-07/000123.jpg".len());
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        for d in [0, 59, 60, 365, 10_000, 19_723, 20_000] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(&0x9a71_bb4c_u32.to_be_bytes()), "mnG7TA==");
    }
}
