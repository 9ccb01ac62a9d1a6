use super::*;

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str),
}

/// A layer tar with raw names (the tar builder would refuse `..` itself).
fn layer(dir: &Path, n: usize, entries: &[E]) -> PathBuf {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o6755);
        let (name, data, kind, link): (&str, &[u8], _, Option<&str>) = match e {
            E::File(n, d) => (n, d, tar::EntryType::Regular, None),
            E::Dir(n) => (n, b"", tar::EntryType::Directory, None),
            E::Sym(n, t) => (n, b"", tar::EntryType::Symlink, Some(t)),
            E::Hard(n, t) => (n, b"", tar::EntryType::Link, Some(t)),
            E::Char(n) => (n, b"", tar::EntryType::Char, None),
        };
        h.set_entry_type(kind);
        if let Some(t) = link {
            h.set_link_name(t).unwrap();
        }
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let p = dir.join(format!("layer-{n}"));
    fs::write(&p, b.into_inner().unwrap()).unwrap();
    p
}

fn apply(layers: &[&[E]]) -> (tempfile::TempDir, Result<u64, ImageCacheError>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir(&root).unwrap();
    let mut written = 0;
    for (i, l) in layers.iter().enumerate() {
        let blob = layer(dir.path(), i, l);
        if let Err(e) = apply_layer(&root, i, &blob, &mut written) {
            return (dir, Err(e));
        }
    }
    (dir, Ok(written))
}

#[test]
fn layers_apply_in_order_with_whiteouts() {
    let (dir, r) = apply(&[
        &[
            E::Dir("a"),
            E::File("a/keep", b"1"),
            E::File("a/gone", b"2"),
            E::Dir("o"),
            E::File("o/old", b"3"),
            E::File("f", b"v1"),
            E::Sym("lnk", "/usr/lib"),
            E::Hard("a/hard", "a/keep"),
        ],
        &[
            E::File("a/.wh.gone", b""),
            E::File("o/.wh..wh..opq", b""),
            E::File("o/new", b"4"),
            E::File("f", b"v2"),
        ],
    ]);
    r.unwrap();
    let root = dir.path().join("root");
    assert!(root.join("a/keep").is_file());
    assert!(!root.join("a/gone").exists());
    assert!(!root.join("o/old").exists());
    assert_eq!(fs::read(root.join("o/new")).unwrap(), b"4");
    assert_eq!(fs::read(root.join("f")).unwrap(), b"v2");
    assert_eq!(
        fs::read_link(root.join("lnk")).unwrap(),
        Path::new("/usr/lib")
    );
    assert_eq!(fs::read(root.join("a/hard")).unwrap(), b"1");
    // Set-id bits are dropped.
    let mode = fs::metadata(root.join("f")).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o755);
}

fn refused(layers: &[&[E]]) -> String {
    let (_dir, r) = apply(layers);
    r.unwrap_err().to_string()
}

#[test]
fn hostile_layers_are_refused_and_nothing_escapes() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let e = refused(&[&[E::Sym("evil", &target)], &[E::File("evil/owned", b"x")]]);
    assert!(e.contains("symlink"), "{e}");
    assert!(!outside.path().join("owned").exists());
    let e = refused(&[&[E::Sym("evil", &target)], &[E::File("evil/.wh.x", b"")]]);
    assert!(e.contains("symlink"), "{e}");
    let e = refused(&[&[E::File("../x", b"x")]]);
    assert!(e.contains("`..`"), "{e}");
    let e = refused(&[&[E::File("/x", b"x")]]);
    assert!(e.contains("absolute"), "{e}");
    let e = refused(&[&[E::Char("dev/sda")]]);
    assert!(e.contains("device"), "{e}");
    let e = refused(&[&[E::Sym("l", &target), E::Hard("h", "l")]]);
    assert!(e.contains("hard link"), "{e}");
}

#[test]
fn mount_points_replace_links() {
    let (dir, r) = apply(&[&[
        E::Sym("tmp", "/"),
        E::Dir("etc"),
        E::Sym("etc/hosts", "/etc/shadow"),
        E::File("proc", b"x"),
    ]]);
    r.unwrap();
    let root = dir.path().join("root");
    prepare_mount_points(&root).unwrap();
    for d in ["proc", "dev", "tmp", "etc"] {
        assert!(fs::symlink_metadata(root.join(d)).unwrap().is_dir(), "{d}");
    }
    for f in ETC_FILES {
        assert!(
            fs::symlink_metadata(root.join("etc").join(f))
                .unwrap()
                .is_file(),
            "{f}"
        );
    }
}

/// `.wh..` names the directory itself and `.wh...` its parent: at the top of a layer that is the
/// image root and the directory holding it. Both are refused and nothing above the root is removed.
#[test]
fn whiteouts_of_dot_and_dotdot_do_not_reach_above_the_root() {
    for name in [".wh..", ".wh...", ".wh.", "a/.wh..."] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        fs::write(dir.path().join("beside-root"), b"keep").unwrap();
        let mut written = 0;
        let l0 = layer(dir.path(), 0, &[E::Dir("a"), E::File("a/f", b"1")]);
        apply_layer(&root, 0, &l0, &mut written).unwrap();
        let l1 = layer(dir.path(), 1, &[E::File(name, b"")]);
        let e = apply_layer(&root, 1, &l1, &mut written)
            .unwrap_err()
            .to_string();
        assert!(e.contains("refused: whiteout"), "{name}: {e}");
        assert!(dir.path().join("beside-root").is_file(), "{name}");
        assert!(root.join("a/f").is_file(), "{name}");
    }
}
