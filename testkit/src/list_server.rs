//! A GCS JSON API list server whose requests cost O(log N + page), for listing benchmarks
//! and tests at millions of objects (fake-gcs-server's memory backend scans the whole bucket
//! on every list call, so there the server, not the listing algorithm, is what gets measured).
//! `benches/src/bin/list_server.rs` is its command line; see there for what it answers.
//!
//! Written here rather than taken from a crate: no Rust crate serves GCS's list API over a
//! generated, sorted name set in O(log N) per page.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::listgen::{base64, object_info, Digest, Names};

/// What a [`Server`] serves and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bucket's object names, sorted ([`crate::listgen::generate`]).
    pub names: Names,
    /// The bucket's name.
    pub bucket: String,
    /// Added latency per storage request.
    pub latency: Duration,
    /// Print every request line (to stderr, cut at 300 bytes).
    pub log: bool,
    /// Answer list requests as a store without folders does: `delimiter` is ignored.
    pub ignore_delimiter: bool,
}

/// Longest request head accepted.
const MAX_HEAD: u64 = 64 * 1024;
/// GCS's page size cap and default.
const MAX_RESULTS: usize = 1000;
/// Every object's (and the bucket's) timestamps.
const TIMESTAMP: &str = "2026-01-01T00:00:00.000Z";

/// The server's state: the names and its counters.
pub struct Server {
    names: Names,
    bucket: String,
    latency: Duration,
    log: bool,
    /// `delimiter` is ignored (a store without folders).
    ignore_delimiter: bool,
    /// When the server started: log lines carry the milliseconds since.
    started: Instant,
    list_requests: AtomicU64,
    requests: AtomicU64,
    /// TCP connections accepted (with keep-alive, about one per concurrent client request).
    connections: AtomicU64,
}

/// An answer: status and JSON body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn ok(body: Vec<u8>) -> Self {
        Self { status: 200, body }
    }

    fn error(status: u16, reason: &str, message: &str) -> Self {
        let mut body = Vec::with_capacity(200);
        body.extend_from_slice(b"{\"error\":{\"code\":");
        let _ = write!(body, "{status}");
        body.extend_from_slice(b",\"message\":");
        push_json_str(&mut body, message);
        body.extend_from_slice(b",\"errors\":[{\"domain\":\"global\",\"reason\":");
        push_json_str(&mut body, reason);
        body.extend_from_slice(b",\"message\":");
        push_json_str(&mut body, message);
        body.extend_from_slice(b"}]}}");
        Self { status, body }
    }

    fn not_found(message: &str) -> Self {
        Self::error(404, "notFound", message)
    }

    fn bad_request(message: &str) -> Self {
        Self::error(400, "invalid", message)
    }
}

impl Server {
    /// A server of `config`.
    pub fn new(config: Config) -> Arc<Self> {
        Arc::new(Server {
            names: config.names,
            bucket: config.bucket,
            latency: config.latency,
            log: config.log,
            ignore_delimiter: config.ignore_delimiter,
            started: Instant::now(),
            list_requests: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        })
    }

    /// Serves connections from `listener` until the task is dropped; each connection on a
    /// task of its own.
    pub async fn run(self: Arc<Self>, listener: TcpListener) -> Result<()> {
        loop {
            let (conn, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait and carry on.
                    eprintln!("list_server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            self.connections.fetch_add(1, Ordering::Relaxed);
            if self.log {
                eprintln!(
                    "list_server: connection from {}",
                    conn.peer_addr().map_or("?".to_string(), |a| a.to_string())
                );
            }
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(conn, &server).await {
                    let quiet = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
                        matches!(
                            io.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        )
                    });
                    if !quiet {
                        eprintln!("list_server: connection: {e:#}");
                    }
                }
            });
        }
    }
}

