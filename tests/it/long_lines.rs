//! A record far longer than a record may be (an endless line, or a stray quote that runs on for
//! megabytes), through the real binary: it must cost bounded memory, come out as one `invalid`
//! row that says so, and leave the rows after it read as usual under their own numbers.
//!
//! Memory is measured as the peak RSS of the run, from GNU time (`/usr/bin/time -f %M`), and
//! compared with a run on the same rows without the long one. Where GNU time is missing the
//! memory check is skipped with a note, and the rest is still checked.
//!
//! `confirm` also counts and hashes the input in a second pass (`manifest::fingerprint_input`),
//! which still reads each record whole: its memory checks are ignored until that pass reads
//! through `input::RecordLimit` too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{Customer, INPUT_HEADER, Results, Run, Workdir};

/// Long enough that reading the record whole would show in the peak RSS, short enough for a
/// debug build to get through in a few seconds.
const LONG_BYTES: usize = 64 << 20;

/// What a run on the file with the long record may use over a run on the same rows without it.
/// Reading the long record whole would take at least `LONG_BYTES` more.
const HEADROOM_KIB: u64 = 32 * 1024;

/// The long record is row 4 of 7.
const LONG_ROW: u64 = 4;
const ROWS: u64 = 7;

/// What the long record is made of.
#[derive(Clone, Copy, Debug)]
enum Long {
    /// One line with a first name of `LONG_BYTES` bytes.
    Line,
    /// A first name that opens a quote and closes it `LONG_BYTES` bytes of short lines later.
    StrayQuote,
}

/// Writes the input in pieces, so that the test itself never holds the long record.
fn write_input(path: &Path, customers: &[Customer], long: Option<Long>) {
    let file = std::fs::File::create(path).expect("create the input");
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "{INPUT_HEADER}").expect("write the input");
    for (n, c) in (1..).zip(customers) {
        if n != LONG_ROW {
            writeln!(out, "{}", c.csv_line(',')).expect("write the input");
            continue;
        }
        let Some(long) = long else { continue };
        let piece: Vec<u8> = match long {
            Long::Line => vec![b'x'; 1 << 20],
            Long::StrayQuote => {
                b"a line swallowed by a quote left open ..................\n".repeat((1 << 20) / 56)
            }
        };
        let opening = if matches!(long, Long::StrayQuote) {
            "\""
        } else {
            ""
        };
        write!(out, "{},{opening}{}", c.tenant, c.first_name).expect("write the input");
        let mut written = 0;
        while written < LONG_BYTES {
            out.write_all(&piece).expect("write the input");
            written += piece.len();
        }
        writeln!(
            out,
            "{opening},{},{},,{}",
            c.last_name, c.email, c.date_agreed
        )
        .expect("write the input");
    }
    out.flush().expect("write the input");
}

/// GNU time, if this machine has it: it reports the peak RSS of the command it runs.
fn gnu_time() -> Option<PathBuf> {
    let time = PathBuf::from("/usr/bin/time");
    let probe = std::env::temp_dir().join(format!("long-lines-time-{}", std::process::id()));
    let works = Command::new(&time)
        .args(["-f", "%M", "-o"])
        .arg(&probe)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
        && read_peak(&probe).is_some();
    let _ = std::fs::remove_file(&probe);
    works.then_some(time)
}

/// The peak RSS in KiB that GNU time wrote (its last line; it may say the exit status first).
fn read_peak(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next_back()
}

/// Runs the binary with `args` in the workdir, under GNU time when `time` is given: the run and
/// its peak RSS in KiB. The environment is cleaned as [`Workdir::command`] does.
fn run_measured(wd: &Workdir, time: Option<&Path>, args: &[&str]) -> (Run, Option<u64>) {
    let Some(time) = time else {
        return (wd.command(args).run(), None);
    };
    let peak_file = wd.path("peak-rss");
    let mut cmd = Command::new(time);
    cmd.args(["-f", "%M", "-o"])
        .arg(&peak_file)
        .arg(crate::common::binary())
        .args(args)
        .current_dir(wd.dir())
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PARTNER_CENTER_") {
            cmd.env_remove(&name);
        }
    }
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(60));
    let started = Instant::now();
    let output = cmd.output().expect("run the binary under GNU time");
    let run = Run {
        command: format!("{} -f %M mca-attest {}", time.display(), args.join(" ")),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    let peak = read_peak(&peak_file);
    run.check(peak.is_some(), "GNU time wrote no peak RSS");
    (run, peak)
}

