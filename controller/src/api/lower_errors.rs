//! How the errors of the modules below the API (qualifier resolution, the invocation pipeline,
//! worker calls, the reconcilers) become [`ApiError`]s, and so one `tonic::Status` or Lambda error
//! each: the same variants, codes and messages as when those modules were part of `api/`.
use super::ApiError;
use crate::invocation::InvocationError;
use crate::network::NetworkSyncError;
use crate::provisioned::ProvisionedError;
use crate::resolve::ResolveError;
use crate::worker_clients::WorkerError;

impl From<ResolveError> for ApiError {
    fn from(e: ResolveError) -> ApiError {
        match e {
            ResolveError::FunctionNotFound(name) => ApiError::FunctionNotFound(name),
            ResolveError::Version(e) => ApiError::Version(e),
            ResolveError::Store(e) => ApiError::Store(e),
            ResolveError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<WorkerError> for ApiError {
    fn from(e: WorkerError) -> ApiError {
        match e {
            WorkerError::Unavailable {
                worker_id,
                address,
                detail,
            } => ApiError::WorkerUnavailable {
                worker_id,
                address,
                detail,
            },
            WorkerError::Timeout { worker_id, after } => {
                ApiError::WorkerTimeout { worker_id, after }
            }
            WorkerError::Status { worker_id, status } => ApiError::Worker { worker_id, status },
        }
    }
}

impl From<InvocationError> for ApiError {
    fn from(e: InvocationError) -> ApiError {
        match e {
            InvocationError::Resolve(e) => e.into(),
            InvocationError::Throttled(e) => ApiError::Concurrency(e),
            InvocationError::NoWorker => ApiError::NoWorker,
            InvocationError::Worker(e) => e.into(),
        }
    }
}

impl From<ProvisionedError> for ApiError {
    fn from(e: ProvisionedError) -> ApiError {
        match e {
            ProvisionedError::NotProvisionable(detail) => ApiError::BadRequest(detail),
            ProvisionedError::Resolve(e) => e.into(),
            ProvisionedError::Store(e) => ApiError::Store(e),
            ProvisionedError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<NetworkSyncError> for ApiError {
    fn from(e: NetworkSyncError) -> ApiError {
        match e {
            NetworkSyncError::Network(e) => ApiError::Network(e),
            NetworkSyncError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tonic::{Code, Status};

    use super::*;
    use crate::concurrency::{ConcurrencyError, ThrottleReason};

    /// The pipeline's errors reach a caller with the codes and messages the API always gave.
    #[test]
    fn pipeline_errors_keep_their_codes_and_messages() {
        let status = |e: InvocationError| Status::from(ApiError::from(e));
        let s = status(InvocationError::Worker(WorkerError::Status {
            worker_id: "w1".into(),
            status: Box::new(Status::resource_exhausted("no memory left")),
        }));
        assert_eq!(
            (s.code(), s.message()),
            (Code::ResourceExhausted, "worker `w1`: no memory left")
        );
        let s = status(WorkerError::lost("w1", "127.0.0.1:1").into());
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.message(),
            "worker `w1` at 127.0.0.1:1 is unavailable: it was lost during the invocation \
             (missed heartbeats or a broken connection)"
        );
        let s = status(InvocationError::Worker(WorkerError::Timeout {
            worker_id: "w1".into(),
            after: Duration::from_secs(63),
        }));
        assert_eq!(s.code(), Code::DeadlineExceeded);
        let s = status(InvocationError::NoWorker);
        assert_eq!(s.code(), Code::Unavailable);
        let s = status(InvocationError::Throttled(ConcurrencyError::Throttled {
            reason: ThrottleReason::ConcurrentInvocationLimitExceeded,
            detail: "the unreserved concurrency is in use".into(),
        }));
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.metadata().get(crate::api::THROTTLE_REASON_KEY).is_some());
        let s = status(ResolveError::FunctionNotFound("f".into()).into());
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "function `f` not found")
        );
    }
}
