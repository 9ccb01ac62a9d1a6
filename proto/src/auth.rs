//! Request signing for Lamina's gRPC API, shared by the controller, the worker and the client.
//!
//! Scheme `LAMINA-HMAC-SHA256`: every request carries
//! `authorization: LAMINA-HMAC-SHA256 Credential=KEY_ID, Signature=HEX` and `x-lamina-date: EPOCH_MS`,
//! where `HEX = hex(HMAC-SHA256(secret, "LAMINA-HMAC-SHA256\n" + date + "\n" + path + "\n" +
//! hex(sha256(body))))`. The path names the method (`/lamina.v1.Functions/Invoke`); the body is
//! the whole gRPC request body (every message of a client stream). The server buffers the body,
//! rebuilds the string, compares in constant time and refuses dates more than
//! [`MAX_CLOCK_SKEW_MS`] away from its clock. Not covered: other metadata (`grpc-timeout`), the
//! responses, and replays of a captured request within the skew window (there is no nonce cache).
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use sha2::{Digest, Sha256};
use tonic::body::BoxBody;
use tonic::Status;
use tower_service::Service;

pub const SCHEME: &str = "LAMINA-HMAC-SHA256";
pub const DATE_HEADER: &str = "x-lamina-date";
/// Requests dated further than this from the verifier's clock are refused (as SigV4: 5 minutes).
pub const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;
/// The largest request body a verifier buffers: a 50 MB zip in a client stream plus framing.
pub const MAX_SIGNED_BODY_BYTES: usize = 64 * 1024 * 1024;
/// The key id under which the cluster credential (controller <-> worker) signs.
pub const CLUSTER_KEY_ID: &str = "lamina-cluster";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Compares in time that depends only on the lengths, never on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
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

fn string_to_sign(date: &str, path: &str, body: &[u8]) -> String {
    format!("{SCHEME}\n{date}\n{path}\n{}", sha256_hex(body))
}

/// The `authorization` and `x-lamina-date` values for a request to `path` with `body` at `date_ms`.
pub fn sign(creds: &Credentials, date_ms: u64, path: &str, body: &[u8]) -> (String, String) {
    let date = date_ms.to_string();
    let mac = hmac_sha256(
        creds.secret_access_key.as_bytes(),
        string_to_sign(&date, path, body).as_bytes(),
    );
    (
        format!(
            "{SCHEME} Credential={}, Signature={}",
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

/// Checks the signature of a request to `path` whose headers are `headers` and body `body`;
/// returns the access key id that signed it.
pub fn verify(
    keys: &dyn KeyLookup,
    headers: &http::HeaderMap,
    path: &str,
    body: &[u8],
    now_ms: u64,
) -> Result<String, AuthFailure> {
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
    let mut key_id = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => key_id = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(key_id), Some(signature)) = (key_id, signature) else {
        return Err(AuthFailure::Malformed(
            "Credential and Signature are required".into(),
        ));
    };
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
    let expected = hmac_sha256(
        secret.as_bytes(),
        string_to_sign(date, path, body).as_bytes(),
    );
    let given = hex::decode(signature).map_err(|_| AuthFailure::BadSignature)?;
    if !constant_time_eq(&expected, &given) {
        return Err(AuthFailure::BadSignature);
    }
    Ok(key_id.to_string())
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

/// A gRPC service that only sees requests signed by a key `keys` knows.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    keys: Arc<dyn KeyLookup>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, keys: Arc<dyn KeyLookup>) -> Authenticated<S> {
        Authenticated { inner, keys }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
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
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes: Bytes = match Limited::new(body, MAX_SIGNED_BODY_BYTES).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) => {
                    return Ok(Status::invalid_argument(format!(
                        "cannot read the request body (at most {MAX_SIGNED_BODY_BYTES} bytes): {e}"
                    ))
                    .into_http())
                }
            };
            let path = parts.uri.path().to_string();
            if let Err(failure) = verify(keys.as_ref(), &parts.headers, &path, &bytes, now_ms()) {
                tracing::warn!(%path, reason = %failure, "refused an unauthenticated grpc request");
                return Ok(Status::from(failure).into_http());
            }
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
