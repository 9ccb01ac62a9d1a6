//! Container-image functions (package type Image): images the tests build themselves (an OCI
//! image layout, as a tar or a directory, and a `docker save` archive), run with the unpacked image
//! as the sandbox's read-only root — Entrypoint, Cmd, WorkingDir and Env honoured and overridable,
//! whiteouts applied — and hostile images refused at upload with nothing stored.
use std::process::Command;

use anyhow::Result;
use lamina_e2e::images::{self, file, layer_tar, Entry, Image};
use lamina_e2e::*;

/// The test image: layer 1 = python3.11 with what `RUNTIME_PY` needs, the runtime, an image-only
/// file and files layer 2 changes; layer 2 = a whiteout, an opaque directory, a changed file.
fn test_image() -> Result<Image> {
    let mut base = images::python_runtime_files()?;
    base.extend([
        file("runtime.py", images::RUNTIME_PY, 0o644),
        file("image-only.txt", "only in the image\n", 0o644),
        Entry::Dir("etc".into()),
        file("etc/removed.txt", "whited out by layer 2\n", 0o644),
        Entry::Dir("data".into()),
        file("data/changed.txt", "v1", 0o644),
        Entry::Dir("opaque".into()),
        file("opaque/old.txt", "hidden by the opaque whiteout", 0o644),
        Entry::Dir("work".into()),
    ]);
    let top = vec![
        file("etc/.wh.removed.txt", "", 0o644),
        file("opaque/.wh..wh..opq", "", 0o644),
        file("opaque/new.txt", "new", 0o644),
        file("data/changed.txt", "v2", 0o644),
    ];
    Ok(Image {
        layers: vec![layer_tar(&base), layer_tar(&top)],
        entrypoint: vec!["/usr/bin/python3.11".into(), "-S".into()],
        cmd: vec!["/runtime.py".into(), "from-cmd".into()],
        working_dir: "/work".into(),
        env: vec![
            "IMAGE_VAR=from-image".into(),
            "PATH=/usr/bin:/bin".into(),
            "AWS_LAMBDA_FUNCTION_NAME=image-cannot-set-this".into(),
        ],
    })
}

fn image_spec(name: &str) -> v1::FunctionSpec {
    let mut s = spec(name, "", "");
    s.package_type = "Image".into();
    s
}

fn fnctl(cluster: &Cluster, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("fnctl"))
        .envs(cluster.fnctl_env())
        .args(args)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "fnctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn image_function_runs_with_its_image_as_the_root() {
    require_root();
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let name = unique("img");
        let image = test_image()?;
        let s = with_env(image_spec(&name), &[("USER_VAR", "from-function")]);
        let f = c.create_function(s, image.oci_tar()).await?;
        assert_eq!(f.package_type, "Image");
        let resolved = f.image.clone().expect("resolved image");
        assert_eq!(resolved.layer_digests.len(), 2);
        assert_eq!(resolved.working_directory, "/work");
        assert_eq!(f.code_sha256, resolved.digest.trim_start_matches("sha256:"));

        let resp = invoke(&c, &name, r#"{"hello": "image"}"#).await?;
        assert!(
            resp.function_error.is_empty(),
            "{resp:?}\n{}",
            cluster.logs()
        );
        let v = json(&resp);
        assert_eq!(
            v["argv"],
            serde_json::json!(["/runtime.py", "from-cmd"]),
            "Entrypoint + Cmd: {v}"
        );
        assert_eq!(v["cwd"], "/work");
        assert_eq!(v["event"]["hello"], "image");
        assert_eq!(v["image_var"], "from-image", "the image's Env");
        assert_eq!(v["user_var"], "from-function", "the function's variables");
        assert_eq!(
            v["function_name"],
            name.as_str(),
            "Lambda's variables win over the image's"
        );
        assert_eq!(v["path"], "/usr/bin:/bin", "the image's PATH");
        assert_eq!(
            v["only_in_image"], true,
            "a file only in the image is there"
        );
        assert_eq!(v["host_ls"], false, "the host's /usr is not visible: {v}");
        assert_eq!(
            v["removed"], false,
            "the whiteout of layer 2 removed the file"
        );
        assert_eq!(v["changed"], "v2", "layer 2's file replaced layer 1's");
        assert_eq!(
            v["opaque"],
            serde_json::json!(["new.txt"]),
            "opaque whiteout"
        );
        assert_eq!(v["root_writable"], false, "the image root is read-only");
        assert_eq!(v["tmp_writable"], true, "/tmp is writable");
        assert!(
            v["hosts"].as_str().unwrap_or("").contains("localhost"),
            "{v}"
        );
        assert_eq!(v["uid"], 993);
        // A second invocation is served warm by the same runtime process.
        let again = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(again["cwd"], "/work");
        Ok(())
    });
}

