//! Listing: parallel, work-stealing, raced against a plain sequential listing.
//!
//! A remote listing starts with one worker owning the whole name range under the prefix. From
//! its first page on, a worker without work takes the upper part of a busy worker's piece (see
//! the `parallel` module): the open-ended top piece is cut at points extrapolated from the
//! first page, geometrically further each time, and bounded pieces are halved, the one with the
//! most pages left first, at lexicographic points ([`crate::split`]). Where names lie in
//! folders below the prefix, the folders are asked for once (one delimiter listing, then one
//! per large folder that holds folders) and pieces are cut at folder boundaries, since a page's
//! numbering says nothing past its own folder — only where a piece holds several pages by the
//! density measured so far (the pages listed before the folders were known included), so that
//! small folders are listed together in one ranged piece instead of a partial page each. Each
//! worker asks the store only for its own piece (GCS `startOffset`/`endOffset`; other stores
//! stop at the bound client-side). Meanwhile a plain sequential listing runs too, until the
//! parallel one holds twice its objects and two pages more (it cannot win then), and whichever
//! finishes first is returned, so a small prefix costs no more than a sequential listing. The
//! first page, the same request for both, is asked for once and given to both.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::Result;
use crate::meta::ObjectMeta;
use crate::store::{Page, PageRequest, Store, MAX_PAGE};

mod parallel;
mod plan;

use parallel::parallel;

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
            sequential(store, prefix, options, None, None).await?,
            Strategy::Sequential,
        )
    } else if options.race_sequential {
        // Both listings begin with the same request, so it is made once and its page given to
        // both: a prefix of one page costs one request, and the race no second first page.
        let first = next_page(store.as_ref(), prefix, None, None, options.page_size).await?;
        if !first.more {
            (first.objects, Strategy::Sequential)
        } else {
            // The sequential racer runs until the parallel listing is clearly ahead (it has
            // kept twice the racer's objects, and two pages more): it cannot win then, and
            // would only add load. While the parallel listing is not faster, it runs on to the
            // end.
            let lead = Arc::new(Lead::new(options.page_size));
            let racer = async {
                tokio::select! {
                    r = sequential(store, prefix, options, Some(first.clone()), Some(&lead)) => Some(r),
                    _ = lead.behind.notified() => None,
                }
            };
            let par = parallel(
                store,
                prefix,
                options,
                Some(first.clone()),
                Some(lead.clone()),
            );
            tokio::pin!(racer, par);
            tokio::select! {
                Some(r) = &mut racer => (r?, Strategy::Sequential),
                r = &mut par => (r?, Strategy::Parallel),
            }
        }
    } else {
        (
            parallel(store, prefix, options, None, None).await?,
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

/// How many times the sequential racer's objects the parallel listing must have kept before
/// the racer gives up...
const LEAD: usize = 2;
/// ...and by how many full pages at least: early on, one page in hand more is no lead.
const LEAD_PAGES: usize = 2;

/// The race between the two listings, as the parallel one sees it.
#[derive(Debug)]
pub(super) struct Lead {
    /// Objects the sequential racer has listed.
    racer: AtomicUsize,
    /// Objects per full page.
    page_size: usize,
    /// Told (a stored permit) once the parallel listing is clearly ahead.
    behind: Notify,
}

impl Lead {
    fn new(page_size: usize) -> Self {
        Self {
            racer: AtomicUsize::new(0),
            page_size: page_size.clamp(1, MAX_PAGE),
            behind: Notify::new(),
        }
    }

    /// The parallel listing has kept `kept` objects: tells the racer to stop where that is
    /// [`LEAD`] times its own and [`LEAD_PAGES`] full pages more.
    pub(super) fn parallel_kept(&self, kept: usize) {
        let racer = self.racer.load(Ordering::Relaxed);
        if racer > 0 && kept >= LEAD * racer && kept >= racer + LEAD_PAGES * self.page_size {
            self.behind.notify_one();
        }
    }
}

/// Page after page; `first`, where given, is the first page, already fetched. As a racer, it
/// tells `lead` how far it has got.
async fn sequential(
    store: &Arc<dyn Store>,
    prefix: &str,
    options: &ListOptions,
    mut first: Option<Page>,
    lead: Option<&Lead>,
) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = match first.take() {
            Some(page) => page,
            None => {
                next_page(
                    store.as_ref(),
                    prefix,
                    after.as_deref(),
                    None,
                    options.page_size,
                )
                .await?
            }
        };
        let last = page.objects.last().map(|o| o.name.clone());
        out.extend(page.objects);
        if let Some(lead) = lead {
            lead.racer.store(out.len(), Ordering::Relaxed);
        }
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
