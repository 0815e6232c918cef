//! Google Cloud Storage through its JSON API (crate `gcloud-storage`).
//!
//! Why not `object_store`'s GCS client: it speaks the XML API, which lists without an end
//! offset, reports neither generation nor CRC32C, and cannot compose. `gcloud-storage` was
//! evaluated first and serves everything here, against real GCS and fake-gcs-server alike.
//!
//! With `STORAGE_EMULATOR_HOST` set (`http://127.0.0.1:4443` or `127.0.0.1:4443`, as Google's
//! clients accept it), requests go there with anonymous credentials; otherwise Application
//! Default Credentials are used (workload identity on GKE).

use std::fmt;
use std::ops::Range;

use async_trait::async_trait;
use base64::Engine;
use bytes::Bytes;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::compose::{ComposeObjectRequest, ComposingTargets};
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::download::Range as GcsRange;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::{Object, ObjectPreconditions, SourceObjects};
use gcloud_storage::http::Error as GcsError;

use super::{Capabilities, Page, PageRequest, PutMode, Store, MAX_PAGE};
use crate::error::{status_is_transient, Error, Operation, Result};
use crate::meta::ObjectMeta;
use crate::store::http::HttpTimeouts;

/// The variable Google's client libraries read to find an emulator.
pub const EMULATOR_ENV: &str = "STORAGE_EMULATOR_HOST";

/// One GCS bucket.
pub struct GcsStore {
    client: Client,
    bucket: String,
    url: String,
}

impl fmt::Debug for GcsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsStore").field("url", &self.url).finish()
    }
}

/// The emulator endpoint from `STORAGE_EMULATOR_HOST`, with a scheme.
pub fn emulator_endpoint() -> Option<String> {
    let host = std::env::var(EMULATOR_ENV).ok()?;
    let host = host.trim().trim_end_matches('/');
    if host.is_empty() {
        return None;
    }
    Some(if host.contains("://") {
        host.to_string()
    } else {
        format!("http://{host}")
    })
}

impl GcsStore {
    /// Connects to `bucket`: the emulator when `STORAGE_EMULATOR_HOST` is set, else GCS with
    /// Application Default Credentials.
    pub async fn connect(bucket: &str) -> Result<Self> {
        Self::connect_with(bucket, &HttpTimeouts::default()).await
    }

    /// [`GcsStore::connect`] with the given request timeouts.
    pub async fn connect_with(bucket: &str, timeouts: &HttpTimeouts) -> Result<Self> {
        let http = timeouts.gcs_client().map_err(|e| Error::InvalidLocation {
            url: format!("gs://{bucket}"),
            reason: format!("cannot build the HTTP client: {e}"),
        })?;
        let mut config =
            match emulator_endpoint() {
                Some(endpoint) => ClientConfig {
                    storage_endpoint: endpoint,
                    ..Default::default()
                }
                .anonymous(),
                None => ClientConfig::default().with_auth().await.map_err(|e| {
                    Error::PermissionDenied {
                        operation: Operation::List,
                        location: format!("gs://{bucket}"),
                        message: format!("no Google credentials: {e}"),
                    }
                })?,
            };
        config.http = Some(http);
        Ok(Self::with_client(Client::new(config), bucket))
    }

    /// Uses an already configured client.
    pub fn with_client(client: Client, bucket: &str) -> Self {
        Self {
            client,
            bucket: bucket.to_string(),
            url: format!("gs://{bucket}"),
        }
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn map_err(&self, op: Operation, name: Option<&str>, err: GcsError) -> Error {
        let location = match name {
            Some(n) => self.object_url(n),
            None => self.url.clone(),
        };
        let (status, transient, message) = match &err {
            GcsError::Response(r) => (Some(r.code), status_is_transient(r.code), r.message.clone()),
            GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => {
                let status = e.status().map(|s| s.as_u16());
                let transient = match status {
                    Some(s) => status_is_transient(s),
                    // A body cut short surfaces as a decode error.
                    None => {
                        e.is_timeout()
                            || e.is_connect()
                            || e.is_request()
                            || e.is_body()
                            || e.is_decode()
                    }
                };
                (status, transient, err.to_string())
            }
            GcsError::HttpMiddleware(_) => (None, true, err.to_string()),
            GcsError::TokenSource(_) | GcsError::InvalidRangeHeader(_) => {
                (None, false, err.to_string())
            }
        };
        match (status, op) {
            (Some(404), Operation::List) => Error::BucketNotFound {
                bucket: self.bucket.clone(),
            },
            (Some(404), _) => Error::NotFound { location },
            (Some(401 | 403), _) => Error::PermissionDenied {
                operation: op,
                location,
                message,
            },
            (Some(412), Operation::Put) => Error::AlreadyExists { location },
            _ => Error::Request {
                operation: op,
                location,
                status,
                transient,
                message,
            },
        }
    }
}

/// GCS reports CRC32C as the base64 of its big-endian bytes.
fn decode_crc32c(b64: &str) -> Option<u32> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

fn to_meta(o: &Object) -> ObjectMeta {
    ObjectMeta {
        name: o.name.clone(),
        size: u64::try_from(o.size).unwrap_or(0),
        generation: Some(o.generation),
        crc32c: o.crc32c.as_deref().and_then(decode_crc32c),
        updated: o
            .updated
            .and_then(|t| chrono::DateTime::from_timestamp(t.unix_timestamp(), t.nanosecond())),
    }
}

/// The smallest string greater than every name that starts with `s`'s characters up to and
/// including its last one: an exclusive `endOffset` that covers `upto` inclusively. `None`
/// when there is none (the bound is then applied client-side only).
fn exclusive_end_after(s: &str) -> Option<String> {
    // `s` + "\0" would be exact, but NUL cannot travel in a GCS parameter; bumping the last
    // character over-fetches names that extend `s`, which the client-side check drops.
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(last as u32 + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

#[async_trait]
impl Store for GcsStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            end_offset: true,
            compose: true,
            remote: true,
        }
    }

