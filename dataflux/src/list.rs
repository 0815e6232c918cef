//! Listing: parallel, work-stealing, raced against a plain sequential listing.
//!
//! A remote listing starts with one worker owning the whole name range under the prefix.
//! From its first page on, a worker without work takes the upper part of a busy worker's
//! piece (see [`parallel`]): the open-ended top piece is cut at points extrapolated from the
//! first page, geometrically further each time, and bounded pieces are halved, the one with
//! the most pages left first, at lexicographic points ([`crate::split`]). Where names lie in
//! folders below the prefix, the folders are asked for once (one delimiter listing, then one
//! per large folder that holds folders) and pieces are cut at folder boundaries, since a
//! page's numbering says nothing past its own folder — only where a piece holds several
//! pages by the density measured so far (the pages listed before the folders were known
//! included), so that small folders are listed together in one ranged piece instead of a
//! partial page each. Each worker asks the
//! store only for its own piece (GCS `startOffset`/`endOffset`; other stores stop at the bound
//! client-side). Meanwhile a plain sequential listing runs too, until the parallel one first
//! splits work, and whichever finishes first is returned, so a small prefix costs no more
//! than a sequential listing.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::{Error, Result};
use crate::folders::{Folders, RootState};
use crate::meta::ObjectMeta;
use crate::split::{extrapolate_at, pages_left, split_at, split_points, Radix};
use crate::store::{Page, PageRequest, Store, MAX_PAGE};

/// The default prefix for the library's temporary objects (composites), excluded from listings.
pub const DEFAULT_TEMP_PREFIX: &str = "dataflux-tmp/";

/// How to list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListOptions {
    /// Concurrent list workers. Sized for I/O latency, not cores: a worker spends its time
    /// waiting for a page.
    pub parallelism: usize,
    /// Objects per request (at most 1,000).
    pub page_size: usize,
    /// Race a sequential listing against the parallel one and keep the first to finish.
    pub race_sequential: bool,
    /// Names under this prefix (the library's temporary objects) are skipped.
    pub temp_prefix: String,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            parallelism: 32,
            page_size: MAX_PAGE,
            race_sequential: true,
            temp_prefix: DEFAULT_TEMP_PREFIX.to_string(),
        }
    }
}

/// Chainable setters, one per field: callers build it as `ListOptions::default().with_…(…)`, so
/// that new fields do not break them.
impl ListOptions {
    /// Sets [`parallelism`](Self::parallelism): concurrent list workers.
    #[must_use]
    pub fn with_parallelism(mut self, parallelism: usize) -> Self {
        self.parallelism = parallelism;
        self
    }

    /// Sets [`page_size`](Self::page_size): objects per request (at most 1,000).
    #[must_use]
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// Sets [`race_sequential`](Self::race_sequential): race a sequential listing against the
    /// parallel one and keep the first to finish.
    #[must_use]
    pub fn with_race_sequential(mut self, race_sequential: bool) -> Self {
        self.race_sequential = race_sequential;
        self
    }

    /// Sets [`temp_prefix`](Self::temp_prefix): names under this prefix (the library's temporary
    /// objects) are skipped.
    #[must_use]
    pub fn with_temp_prefix(mut self, temp_prefix: impl Into<String>) -> Self {
        self.temp_prefix = temp_prefix.into();
        self
    }
}

/// Which strategy produced a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// One worker, page after page.
    Sequential,
    /// Work-stealing workers.
    Parallel,
}

/// What a listing left out, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Names ending in `/` (folder placeholders).
    pub directory_markers: u64,
    /// Names under the temporary prefix.
    pub temporary: u64,
}

/// The objects under a prefix, sorted by name without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listing {
    /// The listed prefix (folder form).
    pub prefix: String,
    /// The objects, in ascending name order.
    pub objects: Vec<ObjectMeta>,
    /// What was left out.
    pub skipped: Skipped,
    /// Which strategy won.
    pub strategy: Strategy,
}

