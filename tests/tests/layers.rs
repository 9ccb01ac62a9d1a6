//! Layers: published from zips, attached by ARN (at most 5), unpacked in order under /opt with the
//! runtimes' search paths (/opt/python, /opt/nodejs/node_modules, /opt/bin on PATH), the 250 MB
//! limit on code plus layers, and deletion that never breaks a function using the version.
use std::io::Write;
use std::process::Command;

use anyhow::Result;
use lamina_client::Code;
use lamina_e2e::*;

async fn publish(c: &Client, name: &str, files: &[(&str, &str, u32)]) -> Result<String> {
    let l = c
        .publish_layer_version(
            name,
            "test layer",
            &["python3.11".to_string()],
            zip_of(files),
        )
        .await?;
    Ok(l.layer_version_arn)
}

fn with_layers(mut s: v1::FunctionSpec, layers: &[&str]) -> v1::FunctionSpec {
    s.layers = layers.iter().map(|l| l.to_string()).collect();
    s
}

const PY_HANDLER: &str = r#"
import os, subprocess
import greet, which, only_base

def handler(event, context):
    tool = subprocess.run(["hello-tool"], capture_output=True, text=True)
    try:
        open("/opt/python/new.py", "w")
        writable = True
    except OSError:
        writable = False
    return {
        "greet": greet.hello(),
        "which": which.NAME,
        "only_base": only_base.VALUE,
        "tool": tool.stdout.strip(),
        "opt_writable": writable,
        "opt": sorted(os.listdir("/opt")),
    }
"#;

#[test]
fn layers_are_unpacked_under_opt_in_order_on_the_search_paths() {
    require_root();
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let pylib = publish(
            &c,
            &unique("pylib"),
            &[(
                "python/greet.py",
                "def hello():\n    return 'from a layer'\n",
                0o644,
            )],
        )
        .await?;
        let tools = publish(
            &c,
            &unique("tools"),
            &[("bin/hello-tool", "#!/bin/sh\necho tool-ok\n", 0o755)],
        )
        .await?;
        let base = publish(
            &c,
            &unique("base"),
            &[
                ("python/which.py", "NAME = 'base'\n", 0o644),
                ("python/only_base.py", "VALUE = 'kept'\n", 0o644),
            ],
        )
        .await?;
        let over = publish(
            &c,
            &unique("override"),
            &[("python/which.py", "NAME = 'override'\n", 0o644)],
        )
        .await?;

        // Four layers: the later `override` replaces `which.py` of `base`; both stay visible.
        let name = unique("py-layers");
        let f = c
            .create_function(
                with_layers(
                    spec(&name, "python3.11", "app.handler"),
                    &[&pylib, &tools, &base, &over],
                ),
                zip_of(&[("app.py", PY_HANDLER, 0o644)]),
            )
            .await?;
        assert_eq!(f.layers.len(), 4);
        assert_eq!(f.layers[3].arn, over);
        let r = invoke(&c, &name, "{}").await?;
        assert_eq!(r.function_error, "", "{}", r.log_tail);
        let v = json(&r);
        assert_eq!(v["greet"], "from a layer");
        assert_eq!(v["which"], "override", "the later layer wins");
        assert_eq!(v["only_base"], "kept");
        assert_eq!(v["tool"], "tool-ok", "/opt/bin is on PATH");
        assert_eq!(v["opt_writable"], false, "/opt is read-only");
        assert_eq!(v["opt"], serde_json::json!(["bin", "python"]));

        // The reverse order: `base` now wins.
        let mut upd = v1::UpdateFunctionConfigurationRequest {
            function_name: name.clone(),
            replace_layers: true,
            layers: vec![pylib.clone(), tools.clone(), over.clone(), base.clone()],
            ..Default::default()
        };
        c.update_function_configuration(upd.clone()).await?;
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["which"], "base");

        // Node: require() finds /opt/nodejs/node_modules.
        let nodelib = publish(
            &c,
            &unique("nodelib"),
            &[(
                "nodejs/node_modules/shout/index.js",
                "module.exports = (s) => s.toUpperCase() + '!';\n",
                0o644,
            )],
        )
        .await?;
        let node = unique("node-layers");
        c.create_function(
            with_layers(spec(&node, "nodejs20.x", "index.handler"), &[&nodelib]),
            zip_of(&[(
                "index.js",
                "const shout = require('shout');\nexports.handler = async () => ({ said: shout('hi') });\n",
                0o644,
            )]),
        )
        .await?;
        let r = invoke(&c, &node, "{}").await?;
        assert_eq!(r.function_error, "", "{}", r.log_tail);
        assert_eq!(json(&r)["said"], "HI!");

        // Deleting a layer version that functions use: they keep their copy and keep running.
        c.delete_layer_version(&base, 0).await?;
        let err = c.get_layer_version(&base, 0).await.unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::NotFound),
            "{err}"
        );
        // A fresh sandbox (new revision) still gets the deleted version's files.
        upd.description = Some("after delete".into());
        upd.replace_layers = false;
        upd.layers.clear();
        c.update_function_configuration(upd).await?;
        let v = json(&invoke(&c, &name, "{}").await?);
        assert_eq!(v["which"], "base");
        assert_eq!(v["only_base"], "kept");
        // ... but it can no longer be attached anew.
        let err = c
            .create_function(
                with_layers(spec(&unique("late"), "python3.11", "app.handler"), &[&base]),
                zip_of(&[("app.py", "def handler(e, c):\n    return 1\n", 0o644)]),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::NotFound),
            "{err}"
        );
        assert!(err.to_string().contains(&base), "{err}");
        Ok(())
    });
}

