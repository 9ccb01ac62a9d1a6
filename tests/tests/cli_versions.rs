//! fnctl's version and alias commands against a real cluster: publish, versions, alias create with
//! weights, invoke --qualifier, get/delete --qualifier, alias list/get/update/delete.
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use lamina_e2e::*;

fn fnctl(cluster: &Cluster, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin("fnctl"))
        .args(args)
        .envs(cluster.fnctl_env())
        .output()
        .expect("run fnctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs fnctl, expecting success; returns stdout.
fn ok(cluster: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = fnctl(cluster, args);
    assert_eq!(code, 0, "fnctl {args:?}: {out}{err}\n{}", cluster.logs());
    out
}

fn json_of(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn code_dir(parent: &std::path::Path, answer: &str) -> std::path::PathBuf {
    let dir = parent.join(unique("code"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("app.py"),
        format!("def handler(e, c):\n    return {{'code': '{answer}', 'version': c.function_version, 'arn': c.invoked_function_arn}}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn fnctl_publish_alias_and_invoke_with_a_qualifier() {
    require_root();
    let cluster = Cluster::start(1).unwrap();
    let name = unique("cliver");
    let one = code_dir(cluster.dir.path(), "one");
    let two = code_dir(cluster.dir.path(), "two");
    ok(
        &cluster,
        &[
            "create",
            &name,
            "--runtime",
            "python3.11",
            "--handler",
            "app.handler",
            "--code",
            one.to_str().unwrap(),
        ],
    );

    let v = json_of(&ok(
        &cluster,
        &["publish", &name, "--description", "first", "-o", "json"],
    ));
    assert_eq!(v["Version"], "1");
    assert_eq!(v["Description"], "first");
    assert!(
        v["FunctionArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{name}:1")),
        "{v}"
    );
    ok(
        &cluster,
        &["update-code", &name, "--code", two.to_str().unwrap()],
    );
    let table = ok(&cluster, &["publish", &name]);
    assert!(table.starts_with("VERSION"), "{table}");
    assert!(table.lines().nth(1).unwrap().starts_with("2 "), "{table}");

    let versions = json_of(&ok(&cluster, &["versions", &name, "-o", "json"]));
    let listed: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Version"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["$LATEST", "1", "2"]);

    // Alias with a weight; bad weights are refused locally or by the controller, naming the problem.
    let (code, _, err) = fnctl(
        &cluster,
        &[
            "alias",
            "create",
            &name,
            "live",
            "--version",
            "1",
            "--weight",
            "2",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("VERSION=WEIGHT"), "{err}");
    let (code, _, err) = fnctl(
        &cluster,
        &[
            "alias",
            "create",
            &name,
            "live",
            "--version",
            "1",
            "--weight",
            "2=1.5",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("between 0 and 1"), "{err}");
    let a = json_of(&ok(
        &cluster,
        &[
            "alias",
            "create",
            &name,
            "live",
            "--version",
            "1",
            "--weight",
            "2=0.25",
            "-o",
            "json",
        ],
    ));
    assert_eq!(a["Name"], "live");
    assert_eq!(a["FunctionVersion"], "1");
    assert_eq!(a["RoutingConfig"]["AdditionalVersionWeights"]["2"], 0.25);
    assert!(
        a["AliasArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{name}:live")),
        "{a}"
    );

    let list = json_of(&ok(&cluster, &["alias", "list", &name, "-o", "json"]));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["Name"], "live");
    let table = ok(&cluster, &["alias", "list", &name]);
    assert!(table.contains("2=0.25"), "{table}");

    // invoke --qualifier: the version's code, and ExecutedVersion.
    let r = json_of(&ok(
        &cluster,
        &["invoke", &name, "--qualifier", "1", "-o", "json"],
    ));
    assert_eq!(r["ExecutedVersion"], "1");
    assert_eq!(r["Payload"]["code"], "one");
    assert_eq!(r["Payload"]["version"], "1");
    let r = json_of(&ok(
        &cluster,
        &["invoke", &name, "--qualifier", "live", "-o", "json"],
    ));
    let ran = r["ExecutedVersion"].as_str().unwrap();
    assert!(ran == "1" || ran == "2", "{r}");
    assert_eq!(r["Payload"]["version"], ran);
    assert!(
        r["Payload"]["arn"].as_str().unwrap().ends_with(":live"),
        "{r}"
    );
    let (code, _, err) = fnctl(&cluster, &["invoke", &name, "--qualifier", "9"]);
    assert_eq!(code, 1);
    assert!(err.contains("no version 9"), "{err}");

    // get --qualifier, alias update/get, delete --qualifier.
    let g = json_of(&ok(
        &cluster,
        &["get", &name, "--qualifier", "2", "-o", "json"],
    ));
    assert_eq!(g["Version"], "2");
    let a = json_of(&ok(
        &cluster,
        &[
            "alias",
            "update",
            &name,
            "live",
            "--version",
            "2",
            "--no-weights",
            "-o",
            "json",
        ],
    ));
    assert_eq!(a["FunctionVersion"], "2");
    assert_eq!(
        a["RoutingConfig"]["AdditionalVersionWeights"],
        serde_json::json!({})
    );
    let r = json_of(&ok(
        &cluster,
        &["invoke", &name, "--qualifier", "live", "-o", "json"],
    ));
    assert_eq!(r["Payload"]["code"], "two");
    let (code, _, err) = fnctl(&cluster, &["delete", &name, "--qualifier", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("alias `live`"), "{err}");
    let out = ok(&cluster, &["delete", &name, "--qualifier", "1"]);
    assert!(out.contains("version 1"), "{out}");
    let (code, _, err) = fnctl(&cluster, &["get", &name, "--qualifier", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("no version 1"), "{err}");
    let yaml = ok(&cluster, &["alias", "get", &name, "live", "-o", "yaml"]);
    assert!(yaml.contains("FunctionVersion: '2'"), "{yaml}");
    let out = ok(&cluster, &["alias", "delete", &name, "live"]);
    assert!(out.contains("alias live"), "{out}");
    assert_eq!(
        json_of(&ok(&cluster, &["alias", "list", &name, "-o", "json"])),
        serde_json::json!([])
    );
    ok(&cluster, &["delete", &name]);
    let (code, _, err) = fnctl(&cluster, &["versions", &name]);
    assert_eq!(code, 1);
    assert!(err.contains("not found"), "{err}");
}