/// One connection: requests in turn until the client closes it or asks to.
async fn serve(conn: TcpStream, server: &Server) -> Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::with_capacity(16 * 1024, conn);
    let mut head = Vec::with_capacity(4096);
    let mut out = Vec::new();
    loop {
        head.clear();
        loop {
            let room = MAX_HEAD.saturating_sub(head.len() as u64);
            if room == 0 {
                let start = String::from_utf8_lossy(&head[..head.len().min(300)]).into_owned();
                eprintln!("list_server: request head over {MAX_HEAD} bytes: {start}…");
                write_answer(
                    reader.get_mut(),
                    &mut out,
                    &Answer::error(431, "invalid", "request head too large"),
                    false,
                )
                .await?;
                return Ok(());
            }
            let n = (&mut reader)
                .take(room)
                .read_until(b'\n', &mut head)
                .await?;
            if n == 0 {
                if head.is_empty() {
                    return Ok(()); // closed between requests
                }
                bail!("connection closed inside a request head");
            }
            if head == b"\r\n" || head == b"\n" {
                head.clear(); // stray line breaks before a request line are allowed
                continue;
            }
            if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
                break;
            }
        }
        if server.log {
            let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
            eprintln!(
                "list_server: {} ms: {}",
                server.started.elapsed().as_millis(),
                String::from_utf8_lossy(&line[..line.len().min(300)]).trim_end()
            );
        }
        let request = match Request::parse(&head) {
            Ok(r) => r,
            Err(e) => {
                let answer = Answer::bad_request(&format!("{e:#}"));
                write_answer(reader.get_mut(), &mut out, &answer, false).await?;
                return Ok(());
            }
        };
        if request.body_len > 0 {
            let copied = tokio::io::copy(
                &mut (&mut reader).take(request.body_len),
                &mut tokio::io::sink(),
            )
            .await?;
            if copied != request.body_len {
                bail!("request body cut short");
            }
        }
        let answer = server.answer(&request).await;
        write_answer(reader.get_mut(), &mut out, &answer, request.keep_alive).await?;
        if !request.keep_alive {
            return Ok(());
        }
    }
}

async fn write_answer(
    conn: &mut TcpStream,
    out: &mut Vec<u8>,
    answer: &Answer,
    keep_alive: bool,
) -> Result<()> {
    out.clear();
    let reason = match answer.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    write!(
        out,
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json; charset=UTF-8\r\nContent-Length: {}\r\n{}\r\n",
        answer.status,
        answer.body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )?;
    out.extend_from_slice(&answer.body);
    conn.write_all(out).await?;
    if out.capacity() > 4 << 20 {
        *out = Vec::new(); // do not keep a huge buffer per idle connection
    }
    Ok(())
}

/// What the server needs from a request head.
struct Request {
    method: String,
    path: String,
    query: String,
    body_len: u64,
    keep_alive: bool,
}

impl Request {
    fn parse(head: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(head).context("request head is not UTF-8")?;
        let mut lines = text.lines();
        let line = lines.next().unwrap_or_default();
        let mut parts = line.split(' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            bail!("bad request line {line:?}");
        };
        let http11 = match version {
            "HTTP/1.1" => true,
            "HTTP/1.0" => false,
            other => bail!("unsupported HTTP version {other:?}"),
        };
        let (mut body_len, mut close, mut keep) = (0u64, false, false);
        for header in lines {
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                body_len = value
                    .parse()
                    .with_context(|| format!("bad Content-Length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("request bodies with Transfer-Encoding are not supported");
            } else if name.eq_ignore_ascii_case("connection") {
                for token in value.split(',') {
                    let token = token.trim();
                    close |= token.eq_ignore_ascii_case("close");
                    keep |= token.eq_ignore_ascii_case("keep-alive");
                }
            }
        }
        // An absolute-form target (through a proxy) carries the scheme and authority.
        let target = match target.find("://") {
            Some(i) => {
                let rest = &target[i + 3..];
                rest.find('/').map_or("/", |j| &rest[j..])
            }
            None => target,
        };
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Ok(Self {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            body_len,
            keep_alive: if http11 { !close } else { keep },
        })
    }

    /// The query's parameters, percent-decoded (`+` is a space, as form encoding has it).
    fn params(&self) -> std::result::Result<Vec<(String, String)>, String> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((percent_decode(k, true)?, percent_decode(v, true)?))
            })
            .collect()
    }
}

