//! `mca-attest simulator`: the flags turned into the simulator's typed config, then served.

use std::str::FromStr;
use std::time::Duration;

use crate::cli::{NextLink, SimulatorArgs};
use crate::error::{AppError, Exit};
use crate::simulator::{
    self, DataFiles, Faults, NextLinkForm, SimulatorConfig, SimulatorError, TokenEndpointConfig,
};

/// Serves the simulator the flags describe until SIGINT/SIGTERM.
pub(crate) async fn run(args: &SimulatorArgs) -> Result<Exit, AppError> {
    let failed = |e: SimulatorError| AppError::Usage(format!("the simulator failed: {e}"));
    let config = config(args).map_err(failed)?;
    simulator::serve(config, args.listen)
        .await
        .map_err(failed)?;
    Ok(Exit::Success)
}

/// The config the flags describe, with the data files they name read.
///
/// # Errors
/// A value that does not parse or cannot work with another, or a data file that cannot be
/// read or has a bad line.
pub fn config(args: &SimulatorArgs) -> Result<SimulatorConfig, SimulatorError> {
    let mut config = SimulatorConfig {
        rate_limit: parsed("--rate-limit", args.rate_limit.as_deref())?,
        limiter: parsed("--limiter", args.limiter.as_deref())?,
        latency: Duration::from_millis(args.latency_ms),
        faults: Faults {
            seed: args.seed,
            fail_rate: args.fail_rate,
            drop_rate: args.drop_rate,
            drop_after_commit_rate: args.drop_after_commit_rate,
            slow_rate: args.slow_rate,
            slow: Duration::from_millis(args.slow_ms),
            include_template: args.fault_template,
        },
        access_tokens: args.access_tokens.clone(),
        mfa_missing: args.mfa_missing,
        token_endpoint: TokenEndpointConfig::from_parts(
            args.client_id.clone(),
            args.client_secret.clone(),
            args.refresh_token.clone(),
            Duration::from_secs(args.token_ttl),
            args.rotate_refresh_token,
        )?,
        record_requests: !args.no_record,
        allow_non_loopback: args.allow_non_loopback,
        customers_next_link: match args.customers_next_link {
            NextLink::V1 => NextLinkForm::V1,
            NextLink::Bare => NextLinkForm::Bare,
            NextLink::Alternate => NextLinkForm::Alternate,
        },
        customers_page_size_max: args.customers_page_size_max,
        ..SimulatorConfig::default()
    };
    config.load(&DataFiles {
        existing: args.existing.clone(),
        unknown_tenants: args.unknown_tenants.clone(),
        no_relationship: args.no_relationship.clone(),
        direct_signed: args.direct_signed.clone(),
        customers: args.customers.clone(),
    })?;
    config.validate()?;
    Ok(config)
}

/// The flag's value read as a `T`, when given.
fn parsed<T>(arg: &'static str, text: Option<&str>) -> Result<Option<T>, SimulatorError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    text.map(str::parse)
        .transpose()
        .map_err(|e: T::Err| SimulatorError::InvalidArg {
            arg,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(flags: &[&str]) -> SimulatorArgs {
        let argv = ["mca-attest", "simulator"]
            .into_iter()
            .chain(flags.iter().copied());
        match Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(Command::Simulator(args)) => args,
            other => panic!("not a simulator command line: {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_simulators_own() {
        let config = config(&args(&[])).expect("the defaults make a config");
        let plain = SimulatorConfig::default();
        assert_eq!(
            config.customers_page_size_max,
            simulator::MAX_CUSTOMER_PAGE_SIZE
        );
        assert_eq!(config.customers_next_link, plain.customers_next_link);
        assert_eq!(config.faults, plain.faults);
        assert_eq!(config.latency, plain.latency);
        assert_eq!(config.rate_limit, plain.rate_limit);
        assert!(config.record_requests && config.token_endpoint.is_none());
    }

    #[test]
    fn each_next_link_form_maps_to_its_own() {
        for (flag, form) in [
            ("v1", NextLinkForm::V1),
            ("bare", NextLinkForm::Bare),
            ("alternate", NextLinkForm::Alternate),
        ] {
            let config = config(&args(&["--customers-next-link", flag])).expect("config");
            assert_eq!(config.customers_next_link, form, "{flag}");
        }
    }

    #[test]
    fn a_limiter_spec_becomes_the_limiter() {
        for spec in [
            "token-bucket:30/s,burst=5",
            "window:300/10s",
            "calendar:40/s",
            "in-flight:8",
            "changes:60/s@20s=30/s",
            "transient:2s,4s,6s,8s",
        ] {
            let config = config(&args(&["--limiter", spec])).expect("config");
            assert_eq!(config.limiter, spec.parse().ok(), "{spec}");
            assert!(config.rate_limit.is_none());
        }
        match config(&args(&["--limiter", "bucket:3/s"])) {
            Err(SimulatorError::InvalidArg { arg, .. }) => assert_eq!(arg, "--limiter"),
            other => panic!("{other:?}"),
        }
        let both = [
            "mca-attest",
            "simulator",
            "--limiter",
            "in-flight:8",
            "--rate-limit",
            "5/s",
        ];
        assert!(Cli::try_parse_from(both).is_err());
    }

    #[test]
    fn a_bad_rate_limit_names_the_flag() {
        for bad in ["0/s", "5", "5/h", "x/s", ""] {
            match config(&args(&["--rate-limit", bad])) {
                Err(SimulatorError::InvalidArg { arg, .. }) => assert_eq!(arg, "--rate-limit"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
