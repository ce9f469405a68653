use super::*;
use crate::event::{EntryIter, EventTime};
use bytes::BufMut;
use serde_json::{json, Value};

const T: EventTime = EventTime {
    secs: 1_700_000_000,
    nanos: 123,
};

fn rec(v: &Value) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

fn packed(entries: &[(EventTime, Value)]) -> Vec<u8> {
    let mut b = BytesMut::new();
    for (t, v) in entries {
        write_entry(&mut b, *t, &rec(v));
    }
    b.to_vec()
}

fn records(entries: &[u8]) -> Vec<(EventTime, Value)> {
    EntryIter::new(entries)
        .map(|e| {
            let e = e.unwrap();
            (e.time, rmp_serde::from_slice(e.record).unwrap())
        })
        .collect()
}

fn opt_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_u8(0x80 | pairs.len() as u8);
    for (k, v) in pairs {
        write_str(&mut b, k);
        b.extend_from_slice(v);
    }
    b.to_vec()
}

fn msgpack_str(s: &[u8]) -> Vec<u8> {
    let mut b = BytesMut::new();
    write_str_bytes(&mut b, s);
    b.to_vec()
}

fn msgpack_bin(s: &[u8]) -> Vec<u8> {
    let mut b = vec![0xc6];
    b.extend((s.len() as u32).to_be_bytes());
    b.extend(s);
    b
}

fn decode_one(bytes: &[u8]) -> Result<Frame, ForwardError> {
    let mut d = FrameDecoder::new(DecoderConfig::default());
    let mut buf = BytesMut::from(bytes);
    let f = d.decode(&mut buf)?.expect("complete frame");
    assert!(buf.is_empty(), "frame not fully consumed");
    Ok(f)
}

fn events(bytes: &[u8]) -> EventFrame {
    match decode_one(bytes).unwrap() {
        Frame::Events(e) => e,
        Frame::Heartbeat => panic!("heartbeat"),
    }
}

#[test]
fn message_mode_with_int_and_float_and_ext8_times() {
    let r = rec(&json!({"msg": "hi"}));
    for time in [
        vec![0xce, 0x65, 0x53, 0xf1, 0x00],
        {
            let mut v = vec![0xcb];
            v.extend(1.25f64.to_bits().to_be_bytes());
            v
        },
        vec![0xc7, 8, 0, 0, 0, 0, 9, 0, 0, 0, 1],
        vec![0xd7, 0, 0, 0, 0, 9, 0, 0, 0, 1],
    ] {
        let mut f = vec![0x94];
        f.extend(msgpack_str(b"app.log"));
        f.extend(&time);
        f.extend(&r);
        f.extend(opt_map(&[("chunk", &msgpack_str(b"abc=\n"))]));
        let e = events(&f);
        assert_eq!(e.mode, EventMode::Message);
        assert_eq!(e.tag, "app.log");
        assert_eq!(e.count, 1);
        assert_eq!(e.options.chunk.as_deref(), Some(&b"abc=\n"[..]));
        assert_eq!(e.wire_size, f.len());
        let got = records(&e.entries);
        assert_eq!(got[0].1, json!({"msg": "hi"}));
        assert!(got[0].0.secs > 0);
    }
}

#[test]
fn forward_mode_normalizes_times_and_keeps_records() {
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.push(0x92);
    f.extend(packed(&[(T, json!({"a": 1}))]));
    f.extend([0x92, 0x2a]); // int time 42
    f.extend(rec(&json!({"b": [1, 2]})));
    f.extend(opt_map(&[("size", &[0x02])]));
    let e = events(&f);
    assert_eq!(e.mode, EventMode::Forward);
    assert_eq!(e.count, 2);
    assert_eq!(e.options.size, Some(2));
    let got = records(&e.entries);
    assert_eq!(got[0], (T, json!({"a": 1})));
    assert_eq!(
        got[1],
        (EventTime { secs: 42, nanos: 0 }, json!({"b": [1, 2]}))
    );
    // normalized to fixext8 times
    assert_eq!(e.entries[1], 0xd7);
}

