//! The `Functions` service: what users call.
use std::sync::Arc;

use lamina_proto::domain::{FunctionConfig, FunctionSpec, LATEST};
use lamina_proto::v1::{self, create_function_request, update_function_code_request};
use lamina_proto::validate;
use tonic::{Request, Response, Status, Streaming};

use super::{concurrency, events, layers, now_ms, provisioned, versions, ApiError, Shared};
use crate::code::{CheckedCode, CodeBuffer};
use crate::store::StoreError;

const LIST_DEFAULT: usize = 50;
const LIST_MAX: usize = 1000;
const LOGS_DEFAULT: usize = 1000;
const LOGS_MAX: usize = 10_000;
/// Read-modify-write attempts of an update racing other updates of the same function.
const UPDATE_ATTEMPTS: usize = 5;

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

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
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

/// The stored configuration of function `name`.
pub(crate) async fn get(shared: &Shared, name: &str) -> Result<FunctionConfig, ApiError> {
    let owned = name.to_string();
    shared
        .store(move |s| s.get_function(&owned))
        .await?
        .ok_or_else(|| ApiError::FunctionNotFound(name.to_string()))
}

/// Refuses a taken name before reading up to 50 MB of code (checked again when storing).
pub(crate) async fn ensure_name_free(shared: &Shared, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    if shared
        .store(move |s| s.get_function(&owned))
        .await?
        .is_some()
    {
        return Err(StoreError::FunctionExists(name.to_string()).into());
    }
    Ok(())
}

/// A zip cannot create an Image function (images arrive through `CreateFunction`'s code stream).
fn refuse_image(spec: &FunctionSpec) -> Result<(), ApiError> {
    if spec.package_type == lamina_proto::domain::PackageType::Image {
        return Err(lamina_proto::validate::ValidationError::new(
            "package_type",
            "package type Image needs an image upload (an OCI layout tar or a docker save \
             archive), not a zip: use `fnctl create NAME --image PATH`",
        )
        .into());
    }
    Ok(())
}

/// Stores a new function from a validated spec and checked code.
pub(crate) async fn create_function(
    shared: &Shared,
    spec: FunctionSpec,
    code: CheckedCode,
) -> Result<FunctionConfig, ApiError> {
    refuse_image(&spec)?;
    super::network::check_vpc_config(shared, spec.vpc_config.as_ref()).await?;
    let attached = layers::resolve(shared, &spec.layers, &[]).await?;
    layers::check_total_size(code.unzipped_size, &attached)?;
    let config = FunctionConfig {
        spec,
        code_sha256: code.sha256.clone(),
        code_size: code.bytes.len() as u64,
        revision_id: new_revision(),
        version: LATEST.to_string(),
        last_modified_ms: now_ms(),
        layers: attached,
        image: None,
    };
    let stored = config.clone();
    shared
        .store(move |s| s.create_function(&stored, &code.bytes))
        .await?;
    tracing::info!(function = %config.spec.name, sha256 = %config.code_sha256, "function created");
    Ok(config)
}

/// Replaces the code of function `name`. With `expected_revision`, only if `$LATEST` still has that
/// revision (checked in the same compare-and-set as the write: Lambda's `RevisionId`).
pub(crate) async fn update_code(
    shared: &Shared,
    name: &str,
    code: CheckedCode,
    expected_revision: Option<String>,
) -> Result<FunctionConfig, ApiError> {
    let code = Arc::new(code);
    read_modify_write(shared, name, move |mut config| {
        check_revision(&config, expected_revision.as_deref())?;
        super::images::ensure_zip_function(&config)?;
        layers::check_total_size(code.unzipped_size, &config.layers)?;
        config.code_sha256 = code.sha256.clone();
        config.code_size = code.bytes.len() as u64;
        Ok((config, Some(Arc::clone(&code))))
    })
    .await
}

/// Refuses a change based on another revision of `$LATEST` than the current one.
pub(crate) fn check_revision(
    current: &FunctionConfig,
    expected: Option<&str>,
) -> Result<(), ApiError> {
    match expected {
        Some(expected) if expected != current.revision_id => Err(ApiError::RevisionPrecondition {
            name: current.spec.name.clone(),
            expected: expected.to_string(),
            actual: current.revision_id.clone(),
        }),
        _ => Ok(()),
    }
}

