//! `mca-attest man`: one manual page with everything a person needs on a machine without the
//! README: every subcommand with its synopsis and flags (from the command line's own
//! definition, so it cannot drift), the environment, the files a run writes, and the exit
//! codes.

use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

use crate::cli::Cli;

/// Environment variables the tool reads.
const ENVIRONMENT: [(&str, &str); 10] = [
    (
        "PARTNER_CENTER_ACCESS_TOKEN",
        "a ready App+User access token (wins over the refresh-token variables)",
    ),
    (
        "PARTNER_CENTER_TENANT_ID",
        "the partner's tenant, for the refresh-token flow (secure application model)",
    ),
    ("PARTNER_CENTER_CLIENT_ID", "the application's id"),
    ("PARTNER_CENTER_CLIENT_SECRET", "its client secret"),
    (
        "PARTNER_CENTER_REFRESH_TOKEN",
        "the refresh token from the App+User consent; a rotated one is used for the run only",
    ),
    (
        "PARTNER_CENTER_REFRESH_TOKEN_FILE",
        "a file holding the refresh token; a token the authority rotates is written back to it, atomically, keeping its permissions (every variable above may be given as NAME_FILE)",
    ),
    (
        "PARTNER_CENTER_AUTHORITY",
        "the token authority (default https://login.microsoftonline.com; http only to loopback)",
    ),
    (
        "PARTNER_CENTER_BASE_URL",
        "the API root (default https://api.partnercenter.microsoft.com), as --base-url",
    ),
    (
        "RUST_LOG",
        "log level and filter (default info; -q and -v change the default)",
    ),
    ("NO_COLOR", "turns colour off"),
];

/// Files a run writes.
const FILES: [(&str, &str); 8] = [
    (
        "INPUT",
        "a CSV file; '-' (stdin), a pipe (<(…), /dev/stdin) or a FIFO is read once and hashed as it is read; reports of '-' and <(…) default to stdin.<kind>.csv in the working directory. Rows whose cells are all empty are skipped and counted (empty_rows_skipped). UTF-8; a Windows-1252 file (Excel's CSV (Comma delimited)) is refused unless --encoding windows-1252 is given. Messages name a row and its spreadsheet line (row 6 (spreadsheet line 7))",
    ),
    (
        "<input stem>.results.csv",
        "confirm's results file, the audit record: one line per row, flushed as each row finishes; never replaced, continued with --resume",
    ),
    (
        "<input stem>.dry-run.csv",
        "confirm --dry-run's report, never the results file a real run uses",
    ),
    (
        "<input stem>.status.csv, all-customers.status.csv",
        "status reports, replaced only by a run that completes",
    ),
    (
        "<report>.partial",
        "where every report (status, customers -o, validate -o) and the --emit-confirm-input file is written until its run completes; only then is it renamed to its final name, with its manifest (which names the final file). A run that stops early leaves the final name as it was, or absent; --resume continues the partial file",
    ),
    ("<input stem>.validation.csv", "validate's report"),
    (
        "<report>.manifest.json",
        "beside every results or report file: tool version, command line without secrets, run id, input SHA-256 and row count, counts, exit code; one entry per run",
    ),
    (
        "locks",
        "a run holds an exclusive lock on its results or report file; a second run on it is refused with exit 2",
    ),
];

/// The contract's exit codes.
const EXIT_STATUS: [(&str, &str); 6] = [
    (
        "0",
        "every row confirmed, already confirmed, would confirm or valid (status: every customer attested or direct_signed)",
    ),
    (
        "1",
        "the run finished and some rows are invalid, conflict (one tenant named with different signers: none of its rows is sent) or failed (status: some customers missing, stale or error; listing items without a usable tenant id; a listing of no customers)",
    ),
    (
        "2",
        "usage, configuration or input-file error, or another run is using the file: nothing was sent",
    ),
    (
        "3",
        "aborted mid-run (credentials refused, template unavailable, file not writable, service down or refusing every row alike): finished rows are recorded; --resume continues",
    ),
    (
        "4",
        "every row was recorded, but a rotated refresh token could not be saved to PARTNER_CENTER_REFRESH_TOKEN_FILE: the next run will be refused until the file is fixed (the error line says how). Wins over 1; a run that aborted (3) or was interrupted (130) keeps its code and prints the same error line",
    ),
    (
        "130",
        "interrupted (SIGINT, SIGTERM or SIGHUP): rows in flight finished and recorded; --resume continues",
    ),
];

