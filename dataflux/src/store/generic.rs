//! Stores served by `object_store`: local directories, memory, S3 and anything else it speaks.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use super::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store, MAX_PAGE};
use crate::error::{status_is_transient, Error, Operation, Result};
use crate::meta::ObjectMeta;

/// A [`Store`] over any [`ObjectStore`].
pub struct GenericStore {
    inner: Arc<dyn ObjectStore>,
    /// The same store's one-page listings, where it has them (S3): folder listings then
    /// cost one request each, not the whole prefix.
    paged: Option<Arc<dyn PaginatedListStore>>,
    url: String,
    remote: bool,
}

impl std::fmt::Debug for GenericStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericStore")
            .field("inner", &self.inner)
            .field("paged", &self.paged.is_some())
            .field("url", &self.url)
            .field("remote", &self.remote)
            .finish()
    }
}

impl GenericStore {
    /// Wraps `inner`; `url` names it in messages; `remote` says whether requests are
    /// network round trips (S3) or local calls (files, memory).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use dataflux::store::{generic::GenericStore, Store};
    /// let store = GenericStore::new(Arc::new(object_store::memory::InMemory::new()), "memory://", false);
    /// assert_eq!(store.object_url("a/b"), "memory://a/b");
    /// ```
    pub fn new(inner: Arc<dyn ObjectStore>, url: impl Into<String>, remote: bool) -> Self {
        Self {
            inner,
            paged: None,
            url: url.into(),
            remote,
        }
    }

    /// Lists folders through `paged` (the same store as `inner`, e.g. an `AmazonS3`), a
    /// page per request. Without it, a folder listing is `object_store`'s
    /// `list_with_delimiter`, which reads every page of the prefix: as long as listing it
    /// all on a remote store. [`crate::Location::open`] sets it for S3.
    pub fn with_paginated_listing(mut self, paged: Arc<dyn PaginatedListStore>) -> Self {
        self.paged = Some(paged);
        self
    }

    /// Object names are used as given (`Path::from` would percent-encode them).
    fn path(&self, name: &str) -> Result<Path> {
        Path::parse(name).map_err(|e| Error::InvalidLocation {
            url: self.object_url(name),
            reason: e.to_string(),
        })
    }

    fn map_err(&self, op: Operation, name: &str, err: object_store::Error) -> Error {
        let location = self.object_url(name);
        match err {
            object_store::Error::NotFound { .. } => Error::NotFound { location },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => Error::AlreadyExists { location },
            object_store::Error::PermissionDenied { source, .. }
            | object_store::Error::Unauthenticated { source, .. } => Error::PermissionDenied {
                operation: op,
                location,
                message: source.to_string(),
            },
            object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. } => Error::Unsupported {
                operation: op,
                store: self.url.clone(),
            },
            other => {
                let message = other.to_string();
                let (status, transient) = classify(&other, &message);
                Error::Request {
                    operation: op,
                    location,
                    status,
                    transient,
                    message,
                }
            }
        }
    }
}

/// Whether an `object_store` failure is transient, from its typed source chain: a transport
/// failure (`HttpError`: connect, request, timeout, interrupted, a body cut short) is; an
/// HTTP status is when it is 408, 429 or 5xx. `object_store` does not expose the status of
/// a failed request as a type outside the crate (its `RetryError` is private), so the status
/// alone is read from the message (see [`http_status_in`]). Without an HTTP client in the
/// build (feature `s3` off: local and memory stores only) there is no transport failure.
fn classify(err: &object_store::Error, message: &str) -> (Option<u16>, bool) {
    let status = http_status_in(message);
    #[cfg(feature = "s3")]
    {
        use object_store::client::{HttpError, HttpErrorKind};
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(http) = e.downcast_ref::<HttpError>() {
                let transient = !matches!(http.kind(), HttpErrorKind::Unknown);
                return (status, transient || status.is_some_and(status_is_transient));
            }
            source = e.source();
        }
    }
    #[cfg(not(feature = "s3"))]
    let _ = err;
    (status, status.is_some_and(status_is_transient))
}

/// Finds an HTTP status in an `object_store` error message: `status code: 503 …` (a
/// non-2xx answer) or `status: 503` (an answer whose body was an error).
fn http_status_in(message: &str) -> Option<u16> {
    ["status code: ", "status: "].iter().find_map(|tag| {
        let at = message.find(tag)? + tag.len();
        message.get(at..at + 3)?.parse().ok()
    })
}

fn to_meta(m: &object_store::ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: m.location.as_ref().to_string(),
        size: m.size,
        generation: None,
        crc32c: None,
        updated: Some(m.last_modified),
    }
}

