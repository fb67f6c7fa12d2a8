//! The `ordersaga` binary: see `ordersaga --help`.

use clap::Parser;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: a saga's path allocates on
/// every hop (records, rows, replies) and glibc malloc and free were about a
/// fifth of the process's CPU in a profile of `ordersaga bench` (BENCHMARKS.md,
/// "The allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Behave like other command-line tools when the reader of stdout goes
    // away (`ordersaga sagas list | head`): end quietly instead of panicking
    // on a broken pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread
    // starts has no other effect.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = ordersaga::cli::Cli::parse();
    ordersaga::cli::init_tracing(cli.verbose);
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