/// Changes the configuration fields set in `r` (with `expected_revision`: only if `$LATEST` still
/// has that revision, checked in the compare-and-set of the write).
pub(crate) async fn update_configuration(
    shared: &Shared,
    r: v1::UpdateFunctionConfigurationRequest,
    expected_revision: Option<String>,
) -> Result<FunctionConfig, ApiError> {
    if let Some(mode) = &r.tracing_mode {
        validate::tracing_mode(mode)?;
    }
    let name = r.function_name.clone();
    // Layers are resolved (and the size limit checked) before the read-modify-write: a layer
    // attached already keeps the copy the function holds.
    let new_layers = if r.replace_layers {
        validate::layers(&r.layers)?;
        let current = get(shared, &name).await?;
        let resolved = layers::resolve(shared, &r.layers, &current.layers).await?;
        if !resolved.is_empty() {
            let code = layers::stored_code_unzipped_size(shared, &current.code_sha256).await?;
            layers::check_total_size(code, &resolved)?;
        }
        Some(resolved)
    } else {
        None
    };
    let new_vpc = match &r.vpc_config {
        Some(c) => {
            let parsed = lamina_proto::network::vpc_config(c)?;
            super::network::check_vpc_config(shared, parsed.as_ref()).await?;
            Some(parsed)
        }
        None => None,
    };
    read_modify_write(shared, &name, move |mut config| {
        check_revision(&config, expected_revision.as_deref())?;
        if let Some(vpc) = &new_vpc {
            config.spec.vpc_config = vpc.clone();
        }
        if let Some(resolved) = &new_layers {
            config.spec.layers = r.layers.clone();
            config.layers = resolved.clone();
        }
        if let Some(image_config) = &r.image_config {
            config.spec.image_config = image_config.clone().into();
            if let Some(image) = &mut config.image {
                crate::image::apply_overrides(image, &config.spec.image_config);
            }
        }
        let spec = &mut config.spec;
        if let Some(runtime) = &r.runtime {
            spec.runtime = validate::runtime(runtime)?;
        }
        if let Some(handler) = &r.handler {
            spec.handler = handler.clone();
        }
        if let Some(mb) = r.memory_size_mb {
            spec.memory_mb = mb;
        }
        if let Some(s) = r.timeout_seconds {
            spec.timeout_s = s;
        }
        if let Some(mb) = r.ephemeral_storage_mb {
            spec.ephemeral_storage_mb = mb;
        }
        if let Some(d) = &r.description {
            spec.description = d.clone();
        }
        if let Some(role) = &r.role {
            spec.role = role.clone();
        }
        if let Some(logging) = &r.logging_config {
            spec.logging = logging.clone().into();
        }
        if r.replace_environment {
            spec.environment = r.environment.clone().into_iter().collect();
        } else {
            spec.environment.extend(r.environment.clone());
        }
        validate::spec(spec)?;
        Ok((config, None))
    })
    .await
}

/// One page of functions after `marker` (`max_items` 0 = the default) and the next marker.
pub(crate) async fn list(
    shared: &Shared,
    marker: String,
    max_items: usize,
) -> Result<(Vec<FunctionConfig>, String), ApiError> {
    let limit = match max_items {
        0 => LIST_DEFAULT,
        n => n.min(LIST_MAX),
    };
    // One more than asked tells whether there is a next page.
    let mut page = shared
        .store(move |s| s.list_functions(&marker, limit + 1))
        .await?;
    let next_marker = if page.len() > limit {
        page.truncate(limit);
        page.last().map(|f| f.spec.name.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    Ok((page, next_marker))
}

/// Deletes function `name` and its async settings.
pub(crate) async fn delete(shared: &Shared, name: &str) -> Result<(), ApiError> {
    let owned = name.to_string();
    match shared.store(move |s| s.delete_function(&owned)).await? {
        Some(_) => {
            if let Some(q) = &shared.queue {
                q.delete_config(name).await.map_err(ApiError::from)?;
            }
            // Its settings went with it: the reservation and provisioned sandboxes too.
            shared.limiter.forget(name);
            shared.provisioning.changed();
            shared.retiring.function_changed(name);
            tracing::info!(function = %name, "function deleted");
            Ok(())
        }
        None => Err(ApiError::FunctionNotFound(name.to_string())),
    }
}

/// Applies `change` to the current record and stores it with a new revision, retrying when a
/// concurrent update got there first.
pub(crate) async fn read_modify_write<F>(
    shared: &Shared,
    name: &str,
    change: F,
) -> Result<FunctionConfig, ApiError>
where
    F: Fn(FunctionConfig) -> Result<(FunctionConfig, Option<Arc<CheckedCode>>), ApiError>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let current = get(shared, name).await?;
        let expected = current.revision_id.clone();
        let (mut config, code) = change(current)?;
        config.revision_id = new_revision();
        config.last_modified_ms = now_ms();
        let stored = config.clone();
        let result = shared
            .store(move |s| {
                s.update_function(&stored, &expected, code.as_deref().map(|c| &c.bytes[..]))
            })
            .await;
        match result {
            Ok(()) => {
                tracing::info!(function = %name, revision = %config.revision_id, "function updated");
                // The previous revision of $LATEST ended: its sandboxes go.
                shared.retiring.function_changed(name);
                return Ok(config);
            }
            Err(ApiError::Store(StoreError::RevisionConflict { .. }))
                if attempt < UPDATE_ATTEMPTS =>
            {
                continue
            }
            Err(ApiError::Store(StoreError::FunctionNotFound(n))) => {
                return Err(ApiError::FunctionNotFound(n))
            }
            Err(e) => return Err(e),
        }
    }
}

