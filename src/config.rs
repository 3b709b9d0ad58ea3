//! One configuration for every command: defaults, then `$CIDFS_HOME/config.toml`, then the
//! environment, then flags — each source overriding the ones before it.
//!
//! Every setting is declared once, in the [`settings!`] list below: its type, default,
//! environment variable, flag and help text. From that one line come the flag (clap), the
//! key in `config.toml` (the field name with dashes: `hot-size = "8G"`), the environment
//! variable, and the field of [`Config`] that the code reads. fstab options are the flags'
//! names (see [`fstab_args`]), so the fstab path, the flag path and the file give the same
//! `Config`.
//!
//! ```toml
//! # $CIDFS_HOME/config.toml
//! hot-size = "8G"
//! reserve = "10%"
//! serve = "none"
//! peers = ["/ip4/10.0.0.2/tcp/4001/p2p/12D3KooW…"]
//! ```

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::store::Store;
use crate::store::reserve::Reserve;

/// Name of the configuration file in the store directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Public IPFS bootstrap peers (the DHT's entry points), used unless `--bootstrap` says
/// otherwise.
pub const DEFAULT_BOOTSTRAP: &str = "/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ";

/// A size in bytes, written `500M`, `2G`, `1048576` (binary units).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl Size {
    /// No limit (`--cap` unset).
    pub const UNLIMITED: Size = Size(u64::MAX);
}

impl FromStr for Size {
    type Err = String;
    fn from_str(s: &str) -> Result<Size, String> {
        parse_size(s).map(Size)
    }
}

/// Parses a size like `500M`, `2G`, `1048576` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let mult: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("{s:?}: unknown size suffix (use K, M, G or T)")),
            };
            (&s[..i], mult)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too large"))
}

/// A length of time, written `90s`, `10m`, `2h`, `1d`, or a number of seconds (`1.5`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span(pub std::time::Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Span, String> {
        let t = s.trim();
        let (num, unit) = match t.find(|c: char| c.is_ascii_alphabetic()) {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, "s"),
        };
        let mult = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return Err(format!("{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)")),
        };
        let n: f64 = num.trim().parse().map_err(|_| format!("{s:?} is not a duration (e.g. 30s, 10m)"))?;
        std::time::Duration::try_from_secs_f64(n * mult).map(Span).map_err(|e| format!("{s:?}: {e}"))
    }
}

/// A duration in the file: `"10m"` or a number of seconds.
impl<'de> serde::Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(f64),
            Text(String),
        }
        match <Raw as serde::Deserialize>::deserialize(d)? {
            Raw::Secs(n) => std::time::Duration::try_from_secs_f64(n).map(Span).map_err(serde::de::Error::custom),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl FromStr for Reserve {
    type Err = String;
    fn from_str(s: &str) -> Result<Reserve, String> {
        Reserve::parse(s, parse_size)
    }
}

/// `--serve`: which blocks peers get (see [`crate::ipfs::Serve`]).
#[derive(clap::ValueEnum, serde::Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServeMode {
    Published,
    All,
    None,
}

impl FromStr for ServeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<ServeMode, String> {
        <ServeMode as clap::ValueEnum>::from_str(s, true).map_err(|_| format!("{s:?}: expected published, all or none"))
    }
}

/// How a setting's value is read from an environment variable.
trait EnvValue: Sized {
    fn from_env(s: &str) -> Result<Self, String>;
}

macro_rules! env_from_str {
    ($($t:ty),*) => {$(
        impl EnvValue for $t {
            fn from_env(s: &str) -> Result<Self, String> {
                s.trim().parse().map_err(|e| format!("{s:?}: {e}"))
            }
        }
    )*};
}
env_from_str!(usize, f64, Size, Span, Reserve, ServeMode);

impl EnvValue for String {
    fn from_env(s: &str) -> Result<Self, String> {
        Ok(s.trim().to_string())
    }
}

impl EnvValue for bool {
    fn from_env(s: &str) -> Result<bool, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" | "n" => Ok(false),
            "1" | "true" | "yes" | "on" | "y" => Ok(true),
            _ => Err(format!("{s:?}: expected true or false")),
        }
    }
}

impl EnvValue for Vec<String> {
    /// A comma-separated list.
    fn from_env(s: &str) -> Result<Self, String> {
        Ok(s.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_string).collect())
    }
}

