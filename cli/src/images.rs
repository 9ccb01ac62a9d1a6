//! Container images on the command line: `--image PATH` (an OCI image layout directory, tarred
//! here, or an OCI / docker save archive sent as it is) and the overrides of the image's
//! configuration (`--entrypoint`, `--cmd`, `--workdir`).
use std::path::Path;

use anyhow::{anyhow, Context};
use clap::Args;
use lamina_client::{code, v1};

#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Create an Image function from a container image: an OCI image layout directory (tarred
    /// for you) or an OCI / docker save archive (instead of --code)
    #[arg(long)]
    pub image: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub config: ImageConfigArgs,
}

#[derive(Debug, Args)]
pub struct ImageConfigArgs {
    /// Image functions: replaces the image's Entrypoint, one word per flag (repeatable)
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    pub entrypoint: Vec<String>,
    /// Image functions: replaces the image's Cmd, one word per flag (repeatable)
    #[arg(long, value_name = "WORD", allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// Image functions: replaces the image's WorkingDir (an absolute path)
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
}

impl ImageConfigArgs {
    /// The overrides, when any is given.
    pub fn image_config(&self) -> Option<v1::ImageConfig> {
        let given = !self.entrypoint.is_empty() || !self.cmd.is_empty() || self.workdir.is_some();
        given.then(|| v1::ImageConfig {
            entrypoint: self.entrypoint.clone(),
            command: self.cmd.clone(),
            working_directory: self.workdir.clone().unwrap_or_default(),
        })
    }
}

/// The bytes to upload: the zip of `--code`, or the image of `--image`.
pub fn load_code_or_image(code: Option<&Path>, image: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match (code, image) {
        (Some(c), None) => Ok(code::load_code(c)?),
        (None, Some(i)) => load_image(i),
        _ => Err(anyhow!("give either --code or --image")),
    }
}

/// An image archive as it is, or an OCI image layout directory tarred (symlinks kept as links).
pub fn load_image(path: &Path) -> anyhow::Result<Vec<u8>> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if !meta.is_dir() {
        return std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    }
    if !path.join("index.json").is_file() {
        return Err(anyhow!(
            "{} is a directory without index.json: give an OCI image layout directory or an archive",
            path.display()
        ));
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", path)
        .with_context(|| format!("cannot tar the image layout {}", path.display()))?;
    builder
        .into_inner()
        .with_context(|| format!("cannot tar the image layout {}", path.display()))
}
