//! `ordersaga deadletters list|show|replay`: inspect the dead-letter topic
//! and send fixed records back to where they came from
//! ([`crate::ops::deadletters`]).

use super::tail::ClusterArgs;
use super::CliError;
use crate::ops::deadletters::{find_letter, for_each_letter, DeadLetter, Filter, LetterRef};
use crate::ops::deadletters_replay::{replay, ReplayOutcome, Selection};
use crate::ops::tail::parse_time;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

/// Arguments of `deadletters`.
#[derive(Debug, Args)]
pub struct DeadlettersArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: DeadlettersCommand,
}

/// Which letters, by code and time.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only letters of this code (`command_failed`, `undecodable`, …);
    /// may be given more than once.
    #[arg(long = "code")]
    pub codes: Vec<String>,
    /// Only letters dead-lettered at or after this time: RFC 3339, epoch
    /// milliseconds, or a duration ago (90s, 15m, 2h, 7d).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            codes: self.codes.clone(),
            since: self.since,
        }
    }

    fn is_empty(&self) -> bool {
        self.codes.is_empty() && self.since.is_none()
    }
}

/// The `deadletters` subcommands.
#[derive(Debug, Subcommand)]
pub enum DeadlettersCommand {
    /// One line per letter: where it is, when, its code, where it came
    /// from, the service that gave up on it and its key.
    List {
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Everything about one letter: its headers, why, and the original
    /// record decoded.
    Show {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// PARTITION:OFFSET on the dead-letter topic (as `list` prints it),
        /// or OFFSET when only one partition has a letter there.
        letter: LetterRef,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send letters back to the topic they came from, with their original
    /// key, value and headers and a `deadletter-replayed-from` header, once
    /// their cause is fixed. Only `command_failed`, `overloaded` and
    /// `unpublishable` letters are sent: for the other codes the record
    /// itself is wrong and would be refused again. Letters named one by one,
    /// or a --code, that a replay cannot help are an error, and nothing is
    /// sent; letters a filter or --all sweeps up are reported `refused` and
    /// skipped. Replaying a command twice is harmless: the service answers
    /// a command id it has applied with its first reply.
    Replay {
        /// The letters to send (PARTITION:OFFSET or OFFSET), instead of a
        /// filter.
        #[arg(conflicts_with_all = ["codes", "since", "all"])]
        letters: Vec<LetterRef>,
        #[command(flatten)]
        cluster: ClusterArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Every letter (that a replay can help).
        #[arg(long)]
        all: bool,
        /// Say what would be sent, and send nothing.
        #[arg(long)]
        dry_run: bool,
        /// JSON lines instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `deadletters` subcommand.
pub fn run(args: DeadlettersArgs) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let warn = |warning: &str| eprintln!("warning: {warning}");
    runtime.block_on(async {
        match args.command {
            DeadlettersCommand::List {
                cluster,
                filter,
                json,
            } => {
                let kafka = cluster.config();
                if !json {
                    println!("{}", DeadLetter::list_heading());
                }
                let mut count = 0usize;
                for_each_letter(&kafka, &filter.filter(), warn, |letter| {
                    count += 1;
                    if json {
                        println!("{}", letter.list_json());
                    } else {
                        println!("{}", letter.list_line());
                    }
                    Ok(())
                })
                .await?;
                if !json {
                    eprintln!("{}", count_letters(count));
                }
                Ok(())
            }
            DeadlettersCommand::Show {
                cluster,
                letter,
                json,
            } => {
                let kafka = cluster.config();
                let letter = find_letter(&kafka, letter).await?;
                if json {
                    println!("{}", letter.show_json());
                } else {
                    print!("{}", letter.show_text());
                }
                Ok(())
            }
            DeadlettersCommand::Replay {
                letters,
                cluster,
                filter,
                all,
                dry_run,
                json,
            } => {
                let kafka = cluster.config();
                let selection = if !letters.is_empty() {
                    Selection::Named(letters)
                } else if all || !filter.is_empty() {
                    Selection::Matching(filter.filter())
                } else {
                    return Err(
                        "say which letters: PARTITION:OFFSET…, --code, --since or --all".into(),
                    );
                };
                let done = replay(&kafka, &selection, dry_run, warn, |replayed| {
                    if json {
                        println!("{}", replayed.json());
                    } else {
                        println!("{}", replayed.text_line());
                    }
                })
                .await?;
                let refused = done
                    .iter()
                    .filter(|r| matches!(r.outcome, ReplayOutcome::Refused { .. }))
                    .count();
                let sent = done.len() - refused;
                if dry_run {
                    eprintln!(
                        "dry run: {} would be replayed, {refused} refused; nothing sent",
                        count_letters(sent)
                    );
                } else {
                    eprintln!("{} replayed, {refused} refused", count_letters(sent));
                }
                Ok(())
            }
        }
    })
}

/// `1 letter`, `2 letters`.
fn count_letters(n: usize) -> String {
    format!("{n} letter{}", if n == 1 { "" } else { "s" })
}
