//! The `Functions` gRPC service: functions, their invocations, logs and the workers. A thin
//! adapter: it reads the request (the code streams included), calls the transport-neutral core in
//! `functions` (shared with the REST API), `invoke` and `stream`, and encodes the answer.
use std::sync::Arc;

use lamina_proto::domain::{FunctionConfig, FunctionSpec};
use lamina_proto::v1::{self, create_function_request, update_function_code_request};
use tonic::{Request, Response, Status, Streaming};

use super::functions::{
    create_function, delete, ensure_name_free, get, list, update_code, update_configuration,
    ConfigurationUpdate,
};
use super::{concurrency, permissions, versions, ApiError, Shared};
use crate::code::{CheckedCode, CodeBuffer};

const LOGS_DEFAULT: usize = 1000;
const LOGS_MAX: usize = 10_000;

pub struct FunctionsService {
    pub(crate) shared: Arc<Shared>,
}

/// Reads `code_chunk` messages to the end of the stream, refusing as soon as the zip passes the
/// limit, then checks the zip (off the async threads: it hashes up to 50 MB).
async fn read_code<T: Send + 'static>(
    stream: &mut Streaming<T>,
    chunk_of: impl Fn(T) -> Result<Vec<u8>, ApiError>,
) -> Result<CheckedCode, ApiError> {
    let mut buf = CodeBuffer::new();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| ApiError::Stream(Box::new(s)))?
    {
        buf.push(&chunk_of(msg)?)?;
    }
    tokio::task::spawn_blocking(move || buf.finish())
        .await
        .map_err(|e| ApiError::Internal(format!("code check task failed: {e}")))?
        .map_err(ApiError::from)
}

impl FunctionsService {
    async fn get(&self, name: &str) -> Result<FunctionConfig, ApiError> {
        get(&self.shared, name).await
    }

    async fn create(
        &self,
        extensions: &http::Extensions,
        mut stream: Streaming<v1::CreateFunctionRequest>,
    ) -> Result<FunctionConfig, ApiError> {
        use create_function_request::Part;
        let first = stream
            .message()
            .await
            .map_err(|s| ApiError::Stream(Box::new(s)))?
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "empty request: send `spec` first, then the code as `code_chunk`s".into(),
                )
            })?;
        let spec =
            match first.part {
                Some(Part::Spec(spec)) => FunctionSpec::try_from(spec)?,
                Some(Part::CodeChunk(_)) => return Err(ApiError::BadRequest(
                    "the first message must carry `spec`, got a `code_chunk`; send the spec first"
                        .into(),
                )),
                None => {
                    return Err(ApiError::BadRequest(
                        "the first message must carry `spec`, got an empty message".into(),
                    ))
                }
            };
        self.shared
            .authorize_function(extensions, "lambda:CreateFunction", &spec.name, "")?;
        self.shared.authorize_pass_role(extensions, &spec.role)?;
        ensure_name_free(&self.shared, &spec.name).await?;
        let chunk_of = |m: v1::CreateFunctionRequest| match m.part {
            Some(Part::CodeChunk(chunk)) => Ok(chunk),
            Some(Part::Spec(_)) => Err(ApiError::BadRequest(
                "`spec` may only be sent once, in the first message".into(),
            )),
            None => Err(ApiError::BadRequest(
                "empty message in the code stream: send `code_chunk`s".into(),
            )),
        };
        if spec.package_type == lamina_proto::domain::PackageType::Image {
            let image = super::images::read_image(&self.shared, &mut stream, chunk_of).await?;
            return super::images::create(&self.shared, spec, image).await;
        }
        let code = read_code(&mut stream, chunk_of).await?;
        create_function(&self.shared, spec, code).await
    }

    async fn update_code(
        &self,
        extensions: &http::Extensions,
        mut stream: Streaming<v1::UpdateFunctionCodeRequest>,
    ) -> Result<FunctionConfig, ApiError> {
        use update_function_code_request::Part;
        let first = stream
            .message()
            .await
            .map_err(|s| ApiError::Stream(Box::new(s)))?
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "empty request: send `function_name` first, then the code as `code_chunk`s"
                        .into(),
                )
            })?;
        let name = match first.part {
            Some(Part::FunctionName(name)) => name,
            _ => {
                return Err(ApiError::BadRequest(
                    "the first message must carry `function_name`; send it before the code".into(),
                ))
            }
        };
        self.shared
            .authorize_function(extensions, "lambda:UpdateFunctionCode", &name, "")?;
        let current = self.get(&name).await?;
        let chunk_of = |m: v1::UpdateFunctionCodeRequest| match m.part {
            Some(Part::CodeChunk(chunk)) => Ok(chunk),
            Some(Part::FunctionName(_)) => Err(ApiError::BadRequest(
                "`function_name` may only be sent once, in the first message".into(),
            )),
            None => Err(ApiError::BadRequest(
                "empty message in the code stream: send `code_chunk`s".into(),
            )),
        };
        if current.spec.package_type == lamina_proto::domain::PackageType::Image {
            let image = super::images::read_image(&self.shared, &mut stream, chunk_of).await?;
            return super::images::update_code(&self.shared, &name, image).await;
        }
        let code = read_code(&mut stream, chunk_of).await?;
        update_code(&self.shared, &name, code, None).await
    }
}

