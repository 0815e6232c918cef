//! The parallel listing's planning state: the pieces of the name range, who holds which, the
//! open top piece, the folders seen, and the decisions on it (where to cut, what to hand a free
//! worker). Pure: no store, no await; [`super::parallel`] runs the workers around it under
//! one lock.

use std::collections::{BTreeSet, VecDeque};

use crate::folders::{Folders, RootState};
use crate::meta::ObjectMeta;
use crate::split::{extrapolate_at, pages_left, split_at, split_points, Radix};

/// Pieces with fewer pages left than this (as estimated from their last page) are not split:
/// a piece of under three pages costs more in the extra partial page a split adds than it
/// gains in time.
pub(super) const MIN_SPLIT_PAGES: f64 = 3.0;

/// Pieces cut at folder boundaries hold at least this many pages left (as the folders'
/// average density estimates): where the folders are small, a piece spans several of them in
/// one ranged listing, rather than each folder costing its own partial page.
pub(super) const MIN_FOLDER_SPLIT_PAGES: f64 = 5.0;

/// A worker whose bounded piece is split keeps at most this many pages (as estimated from its
/// last page) and hands the rest over: where names are dense only just past its cursor (a
/// folder of files among sparse names), halving the piece would cut off an empty upper half
/// again and again; keeping a few pages gives the rest, all the names past them, to one
/// other worker, whose first page then tells how dense they are.
pub(super) const KEEP_PAGES: f64 = 8.0;

/// A folder that has held this many pages (and holds folders) is looked into as soon as a
/// worker is free, before it would be cut.
pub(super) const EXPLORE_PAGES: f64 = 2.0;

/// The most pages one folder's delimiter listing may take (entries count objects and folders
/// together, so files sorted before the folders fill pages): past them the folder counts as
/// holding none, and is cut by its names instead.
pub(super) const FOLDER_PAGES: usize = 3;

/// How long a folder listing may take, retries included. Cuts of the root wait for its
/// folders, so a store that fails only these (or hangs on them) must not hold the listing
/// up for the retry layer's whole deadline; past this the hint is dropped.
pub(super) const FOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many doublings past the open piece's start are tried for a split point above its
/// owner's cursor.
pub(super) const MAX_DOUBLINGS: u32 = 64;

/// A piece of the name range, `(after, upto]`, held by one worker at a time; `None` bounds
/// are open. `after` moves up as the worker lists; `upto` moves down when another worker
/// takes the upper part.
#[derive(Debug, Clone)]
pub(super) struct Piece {
    pub(super) after: Option<String>,
    pub(super) upto: Option<String>,
    /// The first and last names of the piece's latest page, and the numbering learned from
    /// it: how dense its names are.
    pub(super) page: Option<(String, String, Option<Radix>)>,
    pub(super) live: bool,
}

/// The open-ended top piece and what its splits are extrapolated from.
#[derive(Debug)]
pub(super) struct OpenTop {
    pub(super) id: usize,
    /// The latest page listed at the top of the range (by this piece's holder, or by the
    /// piece it was cut from).
    pub(super) sample: Vec<String>,
    /// Where the piece starts: this many pages of `sample` past the sample's last name.
    pub(super) at: u128,
    /// Whether it was halved (no extrapolation possible) since the sample was taken.
    pub(super) halved: bool,
    /// Splits of the top allowed before its holder shows that names go on past its start:
    /// doubled by each full page listed at the top (1, 2, 4, … up to [`MAX_TOP_SPLITS`]), so
    /// that a short listing cuts few empty pieces past its end and a long one still reaches
    /// its end in a few requests' time.
    pub(super) allowance: u32,
    /// The last allowance granted.
    pub(super) granted: u32,
}

/// The most splits of the open-ended top granted at once.
pub(super) const MAX_TOP_SPLITS: u32 = 16;

