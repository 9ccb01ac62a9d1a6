//! The `Layers` gRPC service: a thin adapter over `layers`.
use std::sync::Arc;

use lamina_proto::v1;
use tonic::{Request, Response, Status, Streaming};

use super::{layers, Shared};

pub struct LayersService {
    pub(crate) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl v1::layers_server::Layers for LayersService {
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
}