#[test]
fn packed_forward_bin_and_str_pass_through_zero_copy() {
    let entries = packed(&[(T, json!({"a": 1})), (T, json!({"b": "x"}))]);
    for as_bin in [false, true] {
        let mut f = vec![0x93];
        f.extend(msgpack_str(b"tag.x"));
        f.extend(if as_bin {
            msgpack_bin(&entries)
        } else {
            msgpack_str(&entries)
        });
        f.extend(opt_map(&[
            ("chunk", &msgpack_str(b"c1")),
            ("size", &[0x02]),
        ]));
        let mut d = FrameDecoder::new(DecoderConfig::default());
        let mut buf = BytesMut::from(&f[..]);
        let raw = d.next_frame(&mut buf).unwrap().unwrap();
        let Frame::Events(e) = decode_frame(raw.clone(), d.config(), EventTime::now()).unwrap()
        else {
            panic!()
        };
        assert_eq!(e.mode, EventMode::PackedForward);
        assert_eq!(e.count, 2);
        assert!(!e.has_zero_time);
        assert_eq!(&e.entries[..], &entries[..]);
        // a slice of the received frame, not a copy
        let base = raw.as_ptr() as usize;
        let p = e.entries.as_ptr() as usize;
        assert!(p >= base && p < base + raw.len());
    }
}

#[test]
fn packed_forward_without_options_and_with_text_compression() {
    let entries = packed(&[(T, json!({"a": 1}))]);
    let mut f = vec![0x92];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(&entries));
    assert_eq!(events(&f).options, FrameOptions::default());
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(&entries));
    f.extend(opt_map(&[("compressed", &msgpack_str(b"text"))]));
    let e = events(&f);
    assert_eq!(e.mode, EventMode::PackedForward);
    assert_eq!(e.options.compressed, Some(Compression::Text));
    assert_eq!(e.count, 1);
}

#[test]
fn compressed_packed_forward_multi_member() {
    let a = packed(&[(T, json!({"n": 1}))]);
    let b = packed(&[(T, json!({"n": 2})), (T, json!({"n": 3}))]);
    let mut gz = gzip_entries(&a).unwrap().to_vec();
    gz.extend_from_slice(&gzip_entries(&b).unwrap());
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(&gz));
    f.extend(opt_map(&[("compressed", &msgpack_str(b"gzip"))]));
    let e = events(&f);
    assert_eq!(e.mode, EventMode::CompressedPackedForward);
    assert_eq!(e.count, 3);
    let ns: Vec<_> = records(&e.entries)
        .iter()
        .map(|r| r.1["n"].clone())
        .collect();
    assert_eq!(ns, vec![json!(1), json!(2), json!(3)]);
}

#[test]
fn gzip_bomb_and_bad_gzip_are_refused() {
    let huge = vec![0u8; 4 * 1024 * 1024];
    let gz = gzip_entries(&huge).unwrap();
    assert!(gz.len() < 64 * 1024);
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(&gz));
    f.extend(opt_map(&[("compressed", &msgpack_str(b"gzip"))]));
    let cfg = DecoderConfig {
        decompression_size_limit: 1024 * 1024,
        ..DecoderConfig::default()
    };
    let err = decode_frame(Bytes::from(f), &cfg, EventTime::now()).unwrap_err();
    assert!(matches!(err, ForwardError::DecompressionLimit { limit } if limit == 1024 * 1024));

    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(b"definitely not gzip"));
    f.extend(opt_map(&[("compressed", &msgpack_str(b"gzip"))]));
    assert!(matches!(decode_one(&f), Err(ForwardError::Gzip(_))));

    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(b""));
    f.extend(opt_map(&[("compressed", &msgpack_str(b"zstd"))]));
    assert!(matches!(
        decode_one(&f),
        Err(ForwardError::UnsupportedCompression(s)) if s == "zstd"
    ));
}

#[test]
fn zero_and_nil_times_are_replaced_by_now() {
    let now = EventTime { secs: 77, nanos: 0 };
    let mut entries = packed(&[(EventTime::default(), json!({"a": 1}))]);
    entries.extend([0x92, 0xc0]);
    entries.extend(rec(&json!({"b": 2})));
    entries.extend(packed(&[(T, json!({"c": 3}))]));
    let mut f = vec![0x92];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(&entries));
    let Frame::Events(e) = decode_frame(Bytes::from(f), &DecoderConfig::default(), now).unwrap()
    else {
        panic!()
    };
    assert!(e.has_zero_time);
    let times: Vec<_> = records(&e.entries).iter().map(|r| r.0).collect();
    assert_eq!(times, vec![now, now, T]);
}

