//! The API core and its tonic services. The core (`functions`, `versions`, `concurrency`,
//! `provisioned`, `events`, `layers`, `gateway`, `invoke`, `stream`) is transport-neutral: the
//! gRPC services (`*_service.rs`, one per resource: `Functions`, `Versions`, `Concurrency`,
//! `Events`, `Layers`, `Gateway`, plus `Network`, `Auth` and the workers' `Cluster`) and the REST
//! API (`crate::rest`) both call it. Errors become a `tonic::Status` in one place: `From<ApiError> for Status`.
use std::sync::Arc;
use std::time::Duration;

use lamina_proto::validate::ValidationError;
use tonic::{Code, Status};

use crate::code::{CheckedCode, CodeBuffer, CodeError};
use crate::concurrency::{ConcurrencyError, ThrottleReason};
use crate::queue::{QueueError, QueueStore};
use crate::store::{Store, StoreError};

mod auth;
mod authorize;
mod cluster;
pub(crate) mod concurrency;
mod concurrency_service;
pub(crate) mod events;
mod events_service;
pub(crate) mod functions;
mod functions_service;
pub(crate) mod gateway;
mod gateway_service;
pub(crate) mod images;
pub(crate) mod invoke;
pub(crate) mod layers;
mod layers_service;
mod lower_errors;
pub(crate) mod network;
pub(crate) mod permissions;
pub(crate) mod provisioned;
pub(crate) mod roles;
pub(crate) mod stream;
pub(crate) mod versions;
mod versions_service;

