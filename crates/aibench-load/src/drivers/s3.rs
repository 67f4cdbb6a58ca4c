//! S3 (MinIO, any S3-compatible store): `PUT`, `GET`, `DELETE` and `LIST` of objects over
//! HTTP/1.1, path-style addressing, requests signed with SigV4 by the `rusty-s3` crate
//! (presigned URLs: the signature travels in the query, the payload is unsigned, so large
//! bodies are sent as they are and never hashed on the client).
//!
//! Every object written starts with a 16-byte header naming its key and version, followed by
//! bytes that the key, the version and the length determine; a `GET` compares what arrives
//! with what must have been written, piece by piece as it arrives, and counts any difference
//! as a `mismatch`. A missing object (after a `DELETE`) is a miss, not an error.
//!
//! Objects above `multipart_threshold` are written as multipart uploads (create, parts of
//! `part_size`, complete), each part a step of the `PUT`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use aibench_results::{ErrorClass, RequestRecord, Step};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use rusty_s3::actions::{
    CompleteMultipartUpload, CreateBucket, CreateMultipartUpload, DeleteObject, GetObject,
    ListObjectsV2, PutObject, S3Action, UploadPart,
};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::client::{Clock, Limits};
use crate::driver::{finish, guarded, Driver, Failure, CONNECT_TIMEOUT};
use crate::drivers::http1::{read_all, Http1, Pieces};
use crate::drivers::keys::{KeySpace, ValueBytes};
use crate::error::LoadError;

/// Bytes at the start of every object: its key and version, little-endian.
pub const HEADER: u64 = 16;
/// How long a signed request stays valid.
const SIGNED_FOR: Duration = Duration::from_secs(6 * 3600);
/// Objects the preload writes at once.
const PRELOAD_CONCURRENCY: usize = 16;
/// An error document is read up to this size for its message.
const MAX_ERROR_BODY: usize = 4096;

/// Where and how to drive an S3 API.
#[derive(Clone)]
pub struct S3Spec {
    /// The endpoint, `http://host:port` (https is not supported yet).
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    /// Access key (MinIO's root user); never recorded.
    pub access_key: String,
    /// Secret key; never recorded, logged or printed.
    pub secret_key: String,
    /// Objects and their sizes; `read_share` splits GETs from PUTs.
    pub keys: KeySpace,
    /// Share of operations that are `LIST` (taken first).
    pub list_share: f64,
    /// Share of operations that are `DELETE` (taken next).
    pub delete_share: f64,
    /// Keys asked for per `LIST`.
    pub list_max_keys: usize,
    /// Objects larger than this are written as multipart uploads.
    pub multipart_threshold: u64,
    /// Size of each part of a multipart upload (S3 needs at least 5 MiB but for the last).
    pub part_size: u64,
    /// Create the bucket and write every object once before the clock.
    pub preload: bool,
    pub timeout: Duration,
}

impl std::fmt::Debug for S3Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Spec")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field("keys", &self.keys)
            .field("list_share", &self.list_share)
            .field("delete_share", &self.delete_share)
            .field("multipart_threshold", &self.multipart_threshold)
            .finish()
    }
}

/// The operations of the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Get,
    Put,
    Delete,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Put => "PUT",
            Op::Delete => "DELETE",
            Op::List => "LIST",
        }
    }
}

pub(crate) struct S3Driver {
    addr: SocketAddr,
    host: String,
    bucket: Bucket,
    credentials: Credentials,
    spec: S3Spec,
    /// The bytes objects are cut from (shared, sliced without copying).
    pad: Bytes,
    /// Where `ValueBytes` puts each value in `pad`.
    values: ValueBytes,
}

pub(crate) type S3Conn = Http1;

impl S3Spec {
    fn check(&self) -> Result<(), LoadError> {
        self.keys.check()?;
        let mut e = Vec::new();
        let min = match self.keys.value_size {
            crate::ValueSize::Fixed(n) => n,
            crate::ValueSize::Uniform { min, .. } => min,
        };
        if min < HEADER {
            e.push(format!(
                "S3 objects must be at least {HEADER} bytes (each starts with a header that lets a GET verify it)"
            ));
        }
        if !(0.0..=1.0).contains(&(self.list_share + self.delete_share)) {
            e.push("list and delete shares add up to more than 100 %".into());
        }
        if self.part_size < 5 << 20 {
            e.push("multipart parts must be at least 5 MiB (S3's minimum)".into());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(LoadError::InvalidSpec(e))
        }
    }
}

