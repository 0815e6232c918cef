//! The parallel listing's workers: a coordinator holding the [`super::plan`] state under one
//! lock, the workers that list their pieces and ask it for more, and the folders request.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::plan::*;
use super::{next_page, Lead, ListOptions};
use crate::error::{Error, Result};
use crate::folders::Folders;
use crate::meta::ObjectMeta;
use crate::split::Radix;
use crate::store::{Page, Store, MAX_PAGE};

struct Coordinator {
    state: Mutex<Shared>,
    wake: Notify,
    /// The race against the sequential listing, told how many objects are kept.
    lead: Option<Arc<Lead>>,
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
        let kept = st.out.len();
        drop(st);
        if let Some(lead) = &self.lead {
            lead.parallel_kept(kept);
        }
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
/// page. `first`, where given, is the whole range's first page, already fetched.
pub(super) async fn parallel(
    store: &Arc<dyn Store>,
    prefix: &str,
    options: &ListOptions,
    first: Option<Page>,
    lead: Option<Arc<Lead>>,
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
        lead,
        prefix: prefix.to_string(),
    });
    if let Some(page) = first {
        // The whole range's first page, already fetched: piece 0 goes on from its end.
        if coord.record(0, page)? {
            let mut st = coord.lock()?;
            return Ok(std::mem::take(&mut st.out));
        }
    }
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
