"""How long from saving an edited playbook to a running server using it (issue 32).

    python benchmarks/playbook_reload_bench.py [--saves 8]

The server (stand-in models) checks the playbook file every second; each save here lands at a
different point of that second, and the time until ``/api/playbook`` shows the edit is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coach.playbook import DEFAULT_PLAYBOOK  # noqa: E402
from tests.live import running_server  # noqa: E402


async def main(saves: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="coach-reload-"))
    book = folder / "playbook.yaml"
    data = yaml.safe_load(DEFAULT_PLAYBOOK.read_text())
    book.write_text(yaml.safe_dump(data))
    waits = []
    async with running_server(folder / "data", playbook=book, connections_per_minute=0) as live:
        for i in range(saves):
            await asyncio.sleep((0.37 * i) % 1.0)  # saves at different phases of the server's check
            data["prompts"]["escalation_request"]["title"] = f"Supervisor requested {i}"
            saved = time.monotonic()
            book.write_text(yaml.safe_dump(data))
            while True:
                _, now = await live.request("GET", "/api/playbook")
                if now["prompts"]["escalation_request"]["title"].endswith(f" {i}"):
                    waits.append(time.monotonic() - saved)
                    break
                await asyncio.sleep(0.01)  # polling the server for the edit
    waits.sort()
    print(f"save -> in use, {saves} saves: median {waits[len(waits) // 2]:.2f} s, max {waits[-1]:.2f} s "
          f"({', '.join(f'{w:.2f}' for w in waits)})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--saves", type=int, default=8)
    asyncio.run(main(ap.parse_args().saves))
