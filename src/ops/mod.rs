//! The operators' tools: replay, history, tail, export and import,
//! republish, restore, dead letters. Each works on a stopped store (a
//! running service holds its store's lock), or on the topics of a running
//! system where it says so.

pub mod deadletters;
pub mod deadletters_replay;
pub mod export;
pub mod history;
pub mod import;
pub mod progress;
pub mod replay;
pub mod republish;
pub mod restore;
pub mod tail;
pub mod tail_decode;
pub mod tail_print;
pub mod tail_start;