/// A value in the file written as text (parsed as its flag is) or as a number of bytes.
fn text_or_bytes<'de, D, T>(d: D, bytes: fn(u64) -> T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match <Raw as serde::Deserialize>::deserialize(d)? {
        Raw::Bytes(n) => Ok(bytes(n)),
        Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

/// Sizes in the file: `"8G"` or a number of bytes.
impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        text_or_bytes(d, Size)
    }
}

/// A reserve in the file: `"5%"`, `"2G"` or a number of bytes.
impl<'de> serde::Deserialize<'de> for Reserve {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Reserve, D::Error> {
        text_or_bytes(d, Reserve::Bytes)
    }
}

/// Declares every setting once. Each line: doc comment, `name: Type = default`, the
/// environment variable, then the clap attributes of its flag.
macro_rules! settings {
    ($( $(#[doc = $doc:literal])* $name:ident : $ty:ty = $default:expr, $env:literal, [$($arg:tt)*]; )*) => {
        /// Settings as one source gives them: `None` where it says nothing. Flags parse
        /// into it (clap), `config.toml` deserializes into it, the environment reads into it.
        #[derive(clap::Args, serde::Deserialize, Clone, Debug, Default, PartialEq)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        pub struct Settings {
            $( $(#[doc = $doc])* #[arg($($arg)*)] pub $name: Option<$ty>, )*
        }

        /// The configuration a command runs with (see the module doc for where it comes from).
        #[derive(Clone, Debug, PartialEq)]
        pub struct Config {
            /// The store directory.
            pub home: PathBuf,
            $( $(#[doc = $doc])* pub $name: $ty, )*
        }

        /// The environment variable of each setting, for help texts.
        pub const ENVIRONMENT: &[(&str, &str)] = &[$( ($env, stringify!($name)), )*];

        impl Settings {
            /// What `self` says, else what `lower` says.
            pub fn over(self, lower: Settings) -> Settings {
                Settings { $( $name: self.$name.or(lower.$name), )* }
            }

            /// The settings the environment gives (`CIDFS_*`).
            pub fn from_env() -> Result<Settings, String> {
                let mut s = Settings::default();
                $(
                    if let Some(v) = std::env::var_os($env) {
                        let v = v.to_string_lossy();
                        s.$name = Some(<$ty as EnvValue>::from_env(&v).map_err(|e| format!("{}={e}", $env))?);
                    }
                )*
                Ok(s)
            }

            fn resolve(self, home: PathBuf) -> Config {
                Config { home, $( $name: self.$name.unwrap_or_else(|| $default), )* }
            }
        }
    };
}

settings! {
    /// Present the /ipfs namespace itself at the root: MOUNTPOINT/<CID>/... (read-only)
    ipfs: bool = false, "CIDFS_IPFS",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// Mount the drive read-only.
    read_only: bool = false, "CIDFS_READ_ONLY",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// Let other users read the mount.
    allow_other: bool = false, "CIDFS_ALLOW_OTHER",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// Threads serving filesystem requests [default: 4]
    threads: usize = 4, "CIDFS_THREADS", [long, value_name = "N"];
    /// Most bytes the store may hold (e.g. 500G); writes past it fail with ENOSPC.
    cap: Size = Size::UNLIMITED, "CIDFS_CAP", [long, value_name = "SIZE"];
    /// How often changes nobody fsync'd are committed (seconds; fsync and unmount always
    /// commit) [default: 1]
    commit_interval: f64 = 1.0, "CIDFS_COMMIT_INTERVAL", [long, value_name = "SECONDS"];
    /// Do not start the IPFS node: only blocks in the local store (and evicted data, from
    /// the storage providers holding its pieces) can be read.
    offline: bool = false, "CIDFS_OFFLINE",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// A peer to connect to at start (repeatable), e.g. /ip4/10.0.0.2/tcp/4001/p2p/12D3Koo…
    peers: Vec<String> = Vec::new(), "CIDFS_PEERS",
        [long = "peer", value_name = "MULTIADDR", value_delimiter = ','];
    /// Where the node listens (repeatable) [default: /ip4/0.0.0.0/tcp/4011]
    listen: Vec<String> = vec!["/ip4/0.0.0.0/tcp/4011".into()], "CIDFS_LISTEN",
        [long, value_name = "MULTIADDR", value_delimiter = ','];
    /// DHT bootstrap peers (repeatable; `none` for none) [default: a public IPFS bootstrap peer]
    bootstrap: Vec<String> = vec![DEFAULT_BOOTSTRAP.into()], "CIDFS_BOOTSTRAP",
        [long, value_name = "MULTIADDR", value_delimiter = ','];
    /// A trustless HTTP gateway to fetch blocks from as well as peers (repeatable; tried in
    /// order), e.g. https://trustless-gateway.link
    gateways: Vec<String> = Vec::new(), "CIDFS_GATEWAYS",
        [long = "gateway", value_name = "URL", value_delimiter = ','];
    /// Do not announce pinned roots to the DHT.
    no_announce: bool = false, "CIDFS_NO_ANNOUNCE",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// Which blocks peers get: `published` (what you add, import or pin, to every peer; the
    /// rest of the drive to --trust peers only), `all` (the whole drive to every peer), or
    /// `none` (nothing to anyone) [default: published]
    serve: ServeMode = ServeMode::Published, "CIDFS_SERVE", [long, value_enum];
    /// A peer trusted with the whole drive, by peer ID (repeatable), e.g. 12D3Koo…
    trust: Vec<String> = Vec::new(), "CIDFS_TRUST",
        [long = "trust", value_name = "PEERID", value_delimiter = ','];
    /// How long a read waits for a block from the network before it fails with EIO
    /// (seconds) [default: 30]
    fetch_timeout: f64 = 30.0, "CIDFS_FETCH_TIMEOUT", [long, value_name = "SECONDS"];
    /// Most disk space blocks fetched from the network may use (e.g. 500M, 10G); the least
    /// recently read are evicted beyond it. Data you write, add, import or pin never
    /// counts [default: 10G]
    cache_size: Size = Size(10 << 30), "CIDFS_CACHE_SIZE", [long, value_name = "SIZE"];
    /// Most disk space hot copies may use (plain copies of whole files that were added or
    /// read whole, which the kernel reads directly; 0 for none). Only a second copy: the
    /// least recently opened are dropped beyond it [default: 4G]
    hot_size: Size = Size(crate::store::hot::DEFAULT_HOT_CAP), "CIDFS_HOT_SIZE", [long, value_name = "SIZE"];
    /// Free space on the store's disk that hot copies and fetched blocks never take, and
    /// give way for when the disk runs low: a share (`5%`) or a size (`2G`) [default: 5%]
    reserve: Reserve = crate::store::reserve::DEFAULT_RESERVE, "CIDFS_RESERVE",
        [long, value_name = "SHARE|SIZE"];
    /// Seal the segment being filled (making it a piece for Filecoin) once the drive has
    /// been quiet this long with at least 1 MiB unsealed, e.g. `30s`, `10m`; full segments
    /// are sealed at once [default: 10m]
    seal_after: Span = Span(crate::filecoin::seal::DEFAULT_SEAL_AFTER), "CIDFS_SEAL_AFTER",
        [long, value_name = "DURATION"];
    /// Store pieces as plaintext CARs instead of encrypted: only for data meant to be
    /// published (anyone holding a piece can read it).
    public_pieces: bool = false, "CIDFS_PUBLIC_PIECES",
        [long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "BOOL", hide_possible_values = true];
    /// A storage provider (Curio PDP API) to keep pieces with (repeatable; also `cidfs
    /// providers add`), e.g. https://sp.example.com
    providers: Vec<String> = Vec::new(), "CIDFS_PROVIDERS",
        [long = "provider", value_name = "URL", value_delimiter = ','];
    /// How many providers keep each piece [default: 2]
    replicas: usize = 2, "CIDFS_REPLICAS", [long, value_name = "N"];
    /// The chain data sets are signed for: calibration, mainnet, or CHAIN_ID:0xFWSS
    /// [default: calibration]
    chain: String = "calibration".to_string(), "CIDFS_CHAIN", [long, value_name = "CHAIN"];
    /// Most bytes a second sent to providers (e.g. 10M; 0 for no limit) [default: 0]
    upload_limit: Size = Size(0), "CIDFS_UPLOAD_LIMIT", [long, value_name = "SIZE"];
    /// How long a request to a storage provider waits for its answer before it counts as
    /// failed (and is retried) [default: 60s]
    provider_timeout: Span = Span(std::time::Duration::from_secs(60)), "CIDFS_PROVIDER_TIMEOUT",
        [long, value_name = "DURATION"];
    /// How often each replica is audited (blocks read back and checked) [default: 10m]
    audit_interval: Span = Span(std::time::Duration::from_secs(600)), "CIDFS_AUDIT_INTERVAL",
        [long, value_name = "DURATION"];
    /// Keep the drive's own data on this disk under SIZE (e.g. 50G): segments whose piece
    /// is at --replicas providers are deleted locally, least recently read first, and read
    /// back from Filecoin when needed [default: no cap]
    local_cap: Size = Size::UNLIMITED, "CIDFS_LOCAL_CAP", [long, value_name = "SIZE"];
    /// Most one read from Filecoin may cost, in the asset's atomic units (unset: nothing is paid)
    max_per_request: String = String::new(), "CIDFS_MAX_PER_REQUEST", [long, value_name = "AMOUNT"];
    /// Most all reads may cost in one (UTC) day, in atomic units (unset: nothing is paid)
    max_per_day: String = String::new(), "CIDFS_MAX_PER_DAY", [long, value_name = "AMOUNT"];
    /// Most all reads may ever cost, in atomic units (unset: nothing is paid)
    max_spend: String = String::new(), "CIDFS_MAX_SPEND", [long, value_name = "AMOUNT"];
    /// A network payments may be made on (repeatable), e.g. eip155:314
    pay_networks: Vec<String> = Vec::new(), "CIDFS_PAY_NETWORKS",
        [long = "pay-network", value_name = "eip155:N", value_delimiter = ','];
    /// A token contract payments may be made in (repeatable), e.g. 0x80B98d3aa09ffff255c3ba4A241111Ff1262F045
    pay_assets: Vec<String> = Vec::new(), "CIDFS_PAY_ASSETS",
        [long = "pay-asset", value_name = "ADDR", value_delimiter = ','];
}

impl Config {
    /// The configuration for a command run with `flags` and `--home` (else `$CIDFS_HOME`,
    /// else the default store): flags over the environment over `config.toml` over the
    /// defaults. Every value is checked here, whatever its source.
    pub fn load(home: Option<&Path>, flags: Settings) -> Result<Config, String> {
        let home = home.map(Path::to_path_buf).unwrap_or_else(Store::default_home);
        let file = Settings::from_file(&home.join(CONFIG_FILE))?;
        let config = flags.over(Settings::from_env()?).over(file).resolve(home);
        config.check()?;
        Ok(config)
    }

    /// The defaults, for the store at `home` (tests, and commands that take no settings).
    pub fn defaults(home: PathBuf) -> Config {
        Settings::default().resolve(home)
    }

    fn check(&self) -> Result<(), String> {
        for p in &self.trust {
            p.parse::<libp2p::PeerId>().map_err(|e| format!("trust {p:?} is not a peer ID: {e}"))?;
        }
        for g in &self.gateways {
            crate::ipfs::gateway::parse_gateway(g).map_err(|e| format!("gateway {e}"))?;
        }
        for (what, secs) in [("commit-interval", self.commit_interval), ("fetch-timeout", self.fetch_timeout)] {
            std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{what} {secs}: {e}"))?;
        }
        crate::filecoin::fwss::Chain::parse(&self.chain).map_err(|e| format!("chain {e}"))?;
        for p in &self.providers {
            crate::filecoin::pdp::parse_provider_url(p).map_err(|e| e.to_string())?;
        }
        self.caps()?;
        if self.replicas == 0 {
            return Err("replicas 0: at least one provider must keep each piece".into());
        }
        if self.threads == 0 {
            return Err("threads 0: at least one thread must serve the mount".into());
        }
        Ok(())
    }

    /// What may be spent on reads (see `filecoin::ledger`), checked.
    pub fn caps(&self) -> Result<crate::filecoin::ledger::Caps, String> {
        let amount = |what: &str, v: &str| -> Result<Option<u128>, String> {
            match v.trim() {
                "" => Ok(None),
                v => v.parse().map(Some).map_err(|_| format!("{what} {v:?}: not an amount in atomic units")),
            }
        };
        let mut assets = Vec::new();
        for a in &self.pay_assets {
            assets.push(a.parse().map_err(|_| format!("pay-asset {a:?}: not a token address (0x + 40 hex digits)"))?);
        }
        for n in &self.pay_networks {
            let id = n.strip_prefix("eip155:").and_then(|id| id.parse::<u64>().ok());
            id.ok_or_else(|| format!("pay-network {n:?}: expected eip155:CHAIN_ID"))?;
        }
        Ok(crate::filecoin::ledger::Caps {
            max_per_request: amount("max-per-request", &self.max_per_request)?,
            max_per_day: amount("max-per-day", &self.max_per_day)?,
            max_total: amount("max-spend", &self.max_spend)?,
            networks: self.pay_networks.clone(),
            assets,
        })
    }

    /// The peers trusted with the whole drive.
    pub fn trusted(&self) -> Vec<libp2p::PeerId> {
        self.trust.iter().filter_map(|p| p.parse().ok()).collect()
    }

    /// How the mount and the daemon make pieces of the drive's segments.
    pub fn seal_policy(&self) -> crate::filecoin::seal::SealPolicy {
        crate::filecoin::seal::SealPolicy {
            seal_after: self.seal_after.0,
            min_bytes: crate::filecoin::seal::MIN_QUIET_SEAL,
            public: self.public_pieces,
        }
    }

    /// How the mount and the daemon keep pieces with providers.
    pub fn replication_policy(&self) -> crate::filecoin::replicate::ReplicationPolicy {
        crate::filecoin::replicate::ReplicationPolicy {
            providers: self.providers.clone(),
            replicas: self.replicas,
            chain: crate::filecoin::fwss::Chain::parse(&self.chain)
                .unwrap_or(crate::filecoin::fwss::Chain::CALIBRATION),
            upload_limit: self.upload_limit.0,
            audit_interval: self.audit_interval.0,
            backoff: std::time::Duration::from_secs(1),
            request_timeout: self.provider_timeout.0.max(std::time::Duration::from_millis(100)),
        }
    }

    /// Most bytes the store may hold, if capped.
    pub fn cap(&self) -> Option<u64> {
        (self.cap != Size::UNLIMITED).then_some(self.cap.0)
    }
}

impl Settings {
    /// What `config.toml` at `path` says (nothing if there is none).
    pub fn from_file(path: &Path) -> Result<Settings, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }
}

/// Options mount(8) passes that mean nothing to cidfs (or that it does anyway).
const GENERIC_MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "rw",
    "auto",
    "noauto",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "exec",
    "noexec",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "async",
    "sync",
    "atime",
    "noatime",
    "relatime",
    "diratime",
    "nodiratime",
    "default_permissions",
];

/// The `cidfs` arguments an fstab line means: `mount.fuse.cidfs SOURCE MOUNTPOINT -o OPTS`
/// becomes `--home SOURCE mount --background MOUNTPOINT --OPT…`. Each `-o` option is a
/// flag of `cidfs mount` by name (`hot_size=8G` is `--hot-size=8G`, `offline` is
/// `--offline`; repeat `peer=…` for several), `ro` is `--read-only`; mount(8)'s generic
/// options and `x-*` are ignored. SOURCE `cidfs` means the default store.
pub fn fstab_args(args: &[String], known_flags: &[String]) -> Result<Vec<String>, String> {
    let usage = || "usage: mount.fuse.cidfs SOURCE MOUNTPOINT [-o OPTIONS]".to_string();
    let mut rest = args.iter();
    let (Some(source), Some(mountpoint)) = (rest.next(), rest.next()) else { return Err(usage()) };
    let mut opts = Vec::new();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "-o" => opts.extend(rest.next().ok_or_else(usage)?.split(',').map(str::to_string)),
            o if o.starts_with("-o") => opts.extend(o[2..].split(',').map(str::to_string)),
            "-n" | "-s" | "-f" | "-v" => {} // no-mtab, sloppy, fake, verbose
            _ => return Err(usage()),
        }
    }
    let mut out = Vec::new();
    if source != "cidfs" {
        out.extend(["--home".to_string(), source.clone()]);
    }
    out.extend(["mount".to_string(), "--background".to_string(), mountpoint.clone()]);
    for opt in opts.iter().filter(|o| !o.is_empty()) {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt.as_str(), None),
        };
        if GENERIC_MOUNT_OPTIONS.contains(&key) || key.starts_with("x-") {
            continue;
        }
        let flag = if key == "ro" { "read-only".to_string() } else { key.replace('_', "-") };
        if !known_flags.contains(&flag) {
            return Err(format!("fstab option {key:?} is not a `cidfs mount` flag (see `cidfs mount --help`)"));
        }
        out.push(match value {
            Some(v) => format!("--{flag}={v}"),
            None => format!("--{flag}"),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Settings)) -> Settings {
        let mut s = Settings::default();
        f(&mut s);
        s
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "hot-size = \"8G\"\nthreads = 2\nserve = \"none\"\n").unwrap();
        let file = Settings::from_file(&dir.path().join(CONFIG_FILE)).unwrap();
        let flags = with(|s| s.threads = Some(3));
        let c = flags.over(file).resolve(dir.path().into());
        assert_eq!(c.hot_size, Size(8 << 30), "from the file");
        assert_eq!(c.threads, 3, "the flag wins");
        assert_eq!(c.serve, ServeMode::None);
        assert_eq!(c.cache_size, Size(10 << 30), "the default");
    }

    #[test]
    fn durations_read_with_units_or_as_seconds() {
        let d = |s: &str| s.parse::<Span>().map(|s| s.0);
        assert_eq!(d("5s"), Ok(std::time::Duration::from_secs(5)));
        assert_eq!(d("10m"), Ok(std::time::Duration::from_secs(600)));
        assert_eq!(d("1.5"), Ok(std::time::Duration::from_millis(1500)));
        assert_eq!(d("2h"), Ok(std::time::Duration::from_secs(7200)));
        assert!(d("5 parsecs").unwrap_err().contains("unknown unit"));
        assert!(d("-1s").is_err());
        let file: Settings = toml::from_str("seal-after = \"30s\"\n").unwrap();
        assert_eq!(file.seal_after, Some(Span(std::time::Duration::from_secs(30))));
    }

    #[test]
    fn an_unknown_key_in_the_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "hot_sise = 1\n").unwrap();
        let err = Settings::from_file(&dir.path().join(CONFIG_FILE)).unwrap_err();
        assert!(err.contains("hot_sise") && err.contains(CONFIG_FILE), "{err}");
    }

    #[test]
    fn sizes_and_reserves_read_as_text_or_numbers() {
        let s: Settings = toml::from_str("cap = 1024\nhot-size = \"1M\"\nreserve = \"10%\"").unwrap();
        assert_eq!(s.cap, Some(Size(1024)));
        assert_eq!(s.hot_size, Some(Size(1 << 20)));
        assert_eq!(s.reserve, Some(Reserve::Share(0.1)));
        let s: Settings = toml::from_str("reserve = \"2G\"").unwrap();
        assert_eq!(s.reserve, Some(Reserve::Bytes(2 << 30)));
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn environment_values_parse_like_flags() {
        assert_eq!(<Vec<String>>::from_env("a, b,,c").unwrap(), vec!["a", "b", "c"]);
        assert!(bool::from_env("1").unwrap() && !bool::from_env("false").unwrap());
        assert!(bool::from_env("maybe").is_err());
        assert_eq!(Size::from_env("2K").unwrap(), Size(2048));
    }

    #[test]
    fn bad_values_are_refused_whatever_their_source() {
        let mut c = Config::defaults("/tmp/x".into());
        c.trust = vec!["not-a-peer".into()];
        assert!(c.check().unwrap_err().contains("not-a-peer"));
    }

    #[test]
    fn fstab_options_become_mount_flags() {
        let known: Vec<String> = ["allow-other", "read-only", "hot-size", "peer", "offline"].map(String::from).into();
        let args: Vec<String> = [
            "/var/lib/cidfs",
            "/mnt/d",
            "-o",
            "rw,allow_other,nofail,_netdev,x-systemd.automount,hot_size=8G,peer=/a,peer=/b,ro",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            fstab_args(&args, &known).unwrap(),
            [
                "--home",
                "/var/lib/cidfs",
                "mount",
                "--background",
                "/mnt/d",
                "--allow-other",
                "--hot-size=8G",
                "--peer=/a",
                "--peer=/b",
                "--read-only"
            ]
        );
        let bad: Vec<String> = ["cidfs", "/mnt/d", "-o", "hot_sise=1"].map(String::from).into();
        assert!(fstab_args(&bad, &known).unwrap_err().contains("hot_sise"));
    }
}
