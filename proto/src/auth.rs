//! Request signing for Lamina's gRPC API, shared by the controller, the worker and the client.
//!
//! Scheme `LAMINA-HMAC-SHA256`: every request carries
//! `authorization: LAMINA-HMAC-SHA256 Credential=KEY_ID, Nonce=NONCE, Signature=HEX` and
//! `x-lamina-date: EPOCH_MS`, where `HEX = hex(HMAC-SHA256(secret, "LAMINA-HMAC-SHA256\n" + date +
//! "\n" + nonce + "\n" + path + "\n" + hex(sha256(body))))` and `NONCE` is 32 random hex digits
//! chosen per request. The path names the method (`/lamina.v1.Functions/Invoke`); the body is the
//! whole gRPC request body (every message of a client stream).
//!
//! The server ([`Authenticated`]) checks everything the headers say **before** reading a byte of
//! the body: the scheme, the date (at most [`MAX_CLOCK_SKEW_MS`] from its clock), the nonce and
//! that the key exists and may call the method. Only then does it read the body, within the
//! method's limit ([`crate::guard::grpc_body_limit`]), a deadline and the process-wide budget of
//! unverified bytes ([`crate::guard::BodyBudget`]), rebuild the string and compare in constant
//! time. The signature of a mutating call goes to a [`ReplayCache`]: a second use within the skew
//! window is refused (the nonce makes two honest calls differ even within one millisecond). Not
//! covered: other metadata (`grpc-timeout`) and the responses.
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tonic::body::BoxBody;
use tonic::Status;
use tower_service::Service;

use crate::guard::{self, BodyBudget, BodyError, Replay, ReplayCache};

pub const SCHEME: &str = "LAMINA-HMAC-SHA256";
pub const DATE_HEADER: &str = "x-lamina-date";
/// Requests dated further than this from the verifier's clock are refused (as SigV4: 5 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// The largest request body a verifier buffers: a 50 MB zip in a client stream plus framing
/// (only for uploads: [`crate::guard::grpc_body_limit`] gives each method's limit).
pub const MAX_SIGNED_BODY_BYTES: usize = guard::GRPC_UPLOAD_BODY_BYTES;
/// The key id under which the cluster credential (controller <-> worker) signs.
pub const CLUSTER_KEY_ID: &str = "lamina-cluster";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HMAC-SHA256 (RFC 2104), by RustCrypto's `hmac`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC takes a key of any length (longer keys are hashed first), so this never fails.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts keys of any length"));
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares in time that depends only on the lengths, never on where the inputs differ
/// (`subtle`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A random secret: `len` characters of base62.
pub fn random_secret(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// An access key id and its secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

fn string_to_sign(date: &str, nonce: &str, path: &str, body: &[u8]) -> String {
    format!("{SCHEME}\n{date}\n{nonce}\n{path}\n{}", sha256_hex(body))
}

/// The `authorization` and `x-lamina-date` values for a request to `path` with `body` at
/// `date_ms`, with a fresh random nonce.
pub fn sign(creds: &Credentials, date_ms: u64, path: &str, body: &[u8]) -> (String, String) {
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    sign_with_nonce(creds, date_ms, &nonce, path, body)
}

/// [`sign`] with a given nonce (tests replay with it).
pub fn sign_with_nonce(
    creds: &Credentials,
    date_ms: u64,
    nonce: &str,
    path: &str,
    body: &[u8],
) -> (String, String) {
    let date = date_ms.to_string();
    let mac = hmac_sha256(
        creds.secret_access_key.as_bytes(),
        string_to_sign(&date, nonce, path, body).as_bytes(),
    );
    (
        format!(
            "{SCHEME} Credential={}, Nonce={nonce}, Signature={}",
            creds.access_key_id,
            hex::encode(mac)
        ),
        date,
    )
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("the request is not signed: pass credentials (fnctl: --credentials FILE or FNCTL_ACCESS_KEY_ID + FNCTL_SECRET_ACCESS_KEY)")]
    Missing,
    #[error("malformed authorization: {0}")]
    Malformed(String),
    #[error("the security token included in the request is invalid: access key `{0}` is unknown")]
    UnknownKey(String),
    #[error("access key `{0}` is not allowed here: {1}")]
    Denied(String, String),
    #[error("the request signature does not match: check the secret access key")]
    BadSignature,
    #[error("signature expired: the request date {0} is more than 5 minutes from the server's clock; check the clock")]
    Expired(String),
    #[error("this signed request was received before (a replay), or is older than the replay cache remembers: sign every request anew")]
    Replayed,
    /// Session credentials (an execution role's) past their expiry.
    #[error("the security token included in the request is expired: session credentials of access key `{0}` are no longer valid; use the credentials of a new sandbox")]
    ExpiredToken(String),
}