/// Lists every object under `prefix` (folder form, e.g. `images/`, or empty for all).
///
/// ```
/// # let rt = tokio::runtime::Runtime::new().unwrap();
/// # rt.block_on(async {
/// use bytes::Bytes;
/// use dataflux::{list, ListOptions, Location, PutMode};
/// let store = Location::parse("memory://list-doc").unwrap().open().await.unwrap();
/// for name in ["imgs/b.jpg", "imgs/a.jpg", "imgs/dataflux-tmp/x", "other/c.jpg"] {
///     store.put(name, Bytes::from_static(b"x"), PutMode::Overwrite).await.unwrap();
/// }
/// let options = ListOptions::default().with_temp_prefix("imgs/dataflux-tmp/");
/// let listing = list(&store, "imgs/", &options).await.unwrap();
/// let names: Vec<_> = listing.objects.iter().map(|o| o.name.as_str()).collect();
/// assert_eq!(names, ["imgs/a.jpg", "imgs/b.jpg"]);
/// assert_eq!(listing.skipped.temporary, 1);
/// # });
/// ```
pub async fn list(store: &Arc<dyn Store>, prefix: &str, options: &ListOptions) -> Result<Listing> {
    let remote = store.capabilities().remote;
    let (objects, strategy) = if !remote || options.parallelism <= 1 {
        (
            sequential(store, prefix, options).await?,
            Strategy::Sequential,
        )
    } else if options.race_sequential {
        // The sequential racer runs until the parallel listing has split work for the first
        // time (it is warm then, and more likely to win); after that it would only add load.
        let warm = Arc::new(Notify::new());
        let racer = async {
            tokio::select! {
                r = sequential(store, prefix, options) => Some(r),
                _ = warm.notified() => None,
            }
        };
        let par = parallel(store, prefix, options, Some(warm.clone()));
        tokio::pin!(racer, par);
        tokio::select! {
            Some(r) = &mut racer => (r?, Strategy::Sequential),
            r = &mut par => (r?, Strategy::Parallel),
        }
    } else {
        (
            parallel(store, prefix, options, None).await?,
            Strategy::Parallel,
        )
    };
    Ok(finish(prefix, objects, strategy, &options.temp_prefix))
}

/// Sorts, deduplicates and filters raw results.
fn finish(prefix: &str, mut raw: Vec<ObjectMeta>, strategy: Strategy, temp: &str) -> Listing {
    raw.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    raw.dedup_by(|a, b| a.name == b.name);
    let mut skipped = Skipped::default();
    raw.retain(|o| {
        if o.name.ends_with('/') {
            skipped.directory_markers += 1;
            false
        } else if !temp.is_empty() && o.name.starts_with(temp) {
            skipped.temporary += 1;
            false
        } else {
            true
        }
    });
    Listing {
        prefix: prefix.to_string(),
        objects: raw,
        skipped,
        strategy,
    }
}

async fn sequential(
    store: &Arc<dyn Store>,
    prefix: &str,
    options: &ListOptions,
) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = next_page(
            store.as_ref(),
            prefix,
            after.as_deref(),
            None,
            options.page_size,
        )
        .await?;
        let last = page.objects.last().map(|o| o.name.clone());
        out.extend(page.objects);
        match last {
            Some(l) if page.more => after = Some(l),
            _ => return Ok(out),
        }
    }
}

/// Pages that hold no objects but promise more (GCS may answer so, with a page token)
/// followed in a row before the listing is refused as looping.
const MAX_EMPTY_PAGES: usize = 10_000;

/// The next page of `(after, upto]` holding objects, or the last one: a page with no objects
/// but a token is followed (the API's contract), never taken as the end.
pub(crate) async fn next_page(
    store: &dyn Store,
    prefix: &str,
    after: Option<&str>,
    upto: Option<&str>,
    page_size: usize,
) -> Result<Page> {
    let mut token: Option<String> = None;
    for _ in 0..MAX_EMPTY_PAGES {
        let page = store
            .list_page(PageRequest {
                token: token.as_deref(),
                ..PageRequest::new(prefix, after, upto, page_size)
            })
            .await?;
        match (&page.token, page.objects.is_empty() && page.more) {
            (Some(t), true) => token = Some(t.clone()),
            _ => return Ok(page),
        }
    }
    Err(crate::Error::Request {
        operation: crate::Operation::List,
        location: store.object_url(prefix),
        status: None,
        transient: false,
        message: format!("{MAX_EMPTY_PAGES} empty pages in a row, each with a page token"),
    })
}