#[test]
fn heartbeat_is_recognized() {
    let mut d = FrameDecoder::new(DecoderConfig::default());
    let mut buf = BytesMut::from(&[0xc0, 0xc0][..]);
    assert!(matches!(
        d.decode(&mut buf).unwrap(),
        Some(Frame::Heartbeat)
    ));
    assert!(matches!(
        d.decode(&mut buf).unwrap(),
        Some(Frame::Heartbeat)
    ));
    assert!(d.decode(&mut buf).unwrap().is_none());
}

#[test]
fn oversized_frame_is_refused_from_its_header() {
    let cfg = DecoderConfig {
        max_frame_size: 1000,
        ..DecoderConfig::default()
    };
    let mut d = FrameDecoder::new(cfg);
    // Only the header arrived: tag and a str32 claiming 1 MiB.
    let mut buf = BytesMut::from(&[0x93, 0xa1, b't', 0xdb, 0x00, 0x10, 0x00, 0x00][..]);
    match d.next_frame(&mut buf) {
        Err(ForwardError::FrameTooLarge { size, limit }) => {
            assert!(size > 1 << 20);
            assert_eq!(limit, 1000);
        }
        other => panic!("{other:?}"),
    }
    // Hard cap applies even with a huge configured limit.
    let cfg = DecoderConfig {
        max_frame_size: u64::MAX,
        ..DecoderConfig::default()
    };
    let mut d = FrameDecoder::new(cfg);
    let mut buf = BytesMut::from(&[0x93, 0xa1, b't', 0xdb, 0xff, 0xff, 0xff, 0xff][..]);
    assert!(matches!(
        d.next_frame(&mut buf),
        Err(ForwardError::FrameTooLarge {
            limit: HARD_MAX_FRAME_SIZE,
            ..
        })
    ));
}

#[test]
fn frames_split_at_every_byte_boundary() {
    let entries = packed(&[(T, json!({"a": 1})), (T, json!({"b": [1, {"c": null}]}))]);
    let mut stream = Vec::new();
    // PackedForward, heartbeat, Forward, Message
    stream.push(0x93);
    stream.extend(msgpack_str(b"p"));
    stream.extend(msgpack_bin(&entries));
    stream.extend(opt_map(&[("chunk", &msgpack_str(b"k1"))]));
    stream.push(0xc0);
    stream.push(0x92);
    stream.extend(msgpack_str(b"f"));
    stream.push(0x92);
    stream.extend(&entries);
    stream.push(0x93);
    stream.extend(msgpack_str(b"m"));
    stream.extend([0x01]);
    stream.extend(rec(&json!({"x": "y"})));
    let feed = |parts: Vec<&[u8]>| {
        let mut d = FrameDecoder::new(DecoderConfig::default());
        let mut buf = BytesMut::new();
        let mut tags = Vec::new();
        for part in parts {
            buf.extend_from_slice(part);
            while let Some(f) = d.decode(&mut buf).unwrap() {
                tags.push(match f {
                    Frame::Heartbeat => "hb".to_string(),
                    Frame::Events(e) => format!("{}:{}", e.tag, e.count),
                });
            }
        }
        assert!(buf.is_empty());
        tags
    };
    let expected = vec!["p:2", "hb", "f:2", "m:1"];
    for cut in 0..=stream.len() {
        assert_eq!(
            feed(vec![&stream[..cut], &stream[cut..]]),
            expected,
            "cut at {cut}"
        );
    }
    // one byte at a time: the decoder resumes its scan on every call
    assert_eq!(feed(stream.chunks(1).collect()), expected);
}

#[test]
fn invalid_events_are_skipped_or_refused() {
    // Forward mode: one good entry, one with a string time, one with a non-map record.
    let mut f = vec![0x92];
    f.extend(msgpack_str(b"t"));
    f.push(0x93);
    f.extend(packed(&[(T, json!({"ok": 1}))]));
    f.extend([0x92, 0xa1, b'x', 0x80]);
    f.extend([0x92, 0x01, 0x05]);
    let e = events(&f);
    assert_eq!(e.count, 1);
    assert_eq!(e.skipped, 2);
    assert!(matches!(e.first_skip_error, Some(EntryError::BadTime(_))));

    let strict = DecoderConfig {
        skip_invalid_event: false,
        ..DecoderConfig::default()
    };
    assert!(matches!(
        decode_frame(Bytes::from(f.clone()), &strict, T),
        Err(ForwardError::BadEntries(_))
    ));

    // Message mode with an invalid record: dropped, count 0.
    let mut m = vec![0x93];
    m.extend(msgpack_str(b"t"));
    m.extend([0x01, 0x02]);
    let e = events(&m);
    assert_eq!((e.count, e.skipped), (0, 1));

    // PackedForward with a bad entry among good ones: the good ones are kept.
    let mut entries = packed(&[(T, json!({"a": 1}))]);
    entries.extend([0x92, 0x01, 0x05]);
    let mut p = vec![0x92];
    p.extend(msgpack_str(b"t"));
    p.extend(msgpack_bin(&entries));
    let e = events(&p);
    assert_eq!((e.count, e.skipped), (1, 1));

    // Structurally broken stream inside entries: always an error.
    let mut entries = packed(&[(T, json!({"a": 1}))]);
    entries.extend([0x92, 0x01, 0x81, 0xa1]);
    let mut p = vec![0x92];
    p.extend(msgpack_str(b"t"));
    p.extend(msgpack_bin(&entries));
    assert!(matches!(decode_one(&p), Err(ForwardError::BadEntries(_))));
}

