//! The `cidfs` command line. This file only sets up logging and parses the arguments;
//! [`cidfs::commands::cli`] says what each command takes and runs it. See `cidfs --help`.

use std::process::ExitCode;

use clap::Parser;

use cidfs::commands::{self, cli::Cli, exit};

fn main() -> ExitCode {
    let logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser::mnt=error"))
        .format_timestamp(None)
        .build();
    let max_level = logger.filter();
    // fuser's failed replies are told with the operation they answered (see `oplog`)
    if log::set_boxed_logger(Box::new(cidfs::fuse::oplog::ReplyLog::new(logger))).is_ok() {
        log::set_max_level(max_level);
    }
    commands::tune_allocator();
    match Cli::parse().run() {
        Ok(()) => ExitCode::from(exit::OK as u8),
        Err(e) if e.message.contains("Broken pipe") => ExitCode::from(exit::OK as u8),
        Err(e) => {
            eprintln!("cidfs: {e}");
            commands::mount::report_failure(&e);
            ExitCode::from(e.code as u8)
        }
    }
}
