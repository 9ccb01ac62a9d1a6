//! Real zip and tar bytes built here, each hostile case refused with the entry named.
use std::io::{Cursor, Write};

use ::zip::write::SimpleFileOptions;

use super::*;

enum Z<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn zip_of(entries: &[Z]) -> Vec<u8> {
    let mut w = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(::zip::CompressionMethod::Stored);
    for e in entries {
        match e {
            Z::File(n, d) => {
                w.start_file(*n, stored.unix_permissions(0o644)).unwrap();
                w.write_all(d).unwrap();
            }
            Z::Dir(n) => w.add_directory(*n, stored).unwrap(),
            Z::Link(n, t) => w.add_symlink(*n, *t, stored).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

/// Replaces every occurrence of `from` by `to` (same length) in the bytes of a stored zip.
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut i = 0;
    let mut hits = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            hits += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(hits > 0);
    bytes
}

fn zip_refused(bytes: &[u8]) -> String {
    match check_zip(bytes, 1 << 20) {
        Ok(l) => panic!("accepted: {l:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_normal_zip_is_listed() {
    let z = zip_of(&[
        Z::File("app.py", b"print(1)\n"),
        Z::Dir("lib/"),
        Z::File("lib/deep/m.py", b"x"),
        Z::Link("lib/cur", "deep"),
        Z::Link("lib/deep/up", "../../app.py"),
    ]);
    let l = check_zip(&z, 1 << 20).unwrap();
    assert_eq!(l.unzipped_size, 10);
    assert_eq!(l.entries.len(), 5);
    assert_eq!(l.entries[2].parts, ["lib", "deep", "m.py"]);
    assert_eq!(
        l.entries[3].kind,
        ZipKind::Symlink {
            target: "deep".into()
        }
    );
}

#[test]
fn zip_names_that_leave_the_root_or_are_not_names_are_refused() {
    for (placeholder, bad) in [
        (&b"xxxxxxxxxxxxxxxx"[..], &b"../../etc/passwd"[..]),
        (b"xxxxxx", b"/etc/x"),
        (b"xxxxxx", b"C:\\x.y"),
        (b"xxxxxxxx", b"ok\\..\\up"),
        (b"xxx", b"a\0b"),
        (b"xxx", b"a\xffb"),
    ] {
        let z = patch(
            zip_of(&[Z::File(std::str::from_utf8(placeholder).unwrap(), b"1")]),
            placeholder,
            bad,
        );
        let err = zip_refused(&z);
        let shown = String::from_utf8_lossy(bad).into_owned();
        assert!(err.contains(&format!("{shown:?}")), "{err}");
    }
}

#[test]
fn zip_special_files_and_duplicates_are_refused() {
    let mut z = zip_of(&[Z::File("pipe", b"")]);
    let cd = z
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    z[cd + 38..cd + 42].copy_from_slice(&(0o010_644u32 << 16).to_le_bytes());
    assert!(zip_refused(&z).contains("\"pipe\" refused: it is a fifo"));
    // The writer refuses a repeated name: write two, then rename the second in the bytes.
    let z = patch(
        zip_of(&[Z::File("a.py", b"1"), Z::File("b.py", b"2")]),
        b"b.py",
        b"a.py",
    );
    assert!(zip_refused(&z).contains("appears more than once"));
    // `./a.py` and `a.py` are the same path once unzipped.
    let z = zip_of(&[Z::File("a.py", b"1"), Z::File("./a.py", b"2")]);
    assert!(zip_refused(&z).contains("appears more than once"));
}

#[test]
fn zip_symlinks_out_or_unnormalized_are_refused() {
    for (name, target) in [
        ("abs", "/etc/passwd"),
        ("up", ".."),
        ("d/up2", "../.."),
        ("d/s", "x/../../.."),
        // Climbs out once `d/s` is itself a link: the worker refuses it, so does the upload.
        ("link", "d/s/.."),
    ] {
        let err = zip_refused(&zip_of(&[Z::Link(name, target)]));
        assert!(
            err.contains(&format!("{name:?} refused: symlink target")),
            "{err}"
        );
    }
    // (Patching a target in the bytes would break its CRC: the check itself is called here.)
    let err = zip_link_target(&[], b"a\xff").unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
    let long = "a/".repeat(MAX_LINK_TARGET / 2 + 1);
    assert!(zip_refused(&zip_of(&[Z::Link("l", &long)])).contains("longer than"));
    assert!(check_zip(&zip_of(&[Z::Link("d/ok", "../top")]), 1 << 20).is_ok());
}

#[test]
fn zip_writes_through_a_symlink_or_below_a_file_are_refused() {
    let err = zip_refused(&zip_of(&[
        Z::Dir("real/"),
        Z::Link("l", "real"),
        Z::File("l/f", b"x"),
    ]));
    assert!(
        err.contains("\"l/f\" refused: its parent \"l\" is a symlink"),
        "{err}"
    );
    let err = zip_refused(&zip_of(&[Z::File("f", b"x"), Z::File("f/g", b"y")]));
    assert!(err.contains("its parent \"f\" is a file"), "{err}");
}

#[test]
fn zip_counts_and_sizes_are_bounded() {
    let z = zip_of(&[
        Z::File("a", &[0u8; 700 * 1024]),
        Z::File("b", &[0u8; 700 * 1024]),
    ]);
    assert!(matches!(
        check_zip(&z, 1 << 20),
        Err(ArchiveError::UnzippedTooBig { max, .. }) if max == 1 << 20
    ));
    let mut w = ::zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(::zip::CompressionMethod::Stored);
    for i in 0..=MAX_ZIP_ENTRIES {
        w.start_file(format!("{i}"), stored).unwrap();
    }
    let z = w.finish().unwrap().into_inner();
    let err = check_zip(&z, 1 << 30).unwrap_err();
    assert!(
        matches!(err, ArchiveError::TooManyZipEntries { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("more than 100000 entries"));
    assert!(matches!(
        check_zip(b"not a zip", 1),
        Err(ArchiveError::NotAZip(_))
    ));
}

enum T<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8]),
    Sym(&'a [u8], &'a [u8]),
    Hard(&'a [u8], &'a [u8]),
    Char(&'a [u8]),
    Fifo(&'a [u8]),
}

/// A layer tar with raw names (the tar builder would refuse `..` itself).
fn tar_of(entries: &[T]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        let (name, data, kind, link): (&[u8], &[u8], _, Option<&[u8]>) = match e {
            T::File(n, d) => (n, d, tar::EntryType::Regular, None),
            T::Dir(n) => (n, b"", tar::EntryType::Directory, None),
            T::Sym(n, t) => (n, b"", tar::EntryType::Symlink, Some(t)),
            T::Hard(n, t) => (n, b"", tar::EntryType::Link, Some(t)),
            T::Char(n) => (n, b"", tar::EntryType::Char, None),
            T::Fifo(n) => (n, b"", tar::EntryType::Fifo, None),
        };
        h.set_entry_type(kind);
        if let Some(t) = link {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
        }
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn walk(layers: &[&[T]]) -> Result<LayerWalk, ArchiveError> {
    let mut w = LayerWalk::default();
    for (i, l) in layers.iter().enumerate() {
        w.layer(i, Cursor::new(tar_of(l)))?;
    }
    Ok(w)
}

#[test]
fn whiteouts_of_dot_dotdot_or_nothing_are_refused() {
    for name in [&b".wh.."[..], b".wh.", b".wh...", b"a/.wh..", b"a/.wh..."] {
        let err = walk(&[
            &[T::Dir(b"a"), T::File(b"a/f", b"1")],
            &[T::File(name, b"")],
        ])
        .unwrap_err()
        .to_string();
        let shown = String::from_utf8_lossy(name).into_owned();
        assert!(
            err.contains(&format!("layer 1 entry {shown:?} refused: whiteout")),
            "{err}"
        );
    }
    let w = walk(&[
        &[T::Dir(b"a"), T::File(b"a/f", b"12"), T::File(b"b", b"3")],
        &[T::File(b"a/.wh.f", b""), T::File(b".wh..wh..opq", b"")],
    ])
    .unwrap();
    assert_eq!(w.unpacked_size(), 0);
}

#[test]
fn layer_entries_that_escape_or_are_special_are_refused() {
    for (entries, want) in [
        (
            vec![T::File(b"../x", b"")],
            "\"../x\" refused: path contains `..`",
        ),
        (vec![T::File(b"/x", b"")], "\"/x\" refused: absolute path"),
        (vec![T::File(b"a\xff", b"")], "refused: name is not UTF-8"),
        (vec![T::Char(b"dev/null")], "device node"),
        (vec![T::Fifo(b"p")], "fifo"),
        (vec![T::Sym(b"l", b"a\xff")], "symlink target is not UTF-8"),
        (
            vec![T::Hard(b"h", b"missing")],
            "not a regular file of the image",
        ),
        (
            vec![
                T::Dir(b"d"),
                T::Sym(b"l", b"/etc"),
                T::File(b"l/passwd", b"x"),
            ],
            "\"l/passwd\" refused: its parent \"l\" is a symlink",
        ),
    ] {
        let err = walk(&[&entries]).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
    // A link planted by one layer and written through by the next is refused too.
    let err = walk(&[&[T::Sym(b"etc", b"/host")], &[T::File(b"etc/x", b"")]]).unwrap_err();
    assert!(err.to_string().contains("layer 1 entry \"etc/x\""), "{err}");
    // A symlink may point anywhere (it is only followed inside the sandbox).
    assert!(walk(&[&[T::Sym(b"l", b"/usr/bin")]]).is_ok());
}