#[tonic::async_trait]
impl v1::functions_server::Functions for FunctionsService {
    async fn create_function(
        &self,
        request: Request<Streaming<v1::CreateFunctionRequest>>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let (_, extensions, stream) = request.into_parts();
        let config = self.create(&extensions, stream).await?;
        Ok(Response::new((&config).into()))
    }

    async fn get_function(
        &self,
        request: Request<v1::GetFunctionRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetFunction",
            &r.function_name,
            &r.qualifier,
        )?;
        let r = request.into_inner();
        if !r.qualifier.is_empty() {
            let mut out =
                versions::get_qualified(&self.shared, &r.function_name, &r.qualifier).await?;
            concurrency::describe(&self.shared, &mut out).await?;
            return Ok(Response::new(out));
        }
        let config = self.get(&r.function_name).await?;
        let mut out = v1::FunctionConfiguration::from(&config);
        concurrency::describe(&self.shared, &mut out).await?;
        Ok(Response::new(out))
    }

    async fn list_functions(
        &self,
        request: Request<v1::ListFunctionsRequest>,
    ) -> Result<Response<v1::ListFunctionsResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lambda:ListFunctions", "*")?;
        let r = request.into_inner();
        let (page, next_marker) = list(&self.shared, r.marker, r.max_items as usize).await?;
        Ok(Response::new(v1::ListFunctionsResponse {
            functions: page.iter().map(Into::into).collect(),
            next_marker,
        }))
    }

    async fn update_function_code(
        &self,
        request: Request<Streaming<v1::UpdateFunctionCodeRequest>>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let (_, extensions, stream) = request.into_parts();
        let config = self.update_code(&extensions, stream).await?;
        Ok(Response::new((&config).into()))
    }

    async fn update_function_configuration(
        &self,
        request: Request<v1::UpdateFunctionConfigurationRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:UpdateFunctionConfiguration",
            &request.get_ref().function_name,
            "",
        )?;
        if let Some(role) = &request.get_ref().role {
            self.shared
                .authorize_pass_role(request.extensions(), role)?;
        }
        let r = request.into_inner();
        let name = r.function_name.clone();
        let update = ConfigurationUpdate::try_from(r)?;
        let config = update_configuration(&self.shared, &name, update, None).await?;
        Ok(Response::new((&config).into()))
    }

    async fn delete_function(
        &self,
        request: Request<v1::DeleteFunctionRequest>,
    ) -> Result<Response<v1::DeleteFunctionResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:DeleteFunction",
            &r.function_name,
            &r.qualifier,
        )?;
        let r = request.into_inner();
        // A version number deletes only that version; no qualifier deletes the function.
        if !versions::delete_qualified(&self.shared, &r.function_name, &r.qualifier).await? {
            delete(&self.shared, &r.function_name).await?;
        }
        Ok(Response::new(v1::DeleteFunctionResponse {}))
    }

    async fn invoke(
        &self,
        request: Request<v1::InvokeRequest>,
    ) -> Result<Response<v1::InvokeResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:InvokeFunction",
            &r.function_name,
            &r.qualifier,
        )?;
        let input = super::invoke::InvokeInput::try_from(request.into_inner())?;
        let output = super::invoke::invoke(&self.shared, input).await?;
        Ok(Response::new(output.into()))
    }

    type InvokeWithResponseStreamStream = super::stream::InvokeStream;

    async fn invoke_with_response_stream(
        &self,
        request: Request<v1::InvokeRequest>,
    ) -> Result<Response<Self::InvokeWithResponseStreamStream>, Status> {
        let r = request.get_ref();
        // Lambda authorises InvokeWithResponseStream as lambda:InvokeFunction.
        self.shared.authorize_function(
            request.extensions(),
            "lambda:InvokeFunction",
            &r.function_name,
            &r.qualifier,
        )?;
        let input = super::invoke::InvokeInput::try_from(request.into_inner())?;
        let started =
            super::stream::invoke_with_response_stream(self.shared.clone(), input).await?;
        Ok(Response::new(started.events))
    }

    async fn get_logs(
        &self,
        request: Request<v1::GetLogsRequest>,
    ) -> Result<Response<v1::GetLogsResponse>, Status> {
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetLogs",
            &request.get_ref().function_name,
            "",
        )?;
        let r = request.into_inner();
        self.get(&r.function_name).await?;
        let limit = match r.limit as usize {
            0 => LOGS_DEFAULT,
            n => n.min(LOGS_MAX),
        };
        let (name, after) = (r.function_name, r.after_seq);
        let events = self
            .shared
            .store(move |s| s.get_logs(&name, after, limit))
            .await?;
        let last_seq = events.last().map_or(after, |e| e.seq);
        Ok(Response::new(v1::GetLogsResponse {
            events: events
                .into_iter()
                .map(|e| v1::LogEvent {
                    seq: e.seq,
                    timestamp_ms: e.timestamp_ms,
                    request_id: e.request_id,
                    message: e.message,
                })
                .collect(),
            last_seq,
        }))
    }

    async fn list_workers(
        &self,
        request: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lamina:ListWorkers", "*")?;
        let workers = self
            .shared
            .registry
            .list()
            .into_iter()
            .map(|w| v1::WorkerInfo {
                worker_id: w.worker_id,
                address: w.address,
                state: w.state.as_str().to_string(),
                memory_total_mb: w.memory_total_mb,
                memory_free_mb: w.memory_free_mb,
                sandboxes: w.sandboxes,
                idle_sandboxes: w.idle_sandboxes,
                last_heartbeat_ms_ago: w.last_heartbeat_ago.as_millis() as u64,
                invocations_total: w.invocations_total,
            })
            .collect();
        Ok(Response::new(v1::ListWorkersResponse { workers }))
    }

    async fn add_permission(
        &self,
        request: Request<v1::AddPermissionRequest>,
    ) -> Result<Response<v1::AddPermissionResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:AddPermission",
            &r.function_name,
            &r.qualifier,
        )?;
        let r = request.into_inner();
        let some = |s: String| Some(s).filter(|s| !s.is_empty());
        let statement = permissions::add_permission(
            &self.shared,
            permissions::NewPermission {
                function_name: r.function_name,
                qualifier: r.qualifier,
                statement_id: r.statement_id,
                action: r.action,
                principal: r.principal,
                source_arn: some(r.source_arn),
                source_account: some(r.source_account),
                principal_org_id: some(r.principal_org_id),
                event_source_token: some(r.event_source_token),
                function_url_auth_type: some(r.function_url_auth_type),
                revision_id: some(r.revision_id),
            },
        )
        .await?;
        Ok(Response::new(v1::AddPermissionResponse { statement }))
    }

    async fn remove_permission(
        &self,
        request: Request<v1::RemovePermissionRequest>,
    ) -> Result<Response<v1::RemovePermissionResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:RemovePermission",
            &r.function_name,
            &r.qualifier,
        )?;
        let r = request.into_inner();
        permissions::remove_permission(
            &self.shared,
            &r.function_name,
            &r.qualifier,
            &r.statement_id,
            Some(r.revision_id.as_str()),
        )
        .await?;
        Ok(Response::new(v1::RemovePermissionResponse {}))
    }

    async fn get_policy(
        &self,
        request: Request<v1::GetPolicyRequest>,
    ) -> Result<Response<v1::GetPolicyResponse>, Status> {
        let r = request.get_ref();
        self.shared.authorize_function(
            request.extensions(),
            "lambda:GetPolicy",
            &r.function_name,
            &r.qualifier,
        )?;
        let p = permissions::get_policy(&self.shared, &r.function_name, &r.qualifier).await?;
        Ok(Response::new(v1::GetPolicyResponse {
            policy: p.policy,
            revision_id: p.revision_id,
        }))
    }
}
