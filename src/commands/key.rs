//! `cidfs key export` and `cidfs key import`: the master key that encrypts this store's
//! pieces (see [`filecoin::keys`](crate::filecoin::keys)), in a form to keep elsewhere and
//! to restore from. Losing it loses the cold copies.

use std::io::Read;

use super::session::Session;
use super::{CliError, exit, print};
use crate::filecoin::keys::{KeyError, MasterKey, master_key_path};

/// `cidfs key`.
#[derive(clap::Subcommand, Debug)]
pub enum KeyArgs {
    /// Print the master key's recovery form (made first if the store has none).
    Export,
    /// Restore a master key from its recovery form (the argument, or standard input).
    Import {
        /// The recovery form (`cidfs-master-key-v1:…`); read from standard input if absent.
        form: Option<String>,
        /// Replace a different key this store has (pieces encrypted with it become
        /// unreadable unless it is imported again).
        #[arg(long)]
        replace: bool,
    },
}

impl From<KeyError> for CliError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Io { .. } => CliError::failure(e.to_string()),
            KeyError::Malformed { .. } | KeyError::BadExport(_) => CliError::new(exit::INVALID_DATA, e.to_string()),
        }
    }
}

impl KeyArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let home = session.home();
        match self {
            KeyArgs::Export => {
                let key = MasterKey::load_or_create(home)?;
                print(&key.export());
                eprintln!(
                    "cidfs: keep this somewhere safe and private: it decrypts every piece this store sends to \
                     storage providers, and without it those copies cannot be read back"
                );
            }
            KeyArgs::Import { form, replace } => {
                let text = match form {
                    Some(t) => t,
                    None => {
                        let mut t = String::new();
                        std::io::stdin()
                            .read_to_string(&mut t)
                            .map_err(|e| CliError::failure(format!("reading standard input: {e}")))?;
                        t
                    }
                };
                let key = MasterKey::import(&text)?;
                if master_key_path(home).exists() {
                    let current = MasterKey::load_or_create(home)?;
                    if current == key {
                        eprintln!("cidfs: that is already this store's master key");
                        return Ok(());
                    }
                    if !replace {
                        return Err(CliError::new(
                            exit::EXISTS,
                            format!(
                                "{} holds a different master key; nothing was changed (export it first, then pass \
                                 --replace)",
                                master_key_path(home).display()
                            ),
                        ));
                    }
                }
                key.save(home)?;
                eprintln!("cidfs: master key restored to {}", master_key_path(home).display());
            }
        }
        Ok(())
    }
}
