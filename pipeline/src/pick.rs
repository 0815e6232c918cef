//! The pick policy of the chunk protocol, as pure functions of what a rank knows: which chunk
//! to claim next, and which chunk to back up when idle. [`crate::claims::Claims::pick`] feeds
//! them the store's board and the process's own state.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::layout::shard_chunks;

/// The chunk to claim next, and as which attempt: this rank's own range first, in order; then
/// the range of another rank with the most claimable chunks, from its end (its owner works
/// from the start, so the two meet late). `claimable(c)` is the attempt chunk `c` would be
/// claimed as, or `None` when it cannot be claimed now.
pub(crate) fn next_claim(
    rank: usize,
    world: usize,
    chunks: usize,
    claimable: impl Fn(usize) -> Option<u32>,
) -> Option<(usize, u32)> {
    for c in shard_chunks(rank, world, chunks) {
        if let Some(attempt) = claimable(c) {
            return Some((c, attempt));
        }
    }
    let mut best: Option<(usize, usize, u32)> = None; // (count, chunk, attempt)
    for r in (0..world).filter(|&r| r != rank) {
        let open: Vec<(usize, u32)> = shard_chunks(r, world, chunks)
            .filter_map(|c| claimable(c).map(|a| (c, a)))
            .collect();
        if let Some(&(c, a)) = open.last() {
            if best.is_none_or(|(n, _, _)| open.len() > n) {
                best = Some((open.len(), c, a));
            }
        }
    }
    best.map(|(_, c, a)| (c, a))
}

/// The chunk to back up: among chunks held elsewhere since before `patience` ago (`held_since`)
/// and not backed up here yet, the longest held — spread over ranks (rank `r` takes the
/// `r`-th longest, modulo their number) so that idle ranks back up different chunks.
pub(crate) fn next_backup(
    held_since: &HashMap<usize, Instant>,
    backed_up: &HashSet<usize>,
    patience: Duration,
    rank: usize,
    now: Instant,
) -> Option<usize> {
    let mut candidates: Vec<(Instant, usize)> = held_since
        .iter()
        .filter(|(c, since)| !backed_up.contains(c) && now.duration_since(**since) > patience)
        .map(|(&c, &since)| (since, c))
        .collect();
    candidates.sort();
    candidates
        .get(rank % candidates.len().max(1))
        .map(|&(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_range_first_in_order() {
        // 10 chunks, 3 ranks: rank 1 owns 3..6.
        let free = |c: usize| (c != 3).then_some(0);
        assert_eq!(next_claim(1, 3, 10, free), Some((4, 0)));
    }

    #[test]
    fn then_the_fullest_other_range_from_its_end() {
        // Rank 0's range (0..3) is done; rank 1's (3..6) has one chunk left, rank 2's (6..10)
        // three: rank 0 takes rank 2's last.
        let open = |c: usize| [5, 7, 8, 9].contains(&c).then_some(0);
        assert_eq!(next_claim(0, 3, 10, open), Some((9, 0)));
        // A lapsed claim is taken over as the next attempt.
        let lapsed = |c: usize| (c == 5).then_some(2);
        assert_eq!(next_claim(0, 3, 10, lapsed), Some((5, 2)));
        assert_eq!(next_claim(0, 3, 10, |_| None), None);
    }

    #[test]
    fn a_world_larger_than_the_chunks_still_finds_them() {
        let open = |c: usize| (c == 1).then_some(0);
        assert_eq!(next_claim(7, 8, 2, open), Some((1, 0)));
    }

    #[test]
    fn backups_go_to_the_longest_held_and_spread_over_ranks() {
        let now = Instant::now();
        let ago = |s: u64| now - Duration::from_secs(s);
        let held: HashMap<usize, Instant> = [(4, ago(30)), (7, ago(60)), (9, ago(1))].into();
        let patience = Duration::from_secs(10);
        let none = HashSet::new();
        // Chunk 9 is too recent; 7 has waited longest.
        assert_eq!(next_backup(&held, &none, patience, 0, now), Some(7));
        assert_eq!(next_backup(&held, &none, patience, 1, now), Some(4));
        assert_eq!(next_backup(&held, &none, patience, 2, now), Some(7));
        // Never the same chunk twice here.
        let done: HashSet<usize> = [7].into();
        assert_eq!(next_backup(&held, &done, patience, 0, now), Some(4));
        assert_eq!(
            next_backup(&held, &none, Duration::from_secs(100), 0, now),
            None
        );
    }
}
