//! `ordersaga import`: an export file into a new store; and [`NewStore`],
//! the writer of a new store that `import` and `restore` share.
//!
//! A new store is written in a staging directory beside its place
//! (`DATA/.users.import-…`) and renamed into place only once it is
//! complete and indexed, so the store's directory never holds half an
//! import: a refused or failed import removes the staging directory, and
//! one killed half-way leaves only that clearly named directory behind
//! (delete it). The place must be new (missing or an empty directory).
//!
//! Every event is checked on the way in ([`ordersaga_actors::journal::Import`]):
//! per stream, sequence n + 1 next; no stream and sequence twice; no event
//! id twice; only streams the service's store holds. An error names the
//! line (the record, in a bincode file) where it was found.
//!
//! What the new store holds: the events, the log, the versions, the
//! uniqueness index (one user per email), the archive and list indexes and
//! the saga deadline index, all as the service writes them. What it does
//! not hold:
//!
//! - **the outbox stays empty**: these events are already on the events
//!   topic (an export is taken from a store that published them; a restore
//!   reads them from there). Publishing them again would hand every consumer
//!   the whole history a second time; `ordersaga republish` does that on
//!   purpose when it is wanted.
//! - **processed commands rebuilt from the events, and no consumer
//!   offsets**: an export holds the events, not the commands, but every
//!   event names its command, and an accepted command's reply follows from
//!   its events; those replies are written again, so such a command
//!   delivered again is answered, not applied twice. A rejected one left no
//!   event and is decided again (see `restore`'s notes).
//! - **no secrets**: users' password hashes are never in an event; the
//!   imported users cannot log in until their passwords are set again.

use super::export::{service_of, store_path, AnyEvent, Header, ToolError, Trailer, EXPORT_VERSION};
use indicatif::ProgressBar;
use ordersaga_actors::aggregates::{Order, Product, Saga, User};
use ordersaga_actors::journal::{
    index_imported, remember_imported_commands, Import, ImportError, Seen,
};
use ordersaga_actors::{Journal, JournalError};
use ordersaga_events::codec::MAX_DECODE_BYTES;
use ordersaga_events::topics::Service;
use ordersaga_events::user::UserEvent;
use ordersaga_events::{Format, StreamId};
use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// A new store being written; see the module's notes. Dropped before
/// [`NewStore::finish`], it removes what it wrote.
pub struct NewStore {
    service: Service,
    target: PathBuf,
    staging: PathBuf,
    journal: Option<Journal>,
    import: Option<Import>,
    accounts: u64,
    finished: bool,
}

/// What a new store holds once finished.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NewStoreSummary {
    /// The store's directory.
    pub store: PathBuf,
    /// Events written.
    pub events: u64,
    /// Streams written.
    pub streams: u64,
    /// Archive and list index entries built from the log.
    pub index_entries: u64,
    /// Accepted commands remembered from their events (the processed
    /// table), so that one delivered again is answered, not applied twice.
    pub commands_remembered: u64,
    /// Sagas entered in the deadline index (still waiting for replies).
    pub waiting_sagas: u64,
    /// User accounts written without a password hash (users store only).
    pub accounts_without_password: u64,
}

