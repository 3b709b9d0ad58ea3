//! `cidfs evict --all-replicated` (make every segment whose piece is at its replicas cold,
//! with a progress bar on a terminal when run here)
//! and `cidfs payments [--json]` (the ledger of what reads from Filecoin cost). Both work
//! mounted (answered by the mount over its control socket) and unmounted.

use super::session::Session;
use super::{CliError, exit, print};
use crate::filecoin::{cold, ledger};

/// `cidfs evict --all-replicated`.
#[derive(clap::Args, Debug)]
pub struct EvictArgs {
    /// Delete the local copy of every segment whose piece is held by --replicas providers
    /// (with their hot copies); reads then come from the providers.
    #[arg(long)]
    all_replicated: bool,
}

impl EvictArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        if !self.all_replicated {
            return Err(CliError::new(
                exit::USAGE,
                "say what to evict: --all-replicated (or mount with --local-cap SIZE to evict as needed)",
            ));
        }
        let replicas = session.config.replicas;
        let out = session.report("evict-all", |s| {
            let bar = super::progress::bytes("evicting", Some(0), false);
            let summary = cold::evict_all_replicated(s, replicas, &mut |p| match p {
                cold::Progress::Total(bytes) => bar.set_length(bytes),
                cold::Progress::Done(bytes) => bar.inc(bytes),
            });
            bar.finish_and_clear();
            Ok(summary?.text())
        })?;
        print(out.trim_end());
        Ok(())
    }
}

/// `cidfs payments [--json]`.
#[derive(clap::Args, Debug)]
pub struct PaymentsArgs {
    /// One JSON object per payment: id, time_ms, provider, piece, offset, bytes, amount,
    /// asset, network, pay_to, state, transaction, error.
    #[arg(long)]
    json: bool,
}

impl PaymentsArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let out = match self.json {
            true => session.report("payments-json", |s| Ok(ledger::payments_json(&ledger::payments(s)?)))?,
            false => session.report("payments", |s| Ok(ledger::payments_text(&ledger::payments(s)?)))?,
        };
        if !out.trim().is_empty() {
            print(out.trim_end());
        }
        Ok(())
    }
}