impl FunctionsService {
    async fn get(&self, name: &str) -> Result<FunctionConfig, ApiError> {
        get(&self.shared, name).await
    }

    async fn create(
        &self,
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
        let config = self.create(request.into_inner()).await?;
        Ok(Response::new((&config).into()))
    }

    async fn get_function(
        &self,
        request: Request<v1::GetFunctionRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
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
        let config = self.update_code(request.into_inner()).await?;
        Ok(Response::new((&config).into()))
    }

    async fn update_function_configuration(
        &self,
        request: Request<v1::UpdateFunctionConfigurationRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        let config = update_configuration(&self.shared, request.into_inner(), None).await?;
        Ok(Response::new((&config).into()))
    }

    async fn delete_function(
        &self,
        request: Request<v1::DeleteFunctionRequest>,
    ) -> Result<Response<v1::DeleteFunctionResponse>, Status> {
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
        let response = super::invoke::invoke(&self.shared, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    type InvokeWithResponseStreamStream = super::stream::InvokeStream;

    async fn invoke_with_response_stream(
        &self,
        request: Request<v1::InvokeRequest>,
    ) -> Result<Response<Self::InvokeWithResponseStreamStream>, Status> {
        let started =
            super::stream::invoke_with_response_stream(self.shared.clone(), request.into_inner())
                .await?;
        Ok(Response::new(started.events))
    }

    async fn get_logs(
        &self,
        request: Request<v1::GetLogsRequest>,
    ) -> Result<Response<v1::GetLogsResponse>, Status> {
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

    async fn put_function_event_invoke_config(
        &self,
        request: Request<v1::PutFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        Ok(Response::new(
            events::put_config(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_function_event_invoke_config(
        &self,
        request: Request<v1::GetFunctionEventInvokeConfigRequest>,
    ) -> Result<Response<v1::FunctionEventInvokeConfig>, Status> {
        let name = request.into_inner().function_name;
        Ok(Response::new(events::get_config(&self.shared, name).await?))
    }

    async fn get_invocation(
        &self,
        request: Request<v1::GetInvocationRequest>,
    ) -> Result<Response<v1::Invocation>, Status> {
        let id = request.into_inner().request_id;
        Ok(Response::new(
            events::get_invocation(&self.shared, id).await?,
        ))
    }

    async fn list_invocations(
        &self,
        request: Request<v1::ListInvocationsRequest>,
    ) -> Result<Response<v1::ListInvocationsResponse>, Status> {
        Ok(Response::new(
            events::list_invocations(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_dead_letter_queues(
        &self,
        _request: Request<v1::ListDeadLetterQueuesRequest>,
    ) -> Result<Response<v1::ListDeadLetterQueuesResponse>, Status> {
        Ok(Response::new(events::list_queues(&self.shared)?))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        Ok(Response::new(
            events::list_dead_letters(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn redrive_dead_letters(
        &self,
        request: Request<v1::RedriveDeadLettersRequest>,
    ) -> Result<Response<v1::RedriveDeadLettersResponse>, Status> {
        Ok(Response::new(
            events::redrive(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn publish_version(
        &self,
        request: Request<v1::PublishVersionRequest>,
    ) -> Result<Response<v1::FunctionConfiguration>, Status> {
        Ok(Response::new(
            versions::publish_version(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_versions(
        &self,
        request: Request<v1::ListVersionsRequest>,
    ) -> Result<Response<v1::ListVersionsResponse>, Status> {
        Ok(Response::new(
            versions::list_versions(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn create_alias(
        &self,
        request: Request<v1::CreateAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        Ok(Response::new(
            versions::create_alias(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn update_alias(
        &self,
        request: Request<v1::UpdateAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        Ok(Response::new(
            versions::update_alias(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_alias(
        &self,
        request: Request<v1::GetAliasRequest>,
    ) -> Result<Response<v1::Alias>, Status> {
        Ok(Response::new(
            versions::get_alias(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_aliases(
        &self,
        request: Request<v1::ListAliasesRequest>,
    ) -> Result<Response<v1::ListAliasesResponse>, Status> {
        Ok(Response::new(
            versions::list_aliases(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn delete_alias(
        &self,
        request: Request<v1::DeleteAliasRequest>,
    ) -> Result<Response<v1::DeleteAliasResponse>, Status> {
        Ok(Response::new(
            versions::delete_alias(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn put_function_concurrency(
        &self,
        request: Request<v1::PutFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        Ok(Response::new(
            concurrency::put_function_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_function_concurrency(
        &self,
        request: Request<v1::GetFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        Ok(Response::new(
            concurrency::get_function_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn delete_function_concurrency(
        &self,
        request: Request<v1::DeleteFunctionConcurrencyRequest>,
    ) -> Result<Response<v1::FunctionConcurrency>, Status> {
        Ok(Response::new(
            concurrency::delete_function_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_account_settings(
        &self,
        request: Request<v1::GetAccountSettingsRequest>,
    ) -> Result<Response<v1::AccountSettings>, Status> {
        Ok(Response::new(
            concurrency::get_account_settings(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn put_provisioned_concurrency(
        &self,
        request: Request<v1::PutProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ProvisionedConcurrencyConfig>, Status> {
        Ok(Response::new(
            provisioned::put_provisioned_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_provisioned_concurrency(
        &self,
        request: Request<v1::GetProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ProvisionedConcurrencyConfig>, Status> {
        Ok(Response::new(
            provisioned::get_provisioned_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_provisioned_concurrency(
        &self,
        request: Request<v1::ListProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::ListProvisionedConcurrencyResponse>, Status> {
        Ok(Response::new(
            provisioned::list_provisioned_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn delete_provisioned_concurrency(
        &self,
        request: Request<v1::DeleteProvisionedConcurrencyRequest>,
    ) -> Result<Response<v1::DeleteProvisionedConcurrencyResponse>, Status> {
        Ok(Response::new(
            provisioned::delete_provisioned_concurrency(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn publish_layer_version(
        &self,
        request: Request<Streaming<v1::PublishLayerVersionRequest>>,
    ) -> Result<Response<v1::LayerVersion>, Status> {
        Ok(Response::new(
            layers::publish(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_layers(
        &self,
        _request: Request<v1::ListLayersRequest>,
    ) -> Result<Response<v1::ListLayersResponse>, Status> {
        Ok(Response::new(layers::list_layers(&self.shared).await?))
    }

    async fn list_layer_versions(
        &self,
        request: Request<v1::ListLayerVersionsRequest>,
    ) -> Result<Response<v1::ListLayerVersionsResponse>, Status> {
        Ok(Response::new(
            layers::list_versions(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn get_layer_version(
        &self,
        request: Request<v1::GetLayerVersionRequest>,
    ) -> Result<Response<v1::LayerVersion>, Status> {
        Ok(Response::new(
            layers::get(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn delete_layer_version(
        &self,
        request: Request<v1::DeleteLayerVersionRequest>,
    ) -> Result<Response<v1::DeleteLayerVersionResponse>, Status> {
        Ok(Response::new(
            layers::delete(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_workers(
        &self,
        _request: Request<v1::ListWorkersRequest>,
    ) -> Result<Response<v1::ListWorkersResponse>, Status> {
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
}