impl NewStore {
    /// Prepares `service`'s new store under `data`. Fails when the store's
    /// directory exists and is not empty.
    pub fn create(data: &Path, service: Service) -> Result<Self, ToolError> {
        let target = store_path(data, service);
        if target.exists() {
            let empty = target.is_dir() && std::fs::read_dir(&target)?.next().is_none();
            if !empty {
                return Err(format!(
                    "{} exists and is not empty: a {} store is imported or restored only into a new one \
                     (move it away, or give another --data)",
                    target.display(),
                    service.name()
                )
                .into());
            }
        }
        std::fs::create_dir_all(data)
            .map_err(|err| format!("cannot create {}: {err}", data.display()))?;
        let staging = data.join(format!(
            ".{}.import-{}",
            service.name(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let mut store = Self {
            service,
            target,
            staging,
            journal: None,
            import: None,
            accounts: 0,
            finished: false,
        };
        // From here on a failure drops `store`, which removes the staging
        // directory.
        let journal = Journal::open_path(&store.staging)?;
        store.import = Some(Import::new(&journal)?);
        store.journal = Some(journal);
        Ok(store)
    }

    /// The store's directory, once finished.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Whether `event` is its stream's next one, or a duplicate of one
    /// written; an error for a gap or a conflict.
    pub fn check(&self, event: &AnyEvent) -> Result<Seen, ImportError> {
        match &self.import {
            Some(import) => import.check(&event.stream(), event.sequence(), event.event_id()),
            None => Err(ImportError::Journal(JournalError::Closed)),
        }
    }

    /// The last sequence written to `stream` (0 before its first event).
    pub fn version(&self, stream: &StreamId) -> u64 {
        self.import
            .as_ref()
            .map_or(0, |import| import.version(stream))
    }

    /// Writes `event`, its stream's next one. Fails for an event of another
    /// service's store, a gap, a duplicate or a conflict.
    pub fn push(&mut self, event: &AnyEvent) -> Result<(), ToolError> {
        let stream = event.stream();
        if service_of(stream.kind) != self.service {
            return Err(format!(
                "{stream} belongs to the {} store, not to {}",
                service_of(stream.kind).name(),
                self.service.name()
            )
            .into());
        }
        let import = self
            .import
            .as_mut()
            .ok_or("the new store was already finished")?;
        let pushed: Result<(), ImportError> = match event {
            AnyEvent::User(e) => import.push::<User>(e),
            AnyEvent::Product(e) => import.push::<Product>(e),
            AnyEvent::Order(e) => import.push::<Order>(e),
            AnyEvent::Saga(e) => import.push::<Saga>(e),
        };
        pushed?;
        if let AnyEvent::User(e) = event {
            if matches!(e.payload, UserEvent::Registered { .. }) {
                self.accounts += 1;
            }
        }
        Ok(())
    }

    /// Makes every event durable, builds the indexes, closes the store and
    /// moves it into place.
    pub fn finish(mut self) -> Result<NewStoreSummary, ToolError> {
        let import = self
            .import
            .take()
            .ok_or("the new store was already finished")?;
        let streams = import.streams() as u64;
        let events = import.finish()?;
        let indexing = std::time::Instant::now();
        let journal = self
            .journal
            .take()
            .ok_or("the new store was already closed")?;
        let index_entries = match self.service {
            Service::Users => index_imported::<User>(&journal)?,
            Service::Inventory => index_imported::<Product>(&journal)?,
            Service::Orders => {
                index_imported::<Order>(&journal)? + index_imported::<Saga>(&journal)?
            }
        } as u64;
        let commands_remembered = match self.service {
            Service::Users => remember_imported_commands::<User>(&journal)?,
            Service::Inventory => remember_imported_commands::<Product>(&journal)?,
            Service::Orders => {
                remember_imported_commands::<Order>(&journal)?
                    + remember_imported_commands::<Saga>(&journal)?
            }
        } as u64;
        let waiting_sagas = if self.service == Service::Orders {
            // The deadline index needs each saga's state; the orders
            // service's own indexing of existing sagas builds it (and sets
            // its marker, so the service does not do it again on start).
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let entered = runtime.block_on(crate::saga::timer::index_existing(&journal))?;
            drop(runtime);
            entered as u64
        } else {
            0
        };
        tracing::debug!(
            store = %self.target.display(),
            events,
            index_entries,
            commands_remembered,
            waiting_sagas,
            indexing_ms = indexing.elapsed().as_millis() as u64,
            "indexes built"
        );
        journal.flush()?;
        // The last handle: closing joins the writer after its final flush.
        drop(journal);
        // A missing or empty directory is replaced by the rename.
        if self.target.is_dir() {
            std::fs::remove_dir(&self.target)
                .map_err(|err| format!("cannot replace {}: {err}", self.target.display()))?;
        }
        std::fs::rename(&self.staging, &self.target).map_err(|err| {
            format!(
                "cannot move the new store from {} to {}: {err}",
                self.staging.display(),
                self.target.display()
            )
        })?;
        self.finished = true;
        Ok(NewStoreSummary {
            store: self.target.clone(),
            events,
            streams,
            index_entries,
            commands_remembered,
            waiting_sagas,
            accounts_without_password: self.accounts,
        })
    }
}

impl Drop for NewStore {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Close the store before removing its files.
        self.import.take();
        self.journal.take();
        if let Err(err) = std::fs::remove_dir_all(&self.staging) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.staging.display(), cause = %err, "cannot remove the unfinished store; delete it");
            }
        }
    }
}

/// Reads an export file: the header, then each event; checks the trailer.
pub struct ExportReader<R: BufRead> {
    input: R,
    header: Header,
    /// The line (JSON) or record (bincode) number last read; the header is 1.
    number: u64,
    events: u64,
    ended: bool,
    buffer: Vec<u8>,
}

/// The format version alone, read before the rest of the header.
#[derive(Deserialize)]
struct Version {
    ordersaga_export: u32,
}