impl Server {
    async fn answer(&self, request: &Request) -> Answer {
        let path = request.path.as_str();
        if let Some(rest) = path.strip_prefix("/storage/v1/b") {
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.storage(request, rest);
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            return answer;
        }
        match path {
            "/_stats" => {
                let reset = request
                    .params()
                    .unwrap_or_default()
                    .iter()
                    .any(|(k, v)| k == "reset" && v != "false" && v != "0");
                self.stats(reset)
            }
            "/_reset" => self.stats(true),
            "/_digest" => {
                let params = match request.params() {
                    Ok(p) => p,
                    Err(e) => return Answer::bad_request(&e),
                };
                let prefix = params
                    .iter()
                    .find(|(k, _)| k == "prefix")
                    .map_or("", |(_, v)| v.as_str());
                let digest = Digest::of(self.names.iter().filter(|n| n.starts_with(prefix)));
                Answer::ok(
                    format!(
                        "{{\"count\":{},\"hash\":\"{:016x}\"}}",
                        digest.count, digest.hash
                    )
                    .into_bytes(),
                )
            }
            _ => Answer::not_found(&format!("no such path {path:?}")),
        }
    }

    fn stats(&self, reset: bool) -> Answer {
        let read = |c: &AtomicU64| {
            if reset {
                c.swap(0, Ordering::SeqCst)
            } else {
                c.load(Ordering::SeqCst)
            }
        };
        let (list, all, connections) = (
            read(&self.list_requests),
            read(&self.requests),
            read(&self.connections),
        );
        Answer::ok(
            format!(
                "{{\"list_requests\":{list},\"requests\":{all},\"connections\":{connections}}}"
            )
            .into_bytes(),
        )
    }

    /// `/storage/v1/b` + `rest`.
    fn storage(&self, request: &Request, rest: &str) -> Answer {
        if request.method != "GET" {
            return Answer::error(405, "methodNotAllowed", "this server only lists");
        }
        if rest.is_empty() || rest == "/" {
            let mut body = b"{\"kind\":\"storage#buckets\",\"items\":[".to_vec();
            self.bucket_json(&mut body);
            body.extend_from_slice(b"]}");
            return Answer::ok(body);
        }
        let Some(rest) = rest.strip_prefix('/') else {
            return Answer::not_found("no such path");
        };
        let (bucket, object_path) = match rest.split_once('/') {
            Some((b, o)) => (b, Some(o)),
            None => (rest, None),
        };
        let bucket = match percent_decode(bucket, false) {
            Ok(b) => b,
            Err(e) => return Answer::bad_request(&e),
        };
        if bucket != self.bucket {
            return Answer::not_found(&format!("The specified bucket does not exist: {bucket}"));
        }
        match object_path {
            None | Some("") => {
                let mut body = Vec::with_capacity(512);
                self.bucket_json(&mut body);
                Answer::ok(body)
            }
            Some("o") | Some("o/") => {
                self.list_requests.fetch_add(1, Ordering::Relaxed);
                match request.params() {
                    Ok(params) => self.list(&params),
                    Err(e) => Answer::bad_request(&e),
                }
            }
            Some(o) => match o.strip_prefix("o/").map(|n| percent_decode(n, false)) {
                Some(Ok(name)) => {
                    let i = self.names.lower_bound(&name);
                    if i < self.names.len() && self.names.get(i) == name {
                        let mut body = Vec::with_capacity(1024);
                        self.object_json(&mut body, &name);
                        Answer::ok(body)
                    } else {
                        Answer::not_found(&format!("No such object: {}/{name}", self.bucket))
                    }
                }
                Some(Err(e)) => Answer::bad_request(&e),
                None => Answer::not_found("no such path"),
            },
        }
    }

