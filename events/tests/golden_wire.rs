//! Golden wire fixtures: bytes written today must still decode in a year.
//!
//! Events live for ever in the stores and on the event topics; commands and
//! replies sit in topics and outboxes across upgrades. A build that cannot
//! read them cannot replay a store or drain a topic. The round-trip tests
//! (`codec_round_trip.rs`) only prove that *one* build agrees with itself;
//! these fixtures are bytes written by an earlier build, committed under
//! `tests/golden/`, and every later build must decode them to the same value.
//!
//! Layout: `tests/golden/v<version>/<type>/<variant>.<bincode|json>`, one file
//! per variant and format. Events are full envelopes written by
//! `encode_event`, under their payload's `SCHEMA_VERSION`. Commands (as
//! `CommandEnvelope`s), replies and the bare enums `OrderStatus` and
//! `SagaStep` carry no schema version on the wire: they live under `v1`, and
//! any change to their encoding breaks old records, which is what this test
//! is there to catch.
//!
//! The rules:
//! - **Never edit, regenerate or delete a committed fixture.** If one stops
//!   decoding, the change to the types is what is wrong (or needs an upcast).
//! - When an event type's `SCHEMA_VERSION` is bumped, keep the old `v<N>`
//!   files; the expected values of the old version become what the upcast
//!   produces (see `golden_wire/values.rs`), and the new version gets new
//!   files.
//! - A missing fixture fails the test. Run once with `ORDERSAGA_WRITE_GOLDEN=1`
//!   to write the missing ones (never an existing one), review and commit them:
//!
//!   `ORDERSAGA_WRITE_GOLDEN=1 cargo test -p ordersaga-events --test golden_wire`
//!
//! For the current version the test also requires that encoding the expected
//! value today gives exactly the committed bytes: an accidental wire change
//! (a renamed field, a reordered variant, a new serde attribute) fails here
//! even where it still happens to decode.

#[path = "golden_wire/commands.rs"]
mod commands;
#[path = "golden_wire/values.rs"]
mod values;

use ordersaga_events::codec::{decode, decode_event, encode, encode_event, CodecError, Format};
use ordersaga_events::inventory::{InventoryCommand, InventoryEvent};
use ordersaga_events::order::{OrderCommand, OrderEvent, OrderStatus};
use ordersaga_events::saga::{SagaCommand, SagaEvent, SagaStep};
use ordersaga_events::user::{UserCommand, UserEvent};
use ordersaga_events::{CommandResult, Envelope, Outcome, StreamKind, Versioned};
use serde::de::{DeserializeOwned, Visitor};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use values::Named;

/// Set to `1` to write missing fixtures (existing ones are never touched).
const WRITE_VAR: &str = "ORDERSAGA_WRITE_GOLDEN";
const FORMATS: [(Format, &str); 2] = [(Format::Bincode, "bincode"), (Format::Json, "json")];
const COMMAND: &str = "cargo test -p ordersaga-events --test golden_wire";

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn writing() -> bool {
    std::env::var(WRITE_VAR).is_ok_and(|v| v == "1")
}

type Encoder = Box<dyn Fn(Format) -> Result<Vec<u8>, CodecError>>;
type Checker = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One expected value: how this build encodes it, and whether some bytes
/// decode to it.
struct Case {
    name: &'static str,
    encode: Encoder,
    check: Checker,
}

fn case<T: PartialEq + Debug + Clone + 'static>(
    (name, value): Named<T>,
    encoder: fn(Format, &T) -> Result<Vec<u8>, CodecError>,
    decoder: fn(&[u8]) -> Result<T, CodecError>,
) -> Case {
    let expected = value.clone();
    Case {
        name,
        encode: Box::new(move |format| encoder(format, &value)),
        check: Box::new(move |bytes| match decoder(bytes) {
            Ok(found) if found == expected => Ok(()),
            Ok(found) => Err(format!(
                "decodes to\n{found:#?}\nbut the expected value is\n{expected:#?}"
            )),
            Err(e) => Err(format!("does not decode: {e}")),
        }),
    }
}

/// The fixtures of one directory, e.g. `v1/user_event`.
struct Suite {
    dir: String,
    /// Whether this build writes this version. Older schema versions can only
    /// be read: their bytes come from the build that wrote them.
    current: bool,
    cases: Vec<Case>,
}

fn plain<T>(dir: &str, values: Vec<Named<T>>) -> Suite
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + Clone + 'static,
{
    Suite {
        dir: format!("v1/{dir}"),
        current: true,
        cases: values
            .into_iter()
            .map(|v| case(v, encode::<T>, decode::<T>))
            .collect(),
    }
}

