//! What an Image function's sandbox runs: its image's `Entrypoint` + `Cmd` (after the function's
//! overrides, resolved by the controller), in its `WorkingDir`, with the image's `Env` under
//! Lambda's variables.
use std::path::Path;

use lamina_proto::domain::{FunctionConfig, ResolvedImage, Runtime};

use super::env::{build_env, InitType};
use crate::sandbox::protocol::ImageRoot;

/// Variables of the image that replace Lamina's defaults for the built-in runtimes
/// (`env::SANDBOX_PATH`, ...): they describe the image's own files.
const IMAGE_WINS: [&str; 4] = ["PATH", "LD_LIBRARY_PATH", "LANG", "TZ"];

/// Whether a zygote-forked (Python) sandbox can run `config`: a Python zip function only.
pub(super) fn zygote_fits(config: &FunctionConfig) -> bool {
    config.spec.runtime == Runtime::Python311 && config.image.is_none()
}

/// The sandbox root of an Image function (`image_dir` is its unpacked image).
pub(super) fn root(config: &FunctionConfig, image_dir: &Path) -> Option<ImageRoot> {
    config.image.as_ref().map(|i| ImageRoot {
        dir: image_dir.to_path_buf(),
        working_dir: i.working_directory.clone(),
    })
}

/// `Entrypoint` followed by `Cmd`.
pub(super) fn argv(image: &ResolvedImage) -> Vec<String> {
    image
        .entrypoint
        .iter()
        .chain(&image.command)
        .cloned()
        .collect()
}

/// Lambda's variables, then the image's `Env` (Lambda's win, except `IMAGE_WINS`, where the image
/// replaces Lamina's defaults), then the function's own variables. `_HANDLER` is the first word of
/// `Cmd` when the function names no handler, as Lambda's base images expect.
pub(super) fn env(
    config: &FunctionConfig,
    log_stream: &str,
    init: InitType,
    image: &ResolvedImage,
) -> Vec<(String, String)> {
    let image_env: Vec<(String, String)> = image
        .env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut env = build_env(config, log_stream, init, image_env.clone());
    for (k, v) in &mut env {
        if IMAGE_WINS.contains(&k.as_str()) {
            if let Some((_, iv)) = image_env.iter().find(|(ik, _)| ik == k) {
                *v = iv.clone();
            }
        }
        if k == "_HANDLER" && v.is_empty() {
            if let Some(first) = image.command.first() {
                *v = first.clone();
            }
        }
    }
    env
}
