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
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::objects::{Object, ObjectPreconditions, SourceObjects};
use gcloud_storage::http::Error as GcsError;

use super::{Capabilities, FolderPage, Page, PageRequest, PutMode, Store, MAX_PAGE};
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
    lister: Lister,
}

/// objects.list, sent here rather than through `gcloud-storage`. Its `Object` holds every
/// field of the resource, about 700 bytes of JSON each (links, timestamps, etags), and
/// parsing those into owned strings was most of a listing's CPU at millions of objects. This
/// asks for the fields a listing keeps (`fields=`, GCS's partial response) and parses only
/// those, skipping whatever else a server sends.
struct Lister {
    http: reqwest_middleware::ClientWithMiddleware,
    /// `…/storage/v1/b/{bucket}/o`.
    objects_url: String,
    token: Option<std::sync::Arc<dyn token_source::TokenSource>>,
}

/// The partial response a listing asks for.
const LIST_FIELDS: &str = "nextPageToken,items(name,size,generation,crc32c,updated)";
/// What a delimiter (folder) listing asks for: the folders and the token, not the items.
const FOLDER_FIELDS: &str = "nextPageToken,prefixes";

/// An objects.list answer, as far as a listing reads it.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAnswer {
    #[serde(default)]
    items: Vec<ListItem>,
    #[serde(default)]
    prefixes: Vec<String>,
    next_page_token: Option<String>,
}

/// One object of a listing.
#[derive(serde::Deserialize)]
struct ListItem {
    name: String,
    /// Decimal in a string, as GCS sends 64-bit numbers.
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    generation: Option<String>,
    #[serde(default)]
    crc32c: Option<String>,
    #[serde(default)]
    updated: Option<String>,
}

impl ListItem {
    fn into_meta(self) -> ObjectMeta {
        ObjectMeta {
            size: self.size.and_then(|s| s.parse().ok()).unwrap_or(0),
            generation: self.generation.and_then(|g| g.parse().ok()),
            crc32c: self.crc32c.as_deref().and_then(decode_crc32c),
            updated: self
                .updated
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&chrono::Utc)),
            name: self.name,
        }
    }
}

/// The error body GCS answers with.
#[derive(serde::Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(serde::Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
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
        Ok(Self::with_config(config, bucket))
    }

    /// A store for `bucket` from a client configuration (endpoint, credentials, HTTP client;
    /// without an HTTP client, one with [`HttpTimeouts::default`]).
    pub fn with_config(mut config: ClientConfig, bucket: &str) -> Self {
        if config.http.is_none() {
            config.http = HttpTimeouts::default().gcs_client().ok();
        }
        let http = config.http.clone().unwrap_or_else(|| {
            reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build()
        });
        let lister = Lister {
            http,
            objects_url: format!(
                "{}/storage/v1/b/{}/o",
                config.storage_endpoint.trim_end_matches('/'),
                bucket
            ),
            token: config
                .token_source_provider
                .as_ref()
                .map(|p| p.token_source()),
        };
        Self {
            client: Client::new(config),
            bucket: bucket.to_string(),
            url: format!("gs://{bucket}"),
            lister,
        }
    }

    /// One objects.list request with these parameters, answering only `fields` (a partial
    /// response).
    async fn list_request(&self, query: &[(&str, &str)], fields: &str) -> Result<ListAnswer> {
        let mut builder = self
            .lister
            .http
            .get(&self.lister.objects_url)
            .query(query)
            .query(&[("fields", fields)]);
        if let Some(source) = &self.lister.token {
            let token = source
                .token()
                .await
                .map_err(|e| self.map_err(Operation::List, None, GcsError::TokenSource(e)))?;
            if !token.is_empty() {
                builder = builder.header(reqwest::header::AUTHORIZATION, token);
            }
        }
        let response = builder.send().await.map_err(|e| {
            let e = match e {
                reqwest_middleware::Error::Reqwest(e) => GcsError::HttpClient(e),
                reqwest_middleware::Error::Middleware(e) => GcsError::HttpMiddleware(e),
            };
            self.map_err(Operation::List, None, e)
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| self.map_err(Operation::List, None, GcsError::HttpClient(e)))?;
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorAnswer>(&body)
                .map(|a| a.error.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(200)]).into());
            let answer = gcloud_storage::http::error::ErrorResponse {
                code: status.as_u16(),
                errors: Vec::new(),
                message,
            };
            return Err(self.map_err(Operation::List, None, GcsError::Response(answer)));
        }
        // A body that does not parse was cut short or garbled on the way: worth retrying.
        serde_json::from_slice(&body).map_err(|e| Error::Request {
            operation: Operation::List,
            location: self.url.clone(),
            status: Some(status.as_u16()),
            transient: true,
            message: format!("objects.list answer does not parse: {e}"),
        })
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
        // Always sent: the emulator returns everything in one page without it. One more when
        // resuming: the inclusive start name comes back and is dropped, and a page of only
        // that name would end the listing early.
        let max = (max + usize::from(req.after.is_some()))
            .min(MAX_PAGE)
            .to_string();
        let end = req.upto.and_then(exclusive_end_after);
        let mut query: Vec<(&str, &str)> = vec![("maxResults", max.as_str())];
        if !req.prefix.is_empty() {
            query.push(("prefix", req.prefix));
        }
        // startOffset is inclusive: the name equal to `after` comes back and is dropped.
        if let Some(after) = req.after {
            query.push(("startOffset", after));
        }
        if let Some(end) = end.as_deref() {
            query.push(("endOffset", end));
        }
        if let Some(token) = req.token {
            query.push(("pageToken", token));
        }
        let answer = self.list_request(&query, LIST_FIELDS).await?;
        let mut more = answer.next_page_token.is_some();
        let mut objects = Vec::with_capacity(answer.items.len());
        for item in answer.items {
            if req.after.is_some_and(|a| item.name.as_str() <= a) {
                continue;
            }
            if req.upto.is_some_and(|u| item.name.as_str() > u) {
                more = false;
                break;
            }
            objects.push(item.into_meta());
        }
        let token = if more { answer.next_page_token } else { None };
        Ok(Page {
            objects,
            more,
            token,
        })
    }

    async fn list_folders(&self, prefix: &str, token: Option<&str>) -> Result<FolderPage> {
        let max = MAX_PAGE.to_string();
        let mut query: Vec<(&str, &str)> = vec![("delimiter", "/"), ("maxResults", &max)];
        if !prefix.is_empty() {
            query.push(("prefix", prefix));
        }
        if let Some(token) = token {
            query.push(("pageToken", token));
        }
        let answer = self.list_request(&query, FOLDER_FIELDS).await?;
        Ok(FolderPage::new(
            prefix,
            answer.prefixes,
            answer.next_page_token,
        ))
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