#[derive(Debug, Default)]
pub(super) struct Shared {
    pub(super) pieces: Vec<Piece>,
    /// Pieces waiting for a worker (only the first, whole range).
    pub(super) queue: VecDeque<usize>,
    /// Workers holding a piece.
    pub(super) busy: usize,
    pub(super) failed: bool,
    /// Characters seen in names so far, for split points.
    pub(super) alphabet: BTreeSet<char>,
    /// The open-ended piece: there is at most one, the top of the range.
    pub(super) open: Option<OpenTop>,
    /// Everything listed so far (one vector, grown in small steps: see [`Shared::keep`]).
    pub(super) out: Vec<ObjectMeta>,
    /// The folders under the prefix learned so far, to cut a hierarchy of names at.
    pub(super) folders: Folders,
    /// Whether a page showed names in folders below the prefix (then its folders are asked
    /// for once).
    pub(super) hierarchy: bool,
    /// Objects listed since the prefix's folders are known, and how much of the range
    /// ([`Folders::pos`]) they covered: the average density folder estimates use.
    pub(super) listed: f64,
    pub(super) covered: f64,
    /// Objects listed in each known folder (a page counts for the folders of its last name):
    /// a folder that has held many pages is likely to hold many more.
    pub(super) listed_in: std::collections::HashMap<String, f64>,
    /// Objects per full page.
    pub(super) page_size: f64,
}

/// What an idle worker does next.
#[derive(Debug)]
pub(super) enum Work {
    /// Lists this piece.
    Piece(usize),
    /// Asks for the folders directly under this one.
    Explore(String),
}

/// A cut of a piece: the victim keeps names up to `point`, a new piece takes the rest.
#[derive(Debug)]
pub(super) struct Cut {
    pub(super) victim: usize,
    pub(super) point: String,
    /// The new piece starts with the victim's page (its density), so that it can be cut
    /// again before its own first page.
    pub(super) inherit: bool,
    /// The victim keeps its page (the cut was placed where the page's numbering or the
    /// folders say, so its estimate still holds); otherwise it lists another before its
    /// piece is cut again.
    pub(super) keep_page: bool,
}

/// How the piece with the most work left is to be cut.
#[derive(Debug)]
pub(super) enum Plan {
    /// At the folder boundary nearest its middle.
    Folders,
    /// By its page's numbering, which covers the whole piece.
    Radix,
    /// Its page's numbering covers only the start (its folder): past as many pages as the
    /// folder already held.
    Beyond,
    /// Its folder holds folders: ask for them first.
    Explore(String),
    /// By the names' characters.
    Generic,
}

impl Shared {
    /// Stores a page's objects. The vector grows by a sixteenth at a time rather than doubling,
    /// so that at millions of objects its unused capacity stays small; a large block grows
    /// in place or by remapping, without copying.
    pub(super) fn keep(&mut self, objects: Vec<ObjectMeta>) {
        let spare = self.out.capacity() - self.out.len();
        if spare < objects.len() {
            self.out
                .reserve_exact((self.out.len() / 16).max(objects.len() * 4));
        }
        self.out.extend(objects);
    }