/// One suite per schema version of `E`, from 1 to the current one.
fn events<E>(dir: &str, values: fn(u16) -> Vec<Named<Envelope<E>>>) -> Vec<Suite>
where
    E: Versioned + PartialEq + Debug + Clone + 'static,
{
    (1..=E::SCHEMA_VERSION)
        .map(|version| Suite {
            dir: format!("v{version}/{dir}"),
            current: version == E::SCHEMA_VERSION,
            cases: values(version)
                .into_iter()
                .map(|v| case(v, encode_event::<E>, decode_event::<E>))
                .collect(),
        })
        .collect()
}

fn suites() -> Vec<Suite> {
    let mut all = Vec::new();
    all.extend(events::<UserEvent>("user_event", values::user_events));
    all.extend(events::<InventoryEvent>(
        "inventory_event",
        values::inventory_events,
    ));
    all.extend(events::<OrderEvent>("order_event", values::order_events));
    all.extend(events::<SagaEvent>("saga_event", values::saga_events));
    all.push(plain("user_command", commands::user_commands()));
    all.push(plain("inventory_command", commands::inventory_commands()));
    all.push(plain("order_command", commands::order_commands()));
    all.push(plain("saga_command", commands::saga_commands()));
    all.push(plain("reply", commands::replies()));
    all.push(plain("order_status", commands::order_statuses()));
    all.push(plain("saga_step", commands::saga_steps()));
    all
}

fn relative(path: &Path) -> String {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rel = path.strip_prefix(manifest).unwrap_or(path);
    format!("events/{}", rel.display())
}

/// Writes a new fixture; fails rather than replace an existing file.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(path.parent().expect("a fixture has a directory"))?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Checks one fixture file; returns what is wrong with it.
fn check_file(suite: &Suite, case: &Case, format: Format, path: &Path) -> Result<(), String> {
    let name = relative(path);
    let today = (case.encode)(format).map_err(|e| format!("{name}: cannot encode: {e}"))?;
    (case.check)(&today).map_err(|e| format!("{name}: today's encoding {e}"))?;
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            if !suite.current {
                return Err(format!(
                    "{name} is missing: fixtures of an older schema version cannot be \
                     written by this build; restore the file from version control"
                ));
            }
            if !writing() {
                return Err(format!(
                    "{name} is missing: run `{WRITE_VAR}=1 {COMMAND}` to write it, \
                     then review and commit it"
                ));
            }
            write_new(path, &today).map_err(|e| format!("{name}: cannot write: {e}"))?;
            eprintln!("wrote new golden fixture {name}");
            today.clone()
        }
        Err(e) => return Err(format!("{name}: cannot read: {e}")),
    };
    (case.check)(&bytes).map_err(|e| format!("{name} {e}"))?;
    if suite.current && bytes != today {
        let at = first_difference(&bytes, &today);
        let show = |b: &[u8]| match format {
            Format::Json => String::from_utf8_lossy(b).into_owned(),
            Format::Bincode => format!("{b:02x?}"),
        };
        return Err(format!(
            "{name} still decodes, but this build encodes the same value to other bytes \
             (first difference at byte {at}): the wire format changed. Never edit the \
             fixture; undo the change, or bump the schema version.\n  fixture: {}\n  today:   {}",
            show(&bytes),
            show(&today)
        ));
    }
    Ok(())
}

/// Files in a suite's directory that no case expects: a removed variant (old
/// records of it no longer decode) or a typo.
fn strays(suite: &Suite, dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let expected: BTreeSet<String> = suite
        .cases
        .iter()
        .flat_map(|c| FORMATS.map(|(_, ext)| format!("{}.{ext}", c.name)))
        .collect();
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|file| !expected.contains(file))
        .map(|file| {
            format!(
                "{} has no expected value: a fixture is never deleted, and its variant \
                 never removed (stored records of it would no longer decode)",
                relative(&dir.join(file))
            )
        })
        .collect()
}

fn fail_with(failures: Vec<String>) {
    if !failures.is_empty() {
        panic!(
            "{} golden wire failure(s):\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}

#[test]
fn every_fixture_decodes_to_its_expected_value() {
    let root = golden_root();
    let mut failures = Vec::new();
    for suite in suites() {
        let dir = root.join(&suite.dir);
        for case in &suite.cases {
            for (format, ext) in FORMATS {
                let path = dir.join(format!("{}.{ext}", case.name));
                if let Err(e) = check_file(&suite, case, format, &path) {
                    failures.push(e);
                }
            }
        }
        failures.extend(strays(&suite, &dir));
    }
    fail_with(failures);
}

#[test]
fn every_fixture_directory_belongs_to_a_suite() {
    let known: BTreeSet<String> = suites().into_iter().map(|s| s.dir).collect();
    let mut failures = Vec::new();
    let root = golden_root();
    for version in fs::read_dir(&root).expect("tests/golden exists").flatten() {
        if !version.path().is_dir() {
            continue; // README.md, .gitattributes
        }
        for dir in fs::read_dir(version.path()).expect("readable").flatten() {
            let rel = format!(
                "{}/{}",
                version.file_name().to_string_lossy(),
                dir.file_name().to_string_lossy()
            );
            if !known.contains(&rel) {
                failures.push(format!(
                    "{} is checked by no suite: add it to `suites()` in golden_wire.rs",
                    relative(&dir.path())
                ));
            }
        }
    }
    fail_with(failures);
}

/// The variant names serde knows for enum `T` (after any `rename_all`), so
/// that the check below does not rely on a hand-kept list.
fn serde_variants<T: DeserializeOwned>() -> BTreeSet<String> {
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not an enum"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = variants;
            Err(serde::de::Error::custom("probed"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            struct identifier ignored_any
        }
    }
    let mut variants: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut variants));
    assert!(!variants.is_empty(), "{} is not an enum", type_name::<T>());
    variants.iter().map(|v| snake_case(v)).collect()
}

fn type_name<T>() -> &'static str {
    std::any::type_name::<T>()
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.extend(c.to_lowercase());
    }
    out
}