impl<R: BufRead> ExportReader<R> {
    /// Reads the header line.
    pub fn open(mut input: R) -> Result<Self, ToolError> {
        let mut line = Vec::new();
        input.read_until(b'\n', &mut line)?;
        if line.is_empty() {
            return Err("line 1: the file is empty, not an ordersaga export".into());
        }
        let version: Version = serde_json::from_slice(&line)
            .map_err(|err| format!("line 1: not an ordersaga export header: {err}"))?;
        if version.ordersaga_export != EXPORT_VERSION {
            return Err(format!(
                "line 1: export format version {}; this build reads version {EXPORT_VERSION}",
                version.ordersaga_export
            )
            .into());
        }
        let header: Header = serde_json::from_slice(&line)
            .map_err(|err| format!("line 1: unreadable export header: {err}"))?;
        Ok(Self {
            input,
            header,
            number: 1,
            events: 0,
            ended: false,
            buffer: Vec::new(),
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Where the last record read is: `line N` or `record N`.
    pub fn place(&self) -> String {
        match self.header.format {
            Format::Json => format!("line {}", self.number),
            Format::Bincode => format!("record {}", self.number),
        }
    }

    /// The next event with its line (JSON) or record (bincode) number;
    /// `None` after the trailer (checked against the events read, with
    /// nothing after it). A file without a trailer is an error: it was cut
    /// short.
    pub fn next_event(&mut self) -> Result<Option<(u64, AnyEvent)>, ToolError> {
        if self.ended {
            return Ok(None);
        }
        if !self.read_record()? {
            return Err(format!(
                "{}: the file ends without its end record after {} events: it was cut short",
                self.place(),
                self.events
            )
            .into());
        }
        if let Ok(event) = AnyEvent::decode(&self.buffer) {
            self.events += 1;
            return Ok(Some((self.number, event)));
        }
        if let Ok(trailer) = serde_json::from_slice::<Trailer>(&self.buffer) {
            let said = trailer.ordersaga_export_end.events;
            if said != self.events {
                return Err(format!(
                    "{}: the end record counts {said} events, but the file holds {}",
                    self.place(),
                    self.events
                )
                .into());
            }
            self.ended = true;
            let place = self.place();
            let mut rest = Vec::new();
            self.input.read_to_end(&mut rest)?;
            if !rest.iter().all(u8::is_ascii_whitespace) {
                return Err(format!("{place}: data after the end record").into());
            }
            return Ok(None);
        }
        // Decode again for the reason: the event's error says most.
        let reason = match AnyEvent::decode(&self.buffer) {
            Err(err) => err.to_string(),
            Ok(_) => "unreadable".into(),
        };
        Err(format!("{}: not an event envelope: {reason}", self.place()).into())
    }

    /// Reads the next record into the buffer; false at the end of input.
    fn read_record(&mut self) -> Result<bool, ToolError> {
        self.buffer.clear();
        self.number += 1;
        match self.header.format {
            Format::Json => {
                if self.input.read_until(b'\n', &mut self.buffer)? == 0 {
                    return Ok(false);
                }
                while self
                    .buffer
                    .last()
                    .is_some_and(|b| *b == b'\n' || *b == b'\r')
                {
                    self.buffer.pop();
                }
                Ok(true)
            }
            Format::Bincode => {
                let mut len = [0u8; 4];
                let mut got = 0;
                while got < 4 {
                    let n = self.input.read(&mut len[got..])?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                match got {
                    0 => return Ok(false),
                    4 => {}
                    _ => {
                        return Err(format!(
                            "{}: the file ends inside a record length",
                            self.place()
                        )
                        .into())
                    }
                }
                let len = u32::from_be_bytes(len) as usize;
                if len > MAX_DECODE_BYTES {
                    return Err(format!(
                        "{}: a record of {len} bytes is larger than any event: the file is damaged",
                        self.place()
                    )
                    .into());
                }
                self.buffer.resize(len, 0);
                self.input.read_exact(&mut self.buffer).map_err(|err| {
                    format!("{}: the file ends inside a record: {err}", self.place())
                })?;
                Ok(true)
            }
        }
    }
}

/// What an import wrote.
#[derive(Clone, Debug, Serialize)]
pub struct ImportSummary {
    /// The service whose store it is.
    pub service: String,
    /// Where the file came from (a path, or `-` for standard input).
    pub source: String,
    /// The file's encoding.
    pub format: Format,
    /// The new store.
    #[serde(flatten)]
    pub store: NewStoreSummary,
}

/// Imports the export read from `input` (named `source` in errors) into
/// `service`'s new store under `data`, ticking `bar` per event. Refuses an
/// export of another service, a partial (time-filtered) one, and anything
/// [`NewStore`] refuses; nothing is left in `data` then.
pub fn import(
    input: impl BufRead,
    source: &str,
    data: &Path,
    service: Service,
    bar: &ProgressBar,
) -> Result<ImportSummary, ToolError> {
    let mut reader = ExportReader::open(input).map_err(|err| format!("{source}: {err}"))?;
    let header = reader.header().clone();
    if header.service != service.name() {
        return Err(format!(
            "{source} is an export of the {} store, not of {}: refusing to import it",
            header.service,
            service.name()
        )
        .into());
    }
    if !header.complete() {
        return Err(format!(
            "{source} is a partial export (--since/--until): its streams do not start at their first event, \
             so it cannot make a store; export the whole store"
        )
        .into());
    }
    let mut store = NewStore::create(data, service)?;
    loop {
        match reader.next_event() {
            Ok(Some((number, event))) => {
                store
                    .push(&event)
                    .map_err(|err| format!("{source}: {}: {err}", place(header.format, number)))?;
                bar.inc(1);
            }
            Ok(None) => break,
            Err(err) => return Err(format!("{source}: {err}").into()),
        }
    }
    let store = store.finish()?;
    Ok(ImportSummary {
        service: service.name().to_string(),
        source: source.to_string(),
        format: header.format,
        store,
    })
}

fn place(format: Format, number: u64) -> String {
    match format {
        Format::Json => format!("line {number}"),
        Format::Bincode => format!("record {number}"),
    }
}
