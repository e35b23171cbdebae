"""Peak memory of concurrent password checks for docs/web.md: 12 wrong passwords
checked at once (argon2id, 64 MiB each) on plain threads, then through the
page's PasswordChecks (2 at a time). Run each mode in its own process (peak RSS
never goes down):

    .venv/bin/python scripts/bench_login_memory.py unbounded
    .venv/bin/python scripts/bench_login_memory.py bounded
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import tempfile
from pathlib import Path

from agent.web.access import PasswordChecks
from agent.web.users import UserStore


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _run(bounded: bool, n: int) -> None:
    store = UserStore(Path(tempfile.mkdtemp()) / "web-users.json")
    store.add("tech", "technician", "tech-pass-1")
    before = _peak_mib()
    if bounded:
        checks = PasswordChecks(workers=2, queue=n)
        await asyncio.gather(*[checks.run(store.verify, "tech", f"wrong-{i}")
                               for i in range(n)])
        checks.close()
    else:
        await asyncio.gather(*[asyncio.to_thread(store.verify, "tech", f"wrong-{i}")
                               for i in range(n)])
    mode = "2 at a time" if bounded else "all at once"
    print(f"{n} checks, {mode}: peak RSS {before:.0f} -> {_peak_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("bounded", "unbounded"))
    parser.add_argument("-n", type=int, default=12, help="checks at once (default 12)")
    args = parser.parse_args()
    asyncio.run(_run(args.mode == "bounded", args.n))


if __name__ == "__main__":
    main()