fn covers<T: DeserializeOwned>(
    names: impl IntoIterator<Item = &'static str>,
    failures: &mut Vec<String>,
) {
    let have: BTreeSet<String> = names.into_iter().map(String::from).collect();
    let want = serde_variants::<T>();
    let missing: Vec<_> = want.difference(&have).collect();
    if !missing.is_empty() {
        failures.push(format!(
            "{} variants without a golden fixture: {missing:?}: add a value for each in \
             tests/golden_wire/ (values.rs or commands.rs), then run `{WRITE_VAR}=1 {COMMAND}`",
            type_name::<T>()
        ));
    }
}

fn names<T>(values: &[Named<T>]) -> impl Iterator<Item = &'static str> + '_ {
    values.iter().map(|(name, _)| *name)
}

/// A new variant must get a fixture. The exhaustive `*_name` matches in
/// `values.rs` and `commands.rs` make it a compile error to forget the name; this makes it a
/// test failure to forget the value.
#[test]
fn every_variant_has_a_fixture() {
    let mut failures = Vec::new();
    let user = values::user_events(UserEvent::SCHEMA_VERSION);
    let inventory = values::inventory_events(InventoryEvent::SCHEMA_VERSION);
    let order = values::order_events(OrderEvent::SCHEMA_VERSION);
    let saga = values::saga_events(SagaEvent::SCHEMA_VERSION);
    covers::<UserEvent>(names(&user), &mut failures);
    covers::<InventoryEvent>(names(&inventory), &mut failures);
    covers::<OrderEvent>(names(&order), &mut failures);
    covers::<SagaEvent>(names(&saga), &mut failures);
    covers::<UserCommand>(names(&commands::user_commands()), &mut failures);
    covers::<InventoryCommand>(names(&commands::inventory_commands()), &mut failures);
    covers::<OrderCommand>(names(&commands::order_commands()), &mut failures);
    covers::<SagaCommand>(names(&commands::saga_commands()), &mut failures);
    covers::<OrderStatus>(names(&commands::order_statuses()), &mut failures);
    covers::<SagaStep>(names(&commands::saga_steps()), &mut failures);

    let replies = commands::replies();
    let outcomes = replies
        .iter()
        .map(|(_, r)| commands::outcome_name(&r.outcome));
    covers::<Outcome>(outcomes, &mut failures);
    let results = replies.iter().filter_map(|(_, r)| r.result.as_ref());
    covers::<CommandResult>(results.map(commands::result_name), &mut failures);

    let mut kinds: Vec<StreamKind> = replies.iter().map(|(_, r)| r.stream.kind).collect();
    kinds.extend(user.iter().map(|(_, e)| e.stream.kind));
    kinds.extend(inventory.iter().map(|(_, e)| e.stream.kind));
    kinds.extend(order.iter().map(|(_, e)| e.stream.kind));
    kinds.extend(saga.iter().map(|(_, e)| e.stream.kind));
    covers::<StreamKind>(kinds.into_iter().map(StreamKind::name), &mut failures);
    fail_with(failures);
}

/// The harness itself catches a changed byte (the fixture files were also
/// checked by hand this way).
#[test]
fn a_changed_byte_is_caught() {
    let (name, value) = values::user_events(1).remove(1);
    assert_eq!(name, "deposited");
    let case = case((name, value), encode_event, decode_event::<UserEvent>);
    for (format, _) in FORMATS {
        let mut bytes = (case.encode)(format).unwrap();
        assert!((case.check)(&bytes).is_ok());
        // The amount is the last field of both encodings.
        let last = bytes.len() - if format == Format::Json { 4 } else { 1 };
        bytes[last] ^= 0x01;
        assert!(
            (case.check)(&bytes).is_err(),
            "{format:?} change not caught"
        );
    }
}
