use super::*;

/// One entry of a layer: (path, kind, data or link target).
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
}

fn layer_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        let (name, data): (&str, &[u8]) = match e {
            E::File(n, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                (n, d)
            }
            E::Dir(n) => {
                h.set_entry_type(tar::EntryType::Directory);
                (n, b"")
            }
            E::Link(n, t) | E::Hard(n, t) => {
                h.set_entry_type(if matches!(e, E::Link(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_link_name(t).unwrap();
                (n, b"")
            }
            E::Char(n) => {
                h.set_entry_type(tar::EntryType::Char);
                (n, b"")
            }
        };
        h.set_size(data.len() as u64);
        // Raw names: the builder's own path checks would refuse `..` before the image could.
        let raw = name.as_bytes();
        h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn config_json(layers: &[Vec<u8>]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/run"], "Cmd": ["a"], "WorkingDir": "/w", "Env": ["K=V"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| format!("sha256:{}", sha(l))).collect::<Vec<_>>()},
    }))
    .unwrap()
}

fn outer(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

/// An OCI layout tar of `layers` (uncompressed).
fn oci(layers: &[Vec<u8>]) -> Vec<u8> {
    let config = config_json(layers);
    let desc = |mt: &str, b: &[u8]| serde_json::json!({"mediaType": mt, "digest": format!("sha256:{}", sha(b)), "size": b.len()});
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", &config),
        "layers": layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [desc("application/vnd.oci.image.manifest.v1+json", &manifest)],
    }))
    .unwrap();
    let mut files = vec![
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("index.json".to_string(), index),
        (format!("blobs/sha256/{}", sha(&manifest)), manifest),
        (format!("blobs/sha256/{}", sha(&config)), config),
    ];
    for l in layers {
        files.push((format!("blobs/sha256/{}", sha(l)), l.clone()));
    }
    outer(&files)
}

fn check(bytes: &[u8], max: u64) -> Result<CheckedImage, ImageError> {
    let mut up = ImageUpload::new(max)?;
    for chunk in bytes.chunks(1000) {
        up.push(chunk)?;
    }
    up.finish()
}

fn good_layers() -> Vec<Vec<u8>> {
    vec![
        layer_tar(&[
            E::Dir("bin"),
            E::File("bin/run", b"#!/bin/sh\n"),
            E::File("etc/gone", b"x"),
            E::Link("lib", "/usr/lib"),
            E::Hard("bin/run2", "bin/run"),
        ]),
        layer_tar(&[
            E::File("etc/.wh.gone", b""),
            E::File("bin/run", b"#!/bin/sh\necho\n"),
        ]),
    ]
}

#[test]
fn oci_layout_is_checked_and_resolved() {
    let layers = good_layers();
    let img = check(&oci(&layers), 1 << 20).unwrap();
    assert_eq!(img.layers.len(), 2);
    assert_eq!(img.layers[0].sha256, sha(&layers[0]));
    assert_eq!(img.read_layer(1).unwrap(), layers[1]);
    // bin/run (15 bytes, replaced) + bin/run2 (10, a hard link to the first run); etc/gone whited out.
    assert_eq!(img.unpacked_size, 15 + 10);
    let r = img.resolve(&ImageConfig::default());
    assert_eq!(r.entrypoint, ["/bin/run"]);
    assert_eq!(r.command, ["a"]);
    assert_eq!(r.working_directory, "/w");
    assert_eq!(r.env, ["K=V"]);
    let r = img.resolve(&ImageConfig {
        entrypoint: vec!["/other".into()],
        command: vec![],
        working_directory: "/x".into(),
    });
    assert_eq!(
        (r.entrypoint, r.command, r.working_directory),
        (vec!["/other".to_string()], vec![], "/x".to_string())
    );
}

#[test]
fn docker_save_archive_is_accepted() {
    let layers = good_layers();
    let config = config_json(&layers);
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": format!("{}.json", sha(&config)),
        "RepoTags": ["t:latest"],
        "Layers": ["l0/layer.tar", "l1/layer.tar"],
    }]))
    .unwrap();
    let tar = outer(&[
        ("manifest.json".into(), manifest),
        (format!("{}.json", sha(&config)), config),
        ("l0/layer.tar".into(), layers[0].clone()),
        ("l1/layer.tar".into(), layers[1].clone()),
    ]);
    let img = check(&tar, 1 << 20).unwrap();
    assert_eq!(img.manifest_sha256, sha(&img.manifest));
    assert_eq!(img.layers[1].sha256, sha(&layers[1]));
}

fn refused(entries: &[E]) -> String {
    let layers = vec![layer_tar(entries)];
    check(&oci(&layers), 1 << 20).unwrap_err().to_string()
}

#[test]
fn hostile_layers_are_refused() {
    let e = refused(&[E::File("../escape", b"x")]);
    assert!(e.contains("`..`"), "{e}");
    let e = refused(&[E::File("/abs", b"x")]);
    assert!(e.contains("absolute"), "{e}");
    let e = refused(&[E::Char("dev/evil")]);
    assert!(e.contains("device"), "{e}");
    let e = refused(&[E::Link("etc", "/etc"), E::File("etc/passwd", b"x")]);
    assert!(e.contains("symlink"), "{e}");
    let e = refused(&[E::Hard("x", "/etc/shadow")]);
    assert!(e.contains("hard link"), "{e}");
}

#[test]
fn digest_mismatch_and_size_are_refused() {
    let layers = good_layers();
    let mut tar = oci(&layers);
    // Flip a byte of the last layer's content (bin/run's data) inside the archive.
    let needle = b"#!/bin/sh\necho\n";
    let at = tar
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    tar[at + 2] = b'X';
    let e = check(&tar, 1 << 20).unwrap_err().to_string();
    assert!(e.contains("digest"), "{e}");
    let e = check(&oci(&layers), 100).unwrap_err();
    assert!(matches!(e, ImageError::TooBig { max: 100 }), "{e}");
    assert!(matches!(check(b"", 100), Err(ImageError::Empty)));
    let e = check(&outer(&[("x".into(), b"y".to_vec())]), 1 << 20).unwrap_err();
    assert!(matches!(e, ImageError::UnknownFormat), "{e}");
}
