//! Tests of [`super`] (`tail_decode.rs`), kept apart so the module stays readable.
use super::*;
use ordersaga_events::user::Password;
use ordersaga_events::UserId;

fn record<'a>(topic: &'a str, payload: &'a [u8], headers: &'a [(String, Vec<u8>)]) -> Record<'a> {
    Record {
        topic,
        payload: Some(payload),
        headers,
    }
}

#[test]
fn a_command_is_named_and_its_password_masked() {
    let user_id = UserId::new();
    let envelope = CommandEnvelope::new(UserCommand::Register {
        user_id,
        email: "a@example.com".into(),
        username: "a".into(),
        password: Password::new("a long secret password"),
    });
    for format in [Format::Json, Format::Bincode] {
        let bytes = ordersaga_events::codec::encode(format, &envelope).unwrap();
        let decoded = decode_record(&record(topics::USERS_COMMANDS, &bytes, &[]));
        assert_eq!(decoded.kind, "command");
        assert_eq!(decoded.type_name, "Register");
        assert_eq!(decoded.format, Some(format));
        assert_eq!(decoded.value["command"]["Register"]["password"], "***");
        let everything = format!("{} {}", decoded.summary, decoded.value);
        assert!(!everything.contains("secret"), "{everything}");
    }
}

#[test]
fn garbage_is_hex_and_an_unreadable_command_shows_its_head() {
    let decoded = decode_record(&record(topics::USERS_COMMANDS, &[0xde, 0xad], &[]));
    assert_eq!(decoded.kind, "undecodable");
    assert_eq!(decoded.value["hex"], "dead");
    let bad = br#"{"command_id":"a7fc5d22-9636-4460-abe0-2d39ecb1ab99","correlation_id":"a7fc5d22-9636-4460-abe0-2d39ecb1ab99","reply_to":null,"issued_at":"2026-11-26T12:00:00Z","command":{"Deposit":{"amount":-1}}}"#;
    let decoded = decode_record(&record(topics::USERS_COMMANDS, bad, &[]));
    assert_eq!(decoded.kind, "undecodable");
    assert_eq!(
        decoded.value["head"]["command_id"],
        "a7fc5d22-9636-4460-abe0-2d39ecb1ab99"
    );
    assert!(
        decoded.summary.contains("command_id=a7fc5d22"),
        "{}",
        decoded.summary
    );
    let unknown = decode_record(&record("elsewhere", &[1, 2, 3], &[]));
    assert_eq!(
        (unknown.kind, unknown.summary.as_str()),
        ("raw", "3 bytes: 010203")
    );
}

#[test]
fn a_dead_letter_shows_its_code_origin_and_original() {
    let user_id = UserId::new();
    let envelope = CommandEnvelope::new(UserCommand::Deposit {
        user_id,
        amount: ordersaga_events::Cents(5),
    });
    let bytes = ordersaga_events::codec::encode(Format::Json, &envelope).unwrap();
    let letter = crate::kafka::deadletter::record(
        "users",
        &crate::kafka::deadletter::Origin {
            topic: topics::USERS_COMMANDS.into(),
            partition: 2,
            offset: 41,
        },
        "command_failed",
        "store: disk full",
        None,
        Some(&bytes),
        vec![(header::CONTENT_TYPE.into(), b"application/json".to_vec())],
    );
    let decoded = decode_record(&record(topics::DEADLETTER, &bytes, &letter.headers));
    assert_eq!(
        (decoded.kind, decoded.type_name.as_str()),
        ("deadletter", "command_failed")
    );
    assert_eq!(decoded.value["origin"]["topic"], topics::USERS_COMMANDS);
    assert_eq!(decoded.value["origin"]["partition"], 2);
    assert_eq!(decoded.value["origin"]["offset"], 41);
    assert_eq!(decoded.value["replayable"], true);
    assert_eq!(decoded.value["original"]["type"], "Deposit");
    assert!(
        decoded
            .summary
            .starts_with("from users.commands/2/41 by users: store: disk full"),
        "{}",
        decoded.summary
    );
}