#[test]
fn bad_shapes_are_errors() {
    // not an array
    assert!(matches!(
        decode_one(b"GET / HTTP/1.1\r\n"),
        Err(ForwardError::NotAFrame(b'G'))
    ));
    // wrong arity
    assert!(matches!(
        decode_one(&[0x91, 0xa1, b't']),
        Err(ForwardError::BadArity(1))
    ));
    // tag not a string
    assert!(matches!(
        decode_one(&[0x92, 0x01, 0x90]),
        Err(ForwardError::BadTag)
    ));
    // option not a map
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(b""));
    f.push(0x01);
    assert!(matches!(decode_one(&f), Err(ForwardError::BadOption(_))));
    // chunk not a string
    let mut f = vec![0x93];
    f.extend(msgpack_str(b"t"));
    f.extend(msgpack_bin(b""));
    f.extend(opt_map(&[("chunk", &[0x05])]));
    assert!(matches!(decode_one(&f), Err(ForwardError::BadOption(_))));
    // 0xc1 inside a frame
    let mut d = FrameDecoder::new(DecoderConfig::default());
    let mut buf = BytesMut::from(&[0x92, 0xa1, b't', 0xc1][..]);
    assert!(matches!(
        d.next_frame(&mut buf),
        Err(ForwardError::Msgpack(_))
    ));
}

#[test]
fn encode_then_decode_round_trip() {
    let entries = packed(&[(T, json!({"a": 1})), (T, json!({"b": 2}))]);
    for compression in [Compression::Text, Compression::Gzip] {
        let body = match compression {
            Compression::Gzip => gzip_entries(&entries).unwrap(),
            Compression::Text => Bytes::from(entries.clone()),
        };
        let parts =
            encode_packed_forward("app.x", &body, 2, Some(b"Q2h1bms=\n"), compression).unwrap();
        assert_eq!(parts.header[0], 0x93);
        assert_eq!(parts.header[parts.header.len() - 5], 0xdb);
        let mut wire = parts.header.to_vec();
        wire.extend_from_slice(&body);
        wire.extend_from_slice(&parts.trailer);
        let e = events(&wire);
        assert_eq!(e.tag, "app.x");
        assert_eq!(e.count, 2);
        assert_eq!(e.options.size, Some(2));
        assert_eq!(e.options.chunk.as_deref(), Some(&b"Q2h1bms=\n"[..]));
        assert_eq!(&e.entries[..], &entries[..]);
        let expected_mode = match compression {
            Compression::Gzip => EventMode::CompressedPackedForward,
            Compression::Text => EventMode::PackedForward,
        };
        assert_eq!(e.mode, expected_mode);
    }
}

#[test]
fn ack_round_trip_and_partial_reads() {
    let chunk = b"p8n9gmxTQVC8/nh2wlKKeQ==\n";
    let ack = encode_ack(chunk);
    // Matches what a msgpack library produces for {"ack": chunk}.
    let expected =
        rmp_serde::to_vec_named(&json!({"ack": std::str::from_utf8(chunk).unwrap()})).unwrap();
    assert_eq!(&ack[..], &expected[..]);
    let mut buf = BytesMut::new();
    for (i, b) in ack.iter().enumerate() {
        assert!(decode_ack(&mut buf).unwrap().is_none(), "byte {i}");
        buf.put_u8(*b);
    }
    buf.extend_from_slice(&ack);
    assert_eq!(decode_ack(&mut buf).unwrap().unwrap(), &chunk[..]);
    assert_eq!(decode_ack(&mut buf).unwrap().unwrap(), &chunk[..]);
    assert!(buf.is_empty());
    let mut wrong = BytesMut::from(&rmp_serde::to_vec_named(&json!({"nope": 1})).unwrap()[..]);
    assert!(matches!(
        decode_ack(&mut wrong),
        Err(ForwardError::BadAck(_))
    ));
}

