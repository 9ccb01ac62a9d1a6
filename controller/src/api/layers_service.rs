//! The `Layers` gRPC service: a thin adapter over `layers`. It reads the publish stream (`layer`
//! first, then `zip_chunk`s) and encodes the core's layer versions.
use std::sync::Arc;

use lamina_proto::v1::{self, publish_layer_version_request::Part};
use tonic::{Request, Response, Status, Streaming};

use super::layers::{self, LayerSpec};
use super::{ApiError, Shared};
use crate::code::CodeBuffer;

pub struct LayersService {
    pub(crate) shared: Arc<Shared>,
}

/// Publishes the next version of a layer from a stream: `layer` first, then `zip_chunk`s.
async fn publish(
    shared: &Shared,
    mut stream: Streaming<v1::PublishLayerVersionRequest>,
) -> Result<v1::LayerVersion, ApiError> {
    let next = |m: Option<v1::PublishLayerVersionRequest>| m.and_then(|m| m.part);
    let first = stream
        .message()
        .await
        .map_err(|s| ApiError::Stream(Box::new(s)))?;
    let spec: LayerSpec =
        match next(first) {
            Some(Part::Layer(spec)) => spec.into(),
            _ => return Err(ApiError::BadRequest(
                "the first message must carry `layer` (name, description, compatible runtimes); \
                 send the zip after it as `zip_chunk`s"
                    .into(),
            )),
        };
    let runtimes = layers::check_spec(&spec)?;
    let mut buf = CodeBuffer::new();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| ApiError::Stream(Box::new(s)))?
    {
        match msg.part {
            Some(Part::ZipChunk(chunk)) => buf.push(&chunk)?,
            _ => {
                return Err(ApiError::BadRequest(
                    "`layer` may only be sent once, in the first message; then `zip_chunk`s".into(),
                ))
            }
        }
    }
    let zip = tokio::task::spawn_blocking(move || buf.finish())
        .await
        .map_err(|e| ApiError::Internal(format!("zip check task failed: {e}")))??;
    let published = layers::publish_checked(shared, spec, runtimes, zip).await?;
    Ok((&published).into())
}

#[tonic::async_trait]
impl v1::layers_server::Layers for LayersService {
    async fn publish_layer_version(
        &self,
        request: Request<Streaming<v1::PublishLayerVersionRequest>>,
    ) -> Result<Response<v1::LayerVersion>, Status> {
        Ok(Response::new(
            publish(&self.shared, request.into_inner()).await?,
        ))
    }

    async fn list_layers(
        &self,
        _request: Request<v1::ListLayersRequest>,
    ) -> Result<Response<v1::ListLayersResponse>, Status> {
        let layers = layers::list_layers(&self.shared).await?;
        Ok(Response::new(v1::ListLayersResponse {
            layers: layers.iter().map(Into::into).collect(),
        }))
    }

    async fn list_layer_versions(
        &self,
        request: Request<v1::ListLayerVersionsRequest>,
    ) -> Result<Response<v1::ListLayerVersionsResponse>, Status> {
        let name = request.into_inner().layer_name;
        let versions = layers::list_versions(&self.shared, name).await?;
        Ok(Response::new(v1::ListLayerVersionsResponse {
            versions: versions.iter().map(Into::into).collect(),
        }))
    }

    async fn get_layer_version(
        &self,
        request: Request<v1::GetLayerVersionRequest>,
    ) -> Result<Response<v1::LayerVersion>, Status> {
        let r = request.into_inner();
        let layer = layers::get(&self.shared, &r.layer_name, r.version).await?;
        Ok(Response::new((&layer).into()))
    }

    async fn delete_layer_version(
        &self,
        request: Request<v1::DeleteLayerVersionRequest>,
    ) -> Result<Response<v1::DeleteLayerVersionResponse>, Status> {
        let r = request.into_inner();
        layers::delete(&self.shared, &r.layer_name, r.version).await?;
        Ok(Response::new(v1::DeleteLayerVersionResponse {}))
    }
}