impl S3Driver {
    pub(crate) async fn new(spec: &S3Spec) -> Result<S3Driver, LoadError> {
        spec.check()?;
        let url: url::Url = spec.endpoint.parse().map_err(|e| {
            LoadError::InvalidTarget(format!("S3 endpoint `{}`: {e}", spec.endpoint))
        })?;
        if url.scheme() != "http" {
            return Err(LoadError::InvalidTarget(format!(
                "S3 endpoint `{}`: only http:// is supported",
                spec.endpoint
            )));
        }
        let host = url
            .host_str()
            .ok_or_else(|| LoadError::InvalidTarget("S3 endpoint has no host".into()))?
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = crate::drivers::redis::resolve(&format!("{host}:{port}"), port).await?;
        let bucket = Bucket::new(
            url,
            UrlStyle::Path,
            spec.bucket.clone(),
            spec.region.clone(),
        )
        .map_err(|e| LoadError::InvalidTarget(format!("bucket `{}`: {e}", spec.bucket)))?;
        let max = spec.keys.value_size.max();
        let values = ValueBytes::new(max, spec.keys.seed);
        Ok(S3Driver {
            addr,
            host: format!("{host}:{port}"),
            bucket,
            credentials: Credentials::new(spec.access_key.clone(), spec.secret_key.clone()),
            pad: Bytes::copy_from_slice(values.all()),
            values,
            spec: spec.clone(),
        })
    }

    fn draw(&self, id: u64) -> (Op, u64, u64) {
        let mut d = self.spec.keys.draw(id);
        let u = d.uniform();
        let op = if u < self.spec.list_share {
            Op::List
        } else if u < self.spec.list_share + self.spec.delete_share {
            Op::Delete
        } else if d.is_read(&self.spec.keys) {
            Op::Get
        } else {
            Op::Put
        };
        let key = d.key(&self.spec.keys);
        let size = d.size(&self.spec.keys);
        (op, key, size)
    }

    fn object(&self, key: u64) -> String {
        self.spec.keys.key(key)
    }

    /// The object's bytes: its header, then a slice of the shared pad.
    fn body(&self, key: u64, version: u64, len: u64) -> (Bytes, Bytes) {
        (header(key, version), self.slice(key, version, len - HEADER))
    }

    fn slice(&self, key: u64, version: u64, len: u64) -> Bytes {
        let (off, n) = self.values.span(key, version, len);
        self.pad.slice(off..off + n)
    }