proptest::proptest! {
    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let mut d = FrameDecoder::new(DecoderConfig { max_frame_size: 4096, ..DecoderConfig::default() });
        let mut buf = BytesMut::from(&data[..]);
        for _ in 0..8 {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                _ => break,
            }
        }
        let _ = decode_frame(Bytes::from(data.clone()), &DecoderConfig::default(), EventTime::now());
        let mut b = BytesMut::from(&data[..]);
        let _ = decode_ack(&mut b);
        let _ = super::super::Helo::parse(&data);
    }

    #[test]
    fn garbage_after_valid_prefix_never_panics(
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        arity in 2u8..5,
    ) {
        let mut data = vec![0x90 | arity, 0xa1, b't'];
        data.extend(tail);
        let _ = decode_frame(Bytes::from(data), &DecoderConfig::default(), EventTime::now());
    }
}

/// `{"k": {"k": ... 1}}` nested `levels` maps deep.
fn deep_record(levels: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for _ in 0..levels {
        v.extend_from_slice(&[0x81, 0xa1, b'k']);
    }
    v.push(0x01);
    v
}

#[test]
fn records_over_the_depth_limit_are_dropped_in_every_mode_or_refused() {
    let deep = deep_record(201);
    let mut deep_entry = BytesMut::new();
    write_entry(&mut deep_entry, T, &deep);
    let good = packed(&[(T, json!({"a": 1}))]);
    let mut both = good.clone();
    both.extend_from_slice(&deep_entry);

    let mut message = vec![0x93];
    message.extend(msgpack_str(b"t"));
    message.extend([0xce, 0x65, 0x53, 0xf1, 0x00]);
    message.extend(&deep);

    let mut forward = vec![0x92];
    forward.extend(msgpack_str(b"t"));
    forward.push(0x92);
    forward.extend(&both);

    let mut packed_fwd = vec![0x92];
    packed_fwd.extend(msgpack_bin(&both));
    packed_fwd.splice(1..1, msgpack_str(b"t"));

    let mut compressed = vec![0x93];
    compressed.extend(msgpack_str(b"t"));
    compressed.extend(msgpack_bin(&gzip_entries(&both).unwrap()));
    compressed.extend(opt_map(&[("compressed", &msgpack_str(b"gzip"))]));

    let strict = DecoderConfig {
        skip_invalid_event: false,
        ..DecoderConfig::default()
    };
    assert!(frame_is_gzip(&Bytes::from(compressed.clone())));
    assert!(!frame_is_gzip(&Bytes::from(packed_fwd.clone())));
    assert!(!frame_is_gzip(&Bytes::from(message.clone())));
    for (name, frame, kept) in [
        ("Message", &message, 0),
        ("Forward", &forward, 1),
        ("PackedForward", &packed_fwd, 1),
        ("CompressedPackedForward", &compressed, 1),
    ] {
        let e = events(frame);
        assert_eq!((e.count, e.skipped), (kept, 1), "{name}");
        assert!(
            matches!(e.first_skip_error, Some(EntryError::TooDeep(_))),
            "{name}: {:?}",
            e.first_skip_error
        );
        assert_eq!(records(&e.entries).len(), kept as usize, "{name}");
        assert!(
            matches!(
                decode_frame(Bytes::from(frame.clone()), &strict, T),
                Err(ForwardError::BadEntries(EntryError::TooDeep(_)))
            ),
            "{name} strict"
        );
    }

    // At the limit's edge: 61 nested maps decode in the outputs, so they are kept.
    let mut ok = vec![0x93];
    ok.extend(msgpack_str(b"t"));
    ok.extend([0xce, 0x65, 0x53, 0xf1, 0x00]);
    ok.extend(deep_record(61));
    assert_eq!(events(&ok).count, 1);
    assert!(crate::output::format::record_to_json(&deep_record(61)).is_ok());
    assert!(crate::output::format::record_to_json(&deep_record(70)).is_err());
}

