//! `cidfs id` and `cidfs swarm`: the IPFS node of the running mount.

use super::session::Session;
use super::{CliError, print};

/// `cidfs id`.
#[derive(clap::Args, Debug)]
pub struct IdArgs {}

impl IdArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        print(&session.id()?);
        Ok(())
    }
}

/// `cidfs swarm`.
#[derive(clap::Subcommand, Debug)]
pub enum SwarmArgs {
    /// List connected peers.
    Peers,
    /// Connect to a peer: /ip4/…/tcp/…/p2p/<peer id>.
    Connect { multiaddr: String },
}

impl SwarmArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let request = match &self {
            SwarmArgs::Peers => "peers".to_string(),
            SwarmArgs::Connect { multiaddr } => format!("connect {multiaddr}"),
        };
        print(&session.node_request(&request)?);
        Ok(())
    }
}