    /// The next thing for a worker without work: looking into a folder, or the upper part of
    /// the piece with the most work left.
    pub(super) fn steal(&mut self, prefix: &str) -> Option<Work> {
        // Nothing left to cut, nor to look into folders for: the listing is ending.
        if !self.pieces.iter().any(|p| p.live) {
            return None;
        }
        if self.hierarchy && (prefix.is_empty() || prefix.ends_with('/')) {
            match self.folders.root_state() {
                RootState::Wanted => return Some(self.explore(prefix.to_string())),
                // Cuts wait for the folders (one request's time) rather than guess.
                RootState::Pending => return None,
                RootState::Done => {}
            }
        }
        let alphabet: Vec<char> = self.alphabet.iter().copied().collect();
        let mut cut = None;
        if let Some(top) = self.open.as_ref() {
            let piece = &self.pieces[top.id];
            let cursor = piece.after.as_deref().unwrap_or(prefix);
            // Whole folders above the top's cursor are cut at their boundaries instead.
            if self.folders.between(cursor, None).next().is_none() {
                // The top's folder holds folders: learn them before extrapolating across.
                if let (Some(f), Some(_)) = (self.folders.to_explore(cursor), &piece.page) {
                    return Some(self.explore(f));
                }
                // Past the last of several folders, with their density known: the top is cut
                // only if the folder it is in still holds a few pages by that density (or has
                // held that many), not halved blindly past the names' end (an empty piece, one
                // more request, where a small prefix's listing is ending).
                let little_left = self.folders.known()
                    && self.folders.between(prefix, None).nth(1).is_some()
                    && self.covered > 0.0
                    && self
                        .folder_pages(cursor, None)
                        .max(self.folder_listed(cursor))
                        < MIN_SPLIT_PAGES;
                if !little_left {
                    cut = self
                        .steal_open(prefix, &alphabet)
                        .map(|(victim, point)| Cut {
                            victim,
                            point,
                            inherit: false,
                            keep_page: false,
                        });
                }
            }
        }
        let cut = match cut {
            Some(cut) => cut,
            None => match self.steal_bounded(prefix, &alphabet)? {
                Ok(cut) => cut,
                Err(folder) => return Some(self.explore(folder)),
            },
        };
        let new = self.pieces.len();
        let victim = &mut self.pieces[cut.victim];
        let upto = victim.upto.replace(cut.point.clone());
        let page = if cut.inherit {
            victim.page.clone()
        } else {
            if !cut.keep_page {
                victim.page.take();
            }
            None
        };
        // A folder cut of the open top: the new piece is the top now, with nothing to
        // extrapolate from until its own first page.
        if let Some(top) = self.open.as_mut().filter(|t| t.id == cut.victim) {
            top.id = new;
            top.sample.clear();
            top.at = 0;
            top.halved = true;
            top.allowance = 0;
        }
        self.pieces.push(Piece {
            after: Some(cut.point),
            upto,
            page,
            live: true,
        });
        Some(Work::Piece(new))
    }

    /// An empty answer for piece `id` says that the names it was cut by end before it: the
    /// pieces above it that were cut with the same page's density (see [`Cut::inherit`])
    /// lose it, and wait for their own first page rather than be cut again by a numbering
    /// that runs past the names' end (each such cut would cost an empty request).
    pub(super) fn forget_density_past(&mut self, id: usize) {
        let Some((first, last, _)) = self.pieces[id].page.take() else {
            return;
        };
        let from = self.pieces[id].after.clone();
        for piece in self.pieces.iter_mut().filter(|p| p.live && p.after > from) {
            if piece
                .page
                .as_ref()
                .is_some_and(|(f, l, _)| *f == first && *l == last)
            {
                piece.page = None;
            }
        }
    }

    /// Marks `folder` as being looked into, for a worker to ask.
    pub(super) fn explore(&mut self, folder: String) -> Work {
        self.folders.start(&folder);
        Work::Explore(folder)
    }

    /// Splits the open-ended piece: its holder keeps up to twice as far from the latest top
    /// page as it started (at least two pages), so that the pieces grow geometrically while
    /// nothing says where the names end, and few empty pieces are cut past their end. Where
    /// the page cannot be extrapolated, what is left of the prefix is halved, once per page.
    pub(super) fn steal_open(
        &mut self,
        prefix: &str,
        alphabet: &[char],
    ) -> Option<(usize, String)> {
        let next_id = self.pieces.len();
        let top = self.open.as_mut().filter(|t| t.allowance > 0)?;
        let cursor = self.pieces[top.id].after.as_deref().unwrap_or(prefix);
        let first = top.at.saturating_mul(2).max(top.at.saturating_add(2));
        let multiples: Vec<u128> = (0..MAX_DOUBLINGS)
            .map_while(|k| first.checked_mul(1u128 << k))
            .collect();
        let points = extrapolate_at(prefix, &top.sample, &multiples);
        let found = points
            .iter()
            .zip(&multiples)
            .find(|(p, _)| p.as_str() > cursor)
            .map(|(p, m)| (p.clone(), *m));
        let (point, at) = match found {
            Some(found) => found,
            None if !top.halved => (
                split_points(prefix, cursor, None, 2, alphabet)
                    .into_iter()
                    .next()?,
                u128::MAX,
            ),
            None => return None,
        };
        let victim = top.id;
        top.id = next_id;
        top.at = at;
        top.halved = at == u128::MAX;
        top.allowance -= 1;
        Some((victim, point))
    }