fn wire_with_origins(
    entries: &[u8],
    count: u32,
    chunk: Option<&[u8]>,
    origins: &[Segment],
) -> Vec<u8> {
    let parts = encode_packed_forward_with_origins(
        "app.x",
        entries,
        count,
        chunk,
        Compression::Text,
        origins,
    )
    .unwrap();
    let mut wire = parts.header.to_vec();
    wire.extend_from_slice(entries);
    wire.extend_from_slice(&parts.trailer);
    wire
}

fn seg(origin: Option<&'static [u8]>, len: usize, count: u32) -> Segment {
    Segment {
        origin: origin.map(Bytes::from_static),
        len,
        count,
    }
}

#[test]
fn origins_round_trip_and_unlabelled_runs_get_ids_from_the_frame_chunk() {
    let one = packed(&[(T, json!({"a": 1}))]).len();
    let entries = packed(&[
        (T, json!({"a": 1})),
        (T, json!({"a": 2})),
        (T, json!({"a": 3})),
        (T, json!({"a": 4})),
    ]);
    let sent = [
        seg(Some(b"client-1"), 2 * one, 2),
        seg(None, one, 1),
        seg(Some(b"client-2"), one, 1),
    ];
    let e = events(&wire_with_origins(&entries, 4, Some(b"frame"), &sent));
    let frame_label = Bytes::from_static(b"frame");
    assert_eq!(
        e.segments,
        vec![
            seg(Some(b"client-1"), 2 * one, 2),
            Segment {
                origin: Some(origin::part_id(&frame_label, 1, 3)),
                len: one,
                count: 1
            },
            seg(Some(b"client-2"), one, 1),
        ]
    );
    let batch = e.into_batch("app.x".into());
    assert_eq!(batch.origin_segments().len(), 3);
    // Without a chunk nothing is sent; without labels neither.
    let e = events(&wire_with_origins(&entries, 4, None, &sent));
    assert!(e.segments.is_empty() && e.options.origins.is_none());
    let unlabelled = [seg(None, 4 * one, 4)];
    let e = events(&wire_with_origins(&entries, 4, Some(b"f"), &unlabelled));
    assert!(e.segments.is_empty() && e.options.origins.is_none());
}

#[test]
fn origins_that_do_not_match_the_entries_refuse_the_frame() {
    let one = packed(&[(T, json!({"a": 1}))]).len();
    let entries = packed(&[(T, json!({"a": 1})), (T, json!({"a": 2}))]);
    let long: &'static [u8] = &[b'x'; origin::MAX_ORIGIN_LEN + 1];
    for bad in [
        // Short of the entries, past them, inside an entry, empty run, too long an id.
        vec![seg(Some(b"a"), one, 1)],
        vec![seg(Some(b"a"), 3 * one, 3)],
        vec![seg(Some(b"a"), one + 1, 1), seg(None, one - 1, 1)],
        vec![seg(Some(b"a"), 0, 0), seg(None, 2 * one, 2)],
        vec![seg(Some(long), 2 * one, 2)],
        vec![seg(Some(b""), 2 * one, 2)],
    ] {
        let wire = wire_with_origins(&entries, 2, Some(b"frame"), &bad);
        match decode_one(&wire) {
            Err(ForwardError::BadOption(why)) => assert!(why.contains(ORIGINS_OPTION), "{why}"),
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    // Not an array of pairs.
    let mut wire = BytesMut::new();
    write_array_header(&mut wire, 3);
    write_str(&mut wire, "t");
    write_str_bytes(&mut wire, &entries);
    wire.extend_from_slice(&opt_map(&[
        ("chunk", &msgpack_str(b"c")),
        (ORIGINS_OPTION, &msgpack_str(b"nope")),
    ]));
    assert!(matches!(decode_one(&wire), Err(ForwardError::BadOption(_))));
}

#[test]
fn origins_of_rewritten_entries_are_ignored() {
    // Message mode rewrites the entry: the sender's byte counts no longer hold.
    let mut wire = BytesMut::new();
    write_array_header(&mut wire, 4);
    write_str(&mut wire, "t");
    T.write_msgpack(&mut wire);
    wire.extend_from_slice(&rec(&json!({"a": 1})));
    let mut origins = BytesMut::new();
    write_array_header(&mut origins, 1);
    write_array_header(&mut origins, 2);
    write_str(&mut origins, "client");
    write_u32(&mut origins, 999);
    wire.extend_from_slice(&opt_map(&[
        ("chunk", &msgpack_str(b"c")),
        (ORIGINS_OPTION, &origins),
    ]));
    let e = events(&wire);
    assert_eq!(e.count, 1);
    assert!(e.segments.is_empty());
}