#[test]
fn overrides_docker_archives_and_update_code_via_fnctl() {
    require_root();
    run(async {
        // With the Python zygote and a prepared pool of zygote-forked sandboxes: an Image function
        // must get a sandbox of its own, never a pre-imported Python one.
        let cluster = Cluster::start_with(1, &["--python-zygote", "--prewarm", "2"])?;
        let c = cluster.client().await?;
        let image = test_image()?;
        // fnctl create --image DIR: an OCI layout directory, tarred by fnctl.
        let dir = tempfile::tempdir()?;
        image.write_oci_dir(dir.path())?;
        let name = unique("imgcli");
        let dir_arg = dir.path().display().to_string();
        fnctl(
            &cluster,
            &[
                "create",
                &name,
                "--image",
                &dir_arg,
                "--cmd",
                "/runtime.py",
                "--cmd",
                "overridden",
                "--workdir",
                "/data",
            ],
        )?;
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(
            v["argv"],
            serde_json::json!(["/runtime.py", "overridden"]),
            "{v}"
        );
        assert_eq!(v["cwd"], "/data");

        // An entrypoint override replaces Entrypoint and drops the image's Cmd.
        fnctl(
            &cluster,
            &[
                "update-config",
                &name,
                "--entrypoint",
                "python3.11",
                "--entrypoint",
                "-S",
                "--entrypoint",
                "/runtime.py",
                "--entrypoint",
                "from-entrypoint",
            ],
        )?;
        let f = c.get_function(&name).await?;
        let resolved = f.image.expect("image");
        assert!(resolved.command.is_empty(), "{resolved:?}");
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(
            v["argv"],
            serde_json::json!(["/runtime.py", "from-entrypoint"]),
            "a bare program name is found on the image's PATH: {v}"
        );

        // A docker save archive, by update-code.
        let mut changed = image.clone();
        changed.layers[1] = layer_tar(&[
            file("etc/.wh.removed.txt", "", 0o644),
            file("opaque/.wh..wh..opq", "", 0o644),
            file("data/changed.txt", "v3", 0o644),
        ]);
        let archive = dir.path().join("image.tar");
        std::fs::write(&archive, changed.docker_archive())?;
        let archive_arg = archive.display().to_string();
        fnctl(&cluster, &["update-code", &name, "--image", &archive_arg])?;
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["changed"], "v3", "{v}");
        assert_eq!(v["opaque"], serde_json::json!([]));

        // A zip cannot replace an image, nor an image be sent as a zip function's code.
        let err = c
            .update_function_code(&name, zip_of(&[("app.py", "x", 0o644)]))
            .await
            .expect_err("zip for an image function");
        assert!(err.to_string().contains("package type Image"), "{err}");
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(tonic::Code::InvalidArgument)
        );
        Ok(())
    });
}

fn hostile(layer: Vec<Entry>) -> Image {
    Image {
        layers: vec![layer_tar(&layer)],
        entrypoint: vec!["/bin/sh".into()],
        cmd: vec![],
        working_dir: String::new(),
        env: vec![],
    }
}

#[test]
fn hostile_and_oversized_images_are_refused_with_nothing_stored() {
    require_root();
    run(async {
        let cluster = Cluster::start_full(1, &["--max-image-bytes", "1000000"], &[])?;
        let c = cluster.client().await?;
        let escape = Image {
            layers: vec![
                layer_tar(&[Entry::Symlink("etc".into(), "/etc".into())]),
                layer_tar(&[file("etc/passwd", "root::0:0::/:/bin/sh\n", 0o644)]),
            ],
            ..hostile(vec![])
        };
        let mut mismatch = hostile(vec![file("a", "original", 0o644)]).oci_tar();
        let at = mismatch
            .windows(8)
            .rposition(|w| w == b"original")
            .expect("layer data");
        mismatch[at] = b'X';
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "traversal",
                hostile(vec![file("../../escape", "x", 0o644)]).oci_tar(),
                "`..`",
            ),
            (
                "absolute",
                hostile(vec![file("/etc/cron.d/x", "x", 0o644)]).oci_tar(),
                "absolute",
            ),
            ("symlink escape", escape.oci_tar(), "symlink"),
            (
                "device",
                hostile(vec![Entry::Char("dev/sda".into())]).oci_tar(),
                "device",
            ),
            ("digest mismatch", mismatch, "digest"),
            ("too big", test_image()?.oci_tar(), "--max-image-bytes"),
            (
                "not an image",
                b"definitely not a tar archive".to_vec(),
                "image",
            ),
        ];
        for (what, bytes, needle) in cases {
            let name = unique("bad");
            let err = c
                .create_function(image_spec(&name), bytes)
                .await
                .expect_err(what);
            let status = err.status().expect("a status");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {err}");
            assert!(err.to_string().contains(needle), "{what}: {err}");
            let gone = c.get_function(&name).await.expect_err("nothing stored");
            assert_eq!(gone.status().map(|s| s.code()), Some(tonic::Code::NotFound));
        }
        Ok(())
    });
}