/// A zip with one entry of `bytes` zeros (deflated: a few hundred KB on the wire).
fn zeros_zip(path: &str, bytes: usize) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zw = zip::ZipWriter::new(&mut buf);
        zw.start_file(path, zip::write::SimpleFileOptions::default())
            .unwrap();
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..bytes / chunk.len() {
            zw.write_all(&chunk).unwrap();
        }
        zw.finish().unwrap();
    }
    buf.into_inner()
}

#[test]
fn layer_limits_are_refused_with_clear_errors_and_nothing_changes() {
    require_root();
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let code = || zip_of(&[("app.py", "def handler(e, c):\n    return 1\n", 0o644)]);

        // Six layers: refused before anything is looked up.
        let mut six = Vec::new();
        for i in 0..6 {
            six.push(
                publish(
                    &c,
                    &unique(&format!("l{i}")),
                    &[("python/m.py", "X = 1\n", 0o644)],
                )
                .await?,
            );
        }
        let six_refs: Vec<&str> = six.iter().map(String::as_str).collect();
        let name = unique("six");
        let err = c
            .create_function(
                with_layers(spec(&name, "python3.11", "app.handler"), &six_refs),
                code(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{err}"
        );
        assert!(err.to_string().contains("at most 5 layers, got 6"), "{err}");
        assert!(c.get_function(&name).await.is_err(), "nothing was created");
        // Five are fine.
        c.create_function(
            with_layers(spec(&name, "python3.11", "app.handler"), &six_refs[..5]),
            code(),
        )
        .await?;

        // 250 MB unzipped for code plus layers: two 130 MB layers are refused, naming the sizes.
        let big_a = c
            .publish_layer_version(
                &unique("big-a"),
                "",
                &[],
                zeros_zip("data/a.bin", 130 << 20),
            )
            .await?;
        assert_eq!(big_a.unzipped_size, 130 << 20);
        let big_b = c
            .publish_layer_version(
                &unique("big-b"),
                "",
                &[],
                zeros_zip("data/b.bin", 130 << 20),
            )
            .await?;
        let too_big = unique("too-big");
        let err = c
            .create_function(
                with_layers(
                    spec(&too_big, "python3.11", "app.handler"),
                    &[&big_a.layer_version_arn, &big_b.layer_version_arn],
                ),
                code(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::InvalidArgument),
            "{err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("250 MB") && msg.contains(&(260u64 << 20).to_string()),
            "{msg}"
        );
        assert!(c.get_function(&too_big).await.is_err());
        // The same through a configuration update: refused, the function keeps its five layers.
        let before = c.get_function(&name).await?;
        let err = c
            .update_function_configuration(v1::UpdateFunctionConfigurationRequest {
                function_name: name.clone(),
                replace_layers: true,
                layers: vec![
                    big_a.layer_version_arn.clone(),
                    big_b.layer_version_arn.clone(),
                ],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("250 MB"), "{err}");
        let after = c.get_function(&name).await?;
        assert_eq!(after.revision_id, before.revision_id);
        assert_eq!(after.layers.len(), 5);
        // One big layer fits and runs.
        c.update_function_configuration(v1::UpdateFunctionConfigurationRequest {
            function_name: name.clone(),
            replace_layers: true,
            layers: vec![big_a.layer_version_arn.clone()],
            ..Default::default()
        })
        .await?;
        assert_eq!(invoke(&c, &name, "{}").await?.function_error, "");

        // Unknown versions and malformed ARNs.
        let missing = format!("{}:99", big_a.layer_arn);
        let err = c
            .create_function(
                with_layers(
                    spec(&unique("miss"), "python3.11", "app.handler"),
                    &[&missing],
                ),
                code(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.status().map(|s| s.code()),
            Some(Code::NotFound),
            "{err}"
        );
        let err = c
            .create_function(
                with_layers(
                    spec(&unique("bad"), "python3.11", "app.handler"),
                    &["not-an-arn"],
                ),
                code(),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not a layer version ARN"), "{err}");

        // Versions count up per layer; list shows the newest.
        let lname = unique("counted");
        for _ in 0..3 {
            publish(&c, &lname, &[("x", "1", 0o644)]).await?;
        }
        let versions: Vec<u32> = c
            .list_layer_versions(&lname)
            .await?
            .iter()
            .map(|l| l.version)
            .collect();
        assert_eq!(versions, [3, 2, 1]);
        let listed = c.list_layers().await?;
        assert_eq!(
            listed
                .iter()
                .find(|l| l.layer_name == lname)
                .map(|l| l.version),
            Some(3)
        );
        c.delete_layer_version(&lname, 3).await?;
        let fourth = publish(&c, &lname, &[("x", "2", 0o644)]).await?;
        assert!(
            fourth.ends_with(&format!(":layer:{lname}:4")),
            "numbers are never reused: {fourth}"
        );
        Ok(())
    });
}

#[test]
fn fnctl_layer_commands_and_create_with_layers() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    let fnctl = |args: &[&str]| {
        let out = Command::new(bin("fnctl"))
            .args(args)
            .env("FNCTL_ENDPOINT", &cluster.endpoint)
            .env("FNCTL_CREDENTIALS", &cluster.credentials_file)
            .output()
            .expect("run fnctl");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    };
    let layer_dir = cluster.dir.path().join("layer");
    std::fs::create_dir_all(layer_dir.join("python")).unwrap();
    std::fs::write(layer_dir.join("python/cli_mod.py"), "WHO = 'cli layer'\n").unwrap();
    let lname = unique("cli-layer");
    let (code, out, err) = fnctl(&[
        "layer",
        "publish",
        &lname,
        "--code",
        layer_dir.to_str().unwrap(),
        "--compatible-runtimes",
        "python3.11",
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let arn = v["LayerVersionArn"].as_str().unwrap().to_string();
    assert!(arn.ends_with(&format!(":layer:{lname}:1")), "{arn}");
    let (code, out, _) = fnctl(&["layer", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&lname), "{out}");

    let fn_dir = cluster.dir.path().join("fn");
    std::fs::create_dir_all(&fn_dir).unwrap();
    std::fs::write(
        fn_dir.join("app.py"),
        "import cli_mod\ndef handler(e, c):\n    return cli_mod.WHO\n",
    )
    .unwrap();
    let name = unique("cli-fn");
    let (code, out, err) = fnctl(&[
        "create",
        &name,
        "--runtime",
        "python3.11",
        "--handler",
        "app.handler",
        "--code",
        fn_dir.to_str().unwrap(),
        "--layers",
        &arn,
        "-o",
        "json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&arn), "{out}");
    let (code, out, err) = fnctl(&["invoke", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cli layer"), "{out}");
    let (code, out, err) = fnctl(&["update-config", &name, "--clear-layers", "-o", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(&arn), "{out}");
    let (code, out, err) = fnctl(&["layer", "delete", &arn]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = fnctl(&["layer", "get", &lname, "1"]);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}
