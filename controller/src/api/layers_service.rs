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
    extensions: &http::Extensions,
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
    shared.authorize(
        extensions,
        "lambda:PublishLayerVersion",
        &crate::iam::arn::layer(&spec.layer_name, None),
    )?;
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
        let (_, extensions, stream) = request.into_parts();
        Ok(Response::new(
            publish(&self.shared, &extensions, stream).await?,
        ))
    }

    async fn list_layers(
        &self,
        request: Request<v1::ListLayersRequest>,
    ) -> Result<Response<v1::ListLayersResponse>, Status> {
        self.shared
            .authorize(request.extensions(), "lambda:ListLayers", "*")?;
        let layers = layers::list_layers(&self.shared).await?;
        Ok(Response::new(v1::ListLayersResponse {
            layers: layers.iter().map(Into::into).collect(),
        }))
    }

    async fn list_layer_versions(
        &self,
        request: Request<v1::ListLayerVersionsRequest>,
    ) -> Result<Response<v1::ListLayerVersionsResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "lambda:ListLayerVersions",
            &crate::iam::arn::layer(&request.get_ref().layer_name, None),
        )?;
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
        self.shared.authorize(
            request.extensions(),
            "lambda:GetLayerVersion",
            &crate::iam::arn::layer(
                &request.get_ref().layer_name,
                Some(u64::from(request.get_ref().version)),
            ),
        )?;
        let r = request.into_inner();
        let layer = layers::get(&self.shared, &r.layer_name, r.version).await?;
        Ok(Response::new((&layer).into()))
    }

    async fn delete_layer_version(
        &self,
        request: Request<v1::DeleteLayerVersionRequest>,
    ) -> Result<Response<v1::DeleteLayerVersionResponse>, Status> {
        self.shared.authorize(
            request.extensions(),
            "lambda:DeleteLayerVersion",
            &crate::iam::arn::layer(
                &request.get_ref().layer_name,
                Some(u64::from(request.get_ref().version)),
            ),
        )?;
        let r = request.into_inner();
        layers::delete(&self.shared, &r.layer_name, r.version).await?;
        Ok(Response::new(v1::DeleteLayerVersionResponse {}))
    }
}