/// The services' context (`crate::context`), under the name the services know it by.
pub(crate) use crate::context::{now_ms, Context as Shared};
pub use crate::worker_clients::WorkerClients;
pub use auth::AuthService;
pub use authorize::SecureTransport;
pub use cluster::ClusterService;
pub use concurrency_service::ConcurrencyService;
pub use events_service::EventsService;
pub use functions_service::FunctionsService;
pub use gateway_service::GatewayService;
pub use lamina_proto::v1::{
    concurrency_server::ConcurrencyServer, events_server::EventsServer,
    gateway_server::GatewayServer, layers_server::LayersServer, versions_server::VersionsServer,
};
pub use layers_service::LayersService;
pub use network::NetworkService;
pub use roles::RolesService;
pub use versions_service::VersionsService;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Code(#[from] CodeError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Validation(#[from] ValidationError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Version(#[from] versions::VersionError),
    #[error(transparent)]
    Layer(#[from] layers::LayerError),
    #[error("invocation `{0}` not found (finished records are kept for a bounded time)")]
    InvocationNotFound(String),
    #[error(
        "function `{0}` has no event invoke config: put one first (PutFunctionEventInvokeConfig)"
    )]
    EventInvokeConfigNotFound(String),
    #[error("dead-letter queue `{0}` not found: `fnctl dlq list` shows the queues")]
    QueueNotFound(String),
    /// A request that breaks the protocol (messages out of order, missing fields).
    #[error("{0}")]
    BadRequest(String),
    #[error("function `{0}` not found")]
    FunctionNotFound(String),
    #[error("the revision id of function `{name}` is {actual}, not {expected}: get the function again and retry with its RevisionId")]
    RevisionPrecondition {
        name: String,
        expected: String,
        actual: String,
    },
    #[error("function `{name}`: this operation changes $LATEST and takes no qualifier, got `{qualifier}`")]
    QualifierNotFound { name: String, qualifier: String },
    #[error("asynchronous invocation is not available on this controller's store")]
    AsyncNotAvailable,
    #[error("no worker is available: start one with `lamina-worker --controller ...`")]
    NoWorker,
    #[error("worker `{worker_id}` at {address} is unavailable: {detail}")]
    WorkerUnavailable {
        worker_id: String,
        address: String,
        detail: String,
    },
    #[error("worker `{worker_id}` did not answer within {after:?}")]
    WorkerTimeout { worker_id: String, after: Duration },
    #[error("worker `{worker_id}`: {}", status.message())]
    Worker {
        worker_id: String,
        status: Box<Status>,
    },
    #[error("code blob `{0}` not found")]
    BlobNotFound(String),
    /// The client's request stream failed.
    #[error("{}", .0.message())]
    Stream(Box<Status>),
    #[error("internal error: {0}")]
    Internal(String),
    /// Throttled invocations (the message starts with Lambda's reason) and refused reservations.
    #[error(transparent)]
    Concurrency(#[from] crate::concurrency::ConcurrencyError),
    #[error(
        "function `{function}` has no provisioned concurrency configuration for `{qualifier}`"
    )]
    ProvisionedNotFound { function: String, qualifier: String },
    #[error(transparent)]
    Network(#[from] crate::store::NetworkError),
    #[error("worker `{0}` not found: `fnctl workers` lists them")]
    WorkerNotFound(String),
    #[error("HTTP API `{0}` not found: `fnctl api list` lists them")]
    HttpApiNotFound(String),
    #[error("HTTP API `{api_id}` has no route `{route}` (by id or route key): `fnctl api route list {api_id}` lists them")]
    HttpRouteNotFound { api_id: String, route: String },
    #[error("HTTP API `{api_id}` has a route `{existing}` already, the same route as `{route_key}`: delete it first")]
    HttpRouteExists {
        api_id: String,
        route_key: String,
        existing: String,
    },
    /// Too many HTTP APIs or routes (the message says which limit and what to do).
    #[error("{0}")]
    GatewayLimit(String),
    #[error(transparent)]
    Permission(#[from] permissions::PermissionError),
    /// A policy refused the call (`Shared::authorize`; the message says who, what and why).
    #[error("{0}")]
    PermissionDenied(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let message = e.to_string();
        let code = match &e {
            ApiError::Store(StoreError::FunctionExists(_)) => Code::AlreadyExists,
            ApiError::Store(StoreError::FunctionNotFound(_)) => Code::NotFound,
            ApiError::Store(StoreError::RevisionConflict { .. }) => Code::Aborted,
            ApiError::Store(
                StoreError::PublishPrecondition { .. } | StoreError::VersionInUse { .. },
            )
            | ApiError::RevisionPrecondition { .. } => Code::FailedPrecondition,
            ApiError::Version(v) => versions::status_code(v),
            ApiError::Layer(
                layers::LayerError::NotFound(_) | layers::LayerError::AttachMissing(_),
            )
            | ApiError::Store(StoreError::LayerVersionNotFound(_)) => Code::NotFound,
            ApiError::Layer(layers::LayerError::TooLarge { .. }) => Code::InvalidArgument,
            ApiError::Store(StoreError::BlobMissing(_) | StoreError::VpcTargetGone { .. }) => {
                Code::FailedPrecondition
            }
            ApiError::Store(StoreError::FunctionUrlExists { .. })
            | ApiError::HttpRouteExists { .. } => Code::AlreadyExists,
            ApiError::Store(
                StoreError::FunctionUrlNotFound { .. } | StoreError::AliasNotFound { .. },
            )
            | ApiError::HttpApiNotFound(_)
            | ApiError::HttpRouteNotFound { .. } => Code::NotFound,
            ApiError::GatewayLimit(_) => Code::FailedPrecondition,
            ApiError::Store(_) | ApiError::Internal(_) | ApiError::Queue(_) => {
                tracing::error!(error = %message, "internal error");
                Code::Internal
            }
            ApiError::Image(e) => images::status_code(e),
            ApiError::Code(_) | ApiError::Validation(_) | ApiError::BadRequest(_) => {
                Code::InvalidArgument
            }
            ApiError::FunctionNotFound(_)
            | ApiError::QualifierNotFound { .. }
            | ApiError::BlobNotFound(_)
            | ApiError::InvocationNotFound(_)
            | ApiError::EventInvokeConfigNotFound(_)
            | ApiError::QueueNotFound(_) => Code::NotFound,
            ApiError::AsyncNotAvailable => Code::Unimplemented,
            ApiError::NoWorker | ApiError::WorkerUnavailable { .. } => Code::Unavailable,
            ApiError::WorkerTimeout { .. } => Code::DeadlineExceeded,
            ApiError::Worker { status, .. } => status.code(),
            ApiError::Stream(status) => status.code(),
            ApiError::Concurrency(ConcurrencyError::Throttled { .. }) => Code::ResourceExhausted,
            ApiError::Concurrency(ConcurrencyError::ReservationTooLarge { .. }) => {
                Code::InvalidArgument
            }
            ApiError::ProvisionedNotFound { .. } => Code::NotFound,
            ApiError::Network(e) => network::status_code(e),
            ApiError::WorkerNotFound(_) => Code::NotFound,
            ApiError::PermissionDenied(_) => Code::PermissionDenied,
            ApiError::Permission(e) => match e {
                permissions::PermissionError::StatementExists { .. } => Code::AlreadyExists,
                permissions::PermissionError::StatementNotFound { .. }
                | permissions::PermissionError::NoPolicy(_) => Code::NotFound,
                permissions::PermissionError::Revision { .. } => Code::FailedPrecondition,
                permissions::PermissionError::Invalid(_)
                | permissions::PermissionError::TooLong { .. } => Code::InvalidArgument,
            },
        };
        let mut status = Status::new(code, message);
        if let Some(reason) = e.throttle_reason() {
            status.metadata_mut().insert(
                THROTTLE_REASON_KEY,
                tonic::metadata::MetadataValue::from_static(reason.as_str()),
            );
        }
        status
    }
}

/// The metadata key of a throttled invocation's Lambda reason (also the start of its message).
pub const THROTTLE_REASON_KEY: &str = "x-lamina-reason";

impl ApiError {
    /// Lambda's `Reason` when this is a throttle.
    pub fn throttle_reason(&self) -> Option<ThrottleReason> {
        match self {
            ApiError::Concurrency(ConcurrencyError::Throttled { reason, .. }) => Some(*reason),
            _ => None,
        }
    }
}

impl Shared {
    /// Runs a store call off the async threads (it may fsync).
    pub async fn store<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    {
        self.blocking(move |s| f(s).map_err(ApiError::from)).await
    }

    /// Runs `f` (store reads, checks and writes that answer with `ApiError`s) off the async
    /// threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Store) -> Result<T, ApiError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))?
    }
}

