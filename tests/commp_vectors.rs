//! Piece commitments against the published vectors (`tests/vectors/commp-*`): payloads of
//! N zero bytes and of N bytes `0xCC` (go-fil-commp-hashhash's testdata, piece CID v1 and
//! padded size), and FRC-0069's examples (v1 and v2, padding and height).

mod common;

use cidfs::filecoin::commp::{Piece, commp};

/// The payloads FRC-0069's table names: `D`, `empty`, `N x 0xHH`, joined by ` || `.
fn payload(spec: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in spec.split(" || ") {
        match part {
            "empty" => {}
            "D" => (0..4u8).for_each(|b| out.extend(std::iter::repeat_n(b, 127))),
            _ => {
                let (n, byte) = part.split_once(" x 0x").expect("N x 0xHH");
                let byte = u8::from_str_radix(byte, 16).unwrap();
                out.extend(std::iter::repeat_n(byte, n.parse().unwrap()));
            }
        }
    }
    out
}

#[test]
fn repeated_byte_payloads_match_go_fil_commp_hashhash() {
    let mut checked = 0;
    for (file, byte) in [("commp-zero.csv", 0u8), ("commp-0xcc.csv", 0xcc)] {
        for row in common::rows(file, ',') {
            let (len, padded, v1) = (row[0].parse::<usize>().unwrap(), row[1].parse::<u64>().unwrap(), &row[2]);
            let piece = commp(&vec![byte; len]);
            assert_eq!(piece.cid_v1().to_string(), *v1, "{file}: {len} bytes");
            assert_eq!(piece.padded_size(), padded, "{file}: {len} bytes");
            checked += 1;
        }
    }
    assert!(checked >= 36, "only {checked} rows");
}

#[test]
fn frc0069_piece_cids_v1_and_v2() {
    let rows = common::rows("commp-frc0069.tsv", '\t');
    assert!(rows.len() >= 7);
    for row in rows {
        let data = payload(&row[0]);
        let piece = commp(&data);
        assert_eq!(piece.padded_size(), row[1].parse::<u64>().unwrap(), "{}", row[0]);
        assert_eq!(piece.padding(), row[2].parse::<u64>().unwrap(), "{}", row[0]);
        assert_eq!(u64::from(piece.height()), row[3].parse::<u64>().unwrap(), "{}", row[0]);
        assert_eq!(piece.cid_v1().to_string(), row[4], "{}", row[0]);
        assert_eq!(piece.cid_v2().to_string(), row[5], "{}", row[0]);
        assert_eq!(Piece::from_cid_v2(&row[5].parse().unwrap()), Some(piece), "{} reads back", row[0]);
    }
}
