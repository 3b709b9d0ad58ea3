//! `cidfs pieces` (every piece and where its replicas stand) and `cidfs providers` (the
//! storage providers kept in the store). Both work mounted (answered by the mount over its
//! control socket) and unmounted.

use super::session::Session;
use super::{CliError, print};
use crate::filecoin::pdp::parse_provider_url;
use crate::filecoin::replicate::{report, table};
use crate::store::Store;

/// `cidfs pieces [--json]`.
#[derive(clap::Args, Debug)]
pub struct PiecesArgs {
    /// One JSON object per piece: piece, payload_size, padded_size, segment, encrypted,
    /// replicas [{provider, data_set, piece_id, state, last_audit, last_error,
    /// next_challenge_epoch}].
    #[arg(long)]
    json: bool,
}

impl PiecesArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let out = match self.json {
            true => session.report("pieces-json", |s| Ok(report::pieces_json(s)?))?,
            false => session.report("pieces", |s| Ok(report::pieces_text(s)?))?,
        };
        if !out.trim().is_empty() {
            print(out.trim_end());
        }
        Ok(())
    }
}

/// `cidfs providers add|ls|rm`.
#[derive(clap::Subcommand, Debug)]
pub enum ProvidersArgs {
    /// Keep pieces with this provider too (used by mounts and daemons of this store).
    Add {
        url: String,
        /// The provider's payee address (a Curio provider's, from the registry); a `cidfs
        /// provider` announces its own.
        #[arg(long, value_name = "0xADDRESS")]
        payee: Option<alloy_primitives::Address>,
        /// What it charges (any unit, the same for all, e.g. USDFC per TiB-month): the
        /// cheapest of equally reliable providers is chosen first.
        #[arg(long, value_name = "PRICE")]
        price: Option<f64>,
    },
    /// List the providers kept in the store.
    Ls,
    /// Stop placing new replicas on a provider (those it holds stay until replaced).
    Rm { url: String },
}

impl ProvidersArgs {
    pub fn run(self, session: &Session) -> Result<(), CliError> {
        let request = match &self {
            ProvidersArgs::Add { url, payee, price } => {
                let url = parse_provider_url(url).map_err(|e| CliError::failure(e.to_string()))?;
                if price.is_some_and(|p| !p.is_finite() || p < 0.0) {
                    return Err(CliError::new(super::exit::USAGE, format!("--price {price:?}: a number, 0 or more")));
                }
                let payee = payee.map_or("-".to_string(), |p| p.to_string());
                let price = price.map_or("-".to_string(), |p| p.to_string());
                format!("add {url} {payee} {price}")
            }
            ProvidersArgs::Ls => "ls".to_string(),
            ProvidersArgs::Rm { url } => format!("rm {}", url.trim_end_matches('/')),
        };
        let out = session.report(&format!("providers {request}"), |s| providers_request(s, &request))?;
        if !out.trim().is_empty() {
            print(out.trim_end());
        }
        Ok(())
    }
}

/// Runs a providers request (`add URL [PAYEE]`, `ls`, `rm URL`) on a store; the output.
pub fn providers_request(store: &Store, request: &str) -> Result<String, CliError> {
    let words: Vec<&str> = request.split_whitespace().collect();
    match words.as_slice() {
        ["add", url, payee, price] => {
            let given = |v: &str| (v != "-").then(|| v.to_string());
            let price =
                given(price).map(|p| p.parse::<f64>()).transpose().map_err(|e| CliError::failure(e.to_string()))?;
            let p = table::StoredProvider { url: url.to_string(), payee: given(payee), price };
            table::add_provider(store, &p)?;
            Ok(String::new())
        }
        ["ls"] => Ok(table::stored_providers(store)?
            .into_iter()
            .map(|p| {
                let mut line = p.url.clone();
                if let Some(payee) = &p.payee {
                    line.push_str(&format!("\tpayee {payee}"));
                }
                if let Some(price) = p.price {
                    line.push_str(&format!("\tprice {price}"));
                }
                line + "\n"
            })
            .collect()),
        ["rm", url] => match table::remove_provider(store, url)? {
            true => Ok(String::new()),
            false => Err(CliError::failure(format!("{url} is not a provider of this store (`cidfs providers ls`)"))),
        },
        _ => Err(CliError::failure(format!("bad providers request {request:?}"))),
    }
}