impl Shared {
    pub fn queue(&self) -> Result<&Arc<QueueStore>, ApiError> {
        self.queue.as_ref().ok_or(ApiError::AsyncNotAvailable)
    }

    /// Runs a queue call off the async threads.
    pub async fn queue_read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&QueueStore) -> Result<T, QueueError> + Send + 'static,
    {
        let q = Arc::clone(self.queue()?);
        tokio::task::spawn_blocking(move || f(q.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(format!("queue task failed: {e}")))?
            .map_err(ApiError::from)
    }
}

/// Checks a whole zip received at once (the REST API's `Code.ZipFile`), off the async threads.
pub(crate) async fn check_code(zip: Vec<u8>) -> Result<CheckedCode, ApiError> {
    tokio::task::spawn_blocking(move || {
        let mut buf = CodeBuffer::new();
        buf.push(&zip)?;
        buf.finish()
    })
    .await
    .map_err(|e| ApiError::Internal(format!("code check task failed: {e}")))?
    .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_is_resource_exhausted_with_its_reason() {
        let s = Status::from(ApiError::Concurrency(ConcurrencyError::Throttled {
            reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
            detail: "the unreserved concurrency is in use".into(),
        }));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(
            s.message()
                .starts_with("ConcurrentInvocationLimitExceeded: "),
            "{}",
            s.message()
        );
        assert_eq!(
            s.metadata().get(THROTTLE_REASON_KEY).unwrap(),
            "ConcurrentInvocationLimitExceeded"
        );
        let s = Status::from(ApiError::Concurrency(
            ConcurrencyError::ReservationTooLarge {
                function: "f".into(),
                requested: 950,
                limit: 1000,
                others: 0,
                left: 50,
                minimum: 100,
                max: 900,
            },
        ));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.metadata().get(THROTTLE_REASON_KEY).is_none());
    }

    #[test]
    fn statuses_keep_the_message_and_pick_the_code() {
        let s = Status::from(ApiError::Store(StoreError::FunctionExists("x".into())));
        assert_eq!(
            (s.code(), s.message()),
            (Code::AlreadyExists, "function `x` already exists")
        );
        let s = Status::from(ApiError::FunctionNotFound("x".into()));
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "function `x` not found")
        );
        let s = Status::from(ApiError::NoWorker);
        assert_eq!(s.code(), Code::Unavailable);
        let s = Status::from(ApiError::Worker {
            worker_id: "w1".into(),
            status: Box::new(Status::resource_exhausted("no memory left")),
        });
        assert_eq!(
            (s.code(), s.message()),
            (Code::ResourceExhausted, "worker `w1`: no memory left")
        );
    }
}