/// Pieces with fewer pages left than this (as estimated from their last page) are not split:
/// a piece of under three pages costs more in the extra partial page a split adds than it
/// gains in time.
const MIN_SPLIT_PAGES: f64 = 3.0;

/// Pieces cut at folder boundaries hold at least this many pages left (as the folders'
/// average density estimates): where the folders are small, a piece spans several of them in
/// one ranged listing, rather than each folder costing its own partial page.
const MIN_FOLDER_SPLIT_PAGES: f64 = 5.0;

/// A worker whose bounded piece is split keeps at most this many pages (as estimated from its
/// last page) and hands the rest over: where names are dense only just past its cursor (a
/// folder of files among sparse names), halving the piece would cut off an empty upper half
/// again and again; keeping a few pages gives the rest, all the names past them, to one
/// other worker, whose first page then tells how dense they are.
const KEEP_PAGES: f64 = 8.0;

/// A folder that has held this many pages (and holds folders) is looked into as soon as a
/// worker is free, before it would be cut.
const EXPLORE_PAGES: f64 = 2.0;

/// The most pages one folder's delimiter listing may take (entries count objects and folders
/// together, so files sorted before the folders fill pages): past them the folder counts as
/// holding none, and is cut by its names instead.
const FOLDER_PAGES: usize = 3;

/// How long a folder listing may take, retries included. Cuts of the root wait for its
/// folders, so a store that fails only these (or hangs on them) must not hold the listing
/// up for the retry layer's whole deadline; past this the hint is dropped.
const FOLDER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many doublings past the open piece's start are tried for a split point above its
/// owner's cursor.
const MAX_DOUBLINGS: u32 = 64;

/// A piece of the name range, `(after, upto]`, held by one worker at a time; `None` bounds
/// are open. `after` moves up as the worker lists; `upto` moves down when another worker
/// takes the upper part.
#[derive(Debug, Clone)]
struct Piece {
    after: Option<String>,
    upto: Option<String>,
    /// The first and last names of the piece's latest page, and the numbering learned from
    /// it: how dense its names are.
    page: Option<(String, String, Option<Radix>)>,
    live: bool,
}

/// The open-ended top piece and what its splits are extrapolated from.
#[derive(Debug)]
struct OpenTop {
    id: usize,
    /// The latest page listed at the top of the range (by this piece's holder, or by the
    /// piece it was cut from).
    sample: Vec<String>,
    /// Where the piece starts: this many pages of `sample` past the sample's last name.
    at: u128,
    /// Whether it was halved (no extrapolation possible) since the sample was taken.
    halved: bool,
    /// Splits of the top allowed before its holder shows that names go on past its start:
    /// doubled by each full page listed at the top (1, 2, 4, … up to [`MAX_TOP_SPLITS`]), so
    /// that a short listing cuts few empty pieces past its end and a long one still reaches
    /// its end in a few requests' time.
    allowance: u32,
    /// The last allowance granted.
    granted: u32,
}

/// The most splits of the open-ended top granted at once.
const MAX_TOP_SPLITS: u32 = 16;

#[derive(Debug, Default)]
struct Shared {
    pieces: Vec<Piece>,
    /// Pieces waiting for a worker (only the first, whole range).
    queue: VecDeque<usize>,
    /// Workers holding a piece.
    busy: usize,
    failed: bool,
    /// Characters seen in names so far, for split points.
    alphabet: BTreeSet<char>,
    /// The open-ended piece: there is at most one, the top of the range.
    open: Option<OpenTop>,
    /// Everything listed so far (one vector, grown in small steps: see [`Shared::keep`]).
    out: Vec<ObjectMeta>,
    /// The folders under the prefix learned so far, to cut a hierarchy of names at.
    folders: Folders,
    /// Whether a page showed names in folders below the prefix (then its folders are asked
    /// for once).
    hierarchy: bool,
    /// Objects listed since the prefix's folders are known, and how much of the range
    /// ([`Folders::pos`]) they covered: the average density folder estimates use.
    listed: f64,
    covered: f64,
    /// Objects listed in each known folder (a page counts for the folders of its last name):
    /// a folder that has held many pages is likely to hold many more.
    listed_in: std::collections::HashMap<String, f64>,
    /// Objects per full page.
    page_size: f64,
}

