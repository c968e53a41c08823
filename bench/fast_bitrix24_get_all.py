"""fast_bitrix24's get_all on the emulated portal, for the side-by-side in tests/e2e/bench.rs.

    python3 bench/fast_bitrix24_get_all.py WEBHOOK_URL

Reads every contact with the select of pipelines/contacts.yaml's fixed fields and prints
`rows seconds` on stdout (wall time of get_all alone; the emulator counts the requests).
"""

import sys
import time

from fast_bitrix24 import Bitrix


def main() -> None:
    webhook = sys.argv[1]
    b = Bitrix(webhook, verbose=False, ssl=False)
    started = time.monotonic()
    rows = b.get_all(
        "crm.contact.list",
        {"select": ["ID", "NAME", "LAST_NAME", "PHONE", "EMAIL", "DATE_CREATE", "DATE_MODIFY"]},
    )
    print(len(rows), round(time.monotonic() - started, 3))


if __name__ == "__main__":
    main()
