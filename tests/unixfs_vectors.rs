//! Every row of tests/vectors/unixfs.tsv: the importer must give Kubo's CIDs and block counts.

mod common;

use std::collections::HashSet;

use cidfs::block::Block;
use cidfs::importer::{DirBuilder, ImportOptions, LinkInfo, file::import_bytes};
use cidfs::unixfs::Metadata;

fn options(mode: &str) -> ImportOptions {
    match mode {
        "kubo-v0" => ImportOptions::default(),
        "kubo-v1" => ImportOptions::kubo_v1(),
        "v1-2025" => ImportOptions::unixfs_v1_2025(),
        other => panic!("unknown mode {other}"),
    }
}

fn file(opts: &ImportOptions, data: &[u8], sink: &mut Vec<Block>) -> LinkInfo {
    import_bytes(opts, Metadata::default(), data, sink).unwrap()
}

fn dir(opts: &ImportOptions, files: &[(String, Vec<u8>)], sink: &mut Vec<Block>) -> LinkInfo {
    let mut d = DirBuilder::new(Metadata::default());
    for (name, data) in files {
        let link = file(opts, data, sink);
        d.insert(name.clone(), link);
    }
    d.finish(opts, sink).unwrap()
}

fn import(input: &str, opts: &ImportOptions) -> (LinkInfo, Vec<Block>) {
    let mut sink = Vec::new();
    let root = match input {
        "empty" => file(opts, b"", &mut sink),
        "a" => file(opts, b"a", &mut sink),
        "p251" => file(opts, &common::p251(), &mut sink),
        "p7" => file(opts, &common::p7(), &mut sink),
        "dir" => dir(
            opts,
            &[("hello.txt".into(), b"hello\n".to_vec()), ("world.txt".into(), b"world\n".to_vec())],
            &mut sink,
        ),
        "hamt6000" => {
            let files: Vec<_> =
                (0..6000).map(|i| (format!("entry-{i:04}.txt"), format!("entry {i}\n").into_bytes())).collect();
            dir(opts, &files, &mut sink)
        }
        other => panic!("unknown input {other}"),
    };
    (root, sink)
}

#[test]
fn every_unixfs_vector_matches() {
    let rows = common::rows("unixfs.tsv", '\t');
    assert!(rows.len() >= 17, "expected the full vector table, got {} rows", rows.len());
    let mut failures = Vec::new();
    for row in &rows {
        let [input, mode, want_cid, want_blocks] = &row[..] else { panic!("bad row {row:?}") };
        let (root, blocks) = import(input, &options(mode));
        let unique: HashSet<_> = blocks.iter().map(|b| *b.cid()).collect();
        let got = (root.cid.to_string(), unique.len().to_string());
        if got != (want_cid.clone(), want_blocks.clone()) {
            failures.push(format!(
                "{input} {mode}: got {} ({} blocks), want {want_cid} ({want_blocks} blocks)",
                got.0, got.1
            ));
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}
