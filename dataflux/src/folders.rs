//! The folder hierarchy of a listing, learned from delimiter listings, as places to cut it.
//!
//! Names such as `images/2024-03-17/cam-07/000123.jpg` have no numbering that runs across
//! folders: a page of one camera's frames says nothing about how many frames the next camera,
//! or the next day, holds, so a cut placed by a page's numbering past its folder often lands
//! in empty space. A delimiter listing of `images/` (one request for up to 1,000 folders)
//! tells where the days begin; cutting at those boundaries gives pieces that hold whole
//! folders. Folders are only looked into where a piece is large and its names go deeper, so
//! a hierarchy costs a request per large folder, not per folder.
//!
//! [`Folders::pos`] places a name in `[0, 1]` as if every folder at one level held as many
//! names as its siblings: the numbering in which folder cuts are spread. Written here
//! because no crate does this.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

/// The most folders one delimiter listing may return to be used (one page); a folder with
/// more is treated as holding no folders, since cutting at so many boundaries gains nothing
/// over the names' own numbering and listing them would cost a request per 1,000.
pub(crate) const MAX_FOLDERS: usize = 1000;

/// Folders learned so far under a listing's prefix.
#[derive(Debug, Default)]
pub(crate) struct Folders {
    /// The listing's prefix (folder form or empty): the root of the hierarchy.
    root: String,
    /// Each folder looked into, with the folders directly under it, in name order (empty:
    /// none, or too many to use).
    children: BTreeMap<String, Vec<String>>,
    /// Every known folder below the root: the boundaries pieces may be cut at.
    bounds: BTreeSet<String>,
    /// Folders being looked into now.
    pending: BTreeSet<String>,
    /// Set when the store has no delimiter listings: nothing more is asked.
    unsupported: bool,
}

impl Folders {
    /// No folders known yet under `root`.
    pub(crate) fn new(root: &str) -> Self {
        Self {
            root: root.to_string(),
            ..Self::default()
        }
    }

    /// Whether the root's folders are known (the hierarchy may then be cut at them).
    pub(crate) fn known(&self) -> bool {
        self.children.get(&self.root).is_some_and(|c| !c.is_empty())
    }

    /// Whether the root is being looked into, or should be: a page showed names in folders
    /// below it and it has not been asked yet.
    pub(crate) fn root_state(&self) -> RootState {
        if self.unsupported || self.children.contains_key(&self.root) {
            RootState::Done
        } else if self.pending.contains(&self.root) {
            RootState::Pending
        } else {
            RootState::Wanted
        }
    }

    /// Marks `folder` as being looked into.
    pub(crate) fn start(&mut self, folder: &str) {
        self.pending.insert(folder.to_string());
    }

    /// Records what a delimiter listing of `folder` found (`None`: the store has none).
    pub(crate) fn learn(&mut self, folder: &str, found: Option<Vec<String>>) {
        self.pending.remove(folder);
        let Some(mut found) = found else {
            self.unsupported = true;
            self.children.insert(folder.to_string(), Vec::new());
            return;
        };
        found.retain(|f| f.len() > folder.len() && f.starts_with(folder) && f.ends_with('/'));
        found.sort_unstable();
        found.dedup();
        if found.len() > MAX_FOLDERS {
            found.clear();
        }
        self.bounds.extend(found.iter().cloned());
        self.children.insert(folder.to_string(), found);
    }

    /// The known folder boundaries strictly between `lo` and `hi` (`None`: the end of the
    /// root), in order; none where `hi` is not past `lo` (an empty or spent piece).
    pub(crate) fn between<'a>(
        &'a self,
        lo: &str,
        hi: Option<&str>,
    ) -> impl Iterator<Item = &'a String> + 'a {
        let upper = match hi {
            // `BTreeSet::range` panics on an empty or reversed range.
            Some(h) if h <= lo => None,
            Some(h) => Some(Bound::Excluded(h.to_string())),
            None => Some(Bound::Unbounded),
        };
        upper
            .map(|upper| {
                self.bounds
                    .range::<String, _>((Bound::Excluded(lo.to_string()), upper))
            })
            .into_iter()
            .flatten()
    }

    /// Where `name` lies in `[0, 1]`, every folder at a level counted as large as its
    /// siblings: a folder boundary is exact; a name inside a folder not looked into is its
    /// middle; `None` is the end.
    pub(crate) fn pos(&self, name: Option<&str>) -> f64 {
        let Some(name) = name else {
            return 1.0;
        };
        let (mut lo, mut width, mut parent) = (0.0, 1.0, self.root.as_str());
        loop {
            let children = match self.children.get(parent) {
                Some(c) if !c.is_empty() => c,
                _ => return lo + width * 0.5,
            };
            let k = children.len() as f64;
            let i = children.partition_point(|c| c.as_str() < name);
            match i.checked_sub(1).map(|j| &children[j]) {
                Some(c) if name.starts_with(c.as_str()) => {
                    lo += width * (i - 1) as f64 / k;
                    width /= k;
                    parent = c;
                }
                _ => return lo + width * i as f64 / k,
            }
        }
    }

    /// The known folders that hold `name`, outermost first.
    pub(crate) fn chain(&self, name: &str) -> Vec<&str> {
        let mut chain = Vec::new();
        let mut parent = self.root.as_str();
        while let Some(children) = self.children.get(parent) {
            let i = children.partition_point(|c| c.as_str() < name);
            match i.checked_sub(1).map(|j| children[j].as_str()) {
                Some(folder) if name.starts_with(folder) && name != folder => {
                    chain.push(folder);
                    parent = folder;
                }
                _ => break,
            }
        }
        chain
    }

    /// The folder to look into so that the range from `cursor` (a listed name) on can be cut
    /// at folders: the first folder on the way down from the root to `cursor` not looked into
    /// yet, if `cursor` lies deeper than it (so it holds folders itself).
    pub(crate) fn to_explore(&self, cursor: &str) -> Option<String> {
        if self.unsupported {
            return None;
        }
        let mut parent = self.root.as_str();
        loop {
            let children = self.children.get(parent)?;
            let i = children.partition_point(|c| c.as_str() < cursor);
            let folder = children.get(i.checked_sub(1)?)?;
            if !cursor.starts_with(folder.as_str()) {
                return None;
            }
            if self.children.contains_key(folder) {
                parent = folder;
                continue;
            }
            let deeper = cursor[folder.len()..].contains('/');
            return (deeper && !self.pending.contains(folder)).then(|| folder.clone());
        }
    }
}