    /// Pages of average density (as the folders measure it) between `lo` and `hi`; while no
    /// density is known (nothing listed yet), the share of the range counts, times a large
    /// number.
    pub(super) fn folder_pages(&self, lo: &str, hi: Option<&str>) -> f64 {
        let share = (self.folders.pos(hi) - self.folders.pos(Some(lo))).max(0.0);
        let density = if self.covered > 0.0 {
            self.listed / self.covered / self.page_size
        } else {
            1e6
        };
        share * density
    }

    /// Pages listed so far in the innermost known folder holding `name`: how much more it
    /// likely holds (a folder's size is heavy-tailed: the more it held, the more it holds).
    pub(super) fn folder_listed(&self, name: &str) -> f64 {
        self.folders
            .chain(name)
            .iter()
            .filter_map(|f| self.listed_in.get(*f))
            .fold(0.0, |a: f64, n| a.max(n / self.page_size))
    }

    /// Cuts the piece with the most pages left, if it has at least [`MIN_SPLIT_PAGES`], or
    /// names the folder to look into first (`Err`).
    ///
    /// - Across known folders: at the boundary nearest the middle (in [`Folders::pos`]).
    /// - Where its page's numbering covers the piece: its holder keeps half, at most
    ///   [`KEEP_PAGES`], and the new piece inherits the density.
    /// - Where the numbering covers only the holder's folder: past as many pages as the
    ///   folder held before the cursor (at least half of [`KEEP_PAGES`]), a guess that grows
    ///   with the folder; if that folder holds folders, they are asked for first.
    /// - Else by the names' characters.
    pub(super) fn steal_bounded(
        &self,
        prefix: &str,
        alphabet: &[char],
    ) -> Option<std::result::Result<Cut, String>> {
        let folders_known = self.folders.known();
        let mut best: Option<(usize, f64, Plan)> = None;
        for (id, piece) in self.pieces.iter().enumerate() {
            if !piece.live {
                continue;
            }
            let cursor = piece.after.as_deref().unwrap_or(prefix);
            let upto = piece.upto.as_deref();
            // A folder that has held a few pages and holds folders is looked into at once,
            // whatever else there is to cut: folder sizes are heavy-tailed, and the sooner
            // a large one is known the sooner it is shared out.
            if piece.page.is_some() && self.folder_listed(cursor) >= EXPLORE_PAGES {
                if let Some(folder) = self.folders.to_explore(cursor) {
                    return Some(Err(folder));
                }
            }
            let (left, plan) = if self.folders.between(cursor, upto).next().is_some() {
                let left = self
                    .folder_pages(cursor, upto)
                    .max(self.folder_listed(cursor));
                (left, Plan::Folders)
            } else {
                let Some((first, last, radix)) = &piece.page else {
                    continue;
                };
                match (radix, upto) {
                    (Some(r), Some(upto)) if r.covers(cursor) && r.covers(upto) => (
                        r.pages_left(first, last, cursor, upto)
                            .unwrap_or(f64::INFINITY),
                        Plan::Radix,
                    ),
                    (Some(r), _) if folders_known && r.covers(cursor) => {
                        let before = r.pages_before(first, last, cursor).unwrap_or(0.0);
                        let left = before
                            .max(self.folder_pages(cursor, upto))
                            .max(self.folder_listed(cursor));
                        match self.folders.to_explore(cursor) {
                            Some(f) => (left, Plan::Explore(f)),
                            None if upto.is_some() => (left, Plan::Beyond),
                            // The open top: cut by extrapolation (`steal_open`).
                            None => continue,
                        }
                    }
                    (_, None) => continue,
                    // The bound lies past the names like the page's (another folder): how
                    // much is left cannot be told, so the piece is large.
                    (Some(_), Some(_)) => (f64::INFINITY, Plan::Generic),
                    // Without a numbering, only the piece's own last page tells.
                    (None, Some(upto)) if cursor == last => (
                        pages_left(first, last, upto, alphabet).unwrap_or(f64::INFINITY),
                        Plan::Generic,
                    ),
                    (None, Some(_)) => continue,
                }
            };
            let least = match plan {
                Plan::Folders => MIN_FOLDER_SPLIT_PAGES,
                _ => MIN_SPLIT_PAGES,
            };
            if left >= least && best.as_ref().is_none_or(|(_, b, _)| left > *b) {
                best = Some((id, left, plan));
            }
        }
        let (id, left, plan) = best?;
        let piece = &self.pieces[id];
        let cursor = piece.after.as_deref().unwrap_or(prefix);
        let upto = piece.upto.as_deref();
        let cut = |point: String, inherit: bool, keep_page: bool| {
            Some(Ok(Cut {
                victim: id,
                point,
                inherit,
                keep_page,
            }))
        };
        match plan {
            Plan::Explore(folder) => return Some(Err(folder)),
            Plan::Folders => {
                let (lo, hi) = (self.folders.pos(Some(cursor)), self.folders.pos(upto));
                let middle = lo + (hi - lo) / 2.0;
                let point = self
                    .folders
                    .between(cursor, upto)
                    .map(|b| (b, (self.folders.pos(Some(b)) - middle).abs()))
                    .min_by(|a, b| a.1.total_cmp(&b.1))?
                    .0;
                return cut(point.clone(), false, true);
            }
            Plan::Beyond => {
                let (first, last, radix) = piece.page.as_ref()?;
                let r = radix.as_ref()?;
                let upto = upto?;
                let pages = r
                    .pages_before(first, last, cursor)
                    .unwrap_or(0.0)
                    .max(KEEP_PAGES / 2.0);
                if let Some(point) = r
                    .pages_after(first, last, cursor, pages)
                    .filter(|p| p.as_str() > cursor && p.as_str() < upto)
                {
                    return cut(point, false, true);
                }
            }
            Plan::Radix | Plan::Generic => {}
        }
        let upto = upto?;
        let keep = if left.is_finite() {
            (KEEP_PAGES / left).min(0.5)
        } else {
            0.5
        };
        let radix = piece
            .page
            .as_ref()
            .and_then(|(_, _, r)| r.as_ref())
            .filter(|r| r.covers(cursor) && r.covers(upto));
        if let Some(point) = radix.and_then(|r| r.between(cursor, upto, keep)) {
            return cut(point, true, false);
        }
        let point = split_at(prefix, cursor, upto, keep, alphabet).or_else(|| {
            split_points(prefix, cursor, Some(upto), 2, alphabet)
                .into_iter()
                .next()
        })?;
        cut(point, false, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(after: &str, upto: &str, page: Option<(&str, &str)>) -> Piece {
        Piece {
            after: Some(after.to_string()),
            upto: Some(upto.to_string()),
            page: page.map(|(f, l)| (f.to_string(), l.to_string(), None)),
            live: true,
        }
    }

    #[test]
    fn an_empty_piece_takes_the_inherited_density_from_the_pieces_above_it() {
        let page = Some(("i/000000.jpg", "i/000019.jpg"));
        let mut st = Shared {
            pieces: vec![
                piece("i/000019.jpg", "i/000100.jpg", page),
                piece("i/000100.jpg", "i/000200.jpg", page),
                piece("i/000200.jpg", "i/000300.jpg", page),
                piece(
                    "i/000300.jpg",
                    "i/000400.jpg",
                    Some(("i/000301.jpg", "i/000320.jpg")),
                ),
                piece("i/000400.jpg", "i/000500.jpg", page),
            ],
            ..Default::default()
        };
        st.pieces[4].live = false;
        st.forget_density_past(1);
        let pages: Vec<bool> = st.pieces.iter().map(|p| p.page.is_some()).collect();
        // Below the empty piece it stays; above it goes, except a piece's own page (and a
        // piece that is done is left alone).
        assert_eq!(pages, [true, false, false, true, true]);
    }
}
