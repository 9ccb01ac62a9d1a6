//! AWS Signature Version 4 verification for the REST API, as botocore signs (`AWS4-HMAC-SHA256`).
//!
//! The canonical request is rebuilt from what arrived: the method; the path as received,
//! URI-encoded once more (botocore encodes the already-encoded path again, so `%3A` becomes
//! `%253A`); the query pairs sorted as received; the headers named in `SignedHeaders` (which must
//! include `host` and `x-amz-date`), values trimmed with inner whitespace collapsed; and the
//! sha256 of the body the server received (an `x-amz-content-sha256` header, when present, must
//! equal it). The signing key is derived `AWS4+secret -> date -> region -> service ->
//! aws4_request`, the signatures compared in constant time, and `x-amz-date` must be within
//! 5 minutes of the server's clock.
//!
//! Every `x-amz-*` header the request carries must be among the signed ones (botocore signs every
//! header but a short list of hop-by-hop and tracing ones, so its requests always pass): an
//! unsigned `X-Amz-Invocation-Type` or `X-Amz-Log-Type` added to a captured request would change
//! what it does. The one exception is `x-amz-content-sha256`, whose value is checked against the
//! body anyway. Checking is split in two so that nothing is buffered for a request that cannot
//! verify: [`precheck`] looks only at the headers (form, date, key, signed headers), then
//! [`Pending::finish`] hashes the body and compares the signature.
use http::HeaderMap;
use lamina_proto::auth::{
    constant_time_eq, hmac_sha256, sha256_hex, AuthFailure, KeyLookup, MAX_CLOCK_SKEW_MS,
};

use super::sessions::SessionStore;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The path passed to [`KeyLookup::secret`] for REST requests.
pub const REST_PATH: &str = "/rest";

/// AWS's URI encoding: unreserved characters kept, `/` kept when `keep_slash`, the rest `%XX`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn canonical_query(query: Option<&str>) -> String {
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return String::new();
    };
    let mut pairs: Vec<(&str, &str)> = q
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `YYYYMMDDTHHMMSSZ` -> epoch milliseconds.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// What [`precheck`] found in the headers; [`Pending::finish`] checks the body against it.
pub struct Pending {
    key_id: String,
    secret: String,
    scope: String,
    amz_date: String,
    date_ms: u64,
    signed: String,
    signature: Vec<u8>,
}

/// Checks everything a SigV4 request says in its headers, before its body is read: the form of
/// `Authorization`, the date and its skew, that every `x-amz-*` header is signed, and that the
/// access key exists and may sign.
pub fn precheck(
    keys: &dyn KeyLookup,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<Pending, AuthFailure> {
    precheck_with_sessions(keys, None, headers, now_ms)
}

/// [`precheck`], also accepting the session credentials of execution roles (`ASIA…` keys, with
/// their `X-Amz-Security-Token`, before their expiry: `sessions.rs`).
pub fn precheck_with_sessions(
    keys: &dyn KeyLookup,
    sessions: Option<&SessionStore>,
    headers: &HeaderMap,
    now_ms: u64,
) -> Result<Pending, AuthFailure> {
    let Some(auth) = headers.get(http::header::AUTHORIZATION) else {
        return Err(AuthFailure::Missing);
    };
    let malformed = |m: &str| AuthFailure::Malformed(m.to_string());
    let auth = auth
        .to_str()
        .map_err(|_| malformed("authorization is not ASCII"))?;
    let rest = auth
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| malformed("the algorithm must be AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(malformed(
            "Credential, SignedHeaders and Signature are required",
        ));
    };
    let (key_id, scope) = credential
        .split_once('/')
        .ok_or_else(|| malformed("Credential must be KEY/DATE/REGION/SERVICE/aws4_request"))?;
    let scope_parts: Vec<&str> = scope.split('/').collect();
    if scope_parts.len() != 4 || scope_parts[3] != "aws4_request" {
        return Err(malformed(
            "Credential must be KEY/DATE/REGION/SERVICE/aws4_request",
        ));
    }
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| malformed("X-Amz-Date is required"))?;
    let date_ms = parse_amz_date(amz_date).ok_or_else(|| malformed("X-Amz-Date is malformed"))?;
    if now_ms.abs_diff(date_ms) > MAX_CLOCK_SKEW_MS {
        return Err(AuthFailure::Expired(amz_date.to_string()));
    }
    if !amz_date.starts_with(scope_parts[0]) {
        return Err(malformed(
            "the credential scope date is not the X-Amz-Date date",
        ));
    }
    let signed_names: Vec<&str> = signed.split(';').collect();
    if !signed_names.contains(&"host") || !signed_names.contains(&"x-amz-date") {
        return Err(malformed("SignedHeaders must include host and x-amz-date"));
    }
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-amz-")
            && name != "x-amz-content-sha256"
            && !signed_names.contains(&name)
        {
            return Err(AuthFailure::Malformed(format!(
                "header `{name}` is not signed: every x-amz-* header must be in SignedHeaders"
            )));
        }
    }
    let secret = match sessions {
        Some(sessions) if SessionStore::is_session_key(key_id) => {
            let token = headers.get("x-amz-security-token").map(|v| v.as_bytes());
            sessions.secret(key_id, token, now_ms)?
        }
        _ => keys.secret(key_id, REST_PATH)?,
    };
    let signature = hex::decode(signature).map_err(|_| AuthFailure::BadSignature)?;
    Ok(Pending {
        key_id: key_id.to_string(),
        secret,
        scope: scope.to_string(),
        amz_date: amz_date.to_string(),
        date_ms,
        signed: signed.to_string(),
        signature,
    })
}