    /// Create the bucket (an existing one is fine) and write every object once.
    pub(crate) async fn preload(self: &std::sync::Arc<Self>) -> Result<u64, LoadError> {
        let fail = |m: String| LoadError::InvalidTarget(format!("preparing the bucket: {m}"));
        let mut conn = self.connect().await.map_err(fail)?;
        let url = CreateBucket::new(&self.bucket, &self.credentials).sign(SIGNED_FOR);
        let resp = conn
            .send(Method::PUT, &path_of(&url), &[], Pieces::empty())
            .await
            .map_err(|(_, m)| fail(m))?;
        let status = resp.status().as_u16();
        let text = read_all(resp, MAX_ERROR_BODY)
            .await
            .map_err(|(_, m)| fail(m))?;
        let text = String::from_utf8_lossy(&text);
        let exists = status == 409 && text.contains("BucketAlreadyOwnedByYou");
        if !(200..300).contains(&status) && !exists {
            return Err(fail(format!(
                "creating bucket `{}` answered {status}: {}",
                self.spec.bucket,
                error_code(&text)
            )));
        }
        if !self.spec.preload {
            return Ok(0);
        }
        let keys = self.spec.keys.keys;
        let mut tasks = tokio::task::JoinSet::new();
        for lane in 0..PRELOAD_CONCURRENCY as u64 {
            let me = std::sync::Arc::clone(self);
            tasks.spawn(async move {
                let mut conn = me.connect().await.map_err(fail)?;
                let mut k = lane;
                while k < keys {
                    let len = me.spec.keys.preload_size(k);
                    let mut rec = RequestRecord::new(0, aibench_results::Phase::Warmup, 0);
                    let clock = Clock {
                        start: std::time::Instant::now(),
                    };
                    // A server that closes kept-alive connections gets a new one, once per object.
                    for retry in [false, true] {
                        if !conn.usable() {
                            conn = me.connect().await.map_err(fail)?;
                        }
                        match me.put(&mut conn, k, 0, len, clock, &mut rec).await {
                            Ok(()) => break,
                            Err((ErrorClass::Connect, _)) if !retry => {
                                conn = me.connect().await.map_err(fail)?;
                            }
                            Err((_, m)) => {
                                return Err(fail(format!("writing {}: {m}", me.object(k))))
                            }
                        }
                    }
                    k += PRELOAD_CONCURRENCY as u64;
                }
                Ok::<(), LoadError>(())
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.map_err(|e| LoadError::Runtime(format!("preload task: {e}")))??;
        }
        Ok(keys)
    }

    /// Write object `key` in version `version`, `len` bytes (multipart above the threshold).
    async fn put(
        &self,
        conn: &mut Http1,
        key: u64,
        version: u64,
        len: u64,
        clock: Clock,
        rec: &mut RequestRecord,
    ) -> Result<(), Failure> {
        let name = self.object(key);
        let (head, rest) = self.body(key, version, len);
        if len <= self.spec.multipart_threshold {
            let url = PutObject::new(&self.bucket, Some(&self.credentials), &name).sign(SIGNED_FOR);
            rec.sent_us = Some(clock.now_us());
            let resp = conn
                .send(
                    Method::PUT,
                    &path_of(&url),
                    &[("content-length", len.to_string())],
                    Pieces::new(head, rest),
                )
                .await?;
            rec.first_byte_us = Some(clock.now_us());
            return expect_ok(resp, "PUT").await.map(|_| ());
        }
        // Multipart: the whole object as one buffer, cut into parts.
        let mut whole = Vec::with_capacity(len as usize);
        whole.extend_from_slice(&head);
        whole.extend_from_slice(&rest);
        let whole = Bytes::from(whole);
        rec.sent_us = Some(clock.now_us());
        let t0 = clock.now_us();
        let url = CreateMultipartUpload::new(&self.bucket, Some(&self.credentials), &name)
            .sign(SIGNED_FOR);
        let resp = conn
            .send(Method::POST, &path_of(&url), &[], Pieces::empty())
            .await?;
        rec.first_byte_us = Some(clock.now_us());
        let text = expect_ok(resp, "create multipart upload").await?;
        let created =
            CreateMultipartUpload::parse_response(String::from_utf8_lossy(&text).as_ref())
                .map_err(|e| {
                    (
                        ErrorClass::MalformedStream,
                        format!("create multipart upload: {e}"),
                    )
                })?;
        let upload = created.upload_id().to_string();
        step(rec, "PUT: create multipart", t0, clock);
        let mut etags = Vec::new();
        let mut at = 0u64;
        let mut part = 1u16;
        while at < len {
            let n = self.spec.part_size.min(len - at);
            let t = clock.now_us();
            let url = UploadPart::new(&self.bucket, Some(&self.credentials), &name, part, &upload)
                .sign(SIGNED_FOR);
            let resp = conn
                .send(
                    Method::PUT,
                    &path_of(&url),
                    &[("content-length", n.to_string())],
                    Pieces::one(whole.slice(at as usize..(at + n) as usize)),
                )
                .await?;
            let etag = resp
                .headers()
                .get(hyper::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            expect_ok(resp, "upload part").await?;
            etags.push(etag.ok_or_else(|| {
                (
                    ErrorClass::MalformedStream,
                    "upload part: no ETag in the answer".to_string(),
                )
            })?);
            step(rec, "PUT: part", t, clock);
            at += n;
            part += 1;
        }
        let t = clock.now_us();
        let complete = CompleteMultipartUpload::new(
            &self.bucket,
            Some(&self.credentials),
            &name,
            &upload,
            etags.iter().map(String::as_str),
        );
        let url = complete.sign(SIGNED_FOR);
        let body = Bytes::from(complete.body());
        let resp = conn
            .send(
                Method::POST,
                &path_of(&url),
                &[("content-length", body.len().to_string())],
                Pieces::one(body),
            )
            .await?;
        let text = expect_ok(resp, "complete multipart upload").await?;
        // S3 may answer 200 with an error document here.
        if String::from_utf8_lossy(&text).contains("<Error>") {
            return Err((
                ErrorClass::ServerError,
                format!(
                    "complete multipart upload: {}",
                    error_code(&String::from_utf8_lossy(&text))
                ),
            ));
        }
        step(rec, "PUT: complete multipart", t, clock);
        Ok(())
    }

    /// Read object `key` and check every byte; returns (bytes, found).
    async fn get(
        &self,
        conn: &mut Http1,
        key: u64,
        clock: Clock,
        rec: &mut RequestRecord,
    ) -> Result<(u64, bool), Failure> {
        let url = GetObject::new(&self.bucket, Some(&self.credentials), &self.object(key))
            .sign(SIGNED_FOR);
        rec.sent_us = Some(clock.now_us());
        let resp = conn
            .send(Method::GET, &path_of(&url), &[], Pieces::empty())
            .await?;
        rec.first_byte_us = Some(clock.now_us());
        let status = resp.status().as_u16();
        if status == 404 {
            let text = read_all(resp, MAX_ERROR_BODY).await?;
            return if String::from_utf8_lossy(&text).contains("NoSuchKey") {
                Ok((0, false))
            } else {
                Err((
                    ErrorClass::Http4xx,
                    format!("GET: 404 {}", error_code(&String::from_utf8_lossy(&text))),
                ))
            };
        }
        if !(200..300).contains(&status) {
            let text = read_all(resp, MAX_ERROR_BODY).await?;
            return Err(status_failure("GET", status, &text));
        }
        let mut verify = Verifier::new(self, key);
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| crate::drivers::http1::classify(&e, "reading body"))?;
            if let Ok(d) = frame.into_data() {
                verify.feed(&d);
            }
        }
        verify.end().map(|n| (n, true))
    }

    async fn delete(
        &self,
        conn: &mut Http1,
        key: u64,
        clock: Clock,
        rec: &mut RequestRecord,
    ) -> Result<(), Failure> {
        let url = DeleteObject::new(&self.bucket, Some(&self.credentials), &self.object(key))
            .sign(SIGNED_FOR);
        rec.sent_us = Some(clock.now_us());
        let resp = conn
            .send(Method::DELETE, &path_of(&url), &[], Pieces::empty())
            .await?;
        rec.first_byte_us = Some(clock.now_us());
        expect_ok(resp, "DELETE").await.map(|_| ())
    }

    async fn list(
        &self,
        conn: &mut Http1,
        key: u64,
        clock: Clock,
        rec: &mut RequestRecord,
    ) -> Result<u64, Failure> {
        let mut action = ListObjectsV2::new(&self.bucket, Some(&self.credentials));
        action.with_prefix(self.spec.keys.prefix.clone());
        action.with_start_after(self.object(key));
        action.with_max_keys(self.spec.list_max_keys);
        let url = action.sign(SIGNED_FOR);
        rec.sent_us = Some(clock.now_us());
        let resp = conn
            .send(Method::GET, &path_of(&url), &[], Pieces::empty())
            .await?;
        rec.first_byte_us = Some(clock.now_us());
        let text = expect_ok(resp, "LIST").await?;
        ListObjectsV2::parse_response(&text)
            .map_err(|e| (ErrorClass::MalformedStream, format!("LIST: {e}")))?;
        Ok(text.len() as u64)
    }
}

/// Record one part of a compound operation.
fn step(rec: &mut RequestRecord, name: &'static str, from_us: u64, clock: Clock) {
    rec.steps.push(Step {
        op: Cow::Borrowed(name),
        latency_us: clock.now_us().saturating_sub(from_us),
    });
}

fn header(key: u64, version: u64) -> Bytes {
    let mut h = Vec::with_capacity(HEADER as usize);
    h.extend_from_slice(&key.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    Bytes::from(h)
}

/// Checks a GET's body against what its header says was written, as it arrives.
struct Verifier<'a> {
    driver: &'a S3Driver,
    key: u64,
    head: Vec<u8>,
    /// Bytes after the header seen so far.
    seen: u64,
    expected: Option<Bytes>,
    failure: Option<String>,
}

impl<'a> Verifier<'a> {
    fn new(driver: &'a S3Driver, key: u64) -> Verifier<'a> {
        Verifier {
            driver,
            key,
            head: Vec::with_capacity(HEADER as usize),
            seen: 0,
            expected: None,
            failure: None,
        }
    }

    fn feed(&mut self, mut d: &[u8]) {
        if self.failure.is_some() {
            self.seen += d.len() as u64;
            return;
        }
        if self.head.len() < HEADER as usize {
            let take = (HEADER as usize - self.head.len()).min(d.len());
            self.head.extend_from_slice(&d[..take]);
            d = &d[take..];
            if self.head.len() == HEADER as usize {
                let key = u64::from_le_bytes(self.head[..8].try_into().expect("8 bytes"));
                let version = u64::from_le_bytes(self.head[8..].try_into().expect("8 bytes"));
                if key != self.key {
                    self.failure = Some(format!(
                        "GET {} returned the object written for key {key}",
                        self.driver.object(self.key)
                    ));
                    return;
                }
                // The longest this object may be: compare against that much, check the
                // length at the end.
                let max = self.driver.spec.keys.value_size.max() - HEADER;
                self.expected = Some(self.driver.slice(key, version, max));
            }
        }
        if d.is_empty() {
            return;
        }
        let Some(expected) = &self.expected else {
            return;
        };
        let from = self.seen as usize;
        let to = from + d.len();
        if to > expected.len() || expected[from..to] != *d {
            self.failure = Some(format!(
                "GET {}: the bytes read differ from the bytes written (from offset {})",
                self.driver.object(self.key),
                from as u64 + HEADER
            ));
        }
        self.seen += d.len() as u64;
    }

    /// The object's length, or the mismatch.
    fn end(self) -> Result<u64, Failure> {
        let total = self.head.len() as u64 + self.seen;
        if let Some(f) = self.failure {
            return Err((ErrorClass::Mismatch, f));
        }
        if self.head.len() < HEADER as usize {
            return Err((
                ErrorClass::Mismatch,
                format!(
                    "GET {}: {total} bytes, shorter than the header every object starts with",
                    self.driver.object(self.key)
                ),
            ));
        }
        Ok(total)
    }
}

/// The path and query of a signed URL (the connection knows the host).
fn path_of(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

/// The `<Code>` of an S3 error document, else its start.
fn error_code(text: &str) -> String {
    let find = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        let a = text.find(&open)? + open.len();
        let b = text[a..].find(&close)? + a;
        Some(text[a..b].to_string())
    };
    match (find("Code"), find("Message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c,
        _ => text.chars().take(200).collect(),
    }
}

fn status_failure(what: &str, status: u16, body: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(body);
    let class = match status {
        400..=499 => ErrorClass::Http4xx,
        500..=599 => ErrorClass::Http5xx,
        _ => ErrorClass::Other,
    };
    (class, format!("{what}: {status} {}", error_code(&text)))
}

/// A 2xx answer's body (small: listings, upload ids), or the failure its status says.
async fn expect_ok(
    resp: hyper::Response<hyper::body::Incoming>,
    what: &str,
) -> Result<Bytes, Failure> {
    let status = resp.status().as_u16();
    let body = read_all(resp, 1 << 20).await?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(status_failure(what, status, &body))
    }
}

impl Driver for S3Driver {
    type Conn = S3Conn;

