//! A [`Store`] that asks a hook about every call before forwarding it: the way to make any
//! store fail on a schedule (an outage, refused deletes, empty pages, bodies cut short) in
//! tests, here and in crates built on `dataflux`, without writing a store.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store};
use crate::error::{Error, Operation, Result};
use crate::meta::ObjectMeta;
use crate::stats::Stats;

/// One call to a [`HookStore`], with the object (or listing) it is about.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Call<'a> {
    /// A page request.
    List(PageRequest<'a>),
    /// A request for the folders under this prefix.
    Folders(&'a str),
    /// A read of an object.
    Get(&'a str),
    /// A metadata read.
    Head(&'a str),
    /// A write.
    Put(&'a str, PutMode),
    /// A delete.
    Delete(&'a str),
    /// A compose into this destination.
    Compose(&'a str),
}

impl Call<'_> {
    /// What the call does.
    pub fn operation(&self) -> Operation {
        match self {
            Call::List(_) | Call::Folders(_) => Operation::List,
            Call::Get(_) => Operation::Get,
            Call::Head(_) => Operation::Head,
            Call::Put(..) => Operation::Put,
            Call::Delete(_) => Operation::Delete,
            Call::Compose(_) => Operation::Compose,
        }
    }

    /// The object it is about (the prefix, for a listing).
    pub fn name(&self) -> &str {
        match self {
            Call::List(r) => r.prefix,
            Call::Folders(p) => p,
            Call::Get(n) | Call::Head(n) | Call::Put(n, _) | Call::Delete(n) | Call::Compose(n) => {
                n
            }
        }
    }
}

/// What the hook decides.
#[derive(Debug)]
#[non_exhaustive]
pub enum Answer {
    /// Forward the call.
    Forward,
    /// Fail it with this error.
    Fail(Error),
    /// Answer a listing with this page instead.
    Page(Page),
    /// Forward a read and return only the first half of the body.
    CutBody,
    /// Forward the call after this long: a slow or silent server.
    Delay(std::time::Duration),
}

impl Answer {
    /// A transient HTTP failure with `status` (503, 429, …) for `call`.
    pub fn status(call: &Call<'_>, status: u16) -> Self {
        Answer::Fail(Error::Request {
            operation: call.operation(),
            location: call.name().to_string(),
            status: Some(status),
            transient: true,
            message: format!("injected HTTP {status}"),
        })
    }
}

type Hook = dyn Fn(&Call<'_>) -> Answer + Send + Sync;

/// Forwards to `inner` whatever `hook` does not answer itself.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use dataflux::store::hooked::{Answer, Call, HookStore};
/// use dataflux::{Location, PutMode, Store};
/// let inner = Location::parse("memory://hooked-doc").unwrap().open().await.unwrap();
/// let store = HookStore::new(inner, |call| match call {
///     Call::Delete(name) if name.starts_with("keep/") => Answer::status(call, 403),
///     _ => Answer::Forward,
/// });
/// store.put("keep/a", Bytes::from_static(b"x"), PutMode::Overwrite).await.unwrap();
/// assert!(store.delete("keep/a").await.is_err());
/// # });
/// ```
pub struct HookStore {
    inner: Arc<dyn Store>,
    hook: Box<Hook>,
    compose: Option<bool>,
}

impl std::fmt::Debug for HookStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl HookStore {
    /// Asks `hook` about every call to `inner`.
    pub fn new(
        inner: Arc<dyn Store>,
        hook: impl Fn(&Call<'_>) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            hook: Box::new(hook),
            compose: None,
        }
    }

    /// Claims (or denies) the compose capability whatever `inner` has.
    pub fn with_compose(mut self, compose: bool) -> Self {
        self.compose = Some(compose);
        self
    }

    async fn ask(&self, call: Call<'_>) -> Result<Answer> {
        match (self.hook)(&call) {
            Answer::Fail(e) => Err(e),
            Answer::Delay(wait) => {
                tokio::time::sleep(wait).await;
                Ok(Answer::Forward)
            }
            other => Ok(other),
        }
    }
}

#[async_trait]
impl Store for HookStore {
    fn url(&self) -> &str {
        self.inner.url()
    }

    fn capabilities(&self) -> Capabilities {
        let caps = self.inner.capabilities();
        Capabilities {
            compose: self.compose.unwrap_or(caps.compose),
            ..caps
        }
    }

    fn stats(&self) -> &Stats {
        self.inner.stats()
    }

    fn object_url(&self, name: &str) -> String {
        self.inner.object_url(name)
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page> {
        match self.ask(Call::List(req)).await? {
            Answer::Page(page) => Ok(page),
            _ => self.inner.list_page(req).await,
        }
    }

    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        self.ask(Call::Folders(prefix)).await?;
        self.inner.list_folders(prefix, token).await
    }

    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let cut = matches!(self.ask(Call::Get(name)).await?, Answer::CutBody);
        let body = self.inner.get(name, range).await?;
        Ok(if cut {
            body.slice(..body.len() / 2)
        } else {
            body
        })
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        self.ask(Call::Head(name)).await?;
        self.inner.head(name).await
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        self.ask(Call::Put(name, mode)).await?;
        self.inner.put(name, data, mode).await
    }

    async fn delete(&self, name: &str) -> Result<()> {
        self.ask(Call::Delete(name)).await?;
        self.inner.delete(name).await
    }

    async fn compose(&self, sources: &[ObjectMeta], dest: &str) -> Result<ObjectMeta> {
        self.ask(Call::Compose(dest)).await?;
        self.inner.compose(sources, dest).await
    }
}
