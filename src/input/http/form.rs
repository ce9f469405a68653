//! `application/x-www-form-urlencoded` (bodies and query strings) for the http input: pairs of
//! percent-decoded bytes (values stay bytes: a `msgpack=` field is binary).
//!
//! It must not interpret the fields (that is `decode`).

/// `application/x-www-form-urlencoded` pairs, values kept as bytes (msgpack is binary).
pub(super) fn parse_form(input: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    input
        .split(|b| *b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = match pair.iter().position(|b| *b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &[][..]),
            };
            (form_decode(k), form_decode(v))
        })
        .collect()
}

fn form_decode(s: &[u8]) -> Vec<u8> {
    let plus_as_space: Vec<u8> = s
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space).collect()
}
