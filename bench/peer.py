"""The script a partner would write instead of mca-attest: asyncio + aiohttp, the same job.

Reads the input CSV, fetches the MCA template once, POSTs one agreement per row with the
documented headers at a fixed concurrency, treats 600061 as done, and writes a results CSV.
Used by bench/run.sh as the peer to compare against; it is deliberately straightforward, as a
competent engineer would write it in an afternoon (no rate limiter, no retries).
"""

import argparse
import asyncio
import csv
import json
import sys
import time
import uuid
from datetime import datetime, timezone

import aiohttp

MCA = "MicrosoftCustomerAgreement"


def to_utc(raw: str) -> str:
    raw = raw.strip()
    if len(raw) == 10:
        return raw + "T00:00:00Z"
    dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--token", default="bench")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()

    headers = {
        "Authorization": f"Bearer {args.token}",
        "Accept": "application/json",
        "X-Locale": "en-US",
    }
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.get(
            f"{args.base_url}/v1/agreements", params={"agreementType": MCA}
        ) as resp:
            items = (await resp.json())["items"]
        template = max(
            (i for i in items if i["agreementType"] == MCA), key=lambda i: i["versionRank"]
        )["templateId"]

        out = open(args.output, "w", newline="")
        writer = csv.writer(out)
        writer.writerow(
            ["row", "customer_tenant_id", "status", "http_status", "error_code", "request_id",
             "correlation_id", "finished_at"]
        )
        queue: asyncio.Queue = asyncio.Queue(maxsize=args.concurrency * 4)

        async def worker() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    return
                n, row = item
                request_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
                contact = {
                    "firstName": row["first_name"],
                    "lastName": row["last_name"],
                    "email": row["email"],
                }
                if row.get("phone_number"):
                    contact["phoneNumber"] = row["phone_number"]
                body = {
                    "primaryContact": contact,
                    "templateId": template,
                    "dateAgreed": to_utc(row["date_agreed"]),
                    "type": MCA,
                }
                try:
                    async with session.post(
                        f"{args.base_url}/v1/customers/{row['customer_tenant_id']}/agreements",
                        json=body,
                        headers={"MS-RequestId": request_id, "MS-CorrelationId": correlation_id},
                    ) as resp:
                        text = await resp.text()
                        code = ""
                        if resp.status in (200, 201):
                            status = "confirmed"
                        else:
                            try:
                                code = str(json.loads(text).get("code", ""))
                            except ValueError:
                                pass
                            status = "already_confirmed" if code == "600061" else "failed"
                        http = resp.status
                except aiohttp.ClientError as e:
                    status, http, code = "failed", "", type(e).__name__
                writer.writerow(
                    [n, row["customer_tenant_id"], status, http, code, request_id, correlation_id,
                     datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")]
                )

        workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        start = time.monotonic()
        rows = 0
        with open(args.input, newline="", encoding="utf-8-sig") as f:
            for n, row in enumerate(csv.DictReader(f), start=1):
                await queue.put((n, row))
                rows += 1
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        out.close()
        elapsed = time.monotonic() - start
        print(f"{rows} rows in {elapsed:.2f} s ({rows / elapsed:.0f} rows/s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
