//! The typed Rust SDK for Lamina's gRPC API (`lamina.v1`: `Functions`, `Versions`, `Concurrency`,
//! `Events`, `Layers`, `Network`, `Gateway`, `Auth`). `fnctl` is built on it, and so are
//! the end-to-end tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lamina_client::Error> {
//! let client = lamina_client::Client::connect("127.0.0.1:9670").await?;
//! for f in client.list_functions().await? {
//!     println!("{} {}", f.name, f.runtime);
//! }
//! # Ok(())
//! # }
//! ```

// `Error::Api` holds a `tonic::Status` (176 bytes) unboxed, as tonic's own API returns it; the calls it
// comes from are network round trips, so the size of the `Err` is no concern.
#![allow(clippy::result_large_err)]

pub mod code;
mod concurrency;
pub mod credentials;
mod error;
mod gateway;
mod layers;
pub mod network;
mod roles;
mod stream;
mod versions;

use std::time::Duration;

use tonic::transport::Endpoint;

pub use error::Error;
/// An access key id and secret; every request is signed with them (`LAMINA-HMAC-SHA256`).
pub use lamina_proto::auth::Credentials;
use lamina_proto::auth::{Signed, SignedChannel};
/// The generated API types (`lamina.v1`), re-exported so users need not depend on `lamina-proto`.
pub use lamina_proto::v1;
pub use stream::{InvokeStream, StreamEvent};
/// The gRPC status carried by [`Error::Api`], and its code.
pub use tonic::{Code, Status};

use v1::auth_client::AuthClient;
use v1::concurrency_client::ConcurrencyClient;
use v1::events_client::EventsClient;
use v1::functions_client::FunctionsClient;
use v1::gateway_client::GatewayClient;
use v1::layers_client::LayersClient;
use v1::versions_client::VersionsClient;

/// Size of the `code_chunk` messages streamed by [`Client::create_function`] and
/// [`Client::update_function_code`].
pub const CODE_CHUNK_BYTES: usize = 1024 * 1024;

/// Page size asked for by [`Client::list_functions`].
const LIST_PAGE_SIZE: u32 = 50;

/// A connection to a Lamina controller. Cheap to clone: clones share the underlying HTTP/2 channel.
#[derive(Clone, Debug)]
pub struct Client {
    functions: FunctionsClient<SignedChannel>,
    versions: VersionsClient<SignedChannel>,
    concurrency: ConcurrencyClient<SignedChannel>,
    events: EventsClient<SignedChannel>,
    layers: LayersClient<SignedChannel>,
    auth: AuthClient<SignedChannel>,
    network: lamina_proto::v1::network_client::NetworkClient<SignedChannel>,
    gateway: GatewayClient<SignedChannel>,
    roles: lamina_proto::v1::roles_client::RolesClient<SignedChannel>,
    endpoint: String,
}

