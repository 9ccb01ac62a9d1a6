//! The controller's gRPC clients of the workers, and what it does about a worker that is lost:
//! one client per address, the classification of a failed call's status (a transport failure
//! marks the worker unreachable) and the watch that ends an invocation on a worker that stopped
//! heartbeating.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lamina_proto::auth::{Credentials, Signed, SignedChannel};
use lamina_proto::tls::TlsConnect;
use lamina_proto::v1::{self, worker_client::WorkerClient};
use lamina_proto::MAX_GRPC_MESSAGE_BYTES;
use tonic::transport::Endpoint;
use tonic::{Code, Status};

use crate::registry::Registry;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a call to a worker failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The worker could not be reached or was lost during the call.
    #[error("worker `{worker_id}` at {address} is unavailable: {detail}")]
    Unavailable {
        worker_id: String,
        address: String,
        detail: String,
    },
    #[error("worker `{worker_id}` did not answer within {after:?}")]
    Timeout { worker_id: String, after: Duration },
    /// A status the worker sent (a refusal, `RESOURCE_EXHAUSTED` when it has no room).
    #[error("worker `{worker_id}`: {}", status.message())]
    Status {
        worker_id: String,
        status: Box<Status>,
    },
}

impl WorkerError {
    /// The worker was lost during an invocation (missed heartbeats or a broken connection).
    pub fn lost(worker_id: &str, address: &str) -> WorkerError {
        WorkerError::Unavailable {
            worker_id: worker_id.to_string(),
            address: address.to_string(),
            detail: "it was lost during the invocation (missed heartbeats or a broken connection)"
                .to_string(),
        }
    }

    /// The one classifier of a failed worker call's status: a deadline is a timeout; a status
    /// with a source is the transport's (connection refused or reset: the worker's process or
    /// host is gone), so the worker gets no new work until it heartbeats again; any other
    /// status is the worker's own answer.
    pub fn classify(
        registry: &Registry,
        worker_id: &str,
        address: &str,
        status: Status,
        call_timeout: Duration,
    ) -> WorkerError {
        match status.code() {
            Code::DeadlineExceeded => WorkerError::Timeout {
                worker_id: worker_id.to_string(),
                after: call_timeout,
            },
            Code::Unavailable | Code::Unknown | Code::Cancelled => {
                if std::error::Error::source(&status).is_some() {
                    registry.mark_unreachable(worker_id, status.message());
                }
                WorkerError::Unavailable {
                    worker_id: worker_id.to_string(),
                    address: address.to_string(),
                    detail: status.message().to_string(),
                }
            }
            _ => WorkerError::Status {
                worker_id: worker_id.to_string(),
                status: Box::new(status),
            },
        }
    }

    /// The worker answered `RESOURCE_EXHAUSTED`: it had no room (the invocation did not run).
    pub fn is_worker_full(&self) -> bool {
        matches!(self, WorkerError::Status { status, .. } if status.code() == Code::ResourceExhausted)
    }
}

/// Resolves when the worker stops heartbeating (it is `Down`), so an invocation on a dead node
/// fails fast instead of waiting for the whole gRPC timeout.
pub(crate) async fn worker_down(registry: &Registry, worker_id: &str, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if !registry.is_up(worker_id) {
            return;
        }
    }
}

/// gRPC clients of workers, one per address (one HTTP/2 connection each), shared by all
/// invocations. Calls are signed with the cluster credential when there is one, and go over TLS
/// (mTLS: the worker's certificate verified against the cluster CA, the controller's presented)
/// once [`WorkerClients::set_tls`] was called.
#[derive(Default)]
pub struct WorkerClients {
    clients: Mutex<HashMap<String, WorkerClient<SignedChannel>>>,
    creds: Option<Credentials>,
    tls: OnceLock<Arc<rustls::ClientConfig>>,
}

impl WorkerClients {
    pub fn new(creds: Option<Credentials>) -> WorkerClients {
        WorkerClients {
            clients: Mutex::default(),
            creds,
            tls: OnceLock::new(),
        }
    }

    /// Calls workers over TLS with `config` from now on (set once, before any call).
    pub fn set_tls(&self, config: Arc<rustls::ClientConfig>) {
        if self.tls.set(config).is_err() {
            tracing::warn!("the workers' TLS configuration was set twice: the first one stays");
        }
    }

    pub(crate) fn client(
        &self,
        worker_id: &str,
        address: &str,
    ) -> Result<WorkerClient<SignedChannel>, WorkerError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| {
            WorkerError::Unavailable {
                worker_id: worker_id.to_string(),
                address: address.to_string(),
                detail: format!("invalid address: {e}"),
            }
        })?;
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true);
        let channel = match self.tls.get() {
            Some(config) => {
                endpoint.connect_with_connector_lazy(TlsConnect::new(Arc::clone(config)))
            }
            None => endpoint.connect_lazy(),
        };
        let client = WorkerClient::new(Signed::new(channel, self.creds.clone()))
            .max_decoding_message_size(MAX_GRPC_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_GRPC_MESSAGE_BYTES);
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }

    /// Sends a worker its complete set of provisioned sandboxes (`Worker.SetProvisioned`).
    pub(crate) async fn set_provisioned(
        &self,
        worker_id: &str,
        address: &str,
        targets: Vec<v1::ProvisionedTarget>,
    ) -> Result<(), WorkerError> {
        let mut client = self.client(worker_id, address)?;
        client
            .set_provisioned(v1::SetProvisionedRequest { targets })
            .await
            .map(|_| ())
            .map_err(|status| answered(worker_id, status))
    }

    /// Sends a worker its complete VPC network state (`Worker.SetNetwork`).
    pub(crate) async fn set_network(
        &self,
        worker_id: &str,
        address: &str,
        state: v1::NetworkState,
    ) -> Result<(), WorkerError> {
        let mut client = self.client(worker_id, address)?;
        client
            .set_network(state)
            .await
            .map(|_| ())
            .map_err(|status| answered(worker_id, status))
    }

    /// Tells a worker which revisions of a function still exist (`Worker.RetireSandboxes`).
    pub(crate) async fn retire_sandboxes(
        &self,
        worker_id: &str,
        address: &str,
        req: v1::RetireSandboxesRequest,
    ) -> Result<v1::RetireSandboxesResponse, WorkerError> {
        let mut client = self.client(worker_id, address)?;
        client
            .retire_sandboxes(req)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| answered(worker_id, status))
    }
}

/// A control call's failure, as the worker's answer (these calls do not mark a worker lost).
fn answered(worker_id: &str, status: Status) -> WorkerError {
    WorkerError::Status {
        worker_id: worker_id.to_string(),
        status: Box::new(status),
    }
}
