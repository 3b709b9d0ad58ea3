//! `cidfs wallet`: the key that signs this store's requests to storage providers (see
//! [`filecoin::wallet`](crate::filecoin::wallet)): print its address, or take an existing
//! key in its place.

use std::path::PathBuf;

use super::session::Session;
use super::{CliError, exit, print};
use crate::filecoin::wallet::{Wallet, WalletError, wallet_path};

/// `cidfs wallet [import FILE]`.
#[derive(clap::Args, Debug)]
pub struct WalletArgs {
    #[command(subcommand)]
    action: Option<WalletAction>,
}

#[derive(clap::Subcommand, Debug)]
enum WalletAction {
    /// Print the wallet's address (the default; made first if the store has none).
    Address,
    /// Use an existing key: FILE holds it as hex (`0x` and 64 digits, as Ethereum tools
    /// export it).
    Import {
        file: PathBuf,
        /// Replace a different key this store has (data sets it owns stay with that key).
        #[arg(long)]
        replace: bool,
    },
}

impl From<WalletError> for CliError {
    fn from(e: WalletError) -> Self {
        match e {
            WalletError::Io { .. } => CliError::failure(e.to_string()),
            WalletError::Malformed { .. } => CliError::new(exit::INVALID_DATA, e.to_string()),
        }
    }
}

impl WalletArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let home = session.home();
        match self.action.unwrap_or(WalletAction::Address) {
            WalletAction::Address => print(&Wallet::load_or_create(home)?.address().to_string()),
            WalletAction::Import { file, replace } => {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| CliError::failure(format!("{}: {e}", file.display())))?;
                let wallet = Wallet::parse(&text, &file.display().to_string())?;
                if wallet_path(home).exists() {
                    let current = Wallet::load_or_create(home)?;
                    if current.address() == wallet.address() {
                        eprintln!("cidfs: that is already this store's wallet ({})", wallet.address());
                        return Ok(());
                    }
                    if !replace {
                        return Err(CliError::new(
                            exit::EXISTS,
                            format!(
                                "{} holds a different wallet ({}); nothing was changed (pass --replace)",
                                wallet_path(home).display(),
                                current.address()
                            ),
                        ));
                    }
                }
                wallet.save(home)?;
                print(&wallet.address().to_string());
            }
        }
        Ok(())
    }
}