/// `endpoint` with a scheme: `127.0.0.1:9670` becomes `https://127.0.0.1:9670` when a CA is given
/// (TLS), else `http://127.0.0.1:9670`.
fn normalize_endpoint(endpoint: &str, tls: bool) -> String {
    let endpoint = endpoint.trim();
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if tls {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl Client {
    /// Connects to the controller at `endpoint`, like `"http://127.0.0.1:9670"` or `"127.0.0.1:9670"`.
    /// The connection is made now, so an unreachable controller is reported here as [`Error::Connect`].
    pub async fn connect(endpoint: &str) -> Result<Client, Error> {
        Client::connect_with(endpoint, None).await
    }

    /// Like [`Client::connect`], signing every request with `creds` (a controller with
    /// authentication on refuses unsigned requests).
    pub async fn connect_with(endpoint: &str, creds: Option<Credentials>) -> Result<Client, Error> {
        Client::connect_tls(endpoint, creds, None).await
    }

    /// Like [`Client::connect_with`]; an `https://` endpoint (or one without a scheme when `ca` is
    /// given) is reached over TLS, its certificate verified against the CA certificates of the PEM
    /// file `ca` (`fnctl up`: `DATA_DIR/tls/ca.pem`). An `https://` endpoint without `ca` is an
    /// [`Error::Tls`].
    pub async fn connect_tls(
        endpoint: &str,
        creds: Option<Credentials>,
        ca: Option<&std::path::Path>,
    ) -> Result<Client, Error> {
        let uri = normalize_endpoint(endpoint, ca.is_some());
        let connect_err = |source| Error::Connect {
            endpoint: uri.clone(),
            source,
        };
        let tls_err = |detail: String| Error::Tls {
            endpoint: uri.clone(),
            detail,
        };
        let tonic_endpoint = Endpoint::from_shared(lamina_proto::tls::tonic_uri(&uri))
            .map_err(connect_err)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true);
        let channel = if uri.starts_with("https://") {
            let ca = ca.ok_or_else(|| {
                tls_err(
                    "an https endpoint needs the cluster's CA certificate: pass --ca FILE or set \
                     FNCTL_CA (fnctl up writes DATA_DIR/tls/ca.pem)"
                        .to_string(),
                )
            })?;
            let roots = lamina_proto::tls::load_roots(ca).map_err(|e| tls_err(e.to_string()))?;
            let config = lamina_proto::tls::client_config(roots, None)
                .map_err(|e| tls_err(e.to_string()))?;
            tonic_endpoint
                .connect_with_connector(lamina_proto::tls::TlsConnect::new(config))
                .await
                .map_err(connect_err)?
        } else {
            tonic_endpoint.connect().await.map_err(connect_err)?
        };
        let channel = Signed::new(channel, creds);
        let max = lamina_proto::MAX_GRPC_MESSAGE_BYTES;
        Ok(Client {
            functions: FunctionsClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            versions: VersionsClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            concurrency: ConcurrencyClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            events: EventsClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            layers: LayersClient::new(channel.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            network: lamina_proto::v1::network_client::NetworkClient::new(channel.clone()),
            gateway: GatewayClient::new(channel.clone()),
            roles: lamina_proto::v1::roles_client::RolesClient::new(channel.clone()),
            auth: AuthClient::new(channel),
            endpoint: uri,
        })
    }

    /// The endpoint this client is connected to, with its scheme.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Creates a function from `spec` and a zip (see [`code::load_code`]); the zip is streamed in
    /// [`CODE_CHUNK_BYTES`] chunks after the spec.
    pub async fn create_function(
        &self,
        spec: v1::FunctionSpec,
        zip: Vec<u8>,
    ) -> Result<v1::FunctionConfiguration, Error> {
        use v1::create_function_request::Part;
        let mut messages = vec![v1::CreateFunctionRequest {
            part: Some(Part::Spec(spec)),
        }];
        messages.extend(
            zip.chunks(CODE_CHUNK_BYTES)
                .map(|c| v1::CreateFunctionRequest {
                    part: Some(Part::CodeChunk(c.to_vec())),
                }),
        );
        drop(zip);
        let resp = self
            .functions
            .clone()
            .create_function(tokio_stream::iter(messages))
            .await?;
        Ok(resp.into_inner())
    }

    /// Replaces the code of function `name` with `zip`, streamed in [`CODE_CHUNK_BYTES`] chunks.
    pub async fn update_function_code(
        &self,
        name: &str,
        zip: Vec<u8>,
    ) -> Result<v1::FunctionConfiguration, Error> {
        use v1::update_function_code_request::Part;
        let mut messages = vec![v1::UpdateFunctionCodeRequest {
            part: Some(Part::FunctionName(name.to_string())),
        }];
        messages.extend(
            zip.chunks(CODE_CHUNK_BYTES)
                .map(|c| v1::UpdateFunctionCodeRequest {
                    part: Some(Part::CodeChunk(c.to_vec())),
                }),
        );
        drop(zip);
        let resp = self
            .functions
            .clone()
            .update_function_code(tokio_stream::iter(messages))
            .await?;
        Ok(resp.into_inner())
    }

    /// Changes the configuration fields set in `req`; unset fields keep their value.
    pub async fn update_function_configuration(
        &self,
        req: v1::UpdateFunctionConfigurationRequest,
    ) -> Result<v1::FunctionConfiguration, Error> {
        let resp = self
            .functions
            .clone()
            .update_function_configuration(req)
            .await?;
        Ok(resp.into_inner())
    }

    /// The configuration of function `name`.
    pub async fn get_function(&self, name: &str) -> Result<v1::FunctionConfiguration, Error> {
        let req = v1::GetFunctionRequest {
            function_name: name.to_string(),
            qualifier: String::new(),
        };
        Ok(self.functions.clone().get_function(req).await?.into_inner())
    }

    /// Every function, in the controller's order (by name), following the pages.
    pub async fn list_functions(&self) -> Result<Vec<v1::FunctionConfiguration>, Error> {
        let mut all = Vec::new();
        let mut marker = String::new();
        loop {
            let req = v1::ListFunctionsRequest {
                marker: marker.clone(),
                max_items: LIST_PAGE_SIZE,
            };
            let page = self
                .functions
                .clone()
                .list_functions(req)
                .await?
                .into_inner();
            all.extend(page.functions);
            if page.next_marker.is_empty() {
                return Ok(all);
            }
            if page.next_marker == marker {
                return Err(Error::Api(tonic::Status::internal(format!(
                    "the controller returned the same list marker {marker:?} twice; this is a controller bug"
                ))));
            }
            marker = page.next_marker;
        }
    }

    /// Deletes function `name`.
    pub async fn delete_function(&self, name: &str) -> Result<(), Error> {
        let req = v1::DeleteFunctionRequest {
            function_name: name.to_string(),
            qualifier: String::new(),
        };
        self.functions.clone().delete_function(req).await?;
        Ok(())
    }

    /// Invokes a function. A function error is not an `Err`: it is `function_error` in the response.
    pub async fn invoke(&self, req: v1::InvokeRequest) -> Result<v1::InvokeResponse, Error> {
        Ok(self.functions.clone().invoke(req).await?.into_inner())
    }

    /// Log events of function `name` with `seq > after_seq`, at most `limit` (0 = the server's default).
    pub async fn get_logs(
        &self,
        name: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<v1::GetLogsResponse, Error> {
        let req = v1::GetLogsRequest {
            function_name: name.to_string(),
            after_seq,
            limit,
        };
        Ok(self.functions.clone().get_logs(req).await?.into_inner())
    }

    /// Queues an asynchronous invocation (invocation type EVENT). The answer (202, `request_id`)
    /// comes once the event is durable; with an `idempotency_key` seen before, `duplicate` is set and
    /// `request_id` is the first one's.
    pub async fn invoke_async(
        &self,
        function_name: &str,
        payload: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> Result<v1::InvokeResponse, Error> {
        let req = v1::InvokeRequest {
            function_name: function_name.to_string(),
            invocation_type: v1::InvocationType::Event as i32,
            payload,
            idempotency_key: idempotency_key.unwrap_or_default().to_string(),
            ..Default::default()
        };
        Ok(self.functions.clone().invoke(req).await?.into_inner())
    }

    /// Replaces function `req.function_name`'s async settings (unset fields take the defaults).
    pub async fn put_event_invoke_config(
        &self,
        req: v1::PutFunctionEventInvokeConfigRequest,
    ) -> Result<v1::FunctionEventInvokeConfig, Error> {
        let resp = self
            .events
            .clone()
            .put_function_event_invoke_config(req)
            .await?;
        Ok(resp.into_inner())
    }

    /// Function `name`'s async settings (the defaults when none were put).
    pub async fn get_event_invoke_config(
        &self,
        name: &str,
    ) -> Result<v1::FunctionEventInvokeConfig, Error> {
        let req = v1::GetFunctionEventInvokeConfigRequest {
            function_name: name.to_string(),
        };
        let resp = self
            .events
            .clone()
            .get_function_event_invoke_config(req)
            .await?;
        Ok(resp.into_inner())
    }

    /// The record of async invocation `request_id`.
    pub async fn get_invocation(&self, request_id: &str) -> Result<v1::Invocation, Error> {
        let req = v1::GetInvocationRequest {
            request_id: request_id.to_string(),
        };
        Ok(self.events.clone().get_invocation(req).await?.into_inner())
    }

    /// Async invocations of function `name`, newest first (`limit` 0 = the server's default).
    pub async fn list_invocations(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<v1::Invocation>, Error> {
        let req = v1::ListInvocationsRequest {
            function_name: name.to_string(),
            limit,
        };
        let resp = self.events.clone().list_invocations(req).await?;
        Ok(resp.into_inner().invocations)
    }

    /// Lamina's dead-letter queues and their message counts.
    pub async fn list_dead_letter_queues(&self) -> Result<Vec<v1::DeadLetterQueue>, Error> {
        let resp = self
            .events
            .clone()
            .list_dead_letter_queues(v1::ListDeadLetterQueuesRequest {})
            .await?;
        Ok(resp.into_inner().queues)
    }

    /// Messages of dead-letter queue `queue` with `seq > after_seq`, oldest first.
    pub async fn list_dead_letters(
        &self,
        queue: &str,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<v1::DeadLetter>, Error> {
        let req = v1::ListDeadLettersRequest {
            queue: queue.to_string(),
            after_seq,
            limit,
        };
        let resp = self.events.clone().list_dead_letters(req).await?;
        Ok(resp.into_inner().messages)
    }

    /// Re-enqueues messages of `queue` (all when `seqs` is empty) as new events; returns their ids.
    pub async fn redrive_dead_letters(
        &self,
        queue: &str,
        seqs: Vec<u64>,
    ) -> Result<Vec<String>, Error> {
        let req = v1::RedriveDeadLettersRequest {
            queue: queue.to_string(),
            seqs,
        };
        let resp = self.events.clone().redrive_dead_letters(req).await?;
        Ok(resp.into_inner().request_ids)
    }

    /// A new access key (`admin`: may manage keys). The secret is in this answer and nowhere else.
    pub async fn create_access_key(
        &self,
        description: &str,
        admin: bool,
    ) -> Result<v1::AccessKey, Error> {
        self.create_access_key_with_policy(description, admin, None)
            .await
    }

    /// [`Client::create_access_key`] with an IAM policy document: what a non-admin key may do
    /// (a non-admin key without one may do nothing). A malformed document is `InvalidArgument`.
    pub async fn create_access_key_with_policy(
        &self,
        description: &str,
        admin: bool,
        policy: Option<&str>,
    ) -> Result<v1::AccessKey, Error> {
        let req = v1::CreateAccessKeyRequest {
            description: description.to_string(),
            admin,
            policy: policy.unwrap_or_default().to_string(),
        };
        Ok(self.auth.clone().create_access_key(req).await?.into_inner())
    }

    /// Replaces the IAM policy of an access key (`None`: removes it).
    pub async fn put_key_policy(
        &self,
        access_key_id: &str,
        policy: Option<&str>,
    ) -> Result<(), Error> {
        let req = v1::PutKeyPolicyRequest {
            access_key_id: access_key_id.to_string(),
            policy: policy.unwrap_or_default().to_string(),
        };
        self.auth.clone().put_key_policy(req).await?;
        Ok(())
    }

    /// The IAM policy document of an access key, if it has one.
    pub async fn get_key_policy(&self, access_key_id: &str) -> Result<Option<String>, Error> {
        let req = v1::GetKeyPolicyRequest {
            access_key_id: access_key_id.to_string(),
        };
        let policy = self
            .auth
            .clone()
            .get_key_policy(req)
            .await?
            .into_inner()
            .policy;
        Ok((!policy.is_empty()).then_some(policy))
    }

    /// Every access key, without secrets.
    pub async fn list_access_keys(&self) -> Result<Vec<v1::AccessKey>, Error> {
        let resp = self
            .auth
            .clone()
            .list_access_keys(v1::ListAccessKeysRequest {})
            .await?;
        Ok(resp.into_inner().keys)
    }

    /// Revokes access key `id`: requests it signs are refused from now on.
    pub async fn revoke_access_key(&self, id: &str) -> Result<(), Error> {
        let req = v1::RevokeAccessKeyRequest {
            access_key_id: id.to_string(),
        };
        self.auth.clone().revoke_access_key(req).await?;
        Ok(())
    }

    /// The workers the controller knows.
    /// Adds a statement to a function's resource-based policy (Lambda's AddPermission); answers
    /// the statement's JSON text.
    pub async fn add_permission(
        &self,
        req: v1::AddPermissionRequest,
    ) -> Result<v1::AddPermissionResponse, Error> {
        Ok(self
            .functions
            .clone()
            .add_permission(req)
            .await?
            .into_inner())
    }

    /// Removes a statement from a function's resource-based policy (Lambda's RemovePermission).
    pub async fn remove_permission(&self, req: v1::RemovePermissionRequest) -> Result<(), Error> {
        self.functions.clone().remove_permission(req).await?;
        Ok(())
    }

    /// A function's (or a version's or alias's) resource-based policy (Lambda's GetPolicy).
    pub async fn get_policy(
        &self,
        name: &str,
        qualifier: &str,
    ) -> Result<v1::GetPolicyResponse, Error> {
        let req = v1::GetPolicyRequest {
            function_name: name.to_string(),
            qualifier: qualifier.to_string(),
        };
        Ok(self.functions.clone().get_policy(req).await?.into_inner())
    }

    pub async fn list_workers(&self) -> Result<Vec<v1::WorkerInfo>, Error> {
        let resp = self
            .functions
            .clone()
            .list_workers(v1::ListWorkersRequest {})
            .await?;
        Ok(resp.into_inner().workers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_gets_a_scheme() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:9670", false),
            "http://127.0.0.1:9670"
        );
        assert_eq!(
            normalize_endpoint("127.0.0.1:9670", true),
            "https://127.0.0.1:9670"
        );
        assert_eq!(normalize_endpoint(" http://h:1 ", true), "http://h:1");
        assert_eq!(normalize_endpoint("https://h:1", false), "https://h:1");
    }

    #[tokio::test]
    async fn an_https_endpoint_needs_a_ca_that_exists() {
        let e = Client::connect_tls("https://127.0.0.1:9", None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("FNCTL_CA") && e.contains("--ca"), "{e}");
        let missing = std::path::Path::new("/nonexistent/ca.pem");
        let e = Client::connect_tls("https://127.0.0.1:9", None, Some(missing))
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_is_a_connect_error() {
        // Bind then drop a listener to get a loopback port that nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = Client::connect(&format!("127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("http://127.0.0.1:{port}")), "{msg}");
        assert!(msg.contains("--endpoint"), "{msg}");
    }

    #[tokio::test]
    async fn connect_to_a_bad_uri_is_a_connect_error() {
        let err = Client::connect("http://bad host:1").await.unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    }
}
