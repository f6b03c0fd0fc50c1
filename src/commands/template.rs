//! `mca-attest template`: prints the current MCA template metadata as JSON.

use crate::api::client::MCA_AGREEMENT_TYPE;
use crate::cli::TemplateArgs;
use crate::commands::stdout_error;
use crate::config::ApiConfig;
use crate::error::{AppError, Exit};
use crate::files::print_stdout;
use crate::pipeline::AbortReason;
use crate::run::connection::Connection;

pub(crate) async fn run(args: TemplateArgs) -> Result<Exit, AppError> {
    let api = ApiConfig::try_from(&args.api)?;
    let conn = Connection::open(&api, Default::default()).await?;
    let credentials = conn.client.tokens().credentials().describe();
    let result = if args.all {
        let outcome = conn.client.agreement_templates("*").await;
        outcome
            .result
            .map(|items| serde_json::to_string_pretty(&items))
    } else {
        let outcome = conn.client.mca_template().await;
        outcome.result.map(|t| serde_json::to_string_pretty(&t))
    };
    let token = conn.close().await;
    match result {
        Ok(Ok(json)) => {
            print_stdout(format!("{json}\n").as_bytes()).map_err(stdout_error)?;
            Ok(token.exit(Exit::Success))
        }
        Ok(Err(e)) => Err(AppError::Aborted(format!("cannot print the template: {e}"))),
        Err(e) if e.is_unauthorized() => Err(AbortReason::credentials(e, &credentials).into()),
        Err(e) => Err(AppError::Api {
            what: format!("could not fetch the {MCA_AGREEMENT_TYPE} template"),
            source: Box::new(e),
        }),
    }
}
