"""fast_bitrix24's get_all on the emulated portal, for the side-by-side in tests/e2e/bench.rs.

    python3 bench/fast_bitrix24_get_all.py WEBHOOK_URL [FIELD ...]

Reads every contact with the fields given (default: the fixed fields of pipelines/contacts.yaml's
select) and prints `rows seconds` on stdout (wall time of get_all alone; the emulator counts
the requests).
"""

import sys
import time

from fast_bitrix24 import Bitrix

FIXED = ["ID", "NAME", "LAST_NAME", "PHONE", "EMAIL", "DATE_CREATE", "DATE_MODIFY"]


def main() -> None:
    webhook = sys.argv[1]
    fields = sys.argv[2:] or FIXED
    b = Bitrix(webhook, verbose=False, ssl=False)
    started = time.monotonic()
    rows = b.get_all(
        "crm.contact.list",
        {"select": fields},
    )
    print(len(rows), round(time.monotonic() - started, 3))


if __name__ == "__main__":
    main()