    /// objects.list.
    fn list(&self, params: &[(String, String)]) -> Answer {
        let names = &self.names;
        let (mut lo, mut hi) = (0, names.len());
        let mut max = MAX_RESULTS;
        let (mut prefix, mut delimiter) = ("", "");
        let mut fields: Option<&str> = None;
        for (key, value) in params {
            match key.as_str() {
                "delimiter" => delimiter = value,
                "fields" => fields = Some(value),
                "prefix" if !value.is_empty() => {
                    prefix = value;
                    let range = names.prefix_range(value);
                    lo = lo.max(range.start);
                    hi = hi.min(range.end);
                }
                "startOffset" if !value.is_empty() => lo = lo.max(names.lower_bound(value)),
                "endOffset" if !value.is_empty() => hi = hi.min(names.lower_bound(value)),
                "maxResults" => match value.parse::<i64>() {
                    Ok(m) if m > 0 => max = (m as usize).min(MAX_RESULTS),
                    Ok(_) => {}
                    Err(_) => return Answer::bad_request(&format!("bad maxResults {value:?}")),
                },
                "pageToken" if !value.is_empty() => match unhex(value) {
                    Some(next) => lo = lo.max(names.lower_bound(&next)),
                    None => return Answer::bad_request(&format!("bad pageToken {value:?}")),
                },
                _ => {} // fields, projection, versions, …: ignored
            }
        }
        if !delimiter.is_empty() && !self.ignore_delimiter {
            return self.list_delimited(prefix, delimiter, lo, hi, max, fields);
        }
        let stop = if lo < hi { (lo + max).min(hi) } else { lo };
        self.list_answer(lo..stop, &[], (stop < hi).then_some(stop), fields)
    }

    /// objects.list with a delimiter over names `lo..hi`: the names with no delimiter past
    /// the prefix as items, the rest rolled up into `prefixes` (each up to and including the
    /// first delimiter past the prefix), `max` entries of both together per page, as GCS
    /// counts them. Each folder costs one binary search to skip, so a request is
    /// O(entries × log N) whatever the folders hold.
    fn list_delimited(
        &self,
        prefix: &str,
        delimiter: &str,
        mut lo: usize,
        hi: usize,
        max: usize,
        fields: Option<&str>,
    ) -> Answer {
        let names = &self.names;
        let (mut items, mut folders): (Vec<usize>, Vec<String>) = (Vec::new(), Vec::new());
        while lo < hi && items.len() + folders.len() < max {
            let name = names.get(lo);
            let rest = name.get(prefix.len()..).unwrap_or_default();
            match rest.find(delimiter) {
                Some(at) => {
                    let folder = &name[..prefix.len() + at + delimiter.len()];
                    // Past every name that starts with the folder.
                    lo = names.prefix_range(folder).end.max(lo + 1);
                    folders.push(folder.to_string());
                }
                None => {
                    items.push(lo);
                    lo += 1;
                }
            }
        }
        self.list_answer(items, &folders, (lo < hi).then_some(lo), fields)
    }

    /// An objects.list page: the names at `items` (indices), the `folders`, and a token for
    /// the name at `next` when there is more; with `fields` (a partial response), only the
    /// parts it names (`items` or `items(name,size,…)`, `prefixes`), as GCS does.
    fn list_answer(
        &self,
        items: impl IntoIterator<Item = usize, IntoIter: ExactSizeIterator>,
        folders: &[String],
        next: Option<usize>,
        fields: Option<&str>,
    ) -> Answer {
        let names = &self.names;
        let items = items.into_iter();
        let wants = |part: &str| fields.is_none_or(|f| f.contains(part));
        let item_fields = fields.and_then(item_fields);
        let item_fields = item_fields.as_deref();
        let mut body = Vec::with_capacity(64 + items.len() * 720 + folders.len() * 64);
        body.extend_from_slice(b"{\"kind\":\"storage#objects\"");
        if items.len() > 0 && wants("items") {
            body.extend_from_slice(b",\"items\":[");
            for (k, i) in items.enumerate() {
                if k > 0 {
                    body.push(b',');
                }
                self.item_json(&mut body, names.get(i), item_fields);
            }
            body.push(b']');
        }
        if !folders.is_empty() && wants("prefixes") {
            body.extend_from_slice(b",\"prefixes\":[");
            for (k, f) in folders.iter().enumerate() {
                if k > 0 {
                    body.push(b',');
                }
                push_json_str(&mut body, f);
            }
            body.push(b']');
        }
        if let Some(next) = next {
            body.extend_from_slice(b",\"nextPageToken\":\"");
            for b in names.get(next).bytes() {
                let _ = write!(body, "{b:02x}");
            }
            body.push(b'"');
        }
        body.push(b'}');
        Answer::ok(body)
    }

