//! `cidfs provider serve`: a storage provider of cidfs's own (see
//! [`filecoin::provider`](crate::filecoin::provider)), speaking Curio's PDP HTTP API and
//! FRC-0066 `/piece/` retrieval, with the chain simulated.

use std::path::PathBuf;
use std::time::Duration;

use super::session::Session;
use super::{CliError, exit};
use crate::config::Span;
use crate::filecoin::fwss::Chain;
use crate::filecoin::provider::paywall::Pricing;
use crate::filecoin::provider::{Provider, ProviderOptions};

/// `cidfs provider`.
#[derive(clap::Subcommand, Debug)]
pub enum ProviderArgs {
    /// Serve as a storage provider: Curio's PDP HTTP API under /pdp/ and /piece/{cid}.
    ///
    /// Real: the HTTP API, the pieces (every upload is checked against its piece CID), the
    /// signatures (every extraData's EIP-712 signer is recovered and checked) and the
    /// state (a redb in --dir: a restart loses nothing). SIMULATED: the chain. Transactions
    /// are pending for --confirm-delay, then confirmed, with no contract and no payment;
    /// each data set is challenged every --proving-period and the provider answers its
    /// own challenges from the bytes it holds, counting a fault when it cannot. Test knobs
    /// on loopback only: POST /admin/{drop,flip,refuse-uploads,slow,errors,offline}.
    /// With --price-per-gib, /piece/ reads cost money (x402, settled by --facilitator).
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8402", value_name = "ADDR")]
    listen: String,
    /// Where pieces and the provider's records live [default: $CIDFS_HOME/provider]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// How long a simulated transaction stays pending.
    #[arg(long, default_value = "2s", value_name = "DURATION")]
    confirm_delay: Span,
    /// How often each data set is challenged (the accelerated proving clock).
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    proving_period: Span,
    /// The chain signatures are checked for: calibration, mainnet, or ID:0xFWSS.
    #[arg(long, default_value = "calibration", value_name = "CHAIN", value_parser = Chain::parse)]
    chain: Chain,
    /// Requests served at once; more are answered 503.
    #[arg(long, default_value_t = crate::filecoin::provider::MAX_IN_FLIGHT, value_name = "N")]
    max_requests: usize,
    /// The address data sets must pay [default: the address of a wallet kept in DIR]
    #[arg(long, value_name = "0xADDRESS")]
    payee: Option<alloy_primitives::Address>,
    /// Charge for /piece/ reads over x402: this many atomic units of --asset per GiB read
    /// (needs --asset, --network, --pay-to and --facilitator).
    #[arg(long, value_name = "AMOUNT")]
    price_per_gib: Option<u128>,
    /// The EIP-3009 token reads are paid in.
    #[arg(long, value_name = "0xADDRESS")]
    asset: Option<alloy_primitives::Address>,
    /// The token's EIP-712 domain name (what payers sign over).
    #[arg(long, default_value = "USD Coin", value_name = "NAME")]
    asset_name: String,
    /// The token's EIP-712 domain version.
    #[arg(long, default_value = "2", value_name = "VERSION")]
    asset_version: String,
    /// The chain payments are made on, e.g. eip155:314.
    #[arg(long, value_name = "eip155:N")]
    network: Option<String>,
    /// Who is paid.
    #[arg(long, value_name = "0xADDRESS")]
    pay_to: Option<alloy_primitives::Address>,
    /// The x402 facilitator that verifies and settles payments (POST /verify, /settle).
    #[arg(long, value_name = "URL")]
    facilitator: Option<String>,
}

impl ServeArgs {
    fn pricing(&self) -> Result<Option<Pricing>, CliError> {
        let Some(per_gib) = self.price_per_gib else {
            let stray =
                self.asset.is_some() || self.network.is_some() || self.pay_to.is_some() || self.facilitator.is_some();
            return match stray {
                true => Err(CliError::new(
                    exit::USAGE,
                    "--asset, --network, --pay-to and --facilitator need --price-per-gib",
                )),
                false => Ok(None),
            };
        };
        let missing = |flag: &str| CliError::new(exit::USAGE, format!("--price-per-gib needs {flag}"));
        let network = self.network.clone().ok_or_else(|| missing("--network eip155:N"))?;
        if network.strip_prefix("eip155:").and_then(|n| n.parse::<u64>().ok()).is_none() {
            return Err(CliError::new(exit::USAGE, format!("--network {network:?}: expected eip155:CHAIN_ID")));
        }
        let facilitator = self.facilitator.clone().ok_or_else(|| missing("--facilitator URL"))?;
        crate::filecoin::pdp::parse_provider_url(&facilitator)
            .map_err(|e| CliError::new(exit::USAGE, format!("--facilitator: {e}")))?;
        Ok(Some(Pricing {
            per_gib,
            asset: self.asset.ok_or_else(|| missing("--asset 0xTOKEN"))?,
            token_name: self.asset_name.clone(),
            token_version: self.asset_version.clone(),
            network,
            pay_to: self.pay_to.ok_or_else(|| missing("--pay-to 0xADDRESS"))?,
            facilitator,
        }))
    }
}

impl ProviderArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let ProviderArgs::Serve(a) = self;
        if a.proving_period.0 < Duration::from_millis(100) {
            return Err(CliError::new(exit::USAGE, "--proving-period: at least 100ms".to_string()));
        }
        let pricing = a.pricing()?;
        let opts = ProviderOptions {
            dir: a.dir.unwrap_or_else(|| session.home().join("provider")),
            chain: a.chain,
            payee: a.payee,
            confirm_delay: a.confirm_delay.0,
            proving_period: a.proving_period.0,
            max_requests: a.max_requests.max(1),
            pricing,
        };
        let dir = opts.dir.clone();
        let provider = Provider::open(opts).map_err(|e| CliError::failure(e.to_string()))?;
        let payee = provider.payee();
        provider
            .serve(&a.listen, |addr| {
                println!("http://{addr}");
                eprintln!(
                    "cidfs provider: serving http://{addr} from {} (payee {payee}); the chain is SIMULATED (see --help)",
                    dir.display()
                );
            })
            .map_err(|e| CliError::failure(e.to_string()))
    }
}
