"""Cold `unijob cost` over the full catalog: median wall time of N fresh processes (target < 0.5 s).

Runs `unijob cost SPEC -o json` (every target, so every price family is parsed) through the `unijob`
entry point when it is installed and answers; otherwise it falls back to invoking the command object
directly: `python -c "from unijob.cli.cost_cmds import cost; cost.main([...])"`, and says so.
Also times `catalog gpus` (every shape x every priced region), `breakeven --accelerator H100:8` (both
sides priced from the catalog, the +-20% sensitivity) and `python -c pass` for reference.

Usage: .venv/bin/python benchmarks/bench_cost.py [N]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """name: bench
image: python:3.11
command: ["true"]
resources: {accelerator: "A100:8", nodes: 4}
spot: {policy: spot}
checkpoint: {uri: "s3://b/c"}
max_run: 8h
"""


def _time(cmd: list[str], n: int) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 11
    py = sys.executable
    with tempfile.TemporaryDirectory() as d:
        spec = Path(d) / "job.yaml"
        spec.write_text(SPEC)
        exe = shutil.which("unijob", path=str(Path(py).parent))
        via = "fallback: python -c 'from unijob.cli.cost_cmds import cost; cost.main(...)' (no working unijob entry point)"
        cmd = [py, "-c", f"from unijob.cli.cost_cmds import cost; cost.main(['{spec}', '-o', 'json'], standalone_mode=False)"]
        if exe and subprocess.run([exe, "cost", str(spec), "-o", "json"], capture_output=True, cwd=d).returncode == 0:
            cmd, via = [exe, "cost", str(spec), "-o", "json"], "unijob entry point"
        base = _time([py, "-c", "pass"], n)
        core = _time([py, "-c", "import unijob.loading"], n)
        c = _time(cmd, n)
        g = _time([py, "-c", "from unijob.cli.cost_cmds import catalog; catalog.main(['gpus', '-o', 'json'], standalone_mode=False)"], n)
        b = _time([py, "-c", "from unijob.cli.cost_cmds import breakeven; "
                             "breakeven.main(['-a', 'H100:8', '-o', 'json'], standalone_mode=False)"], n)
    print(f"python -c pass              median {base * 1000:7.1f} ms")
    print(f"import unijob.loading (core) median {core * 1000:7.1f} ms   (the JobSpec models; not the cost module)")
    print(f"unijob cost (all targets)   median {c * 1000:7.1f} ms   [{via}]   target < 500 ms: {'OK' if c < 0.5 else 'MISSED'}")
    print(f"catalog gpus (all offers)   median {g * 1000:7.1f} ms")
    print(f"breakeven -a H100:8         median {b * 1000:7.1f} ms   ({b / c:.2f}x unijob cost)")


if __name__ == "__main__":
    main()