/// Where looking into the root stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RootState {
    /// Not asked yet.
    Wanted,
    /// Being asked.
    Pending,
    /// Known, or not available.
    Done,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days() -> Folders {
        let mut f = Folders::new("i/");
        f.learn(
            "i/",
            Some(vec![
                "i/a/".into(),
                "i/b/".into(),
                "i/c/".into(),
                "i/d/".into(),
            ]),
        );
        f
    }

    #[test]
    fn positions_count_each_folder_alike() {
        let mut f = days();
        assert_eq!(f.pos(Some("i/")), 0.0);
        assert_eq!(f.pos(Some("i/b/")), 0.25);
        assert_eq!(f.pos(Some("i/b/x.jpg")), 0.375);
        assert_eq!(f.pos(None), 1.0);
        // A name between folders (directly under the root) sits at the next boundary.
        assert_eq!(f.pos(Some("i/b.txt")), 0.25);
        f.learn("i/b/", Some(vec!["i/b/0/".into(), "i/b/1/".into()]));
        assert_eq!(f.pos(Some("i/b/1/")), 0.375);
        assert_eq!(f.pos(Some("i/b/1/z")), 0.4375);
        assert_eq!(f.chain("i/b/1/z"), ["i/b/", "i/b/1/"]);
        assert_eq!(f.chain("i/c/z"), ["i/c/"]);
        assert!(f.chain("i/b.txt").is_empty());
        let inside: Vec<&String> = f.between("i/a/x", Some("i/c/")).collect();
        assert_eq!(inside, ["i/b/", "i/b/0/", "i/b/1/"]);
        assert_eq!(f.between("i/c/x", None).collect::<Vec<_>>(), ["i/d/"]);
        // An empty or reversed range is empty, not a panic.
        assert_eq!(f.between("i/c/", Some("i/c/")).count(), 0);
        assert_eq!(f.between("i/d/", Some("i/a/")).count(), 0);
    }

    #[test]
    fn only_folders_that_hold_folders_are_looked_into() {
        let mut f = days();
        assert_eq!(f.to_explore("i/b/0/1.jpg").as_deref(), Some("i/b/"));
        assert_eq!(f.to_explore("i/b/1.jpg"), None);
        assert_eq!(f.to_explore("i/b.txt"), None);
        f.start("i/b/");
        assert_eq!(f.to_explore("i/b/0/1.jpg"), None);
        f.learn("i/b/", Some(vec!["i/b/0/".into()]));
        assert_eq!(f.to_explore("i/b/0/1.jpg"), None);
        assert_eq!(f.to_explore("i/b/0/x/1.jpg").as_deref(), Some("i/b/0/"));
    }

    #[test]
    fn too_many_folders_or_none_leave_nothing_to_cut_at() {
        let mut f = Folders::new("i/");
        assert_eq!(f.root_state(), RootState::Wanted);
        f.start("i/");
        assert_eq!(f.root_state(), RootState::Pending);
        let many: Vec<String> = (0..=MAX_FOLDERS).map(|k| format!("i/{k:05}/")).collect();
        f.learn("i/", Some(many));
        assert_eq!(f.root_state(), RootState::Done);
        assert!(!f.known());
        assert_eq!(f.between("i/", None).count(), 0);
        let mut g = Folders::new("i/");
        g.learn("i/", None);
        assert_eq!(g.root_state(), RootState::Done);
        assert_eq!(g.to_explore("i/a/b/c"), None);
    }
}
