#!/usr/bin/env python3
"""mca-attest benchmark: the peak memory of `mca-attest report` on a large results file.

The contract bounds it: at most twice the CSV files' total size plus 64 MiB. This writes a
`confirm` results file of --rows rows (default 1,048,575, the most one worksheet holds) as a
run at --concurrency 64 would: completion order shuffled within windows of 128 rows, and 1 %
of the rows recorded twice (`failed`, then `confirmed` by a resumed run at the end of the
file), then runs the release binary on it under GNU time and prints the peak resident set
against the bound. Not a timed test: the wall time is shown for information only.

Usage: python3 bench/report_memory.py [--rows N] [--binary PATH] [--work DIR] [--keep]
  --binary  default: $CARGO_TARGET_DIR/release/mca-attest, else target/release/mca-attest
  --work    folder for the CSV and the workbook (default: a temporary folder, removed after)
Exit 0 when the bound is met, 1 when it is not, 2 when the run itself failed.
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "row,customer_tenant_id,first_name,last_name,email,phone_number,date_agreed,status,"
    "http_status,error_code,error_name,message,attempts,template_id,request_id,"
    "correlation_id,finished_at"
)
WINDOW = 128
RETRIED = 0.01


def log(msg):
    print(f"[report-memory] {msg}", file=sys.stderr, flush=True)


def line(rnd, row, status, second):
    tenant = uuid.UUID(int=rnd.getrandbits(128), version=4)
    request = uuid.UUID(int=rnd.getrandbits(128), version=4)
    correlation = uuid.UUID(int=rnd.getrandbits(128), version=4)
    if status == "failed":
        code, name, message = "503", "ServiceUnavailable", "the service is unavailable; try later"
    else:
        code, name, message = "201", "", ""
    return (
        f"{row},{tenant},First{row},Last{row},user{row}@contoso.com,'+1 425 555 {row % 10000:04d},"
        f"2024-05-01T00:00:00Z,{status},{code},,{name},{message},1,"
        f"117a1c5e-2b9c-4a8e-9c1d-0e2f3a4b5c6d,{request},{correlation},"
        f"2024-07-01T10:{(row // 60) % 60:02d}:{second % 60:02d}Z\n"
    )


def make_results(path, rows, seed=7):
    rnd = random.Random(seed)
    retried = []
    with open(path, "w", newline="") as f:
        f.write(HEADER + "\n")
        for start in range(1, rows + 1, WINDOW):
            window = list(range(start, min(start + WINDOW, rows + 1)))
            rnd.shuffle(window)
            for row in window:
                if rnd.random() < RETRIED:
                    retried.append(row)
                    f.write(line(rnd, row, "failed", row))
                else:
                    f.write(line(rnd, row, "confirmed", row))
        # The resumed run: the failed rows again, now confirmed.
        for row in retried:
            f.write(line(rnd, row, "confirmed", row + 1))
    return rows + len(retried)


def default_binary():
    target = os.environ.get("CARGO_TARGET_DIR")
    base = Path(target) if target else ROOT / "target"
    return base / "release" / "mca-attest"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_048_575)
    parser.add_argument("--binary", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    binary = args.binary or default_binary()
    if not binary.exists():
        log(f"no binary at {binary}: build it with cargo build --release")
        return 2
    if not Path("/usr/bin/time").exists():
        log("GNU time (/usr/bin/time) is needed to read the peak resident set")
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="report-memory."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        csv = work / "large.results.csv"
        log(f"writing {args.rows:,} rows to {csv}")
        lines = make_results(csv, args.rows)
        size = csv.stat().st_size
        out = work / "large.xlsx"
        stats = work / "time.txt"
        cmd = ["/usr/bin/time", "-f", "%M %e", "-o", str(stats),
               str(binary), "report", str(csv), "-o", str(out), "--no-progress"]
        log("running " + " ".join(cmd[5:]))
        started = time.monotonic()
        run = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.monotonic() - started
        if run.returncode != 0:
            log(f"report exited {run.returncode}: {run.stderr[-2000:]}")
            return 2
        rss_kib, _ = stats.read_text().split()[-2:]
        peak = int(rss_kib) * 1024
        bound = 2 * size + 64 * 2**20
        mib = 2**20
        print(f"rows {args.rows:,} ({lines:,} lines), CSV {size / mib:,.1f} MiB, "
              f"workbook {out.stat().st_size / mib:,.1f} MiB")
        print(f"peak RSS {peak / mib:,.1f} MiB; bound 2 x CSV + 64 MiB = {bound / mib:,.1f} MiB: "
              f"{'met' if peak <= bound else 'MISSED'} ({peak / bound:.0%} of it); "
              f"wall {wall:.1f} s")
        return 0 if peak <= bound else 1
    finally:
        if args.keep:
            log(f"kept {work}")
        elif args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
