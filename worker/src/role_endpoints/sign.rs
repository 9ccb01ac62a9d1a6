//! SigV4 signing of the requests the Parameters and Secrets extension makes for a sandbox, with
//! the sandbox's session credentials, by AWS's own signer (`aws-sigv4`).
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;

use super::SandboxCredentials;

/// The region of Lamina's ARNs and signatures.
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request to {service}: {detail}")]
pub struct SignError {
    service: String,
    detail: String,
}

/// Signs `req` (its headers must include `host`) for `service` at `now`: adds `Authorization`,
/// `X-Amz-Date` and `X-Amz-Security-Token`.
pub fn sign_request(
    req: &mut http::Request<bytes::Bytes>,
    creds: &SandboxCredentials,
    service: &str,
    now: SystemTime,
) -> Result<(), SignError> {
    let fail = |detail: String| SignError {
        service: service.to_string(),
        detail,
    };
    let identity = Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key().to_string(),
        Some(creds.session_token().to_string()),
        None,
        "lamina-sandbox-session",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name(service)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| fail(e.to_string()))?
        .into();
    let uri = req.uri().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(req.body()),
    )
    .map_err(|e| fail(e.to_string()))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| fail(e.to_string()))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}