/// `object_store` prefixes are whole path segments: `images/` lists under `images`.
fn segment_prefix(prefix: &str) -> Option<Path> {
    let trimmed = prefix.trim_end_matches('/');
    Path::parse(trimmed).ok().filter(|p| !p.as_ref().is_empty())
}

/// A valid `object_store` path no greater than `after`, to list from: split points need not
/// be valid paths (`a/`); whatever lies between is dropped by the exact check after listing.
fn offset_path(after: &str) -> Option<Path> {
    // `Path::parse` also drops a leading `/`, which would move the offset up: check.
    Path::parse(after.trim_end_matches('/'))
        .ok()
        .filter(|p| p.as_ref() <= after)
}

#[async_trait]
impl Store for GenericStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            end_offset: false,
            compose: false,
            remote: self.remote,
        }
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page> {
        let max = req.max_results.clamp(1, MAX_PAGE);
        let prefix = segment_prefix(req.prefix);
        let mut stream = match req.after.and_then(offset_path) {
            Some(offset) => self.inner.list_with_offset(prefix.as_ref(), &offset),
            None => self.inner.list(prefix.as_ref()),
        };
        // No `object_store` backend has an end offset, and local stores promise no
        // order: bound and order here. A local or memory store answers the whole
        // range in one page (each call walks it whole anyway); a remote store
        // lists in order and stops after `max` objects.
        let mut objects = Vec::new();
        let mut more = false;
        while let Some(m) = stream
            .try_next()
            .await
            .map_err(|e| self.map_err(Operation::List, req.prefix, e))?
        {
            let meta = to_meta(&m);
            if req.upto.is_some_and(|u| meta.name.as_str() > u) {
                if self.remote {
                    // Remote stores list in order: nothing further is in range.
                    break;
                }
                continue;
            }
            if !meta.name.starts_with(req.prefix)
                || req.after.is_some_and(|a| meta.name.as_str() <= a)
            {
                continue;
            }
            objects.push(meta);
            if self.remote && objects.len() >= max {
                // Remote stores list in order: a full page is a page.
                more = true;
                break;
            }
        }
        objects.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(Page {
            objects,
            more,
            token: None,
        })
    }

    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        let (common_prefixes, token) = match &self.paged {
            // One page (up to 1,000 entries, objects and folders together) per request.
            Some(paged) => {
                let options = PaginatedListOptions {
                    delimiter: Some("/".into()),
                    max_keys: Some(MAX_PAGE),
                    page_token: token.map(str::to_string),
                    ..Default::default()
                };
                let page = paged
                    .list_paginated((!prefix.is_empty()).then_some(prefix), options)
                    .await
                    .map_err(|e| self.map_err(Operation::List, prefix, e))?;
                (page.result.common_prefixes, page.page_token)
            }
            // A local or memory store walks the prefix in one call anyway; a remote store
            // without one-page listings reads every page of the prefix here (the listing
            // waits for folders only so long: `list`'s folder wait).
            None => {
                let listed = self
                    .inner
                    .list_with_delimiter(segment_prefix(prefix).as_ref())
                    .await
                    .map_err(|e| self.map_err(Operation::List, prefix, e))?;
                (listed.common_prefixes, None)
            }
        };
        Ok(FolderPage::new(
            prefix,
            common_prefixes.iter().map(|p| format!("{p}/")),
            token,
        ))
    }

    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path(name)?;
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..Default::default()
        };
        let result = self
            .inner
            .get_opts(&path, options)
            .await
            .map_err(|e| self.map_err(Operation::Get, name, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.map_err(Operation::Get, name, e))
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let path = self.path(name)?;
        self.inner
            .head(&path)
            .await
            .map(|m| to_meta(&m))
            .map_err(|e| self.map_err(Operation::Head, name, e))
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let path = self.path(name)?;
        let size = data.len() as u64;
        let put_mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
        };
        self.inner
            .put_opts(&path, PutPayload::from(data), put_mode.into())
            .await
            .map_err(|e| self.map_err(Operation::Put, name, e))?;
        Ok(ObjectMeta::new(name, size))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.map_err(Operation::Delete, name, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_found_in_both_of_object_stores_formats() {
        let busy = "Generic S3 error: Error performing GET http://h/b/x in 2ms - Server returned non-2xx status code: 503 Service Unavailable: ";
        assert_eq!(http_status_in(busy), Some(503));
        assert_eq!(
            http_status_in("Error performing PUT x - status: 429, body: slow down"),
            Some(429)
        );
        assert_eq!(http_status_in("no status here"), None);
    }
}
