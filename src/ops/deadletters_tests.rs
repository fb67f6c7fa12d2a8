//! Tests of [`super`] (`deadletters.rs`), kept apart so the module stays readable.
use super::*;
use crate::kafka::deadletter::{record, Origin};

fn letter(code: &str, topic: &str) -> DeadLetter {
    let written = record(
        "users",
        &Origin {
            topic: topic.into(),
            partition: 1,
            offset: 7,
        },
        code,
        "why",
        Some(b"key"),
        Some(b"value"),
        vec![("content-type".into(), b"application/json".to_vec())],
    );
    DeadLetter {
        id: LetterId {
            partition: 2,
            offset: 5,
        },
        timestamp: None,
        key: written.key,
        payload: written.payload,
        meta: DeadLetterHeaders::read(&written.headers),
        headers: written.headers,
    }
}

#[test]
fn every_documented_code_has_a_verdict() {
    let documented = [
        "undecodable",
        "invalid_command",
        "invalid_reply_to",
        "not_an_operator_command",
        "command_failed",
        "overloaded",
        "unpublishable",
        "corrupt_outbox_record",
    ];
    for code in documented {
        let known = REPLAYABLE
            .iter()
            .chain(UNREPLAYABLE.iter())
            .any(|(c, _)| *c == code);
        assert!(known, "{code} has no verdict");
    }
    assert!(refusal("command_failed").is_none());
    assert!(refusal("undecodable").unwrap().contains("cannot help"));
    assert!(refusal("something_new").unwrap().contains("unknown code"));
}

#[test]
fn a_replay_goes_to_the_origin_with_the_original_headers() {
    let replay = letter("command_failed", "users.commands")
        .replay_record()
        .unwrap();
    assert_eq!(replay.topic, "users.commands");
    assert_eq!(replay.key.as_deref(), Some(&b"key"[..]));
    assert_eq!(replay.payload.as_deref(), Some(&b"value"[..]));
    assert_eq!(
        replay.headers,
        vec![
            ("content-type".to_string(), b"application/json".to_vec()),
            (REPLAYED_FROM.to_string(), b"2:5".to_vec()),
        ]
    );
    let unpublished = letter("unpublishable", "outbox:shop.replies").replay_record();
    assert_eq!(unpublished.unwrap().topic, "shop.replies");
    assert!(letter("undecodable", "users.commands")
        .replay_record()
        .is_err());
    assert!(letter("corrupt_outbox_record", "outbox")
        .replay_record()
        .is_err());
}

#[test]
fn letters_are_named_by_partition_and_offset() {
    assert_eq!(
        "2:17".parse(),
        Ok(LetterRef {
            partition: Some(2),
            offset: 17
        })
    );
    assert_eq!(
        "17".parse(),
        Ok(LetterRef {
            partition: None,
            offset: 17
        })
    );
    assert!("a:1".parse::<LetterRef>().is_err());
    assert!("-1".parse::<LetterRef>().is_err());
}