/// The whole manual page, as roff.
pub(crate) fn render() -> std::io::Result<Vec<u8>> {
    let mut cli = Cli::command();
    cli.build();
    let mut page = Vec::new();
    let main = Man::new(cli.clone());
    main.render_title(&mut page)?;
    main.render_name_section(&mut page)?;
    main.render_synopsis_section(&mut page)?;
    main.render_description_section(&mut page)?;
    main.render_options_section(&mut page)?;
    render_subcommands(&cli, &mut page)?;
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut roff = Roff::default();
        roff.control("SH", [format!("mca-attest {}", sub.get_name()).as_str()]);
        roff.to_writer(&mut page)?;
        let man = Man::new(sub.clone());
        for render in [
            Man::render_synopsis_section,
            Man::render_description_section,
            Man::render_options_section,
            Man::render_extra_section,
        ] {
            let mut part = Vec::new();
            render(&man, &mut part)?;
            // Each subcommand's parts become subsections of its own section; clap_mangen calls
            // the after-help section EXTRA, and ours holds examples, laid out as written.
            let mut part = String::from_utf8_lossy(&part).into_owned();
            if part.contains(".SH EXTRA\n") {
                part = format!(
                    "{}.fi\n",
                    part.replace(".SH EXTRA\n", ".SH EXAMPLES\n.nf\n")
                );
            }
            let part = part.replace("\n.SH ", "\n.SS ");
            let part = part
                .strip_prefix(".SH ")
                .map_or(part.clone(), |rest| format!(".SS {rest}"));
            page.extend_from_slice(part.as_bytes());
        }
    }
    for (title, items) in [
        ("ENVIRONMENT", &ENVIRONMENT[..]),
        ("FILES", &FILES[..]),
        ("EXIT STATUS", &EXIT_STATUS[..]),
    ] {
        let mut roff = Roff::default();
        roff.control("SH", [title]);
        for (name, text) in items {
            roff.control("TP", []);
            roff.text([bold(*name)]);
            roff.text([roman(*text)]);
        }
        roff.to_writer(&mut page)?;
    }
    main.render_version_section(&mut page)?;
    Ok(ascii_only(&String::from_utf8_lossy(&page)).into_bytes())
}

/// The SUBCOMMANDS section. clap_mangen's own names a page per subcommand (`mca-attest-confirm(1)`),
/// and there is one page: each subcommand points to its section of this page instead.
fn render_subcommands(cli: &clap::Command, page: &mut Vec<u8>) -> std::io::Result<()> {
    let mut roff = Roff::default();
    roff.control("SH", ["SUBCOMMANDS"]);
    roff.text([roman("Each is described in its own section below.")]);
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("mca-attest {}", sub.get_name());
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        roff.control("TP", []);
        roff.text([bold(name.as_str())]);
        roff.text([roman(about)]);
    }
    roff.control("TP", []);
    roff.text([bold("mca-attest help"), roman(" [SUBCOMMAND]")]);
    roff.text([roman("Print the help of the tool or of a subcommand")]);
    roff.to_writer(page)
}