    fn bucket_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"kind\":\"storage#bucket\",\"id\":");
        push_json_str(out, &self.bucket);
        out.extend_from_slice(b",\"selfLink\":\"https://www.googleapis.com/storage/v1/b/");
        push_url_escaped(out, &self.bucket);
        out.extend_from_slice(b"\",\"projectNumber\":\"0\",\"name\":");
        push_json_str(out, &self.bucket);
        let _ = write!(
            out,
            ",\"timeCreated\":\"{TIMESTAMP}\",\"updated\":\"{TIMESTAMP}\",\"metageneration\":\"1\",\
             \"location\":\"US\",\"locationType\":\"multi-region\",\"storageClass\":\"STANDARD\",\"etag\":\"CAE=\"}}"
        );
    }

    /// One listed object: the whole resource, or only `fields` of it (a partial response).
    fn item_json(&self, out: &mut Vec<u8>, name: &str, fields: Option<&[&str]>) {
        let Some(fields) = fields else {
            return self.object_json(out, name);
        };
        let info = object_info(name);
        out.push(b'{');
        let mut first = true;
        for field in fields {
            let value = match *field {
                "name" => {
                    let mut v = Vec::with_capacity(name.len() + 2);
                    push_json_str(&mut v, name);
                    v
                }
                "bucket" => {
                    let mut v = Vec::new();
                    push_json_str(&mut v, &self.bucket);
                    v
                }
                "generation" => format!("\"{}\"", info.generation).into_bytes(),
                "metageneration" => b"\"1\"".to_vec(),
                "size" => format!("\"{}\"", info.size).into_bytes(),
                "md5Hash" => format!("\"{}\"", base64(&info.md5)).into_bytes(),
                "crc32c" => format!("\"{}\"", base64(&info.crc32c.to_be_bytes())).into_bytes(),
                "updated" | "timeCreated" => format!("\"{TIMESTAMP}\"").into_bytes(),
                "contentType" => b"\"image/jpeg\"".to_vec(),
                "storageClass" => b"\"STANDARD\"".to_vec(),
                _ => continue, // GCS would refuse an unknown field; this server leaves it out
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(field.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(&value);
        }
        out.push(b'}');
    }

    /// One object resource, as GCS writes it.
    fn object_json(&self, out: &mut Vec<u8>, name: &str) {
        let info = object_info(name);
        let generation = info.generation;
        out.extend_from_slice(b"{\"kind\":\"storage#object\",\"id\":\"");
        push_json_inner(out, &self.bucket);
        out.push(b'/');
        push_json_inner(out, name);
        let _ = write!(out, "/{generation}");
        out.extend_from_slice(b"\",\"selfLink\":\"https://www.googleapis.com/storage/v1/b/");
        push_url_escaped(out, &self.bucket);
        out.extend_from_slice(b"/o/");
        push_url_escaped(out, name);
        out.extend_from_slice(
            b"\",\"mediaLink\":\"https://storage.googleapis.com/download/storage/v1/b/",
        );
        push_url_escaped(out, &self.bucket);
        out.extend_from_slice(b"/o/");
        push_url_escaped(out, name);
        let _ = write!(out, "?generation={generation}&alt=media\",\"name\":");
        push_json_str(out, name);
        out.extend_from_slice(b",\"bucket\":");
        push_json_str(out, &self.bucket);
        let mut etag = generation.to_be_bytes().to_vec();
        etag.push(1);
        let _ = write!(
            out,
            ",\"generation\":\"{generation}\",\"metageneration\":\"1\",\"contentType\":\"image/jpeg\",\
             \"storageClass\":\"STANDARD\",\"size\":\"{}\",\"md5Hash\":\"{}\",\"crc32c\":\"{}\",\
             \"etag\":\"{}\",\"timeCreated\":\"{TIMESTAMP}\",\"updated\":\"{TIMESTAMP}\",\
             \"timeStorageClassUpdated\":\"{TIMESTAMP}\"}}",
            info.size,
            base64(&info.md5),
            base64(&info.crc32c.to_be_bytes()),
            base64(&etag),
        );
    }
}

/// The item fields a `fields` parameter selects (`…,items(name,size),…`), if it selects any.
fn item_fields(fields: &str) -> Option<Vec<&str>> {
    let start = fields.find("items(")? + "items(".len();
    let end = start + fields[start..].find(')')?;
    Some(fields[start..end].split(',').map(str::trim).collect())
}

/// `s` as a JSON string literal.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_json_inner(out, s);
    out.push(b'"');
}