/// Reads a file whose row 4 is `long` with `command` (`validate`, or `confirm` against the
/// built-in simulator) and checks the report and the memory the run took.
fn read_past_a_long_record(command: &'static str, long: Long, accepted: &str, memory: Memory) {
    let wd = Workdir::new();
    let customers = Customer::many(ROWS as usize);
    write_input(&wd.path("long.csv"), &customers, Some(long));
    write_input(&wd.path("short.csv"), &customers, None);
    let args = |input: &'static str, report: &'static str| -> Vec<&'static str> {
        let mut args = vec![command, input, "-o", report];
        if command == "confirm" {
            args.extend(["--simulator", "--rate", "1000/s", "--no-progress"]);
        }
        args
    };
    let time = gnu_time();

    let (run, peak) = run_measured(&wd, time.as_deref(), &args("long.csv", "long.report.csv"));
    run.expect_code(1);
    let results = Results::read(&wd.path("long.report.csv"), &run);
    assert_eq!(
        results.row_numbers(),
        (1..=ROWS).collect::<Vec<_>>(),
        "one line per row, the long one counted once{run}"
    );
    let bad = results.by_row(LONG_ROW);
    assert_eq!(bad.status(), "invalid", "{bad:?}{run}");
    let message = bad.get("message");
    assert!(
        message.contains(&format!(
            "row {LONG_ROW} (spreadsheet line {}) is longer than 64 KiB",
            LONG_ROW + 1
        )) && message.contains("first_name")
            && message.contains("unbalanced quote"),
        "the message says which row is too long and where to look: {message:?}{run}"
    );
    assert_eq!(
        bad.tenant(),
        customers[LONG_ROW as usize - 1].tenant,
        "{run}"
    );
    for (n, c) in (1..).zip(&customers) {
        if n == LONG_ROW {
            continue;
        }
        let line = results.by_row(n);
        assert_eq!(line.status(), accepted, "row {n}: {line:?}{run}");
        assert_eq!(
            line.tenant(),
            c.tenant,
            "row {n} is the row of the file{run}"
        );
        assert_eq!(line.get("email"), c.email, "row {n}{run}");
    }
    let report_size = std::fs::metadata(wd.path("long.report.csv")).map_or(0, |m| m.len());
    assert!(
        report_size < 64 * 1024,
        "the report does not carry the long record: {report_size} bytes{run}"
    );

    if memory == Memory::Unchecked {
        return;
    }
    let Some(long_peak) = peak else {
        println!(
            "memory not checked: GNU time (/usr/bin/time -f %M) is not available on this machine"
        );
        return;
    };
    let (base_run, base_peak) =
        run_measured(&wd, time.as_deref(), &args("short.csv", "short.report.csv"));
    base_run.expect_code(0);
    let base_peak = base_peak.unwrap_or_default();
    println!(
        "{command}, {long:?}: peak RSS {long_peak} KiB with the {} MiB record, {base_peak} KiB without",
        LONG_BYTES >> 20
    );
    assert!(
        long_peak <= base_peak + HEADROOM_KIB,
        "reading past a {} MiB record took {long_peak} KiB at peak, {base_peak} KiB without it: more than {HEADROOM_KIB} KiB over{run}",
        LONG_BYTES >> 20
    );
}

/// Whether a test checks the peak memory of its run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Memory {
    Checked,
    Unchecked,
}

#[test]
fn validate_reads_past_a_64_mib_line_in_bounded_memory() {
    read_past_a_long_record("validate", Long::Line, "valid", Memory::Checked);
}

#[test]
fn validate_reads_past_a_stray_quote_running_on_for_64_mib_in_bounded_memory() {
    read_past_a_long_record("validate", Long::StrayQuote, "valid", Memory::Checked);
}

#[test]
fn confirm_reads_past_a_64_mib_line() {
    read_past_a_long_record("confirm", Long::Line, "confirmed", Memory::Unchecked);
}

#[test]
fn confirm_reads_past_a_stray_quote_running_on_for_64_mib() {
    read_past_a_long_record("confirm", Long::StrayQuote, "confirmed", Memory::Unchecked);
}

#[test]
fn confirm_reads_past_a_64_mib_line_in_bounded_memory() {
    read_past_a_long_record("confirm", Long::Line, "confirmed", Memory::Checked);
}

#[test]
fn confirm_reads_past_a_stray_quote_running_on_for_64_mib_in_bounded_memory() {
    read_past_a_long_record("confirm", Long::StrayQuote, "confirmed", Memory::Checked);
}
