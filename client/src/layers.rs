//! Layers on [`Client`]: publish a layer version from a zip, list layers and their versions, get
//! and delete one version. A function attaches layer versions by ARN (`FunctionSpec.layers`).
use crate::{v1, Client, Error, CODE_CHUNK_BYTES};

impl Client {
    /// Publishes the next version of layer `name` from `zip` (see [`crate::code::load_code`]),
    /// streamed in [`CODE_CHUNK_BYTES`] chunks after the layer's description.
    pub async fn publish_layer_version(
        &self,
        name: &str,
        description: &str,
        compatible_runtimes: &[String],
        zip: Vec<u8>,
    ) -> Result<v1::LayerVersion, Error> {
        use v1::publish_layer_version_request::Part;
        let mut messages = vec![v1::PublishLayerVersionRequest {
            part: Some(Part::Layer(v1::PublishLayerVersionSpec {
                layer_name: name.to_string(),
                description: description.to_string(),
                compatible_runtimes: compatible_runtimes.to_vec(),
                ..Default::default()
            })),
        }];
        messages.extend(
            zip.chunks(CODE_CHUNK_BYTES)
                .map(|c| v1::PublishLayerVersionRequest {
                    part: Some(Part::ZipChunk(c.to_vec())),
                }),
        );
        drop(zip);
        let resp = self
            .layers
            .clone()
            .publish_layer_version(tokio_stream::iter(messages))
            .await?;
        Ok(resp.into_inner())
    }

    /// Every layer with its newest version, by name.
    pub async fn list_layers(&self) -> Result<Vec<v1::LayerVersion>, Error> {
        Ok(self
            .layers
            .clone()
            .list_layers(v1::ListLayersRequest {})
            .await?
            .into_inner()
            .layers)
    }

    /// The versions of layer `name`, newest first.
    pub async fn list_layer_versions(&self, name: &str) -> Result<Vec<v1::LayerVersion>, Error> {
        Ok(self
            .layers
            .clone()
            .list_layer_versions(v1::ListLayerVersionsRequest {
                layer_name: name.to_string(),
            })
            .await?
            .into_inner()
            .versions)
    }

    /// One layer version: by name and number, or by its ARN with `version` 0.
    pub async fn get_layer_version(
        &self,
        name_or_arn: &str,
        version: u32,
    ) -> Result<v1::LayerVersion, Error> {
        Ok(self
            .layers
            .clone()
            .get_layer_version(v1::GetLayerVersionRequest {
                layer_name: name_or_arn.to_string(),
                version,
            })
            .await?
            .into_inner())
    }

    /// Deletes one layer version (by name and number, or ARN with `version` 0). Functions that
    /// attached it keep their copy.
    pub async fn delete_layer_version(&self, name_or_arn: &str, version: u32) -> Result<(), Error> {
        self.layers
            .clone()
            .delete_layer_version(v1::DeleteLayerVersionRequest {
                layer_name: name_or_arn.to_string(),
                version,
            })
            .await?;
        Ok(())
    }
}