/// `s` escaped for the inside of a JSON string literal.
fn push_json_inner(out: &mut Vec<u8>, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// `s` percent-encoded as a URL path segment (everything but unreserved characters).
fn push_url_escaped(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

/// Decodes `%XX` escapes (and `+` as a space when `plus_is_space`, in a query).
fn percent_decode(s: &str, plus_is_space: bool) -> std::result::Result<String, String> {
    if !s.bytes().any(|b| b == b'%' || (plus_is_space && b == b'+')) {
        return Ok(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// The name a page token encodes (its hex), if it is one.
fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listgen::{self, Scheme};

    fn server(n: usize) -> Server {
        Server {
            names: listgen::generate(Scheme::Coco, n, 3),
            bucket: "b".into(),
            latency: Duration::ZERO,
            log: false,
            ignore_delimiter: false,
            started: Instant::now(),
            list_requests: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        }
    }

    /// The names and next page token of a list answer.
    fn page(server: &Server, query: &[(&str, &str)]) -> (Vec<String>, Option<String>) {
        let json = json(server, query);
        let names = json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|o| o["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let token = json["nextPageToken"].as_str().map(str::to_string);
        (names, token)
    }

    #[test]
    fn pages_follow_tokens_to_the_end_of_the_prefix() {
        let s = server(2500);
        let expected: Vec<String> = s
            .names
            .iter()
            .filter(|n| n.starts_with("images/"))
            .map(str::to_string)
            .collect();
        let mut got = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut query = vec![("prefix", "images/"), ("maxResults", "1000")];
            if let Some(t) = &token {
                query.push(("pageToken", t.as_str()));
            }
            let (names, next) = page(&s, &query);
            got.extend(names);
            pages += 1;
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(got, expected);
    }

    #[test]
    fn offsets_are_inclusive_then_exclusive_and_pages_capped() {
        let s = server(3000);
        let r = s.names.prefix_range("images/");
        let (a, b) = (s.names.get(r.start + 10), s.names.get(r.start + 20));
        let (names, token) = page(&s, &[("startOffset", a), ("endOffset", b)]);
        assert_eq!(names.len(), 10);
        assert_eq!(names[0], a);
        assert!(token.is_none());
        let (names, token) = page(&s, &[("maxResults", "5000")]);
        assert_eq!(names.len(), 1000, "capped at 1000");
        assert!(token.is_some());
        let (names, token) = page(&s, &[("prefix", "images/"), ("startOffset", "zzz")]);
        assert!(names.is_empty() && token.is_none());
        // Outside the prefix on both sides.
        let (names, _) = page(&s, &[("prefix", "other/")]);
        assert!(!names.is_empty() && names.iter().all(|n| n.starts_with("other/")));
        assert_eq!(s.list(&[("pageToken".into(), "zz".into())]).status, 400);
    }

    fn json(server: &Server, query: &[(&str, &str)]) -> serde_json::Value {
        let params: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let answer = server.list(&params);
        assert_eq!(answer.status, 200);
        serde_json::from_slice(&answer.body).unwrap()
    }

    #[test]
    fn delimiters_roll_folders_up_into_prefixes_a_page_at_a_time() {
        let mut s = server(0);
        s.names = listgen::generate(Scheme::Tree, 20_000, 5);
        let expected: std::collections::BTreeSet<String> = (0..s.names.len())
            .map(|i| s.names.get(i))
            .filter_map(|n| n.strip_prefix("images/"))
            .filter_map(|rest| rest.split_once('/'))
            .map(|(day, _)| format!("images/{day}/"))
            .collect();
        assert!(expected.len() > 10, "{}", expected.len());
        let mut got = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("prefix", "images/"),
                ("delimiter", "/"),
                ("maxResults", "7"),
            ];
            if let Some(t) = token.as_deref() {
                query.push(("pageToken", t));
            }
            let page = json(&s, &query);
            let prefixes = page["prefixes"].as_array().cloned().unwrap_or_default();
            assert!(prefixes.len() <= 7);
            assert!(
                page["items"].is_null(),
                "no object lies directly under images/"
            );
            got.extend(prefixes.iter().map(|p| p.as_str().unwrap().to_string()));
            match page["nextPageToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
        // One level down: the cameras of the first day, and no items.
        let day = &got[0];
        let cams = json(&s, &[("prefix", day), ("delimiter", "/")]);
        let cams: Vec<&str> = cams["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert!(
            !cams.is_empty()
                && cams
                    .iter()
                    .all(|c| c.starts_with(day.as_str()) && c.contains("/cam-"))
        );
        // Inside a camera folder, names hold no further delimiter: all items, no prefixes.
        let cam = json(
            &s,
            &[("prefix", cams[0]), ("delimiter", "/"), ("maxResults", "3")],
        );
        assert!(cam["prefixes"].is_null());
        assert_eq!(cam["items"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn fields_select_what_each_item_carries() {
        let s = server(10);
        let full = json(&s, &[("prefix", "images/"), ("maxResults", "2")]);
        let lean = json(
            &s,
            &[
                ("prefix", "images/"),
                ("maxResults", "2"),
                (
                    "fields",
                    "nextPageToken,items(name,size,generation,crc32c,updated)",
                ),
            ],
        );
        assert_eq!(lean["nextPageToken"], full["nextPageToken"]);
        assert!(lean["prefixes"].is_null());
        // A folder listing that asks for folders and the token only gets no items.
        let folders = json(
            &s,
            &[
                ("delimiter", "/"),
                ("maxResults", "1000"),
                ("fields", "nextPageToken,prefixes"),
            ],
        );
        assert!(folders["items"].is_null(), "{folders}");
        assert!(folders["prefixes"]
            .as_array()
            .is_some_and(|p| !p.is_empty()));
        assert_eq!(
            folders["prefixes"],
            json(&s, &[("delimiter", "/"), ("maxResults", "1000")])["prefixes"]
        );
        for (l, f) in lean["items"]
            .as_array()
            .unwrap()
            .iter()
            .zip(full["items"].as_array().unwrap())
        {
            let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
            assert_eq!(keys.len(), 5, "{l}");
            for k in ["name", "size", "generation", "crc32c", "updated"] {
                assert_eq!(l[k], f[k], "{k}");
            }
        }
    }

    #[test]
    fn request_heads_and_escapes_parse() {
        let r = Request::parse(
            b"GET /storage/v1/b/b/o?prefix=images%2F&startOffset=a+b HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
        assert!(r.keep_alive);
        assert_eq!(r.path, "/storage/v1/b/b/o");
        assert_eq!(
            r.params().unwrap(),
            vec![
                ("prefix".to_string(), "images/".to_string()),
                ("startOffset".to_string(), "a b".to_string())
            ]
        );
        let r = Request::parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(!r.keep_alive);
        assert!(
            !Request::parse(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(percent_decode("%zz", false).is_err());
        assert_eq!(unhex("696d"), Some("im".to_string()));
        let mut out = Vec::new();
        push_url_escaped(&mut out, "images/a b.jpg");
        assert_eq!(out, b"images%2Fa%20b.jpg");
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\n");
        assert_eq!(out, b"\"a\\\"b\\\\c\\u000a\"");
    }
}