impl From<Replay> for AuthFailure {
    fn from(_: Replay) -> AuthFailure {
        AuthFailure::Replayed
    }
}

/// Who signed a request: [`Authenticated`] (and the REST front, after SigV4) put it in the
/// request's extensions once the signature is checked, for the services to authorise with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub access_key_id: String,
}

/// Looks up the secret of an access key id for a verifier.
pub trait KeyLookup: Send + Sync + 'static {
    /// The secret of `key_id`, or why that key may not sign requests to `path`.
    fn secret(&self, key_id: &str, path: &str) -> Result<String, AuthFailure>;
}

/// One fixed key (the cluster credential).
pub struct StaticKey(pub Credentials);

impl KeyLookup for StaticKey {
    fn secret(&self, key_id: &str, _path: &str) -> Result<String, AuthFailure> {
        if key_id == self.0.access_key_id {
            Ok(self.0.secret_access_key.clone())
        } else {
            Err(AuthFailure::UnknownKey(key_id.to_string()))
        }
    }
}

/// What the headers of a request say, checked before its body is read ([`precheck`]).
pub struct Pending {
    key_id: String,
    secret: String,
    date: String,
    date_ms: u64,
    nonce: String,
    signature: Vec<u8>,
}

impl Pending {
    /// The date the request was signed at (epoch milliseconds).
    pub fn date_ms(&self) -> u64 {
        self.date_ms
    }

    /// The signature as sent (the replay cache's key).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Checks the signature over `path` and `body`; returns the access key id that signed.
    pub fn finish(self, path: &str, body: &[u8]) -> Result<String, AuthFailure> {
        let expected = hmac_sha256(
            self.secret.as_bytes(),
            string_to_sign(&self.date, &self.nonce, path, body).as_bytes(),
        );
        if !constant_time_eq(&expected, &self.signature) {
            return Err(AuthFailure::BadSignature);
        }
        Ok(self.key_id)
    }
}

/// Checks everything but the body: the scheme, the date, the nonce and that the key may call
/// `path`. Nothing here reads or depends on the body.
pub fn precheck(
    keys: &dyn KeyLookup,
    headers: &http::HeaderMap,
    path: &str,
    now_ms: u64,
) -> Result<Pending, AuthFailure> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let auth = auth
        .to_str()
        .map_err(|_| AuthFailure::Malformed("authorization is not ASCII".into()))?;
    let rest = auth
        .strip_prefix(SCHEME)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| AuthFailure::Malformed(format!("the scheme must be {SCHEME}")))?;
    let (mut key_id, mut nonce, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => key_id = Some(v),
            Some(("Nonce", v)) => nonce = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(key_id), Some(nonce), Some(signature)) = (key_id, nonce, signature) else {
        return Err(AuthFailure::Malformed(
            "Credential, Nonce and Signature are required".into(),
        ));
    };
    if !(16..=64).contains(&nonce.len()) || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthFailure::Malformed(
            "Nonce must be 16 to 64 hex digits".into(),
        ));
    }
    let date = headers
        .get(DATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthFailure::Malformed(format!("{DATE_HEADER} is required")))?;
    let date_ms: u64 = date
        .parse()
        .map_err(|_| AuthFailure::Malformed(format!("{DATE_HEADER} must be epoch milliseconds")))?;
    if now_ms.abs_diff(date_ms) > MAX_CLOCK_SKEW_MS {
        return Err(AuthFailure::Expired(date.to_string()));
    }
    let secret = keys.secret(key_id, path)?;
    let signature = hex::decode(signature).map_err(|_| AuthFailure::BadSignature)?;
    Ok(Pending {
        key_id: key_id.to_string(),
        secret,
        date: date.to_string(),
        date_ms,
        nonce: nonce.to_string(),
        signature,
    })
}