/// The page in ASCII: groff reads its input as Latin-1 (or warns on bytes it cannot place), so
/// a character beyond ASCII in a help text becomes its ASCII spelling or a groff `\[uXXXX]` escape.
fn ascii_only(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    for c in page.chars() {
        match c {
            c if c.is_ascii() => out.push(c),
            '\u{2026}' => out.push_str("..."),
            '\u{2018}' | '\u{2019}' => out.push_str("\\(aq"),
            '\u{201C}' | '\u{201D}' => out.push('"'),
            '\u{2013}' => out.push_str("\\(en"),
            '\u{2014}' => out.push_str("\\(em"),
            '\u{2192}' => out.push_str("\\(->"),
            '\u{00A0}' => out.push_str("\\ "),
            '\u{00AD}' => out.push_str("\\%"),
            c => out.push_str(&format!("\\[u{:04X}]", u32::from(c))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;
    use proptest::prelude::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    /// What `groff -ww -z -man` prints for `page` (every warning enabled, output discarded), or
    /// None when groff is not installed outside CI (CI installs it: there the test must run).
    fn groff_warnings(page: &str) -> Option<String> {
        let spawned = Command::new("groff")
            .args(["-ww", "-z", "-man"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: groff is not installed ({e}); apt-get install groff-base");
                return None;
            }
            Err(e) => panic!("groff is needed in CI (apt-get install groff-base): {e}"),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(page.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "groff failed: {out:?}");
        Some(String::from_utf8_lossy(&out.stderr).into_owned())
    }

    #[test]
    fn groff_reads_the_page_without_a_warning_and_it_names_no_missing_page() {
        let page = String::from_utf8(render().unwrap()).unwrap();
        assert!(page.is_ascii(), "the page holds non-ASCII characters");
        // The only page there is: this one. No `mca-attest-confirm(1)` and the like.
        assert!(
            !page.contains("mca\\-attest\\-"),
            "a reference to a page that does not exist"
        );
        assert!(!page.contains("(1)"), "a reference to another page");
        assert!(!page.contains(".SS EXTRA"), "an EXTRA subsection");
        for sub in ["confirm", "validate", "status", "report", "completions"] {
            let entry = format!("\\fBmca\\-attest {sub}\\fR");
            assert!(page.contains(&entry), "SUBCOMMANDS lacks {sub}");
        }
        if let Some(warnings) = groff_warnings(&page) {
            assert_eq!(warnings, "", "groff -ww -z warns about the page");
        }
    }

    /// Text as help strings may hold it: ASCII words, accented Latin letters and the typographic
    /// punctuation an editor slips in.
    fn help_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            "[a-zA-Z0-9 ,.:;()'/-]{1,12}",
            proptest::char::range('\u{A0}', '\u{FF}').prop_map(String::from),
            proptest::sample::select(vec![
                '\u{2026}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2013}', '\u{2014}',
                '\u{2192}'
            ])
            .prop_map(String::from),
        ];
        proptest::collection::vec(piece, 1..12).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Any such text, put through the page's ASCII pass as a paragraph, is ASCII, keeps its
        /// ASCII untouched, and groff takes it without a warning.
        #[test]
        fn help_text_becomes_ascii_groff_takes_without_a_warning(text in help_text()) {
            let page = ascii_only(&format!(".TH T 1\n.SH NAME\nt \\- {text}\n"));
            prop_assert!(page.is_ascii());
            if text.is_ascii() {
                prop_assert!(page.contains(&text));
            }
            if let Some(warnings) = groff_warnings(&page) {
                prop_assert_eq!(warnings, "", "{}", page);
            }
        }
    }

    #[test]
    fn the_page_has_every_subcommand_flag_variable_and_exit_code() {
        let page = String::from_utf8(render().unwrap()).unwrap();
        for sub in [
            "confirm",
            "validate",
            "status",
            "customers",
            "template",
            "simulator",
        ] {
            let title = format!(".SH \"mca-attest {sub}\"");
            assert!(page.contains(&title), "{sub}");
        }
        for flag in [
            "\\-\\-resume",
            "\\-\\-all\\-customers",
            "\\-\\-refresh\\-cutoff",
            "\\-\\-emit\\-confirm\\-input",
        ] {
            assert!(page.contains(flag), "{flag}");
        }
        for (name, _) in ENVIRONMENT {
            assert!(page.contains(name), "{name}");
        }
        assert!(page.contains("EXIT STATUS"));
        // Every code the binary can exit with is listed.
        for exit in [
            Exit::Success,
            Exit::RowProblems,
            Exit::Usage,
            Exit::Aborted,
            Exit::TokenUnsaved,
            Exit::Interrupted,
        ] {
            let code = exit.code().to_string();
            assert!(
                EXIT_STATUS.iter().any(|(c, _)| *c == code),
                "exit {code} is not in the page"
            );
            assert!(page.contains(&format!("\\fB{code}\\fR")), "{code}");
        }
    }
}