    async fn list_page(&self, req: PageRequest<'_>) -> Result<Page> {
        let max = req.max_results.clamp(1, MAX_PAGE);
        let request = ListObjectsRequest {
            bucket: self.bucket.clone(),
            prefix: (!req.prefix.is_empty()).then(|| req.prefix.to_string()),
            // startOffset is inclusive: the name equal to `after` comes back and is dropped.
            start_offset: req.after.map(str::to_string),
            end_offset: req.upto.and_then(exclusive_end_after),
            // Always sent: the emulator returns everything in one page without it. One more
            // when resuming: the inclusive start name comes back and is dropped, and a page
            // of only that name would end the listing early.
            max_results: Some((max + usize::from(req.after.is_some())).min(MAX_PAGE) as i32),
            page_token: req.token.map(str::to_string),
            ..Default::default()
        };
        let response = self
            .client
            .list_objects(&request)
            .await
            .map_err(|e| self.map_err(Operation::List, None, e))?;
        let mut more = response.next_page_token.is_some();
        let mut objects = Vec::new();
        for o in response.items.iter().flatten() {
            if req.after.is_some_and(|a| o.name.as_str() <= a) {
                continue;
            }
            if req.upto.is_some_and(|u| o.name.as_str() > u) {
                more = false;
                break;
            }
            objects.push(to_meta(o));
        }
        let token = if more { response.next_page_token } else { None };
        Ok(Page {
            objects,
            more,
            token,
        })
    }

    async fn get(&self, name: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        let gcs_range = match &range {
            Some(r) if r.end > r.start => GcsRange(Some(r.start), Some(r.end - 1)),
            Some(_) => return Ok(Bytes::new()),
            None => GcsRange::default(),
        };
        self.client
            .download_object(&request, &gcs_range)
            .await
            .map(Bytes::from)
            .map_err(|e| self.map_err(Operation::Get, Some(name), e))
    }

    async fn head(&self, name: &str) -> Result<ObjectMeta> {
        let request = GetObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        self.client
            .get_object(&request)
            .await
            .map(|o| to_meta(&o))
            .map_err(|e| self.map_err(Operation::Head, Some(name), e))
    }

    async fn put(&self, name: &str, data: Bytes, mode: PutMode) -> Result<ObjectMeta> {
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: (mode == PutMode::Create).then_some(0),
            ..Default::default()
        };
        // Multipart (metadata + media in one request): GCS and the emulator both honour
        // `ifGenerationMatch` on it (the emulator ignores it on simple uploads).
        let upload = UploadType::Multipart(Box::new(Object {
            name: name.to_string(),
            ..Default::default()
        }));
        let object = self
            .client
            .upload_object(&request, data, &upload)
            .await
            .map_err(|e| self.map_err(Operation::Put, Some(name), e))?;
        Ok(to_meta(&object))
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let request = DeleteObjectRequest {
            bucket: self.bucket.clone(),
            object: name.to_string(),
            ..Default::default()
        };
        match self.client.delete_object(&request).await {
            Ok(()) => Ok(()),
            Err(e) => match self.map_err(Operation::Delete, Some(name), e) {
                Error::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn compose(&self, sources: &[ObjectMeta], dest: &str) -> Result<ObjectMeta> {
        let request = ComposeObjectRequest {
            bucket: self.bucket.clone(),
            destination_object: dest.to_string(),
            // The destination must be new: a composite is never written over anything.
            if_generation_match: Some(0),
            composing_targets: ComposingTargets {
                destination: Some(Object {
                    name: dest.to_string(),
                    content_type: Some("application/octet-stream".to_string()),
                    ..Default::default()
                }),
                source_objects: sources
                    .iter()
                    .map(|s| SourceObjects {
                        name: s.name.clone(),
                        generation: s.generation,
                        object_preconditions: s.generation.map(|g| ObjectPreconditions {
                            if_generation_match: Some(g),
                        }),
                    })
                    .collect(),
            },
            ..Default::default()
        };
        self.client
            .compose_object(&request)
            .await
            .map(|o| to_meta(&o))
            .map_err(|e| self.map_err(Operation::Compose, Some(dest), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_decodes_big_endian_base64() {
        // crc32c("hello") = 0x9a71bb4c; GCS sends base64 of its 4 big-endian bytes.
        let b64 = base64::engine::general_purpose::STANDARD.encode(0x9a71_bb4c_u32.to_be_bytes());
        assert_eq!(decode_crc32c(&b64), Some(crc32c::crc32c(b"hello")));
        assert_eq!(decode_crc32c("not base64!"), None);
        assert_eq!(decode_crc32c("AAAA"), None); // 3 bytes
    }

    #[test]
    fn exclusive_end_covers_the_inclusive_bound() {
        assert_eq!(exclusive_end_after("img/5").as_deref(), Some("img/6"));
        assert_eq!(exclusive_end_after("a/z").as_deref(), Some("a/{"));
        assert!(exclusive_end_after("").is_none());
    }
}