impl Pending {
    /// The `X-Amz-Date` in epoch milliseconds.
    pub fn date_ms(&self) -> u64 {
        self.date_ms
    }

    /// The service of the credential scope (`KEY/DATE/REGION/SERVICE/aws4_request`).
    pub fn service(&self) -> &str {
        self.scope.split('/').nth(2).unwrap_or("")
    }

    /// The signature as sent (the replay cache's key).
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    /// Checks the signature over the request (`headers` as given to [`precheck`]) and `body`;
    /// returns the access key id.
    pub fn finish(
        self,
        method: &str,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<String, AuthFailure> {
        let payload_hash = sha256_hex(body);
        if let Some(claimed) = headers.get("x-amz-content-sha256") {
            if claimed.as_bytes() != payload_hash.as_bytes() {
                return Err(AuthFailure::BadSignature);
            }
        }
        let mut canonical_headers = String::new();
        for name in self.signed.split(';') {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| {
                    String::from_utf8_lossy(v.as_bytes())
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        let path = if uri.path().is_empty() {
            "/"
        } else {
            uri.path()
        };
        let canonical_request = format!(
            "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
            uri_encode(path, true),
            canonical_query(uri.query()),
            self.signed,
        );
        let string_to_sign = format!(
            "{ALGORITHM}\n{}\n{}\n{}",
            self.amz_date,
            self.scope,
            sha256_hex(canonical_request.as_bytes())
        );
        let mut parts = self.scope.split('/');
        let mut k = hmac_sha256(
            format!("AWS4{}", self.secret).as_bytes(),
            parts.next().unwrap_or_default().as_bytes(),
        );
        for part in parts {
            k = hmac_sha256(&k, part.as_bytes());
        }
        let expected = hmac_sha256(&k, string_to_sign.as_bytes());
        if !constant_time_eq(&expected, &self.signature) {
            return Err(AuthFailure::BadSignature);
        }
        Ok(self.key_id)
    }
}

/// Verifies a SigV4-signed request; returns the access key id. (No replay check: the REST front
/// adds it for mutating calls.)
pub fn verify(
    keys: &dyn KeyLookup,
    method: &str,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: u64,
) -> Result<String, AuthFailure> {
    precheck(keys, headers, now_ms)?.finish(method, uri, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lamina_proto::auth::{Credentials, StaticKey};

    /// AWS's published SigV4 example (the `get-vanilla` suite case: GET / with host and
    /// x-amz-date): its key and its signed headers.
    fn get_vanilla() -> (StaticKey, HeaderMap) {
        let keys = StaticKey(Credentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        });
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .parse()
                .unwrap(),
        );
        (keys, h)
    }

    #[test]
    fn the_aws_test_suite_get_vanilla_case_verifies() {
        let (keys, h) = get_vanilla();
        let uri: http::Uri = "/".parse().unwrap();
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(
            verify(&keys, "GET", &uri, &h, b"", now).unwrap(),
            "AKIDEXAMPLE"
        );
        // Another method, a body, or a date an hour later: refused.
        assert_eq!(
            verify(&keys, "POST", &uri, &h, b"", now),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            verify(&keys, "GET", &uri, &h, b"x", now),
            Err(AuthFailure::BadSignature)
        );
        assert!(matches!(
            verify(&keys, "GET", &uri, &h, b"", now + 3_600_000),
            Err(AuthFailure::Expired(_))
        ));
    }

    #[test]
    fn an_unsigned_x_amz_header_is_refused_before_the_body() {
        let (keys, mut h) = get_vanilla();
        let now = parse_amz_date("20150830T123600Z").unwrap();
        assert!(precheck(&keys, &h, now).is_ok());
        // The body's hash may come unsigned: it is checked against the body.
        h.insert("x-amz-content-sha256", sha256_hex(b"").parse().unwrap());
        assert!(precheck(&keys, &h, now).is_ok());
        h.insert("x-amz-log-type", "Tail".parse().unwrap());
        match precheck(&keys, &h, now) {
            Err(AuthFailure::Malformed(m)) => assert!(m.contains("x-amz-log-type"), "{m}"),
            other => panic!("an unsigned x-amz-log-type passed: {:?}", other.is_ok()),
        }
    }

    #[test]
    fn paths_are_encoded_again_and_queries_sorted() {
        assert_eq!(
            uri_encode("/2015-03-31/functions/arn%3Aaws%3Alambda/invocations", true),
            "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
        );
        assert_eq!(uri_encode("a b/c", false), "a%20b%2Fc");
        assert_eq!(
            canonical_query(Some("MaxItems=2&Marker=f%3Ax")),
            "Marker=f%3Ax&MaxItems=2"
        );
        assert_eq!(canonical_query(None), "");
    }

    #[test]
    fn amz_dates_parse() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160_000));
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
        assert_eq!(parse_amz_date("20151330T123600Z"), None);
    }
}