/// What an idle worker does next.
#[derive(Debug)]
enum Work {
    /// Lists this piece.
    Piece(usize),
    /// Asks for the folders directly under this one.
    Explore(String),
}

/// A cut of a piece: the victim keeps names up to `point`, a new piece takes the rest.
#[derive(Debug)]
struct Cut {
    victim: usize,
    point: String,
    /// The new piece starts with the victim's page (its density), so that it can be cut
    /// again before its own first page.
    inherit: bool,
    /// The victim keeps its page (the cut was placed where the page's numbering or the
    /// folders say, so its estimate still holds); otherwise it lists another before its
    /// piece is cut again.
    keep_page: bool,
}

/// How the piece with the most work left is to be cut.
#[derive(Debug)]
enum Plan {
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
    fn keep(&mut self, objects: Vec<ObjectMeta>) {
        let spare = self.out.capacity() - self.out.len();
        if spare < objects.len() {
            self.out
                .reserve_exact((self.out.len() / 16).max(objects.len() * 4));
        }
        self.out.extend(objects);
    }

    /// The next thing for a worker without work: looking into a folder, or the upper part of
    /// the piece with the most work left.
    fn steal(&mut self, prefix: &str) -> Option<Work> {
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
    fn forget_density_past(&mut self, id: usize) {
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
    fn explore(&mut self, folder: String) -> Work {
        self.folders.start(&folder);
        Work::Explore(folder)
    }

    /// Splits the open-ended piece: its holder keeps up to twice as far from the latest top
    /// page as it started (at least two pages), so that the pieces grow geometrically while
    /// nothing says where the names end, and few empty pieces are cut past their end. Where
    /// the page cannot be extrapolated, what is left of the prefix is halved, once per page.
    fn steal_open(&mut self, prefix: &str, alphabet: &[char]) -> Option<(usize, String)> {
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
    fn folder_pages(&self, lo: &str, hi: Option<&str>) -> f64 {
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
    fn folder_listed(&self, name: &str) -> f64 {
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
    fn steal_bounded(
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

struct Coordinator {
    state: Mutex<Shared>,
    wake: Notify,
    /// Told once, the first time work is split (ends the sequential racer).
    warm: Option<Arc<Notify>>,
    prefix: String,
}

impl Coordinator {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Shared>> {
        self.state
            .lock()
            .map_err(|_| Error::Task("listing state poisoned".into()))
    }

    /// The next piece to list (waiting, or splitting a busy one), or `None` when every piece
    /// is done (or the listing failed).
    async fn next_piece(&self) -> Result<Option<Work>> {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.lock()?;
                if st.failed {
                    return Ok(None);
                }
                if let Some(id) = st.queue.pop_front() {
                    st.busy += 1;
                    return Ok(Some(Work::Piece(id)));
                }
                if let Some(work) = st.steal(&self.prefix) {
                    st.busy += 1;
                    drop(st);
                    if let (Some(warm), Work::Piece(_)) = (&self.warm, &work) {
                        // Stores a permit if the racer is not waiting yet; repeats are harmless.
                        warm.notify_one();
                    }
                    return Ok(Some(work));
                }
                if st.busy == 0 {
                    drop(st);
                    self.wake.notify_waiters();
                    return Ok(None);
                }
            }
            notified.await;
        }
    }

    /// The bounds the piece's next request asks for.
    fn bounds(&self, id: usize) -> Result<(Option<String>, Option<String>)> {
        let st = self.lock()?;
        let piece = &st.pieces[id];
        Ok((piece.after.clone(), piece.upto.clone()))
    }

    /// Keeps what a page holds inside the piece's bounds as they are now (another worker may
    /// have taken the upper part while the request was out) and moves the piece on. Returns
    /// whether the piece is done.
    fn record(&self, id: usize, page: Page) -> Result<bool> {
        let prefix_len = self.prefix.len();
        let mut st = self.lock()?;
        if st.failed {
            return Ok(true);
        }
        let mut objects = page.objects;
        let mut done = !page.more;
        if let Some(upto) = st.pieces[id].upto.as_deref() {
            let before = objects.len();
            objects.retain(|o| o.name.as_str() <= upto);
            // A name past the bound: the rest of the piece came back in this page.
            done |= objects.len() < before;
        }
        let (Some(first), Some(last)) = (objects.first(), objects.last()) else {
            st.forget_density_past(id);
            drop(st);
            self.wake.notify_waiters();
            return Ok(true);
        };
        let (first, last) = (first.name.clone(), last.name.clone());
        // Distinct characters first (ASCII in a bit set), so that the shared set sees each
        // character once per page, not once per name.
        let mut ascii = 0u128;
        let mut other = BTreeSet::new();
        for o in &objects {
            for c in o.name.get(prefix_len..).unwrap_or_default().chars() {
                match u32::from(c) {
                    n @ 0..128 => ascii |= 1 << n,
                    _ => {
                        other.insert(c);
                    }
                }
            }
        }
        let page_chars = (0u8..128)
            .filter(|n| ascii & (1 << n) != 0)
            .map(char::from)
            .chain(other);
        st.alphabet.extend(page_chars);
        if let Some(top) = st.open.as_mut().filter(|t| t.id == id && !done) {
            if objects.len() > 1 {
                top.sample = objects.iter().map(|o| o.name.clone()).collect();
                top.at = 0;
                top.halved = false;
            }
            top.granted = (top.granted * 2).clamp(1, MAX_TOP_SPLITS);
            top.allowance = top.granted;
        }
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        let radix = Radix::learn(&self.prefix, &names);
        if !done && !st.hierarchy {
            st.hierarchy = names
                .iter()
                .any(|n| n.get(prefix_len..).is_some_and(|rest| rest.contains('/')));
        }
        if st.folders.known() {
            let from = st.pieces[id].after.clone();
            let from = from.as_deref().unwrap_or(&self.prefix);
            let covered = st.folders.pos(Some(&last)) - st.folders.pos(Some(from));
            st.covered += covered.max(0.0);
            st.listed += objects.len() as f64;
            let chain: Vec<String> = st
                .folders
                .chain(&last)
                .into_iter()
                .map(str::to_string)
                .collect();
            for folder in chain {
                *st.listed_in.entry(folder).or_default() += objects.len() as f64;
            }
        }
        let piece = &mut st.pieces[id];
        piece.after = Some(last.clone());
        piece.page = Some((first, last, radix));
        st.keep(objects);
        drop(st);
        self.wake.notify_waiters();
        Ok(done)
    }

    fn done_with(&self, id: usize) -> Result<()> {
        let mut st = self.lock()?;
        st.busy -= 1;
        st.pieces[id].live = false;
        if st.open.as_ref().is_some_and(|t| t.id == id) {
            st.open = None;
        }
        drop(st);
        self.wake.notify_waiters();
        Ok(())
    }

    /// Records the folders found directly under `folder` (`None`: the store lists none).
    fn explored(&self, folder: &str, found: Option<Vec<String>>) -> Result<()> {
        let mut st = self.lock()?;
        st.busy -= 1;
        st.folders.learn(folder, found);
        // The pages listed before the folders were known (the root's first) give the density
        // folder estimates start from: without it every folder would look large, and the
        // first idle workers would cut the range at every folder boundary, each piece a
        // partial page (many small folders cost many requests that way).
        let boundaries = st.folders.between(&self.prefix, None).next().is_some();
        if boundaries && st.covered == 0.0 && !st.out.is_empty() {
            let last = st.out.iter().map(|o| o.name.as_str()).max();
            let covered = st.folders.pos(last) - st.folders.pos(Some(&self.prefix));
            if covered > 0.0 {
                st.covered = covered;
                st.listed = st.out.len() as f64;
            }
        }
        drop(st);
        self.wake.notify_waiters();
        Ok(())
    }

    fn fail(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.failed = true;
        }
        self.wake.notify_waiters();
    }
}

/// Work-stealing listing. One worker starts with the whole range. From its first page on,
/// a worker without work takes the upper part of another's piece:
///
/// - of the open-ended top piece, at a point extrapolated from the latest page listed there,
///   each cut twice as far as the last (so the ramp-up takes a few requests' time whatever
///   the size), and only as many cuts as the top's holder has shown full pages for (1, 2, 4,
///   …), so a short listing cuts few empty pieces past its end;
/// - else of the bounded piece with the most pages left, as its last page's density says:
///   its holder keeps half, at most [`KEEP_PAGES`]. A piece cut so inherits the density and
///   can be cut again at once, so that a large piece is shared out in one round, not one
///   worker per round.
///
/// Where the first page shows names in folders below the prefix, one worker asks for the
/// prefix's folders (the others wait for them, one request's time) and from then on pieces
/// that span known folders are cut at the boundary nearest their middle, counting every
/// folder of a level alike ([`Folders::pos`]). A folder that has held a few pages and holds
/// folders itself is looked into as soon as a worker is free; inside a folder of files, a
/// piece is cut by its page's numbering.
///
/// A worker whose piece was cut below a page it was fetching drops the names past the cut;
/// so each name is kept by exactly one worker, and every piece ends with at most one partial
/// page.
async fn parallel(
    store: &Arc<dyn Store>,
    prefix: &str,
    options: &ListOptions,
    warm: Option<Arc<Notify>>,
) -> Result<Vec<ObjectMeta>> {
    let coord = Arc::new(Coordinator {
        state: Mutex::new(Shared {
            pieces: vec![Piece {
                after: None,
                upto: None,
                page: None,
                live: true,
            }],
            queue: VecDeque::from([0]),
            open: Some(OpenTop {
                id: 0,
                sample: Vec::new(),
                at: 0,
                halved: true,
                allowance: 0,
                granted: 0,
            }),
            alphabet: prefix.chars().collect(),
            folders: Folders::new(prefix),
            page_size: options.page_size.clamp(1, MAX_PAGE) as f64,
            ..Default::default()
        }),
        wake: Notify::new(),
        warm,
        prefix: prefix.to_string(),
    });
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.parallelism {
        let coord = coord.clone();
        let store = store.clone();
        let page_size = options.page_size;
        workers.spawn(async move {
            let result = worker(&coord, store.as_ref(), page_size).await;
            if result.is_err() {
                coord.fail();
            }
            result
        });
    }
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::Task(e.to_string())),
        }
    }
    let mut st = coord.lock()?;
    Ok(std::mem::take(&mut st.out))
}

async fn worker(coord: &Coordinator, store: &dyn Store, page_size: usize) -> Result<()> {
    while let Some(work) = coord.next_piece().await? {
        let id = match work {
            Work::Piece(id) => id,
            Work::Explore(folder) => {
                let found = folders_under(store, &folder).await;
                coord.explored(&folder, found)?;
                continue;
            }
        };
        loop {
            let (after, upto) = coord.bounds(id)?;
            let page = next_page(
                store,
                &coord.prefix,
                after.as_deref(),
                upto.as_deref(),
                page_size,
            )
            .await?;
            if coord.record(id, page)? {
                break;
            }
        }
        coord.done_with(id)?;
    }
    Ok(())
}

/// The folders directly under `folder`, from up to [`FOLDER_PAGES`] delimiter listings
/// within [`FOLDER_WAIT`]: an empty list where they do not reach the end, or the requests
/// failed or took too long (after the store's retries), `None` where the store has no
/// delimiter listings ([`Error::Unsupported`]). Folders only say where to cut, so a listing
/// goes on without them; a real fault shows in its pages.
async fn folders_under(store: &dyn Store, folder: &str) -> Option<Vec<String>> {
    let pages = async {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..FOLDER_PAGES {
            let page = store.list_folders(folder, token.as_deref()).await?;
            found.extend(page.folders);
            token = page.token;
            if token.is_none() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    };
    match tokio::time::timeout(FOLDER_WAIT, pages).await {
        Ok(Ok(found)) => Some(found),
        Ok(Err(Error::Unsupported { .. })) => None,
        Ok(Err(_)) | Err(_) => Some(Vec::new()),
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
