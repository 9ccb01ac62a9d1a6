//! Hostile code packages are refused at upload with an error naming the entry, and nothing is stored.
use std::io::Write;

use lamina_e2e::*;

fn zip_with(build: impl FnOnce(&mut zip::ZipWriter<&mut std::io::Cursor<Vec<u8>>>)) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zw = zip::ZipWriter::new(&mut buf);
        zw.start_file("app.py", zip::write::SimpleFileOptions::default())
            .unwrap();
        zw.write_all(b"def handler(e, c):\n    return 1\n").unwrap();
        build(&mut zw);
        zw.finish().unwrap();
    }
    buf.into_inner()
}

fn file(zw: &mut zip::ZipWriter<&mut std::io::Cursor<Vec<u8>>>, name: &str, mode: u32) {
    let opts = zip::write::SimpleFileOptions::default().unix_permissions(mode);
    zw.start_file(name, opts).unwrap();
    zw.write_all(b"x").unwrap();
}

/// Sets the unix mode (file type included, which the zip crate will not write) of entry `name`.
fn with_mode(mut zip: Vec<u8>, name: &str, mode: u32) -> Vec<u8> {
    let mut at = zip
        .windows(4)
        .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
        .unwrap();
    while zip[at..at + 4] == [0x50, 0x4b, 0x01, 0x02] {
        let len = |o: usize| u16::from_le_bytes([zip[at + o], zip[at + o + 1]]) as usize;
        let (n, e, c) = (len(28), len(30), len(32));
        if &zip[at + 46..at + 46 + n] == name.as_bytes() {
            zip[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
            return zip;
        }
        at += 46 + n + e + c;
    }
    panic!("no entry {name}");
}

#[test]
fn hostile_zips_are_refused_with_the_entry_named() {
    run(async {
        let cluster = Cluster::start(1)?;
        let c = cluster.client().await?;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "traversal",
                zip_with(|z| file(z, "../evil.py", 0o644)),
                "../evil.py",
            ),
            (
                "deep traversal",
                zip_with(|z| file(z, "a/../../evil.py", 0o644)),
                "a/../../evil.py",
            ),
            (
                "absolute",
                zip_with(|z| file(z, "/etc/cron.d/evil", 0o644)),
                "/etc/cron.d/evil",
            ),
            (
                "symlink out",
                zip_with(|z| {
                    z.add_symlink(
                        "passwd",
                        "/etc/passwd",
                        zip::write::SimpleFileOptions::default(),
                    )
                    .unwrap()
                }),
                "outside the package",
            ),
            (
                "relative symlink out",
                zip_with(|z| {
                    z.add_symlink(
                        "up",
                        "../../../../etc",
                        zip::write::SimpleFileOptions::default(),
                    )
                    .unwrap()
                }),
                "outside the package",
            ),
            (
                "fifo",
                with_mode(zip_with(|z| file(z, "pipe", 0o644)), "pipe", 0o010_644),
                "fifo",
            ),
            (
                "device",
                with_mode(zip_with(|z| file(z, "sda", 0o600)), "sda", 0o060_600),
                "block device",
            ),
            (
                "zip bomb",
                zip_with(|z| {
                    let opts = zip::write::SimpleFileOptions::default().large_file(true);
                    z.start_file("zeros.bin", opts).unwrap();
                    let chunk = vec![0u8; 1 << 20];
                    for _ in 0..260 {
                        z.write_all(&chunk).unwrap();
                    }
                }),
                "250 MB",
            ),
        ];
        for (what, zip, needle) in cases {
            let name = unique("hostile");
            let err = c
                .create_function(spec(&name, "python3.11", "app.handler"), zip)
                .await
                .expect_err(what);
            let st = err
                .status()
                .unwrap_or_else(|| panic!("{what}: not an API error: {err}"));
            assert_eq!(st.code(), tonic::Code::InvalidArgument, "{what}: {st:?}");
            assert!(
                st.message().contains(needle),
                "{what}: {:?} lacks {needle:?}",
                st.message()
            );
        }
        assert!(c.list_functions().await?.is_empty(), "nothing was created");
        // Nothing was written outside the data directories.
        assert!(!cluster.dir.path().join("evil.py").exists());
        assert!(!std::path::Path::new("/etc/cron.d/evil").exists());
        Ok(())
    })
}

#[test]
fn duplicate_entries_are_refused() {
    run(async {
        let cluster = Cluster::start(0)?;
        let c = cluster.client().await?;
        // The zip crate will not write a duplicate: list the same entry twice in the central directory.
        let single = zip_of(&[("app.py", "def handler(e, c):\n    return 1\n", 0o644)]);
        let cd = single
            .windows(4)
            .position(|w| w == [0x50, 0x4b, 0x01, 0x02])
            .unwrap();
        let eocd = single
            .windows(4)
            .rposition(|w| w == [0x50, 0x4b, 0x05, 0x06])
            .unwrap();
        let entry = &single[cd..eocd];
        let mut doubled = single[..cd].to_vec();
        doubled.extend_from_slice(entry);
        doubled.extend_from_slice(entry);
        let mut end = single[eocd..].to_vec();
        end[8..10].copy_from_slice(&2u16.to_le_bytes());
        end[10..12].copy_from_slice(&2u16.to_le_bytes());
        end[12..16].copy_from_slice(&((entry.len() * 2) as u32).to_le_bytes());
        doubled.extend_from_slice(&end);
        let err = c
            .create_function(spec(&unique("dup"), "python3.11", "app.handler"), doubled)
            .await
            .expect_err("duplicate entries");
        assert!(err.to_string().contains("more than once"), "{err}");
        Ok(())
    })
}
