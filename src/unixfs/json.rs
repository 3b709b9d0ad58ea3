//! DAG-JSON text of dag-cbor values, for showing scalars as file contents.

use ipld_core::ipld::Ipld;

/// A value as DAG-JSON (links as `{"/": cid}`, bytes as `{"/": {"bytes": base64}}`).
pub fn dag_json(v: &Ipld) -> String {
    fn esc(s: &str) -> String {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
    match v {
        Ipld::Null => "null".into(),
        Ipld::Bool(b) => b.to_string(),
        Ipld::Integer(i) => i.to_string(),
        Ipld::Float(f) => format!("{f:?}"),
        Ipld::String(s) => esc(s),
        Ipld::Bytes(b) => format!("{{\"/\":{{\"bytes\":\"{}\"}}}}", base64_std(b)),
        Ipld::Link(c) => format!("{{\"/\":\"{c}\"}}"),
        Ipld::List(l) => format!("[{}]", l.iter().map(dag_json).collect::<Vec<_>>().join(",")),
        Ipld::Map(m) => format!(
            "{{{}}}",
            m.iter().map(|(k, v)| format!("{}:{}", esc(k), dag_json(v))).collect::<Vec<_>>().join(",")
        ),
    }
}

fn base64_std(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            o.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    o // DAG-JSON bytes are unpadded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dag_json_of_values() {
        let v = Ipld::Map(
            [
                ("a".to_string(), Ipld::List(vec![Ipld::Integer(1), Ipld::String("x\"y".into())])),
                ("b".to_string(), Ipld::Bytes(b"hi".to_vec())),
            ]
            .into(),
        );
        assert_eq!(dag_json(&v), r#"{"a":[1,"x\"y"],"b":{"/":{"bytes":"aGk"}}}"#);
    }
}