/// Checks the signature of a request to `path` whose headers are `headers` and body `body`;
/// returns the access key id that signed it. (No replay check: [`Authenticated`] adds it.)
pub fn verify(
    keys: &dyn KeyLookup,
    headers: &http::HeaderMap,
    path: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<String, AuthFailure> {
    precheck(keys, headers, path, now_ms)?.finish(path, body)
}

impl From<AuthFailure> for Status {
    fn from(f: AuthFailure) -> Status {
        match f {
            AuthFailure::Denied(..) => Status::permission_denied(f.to_string()),
            _ => Status::unauthenticated(f.to_string()),
        }
    }
}

// ------------------------------------------------------------------------------------ client side

/// A gRPC channel that signs every request (or passes it through unsigned without credentials).
#[derive(Clone, Debug)]
pub struct Signed<S> {
    inner: S,
    creds: Option<Arc<Credentials>>,
}

impl<S> Signed<S> {
    pub fn new(inner: S, creds: Option<Credentials>) -> Signed<S> {
        Signed {
            inner,
            creds: creds.map(Arc::new),
        }
    }
}

/// The channel type of signed clients.
pub type SignedChannel = Signed<tonic::transport::Channel>;

impl<S> Service<http::Request<BoxBody>> for Signed<S>
where
    S: Service<http::Request<BoxBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        // The ready clone is the one to call; leave a fresh clone behind (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let Some(creds) = self.creds.clone() else {
            let fut = inner.call(req);
            return Box::pin(async move { fut.await.map_err(Into::into) });
        };
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let bytes = body.collect().await.map_err(BoxError::from)?.to_bytes();
            let (auth, date) = sign(&creds, now_ms(), parts.uri.path(), &bytes);
            parts.headers.insert(
                http::header::AUTHORIZATION,
                http::HeaderValue::from_str(&auth).map_err(BoxError::from)?,
            );
            parts.headers.insert(
                DATE_HEADER,
                http::HeaderValue::from_str(&date).map_err(BoxError::from)?,
            );
            let req = http::Request::from_parts(parts, tonic::body::boxed(Full::new(bytes)));
            inner.call(req).await.map_err(Into::into)
        })
    }
}

// ------------------------------------------------------------------------------------ server side

/// What an [`Authenticated`] server holds for the clients it has not verified yet: the body
/// budget and the replay cache, shared by every service of one process.
#[derive(Clone, Default)]
pub struct ServerGuard {
    pub budget: BodyBudget,
    pub replay: Arc<ReplayCache>,
}

/// A gRPC service that only sees requests signed by a key `keys` knows.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    keys: Arc<dyn KeyLookup>,
    guard: ServerGuard,
}

impl<S> Authenticated<S> {
    /// `inner` behind `keys`, with a guard of its own (use [`Authenticated::with_guard`] to share
    /// one budget and one replay cache between the services of a process).
    pub fn new(inner: S, keys: Arc<dyn KeyLookup>) -> Authenticated<S> {
        Authenticated::with_guard(inner, keys, ServerGuard::default())
    }