    async fn connect(&self) -> Result<S3Conn, String> {
        Http1::connect(self.addr, &self.host).await
    }

    async fn execute<'a>(
        &'a self,
        slot: &'a mut Option<S3Conn>,
        id: u64,
        clock: Clock,
        rec: &'a mut RequestRecord,
        limits: &'a mut Limits,
    ) {
        let (op, key, size) = self.draw(id);
        rec.op = Some(Cow::Borrowed(op.name()));
        let timeout = self.spec.timeout;
        let work = async {
            for retry in [false, true] {
                let (mut conn, reused) = match slot.take() {
                    Some(c) if c.usable() => (c, true),
                    _ => match tokio::time::timeout(CONNECT_TIMEOUT.min(timeout), self.connect())
                        .await
                    {
                        Ok(Ok(c)) => (c, false),
                        Ok(Err(m)) => return Err((ErrorClass::Connect, m)),
                        Err(_) => {
                            return Err((
                                ErrorClass::Connect,
                                format!("connect to {}: no answer", self.addr),
                            ))
                        }
                    },
                };
                rec.steps.clear();
                let outcome = match op {
                    Op::Put => self
                        .put(&mut conn, key, id + 1, size, clock, rec)
                        .await
                        .map(|()| {
                            rec.bytes_out = Some(size);
                        }),
                    Op::Get => self
                        .get(&mut conn, key, clock, rec)
                        .await
                        .map(|(n, found)| {
                            rec.bytes_in = Some(n);
                            rec.hits = Some(u32::from(found));
                        }),
                    Op::Delete => self.delete(&mut conn, key, clock, rec).await,
                    Op::List => self.list(&mut conn, key, clock, rec).await.map(|n| {
                        rec.bytes_in = Some(n);
                    }),
                };
                match outcome {
                    Err((ErrorClass::Connect, _)) if reused && !retry => {
                        rec.sent_us = None;
                        rec.first_byte_us = None;
                        rec.reconnected = true;
                        continue;
                    }
                    other => {
                        if conn.usable() {
                            *slot = Some(conn);
                        }
                        return other;
                    }
                }
            }
            unreachable!("the second attempt always returns")
        };
        let outcome = guarded(limits, timeout, work).await;
        finish(rec, clock, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_give_their_code_and_message() {
        let doc = "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message></Error>";
        assert_eq!(
            error_code(doc),
            "NoSuchBucket: The specified bucket does not exist"
        );
        assert_eq!(error_code("plain text"), "plain text");
    }

    #[test]
    fn signed_urls_keep_their_query() {
        let u: url::Url = "http://h:9/b/k?X-Amz-Signature=abc".parse().unwrap();
        assert_eq!(path_of(&u), "/b/k?X-Amz-Signature=abc");
    }
}