    pub fn with_guard(inner: S, keys: Arc<dyn KeyLookup>, guard: ServerGuard) -> Authenticated<S> {
        Authenticated { inner, keys, guard }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

fn body_status(e: &BodyError) -> Status {
    match e {
        BodyError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
        BodyError::Busy => Status::unavailable(e.to_string()),
        BodyError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        BodyError::Read(_) => Status::invalid_argument(e.to_string()),
    }
}

impl<S> Service<http::Request<BoxBody>> for Authenticated<S>
where
    S: Service<http::Request<BoxBody>, Response = http::Response<BoxBody>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<BoxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<BoxBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let keys = Arc::clone(&self.keys);
        let guard = self.guard.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_string();
            let refuse = |failure: AuthFailure| {
                tracing::warn!(%path, reason = %failure, "refused an unauthenticated grpc request");
                Ok(Status::from(failure).into_http())
            };
            // Headers first: an unsigned or badly dated request is refused before its body is read.
            let pending = match precheck(keys.as_ref(), &parts.headers, &path, now_ms()) {
                Ok(p) => p,
                Err(failure) => return refuse(failure),
            };
            let limit = guard::grpc_body_limit(&path);
            let (bytes, held) = match guard.budget.read(body, limit).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%path, error = %e, "refused a grpc request body");
                    return Ok(body_status(&e).into_http());
                }
            };
            let (date_ms, signature) = (pending.date_ms(), pending.signature().to_vec());
            let access_key_id = match pending.finish(&path, &bytes) {
                Ok(id) => id,
                Err(failure) => return refuse(failure),
            };
            if guard::grpc_is_mutating(&path) {
                if let Err(r) = guard.replay.check(&signature, date_ms, now_ms()) {
                    return refuse(r.into());
                }
            }
            drop(held);
            let mut parts = parts;
            parts.extensions.insert(Caller { access_key_id });
            let req = http::Request::from_parts(parts, tonic::body::boxed(Full::new(bytes)));
            inner.call(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn long_keys_are_hashed_first() {
        // RFC 4231 case 6: a 131-byte key.
        let mac = hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            hex::encode(mac),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn headers(auth: &str, date: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        h.insert(DATE_HEADER, date.parse().unwrap());
        h
    }

    #[test]
    fn verify_accepts_a_good_signature_and_refuses_tampering() {
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cret".into(),
        };
        let keys = StaticKey(creds.clone());
        let now = 1_800_000_000_000;
        let (auth, date) = sign(&creds, now, "/lamina.v1.Functions/Invoke", b"body");
        let h = headers(&auth, &date);
        assert_eq!(
            verify(&keys, &h, "/lamina.v1.Functions/Invoke", b"body", now).unwrap(),
            "AKID"
        );
        let err = |r: Result<String, AuthFailure>| r.unwrap_err();
        assert_eq!(
            err(verify(
                &keys,
                &h,
                "/lamina.v1.Functions/Invoke",
                b"bodY",
                now
            )),
            AuthFailure::BadSignature
        );
        assert_eq!(
            err(verify(
                &keys,
                &h,
                "/lamina.v1.Functions/Delete",
                b"body",
                now
            )),
            AuthFailure::BadSignature
        );
        assert!(matches!(
            err(verify(
                &keys,
                &h,
                "/p",
                b"body",
                now + MAX_CLOCK_SKEW_MS + 1
            )),
            AuthFailure::Expired(_)
        ));
        assert_eq!(
            err(verify(&keys, &http::HeaderMap::new(), "/p", b"", now)),
            AuthFailure::Missing
        );
        let wrong = Credentials {
            secret_access_key: "other".into(),
            ..creds.clone()
        };
        let (auth, date) = sign(&wrong, now, "/p", b"");
        assert_eq!(
            err(verify(&keys, &headers(&auth, &date), "/p", b"", now)),
            AuthFailure::BadSignature
        );
        let stranger = Credentials {
            access_key_id: "NOPE".into(),
            ..creds
        };
        let (auth, date) = sign(&stranger, now, "/p", b"");
        assert_eq!(
            err(verify(&keys, &headers(&auth, &date), "/p", b"", now)),
            AuthFailure::UnknownKey("NOPE".into())
        );
    }

    #[test]
    fn every_signature_has_its_own_nonce_and_one_is_required() {
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cret".into(),
        };
        let keys = StaticKey(creds.clone());
        let now = 1_800_000_000_000;
        // The same call at the same millisecond: two signatures (not a replay of each other).
        let (a, _) = sign(&creds, now, "/p", b"body");
        let (b, _) = sign(&creds, now, "/p", b"body");
        assert_ne!(a, b);
        // Without a nonce (the scheme before it had one): refused before any body is read.
        let old = a
            .split(", ")
            .filter(|p| !p.starts_with("Nonce="))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(matches!(
            precheck(&keys, &headers(&old, &now.to_string()), "/p", now),
            Err(AuthFailure::Malformed(_))
        ));
        // A nonce changed after signing: the signature does not match.
        let (c, date) = sign_with_nonce(&creds, now, "00112233445566778899aabbccddeeff", "/p", b"");
        let forged = c.replace(
            "00112233445566778899aabbccddeeff",
            "ffeeddccbbaa99887766554433221100",
        );
        assert_eq!(
            verify(&keys, &headers(&forged, &date), "/p", b"", now),
            Err(AuthFailure::BadSignature)
        );
    }

    /// Answers with the access key id of the [`Caller`] in the request's extensions (as a
    /// service that authorises would read it), or an empty body without one.
    #[derive(Clone)]
    struct EchoCaller;

    impl Service<http::Request<BoxBody>> for EchoCaller {
        type Response = http::Response<BoxBody>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<http::Response<BoxBody>, Infallible>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<BoxBody>) -> Self::Future {
            let who = req
                .extensions()
                .get::<Caller>()
                .map(|c| c.access_key_id.clone())
                .unwrap_or_default();
            std::future::ready(Ok(http::Response::new(tonic::body::boxed(Full::new(
                bytes::Bytes::from(who),
            )))))
        }
    }

    #[tokio::test]
    async fn the_verified_caller_reaches_the_service_and_no_one_else_does() {
        let creds = Credentials {
            access_key_id: "AKID".into(),
            secret_access_key: "s3cret".into(),
        };
        let mut svc = Authenticated::new(EchoCaller, Arc::new(StaticKey(creds.clone())));
        let path = "/lamina.v1.Functions/GetFunction";
        let request = |auth: &str, date: &str| {
            let mut req = http::Request::builder()
                .uri(format!("http://controller{path}"))
                .header(http::header::AUTHORIZATION, auth)
                .header(DATE_HEADER, date)
                .body(tonic::body::boxed(Full::new(bytes::Bytes::from_static(
                    b"body",
                ))))
                .unwrap();
            // A client cannot smuggle a caller in: the extensions are the server's own.
            req.extensions_mut().insert(Caller {
                access_key_id: "FORGED".into(),
            });
            req
        };
        let (auth, date) = sign(&creds, now_ms(), path, b"body");
        let resp = svc.call(request(&auth, &date)).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"AKID");
        // A bad signature never reaches the service.
        let (auth, date) = sign(&creds, now_ms(), path, b"other body");
        let resp = svc.call(request(&auth, &date)).await.unwrap();
        assert_eq!(
            resp.headers().get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"16"[..])
        );
    }

    #[test]
    fn secrets_are_random_and_redacted() {
        let a = random_secret(40);
        assert_eq!(a.len(), 40);
        assert_ne!(a, random_secret(40));
        let c = Credentials {
            access_key_id: "id".into(),
            secret_access_key: a.clone(),
        };
        assert!(!format!("{c:?}").contains(&a));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
