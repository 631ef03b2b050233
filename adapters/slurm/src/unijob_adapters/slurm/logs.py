"""Reading a Slurm job's output files: each rank's ``rank-<i>.out`` (``srun --output``) and the
batch script's ``slurm-<job id>.out``, in the job's staging directory, once or followed.

Following polls the files' sizes and reads only the new bytes (``tail -c +OFFSET``) in one
command per poll, so it costs one SSH round trip per ``poll_interval`` on a remote cluster.
"""

from __future__ import annotations

import re
import shlex
import time
from typing import Callable, Iterator

from .client import Runner, shpath

_FILE = re.compile(r"^(rank-(\d+)|slurm-(\d+))\.out$")


def label(name: str) -> str:
    """``rank-3.out`` -> ``[rank 3]``; ``slurm-12.out`` -> ``[batch]``."""
    m = _FILE.match(name)
    if m and m.group(2) is not None:
        return f"[rank {int(m.group(2))}]"
    return "[batch]"


def _order(name: str) -> tuple[int, int, str]:
    m = _FILE.match(name)
    if m and m.group(2) is not None:
        return (1, int(m.group(2)), name)
    return (0, 0, name)


def _read_new(runner: Runner, job_dir: str, offsets: dict[str, int]) -> dict[str, bytes]:
    """New bytes of every output file past ``offsets`` (file name -> bytes already read)."""
    cases = " ".join(f"{shlex.quote(n)}) off={o};;" for n, o in sorted(offsets.items()))
    cmd = (f"cd {shpath(job_dir)} 2>/dev/null || exit 0; "
           "for f in rank-*.out slurm-*.out; do [ -f \"$f\" ] || continue; off=0; "
           f"case \"$f\" in {cases} *) ;; esac; "
           "size=$(wc -c < \"$f\"); [ \"$size\" -gt \"$off\" ] || continue; "
           "printf '%s %s %s\\n' \"$f\" \"$off\" \"$size\"; tail -c +$((off + 1)) \"$f\" | head -c $((size - off)); done")
    p = runner.run(cmd)
    data, out = p.stdout, {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        name, off, size = data[i:nl].decode().split(" ")
        n = int(size) - int(off)
        out[name] = data[nl + 1: nl + 1 + n]
        offsets[name] = int(size)
        i = nl + 1 + n
    return out


def read_logs(runner: Runner, job_dir: str) -> list[str]:
    """Every line of every output file, batch first, then rank by rank, each with its label."""
    chunks = _read_new(runner, job_dir, {})
    lines = []
    for name in sorted(chunks, key=_order):
        lines += [f"{label(name)} {line}" for line in chunks[name].decode("utf-8", "replace").splitlines()]
    return lines


def tail_rank(runner: Runner, job_dir: str, rank: int, n: int = 10) -> list[str]:
    """The last ``n`` lines of one rank's output."""
    rc, out, _ = runner.text(f"tail -n {int(n)} {shpath(job_dir)}/rank-{int(rank)}.out 2>/dev/null")
    return out.splitlines()


def follow_logs(runner: Runner, job_dir: str, is_final: Callable[[], bool], poll_interval: float) -> Iterator[str]:
    """Lines as they are written, until ``is_final()`` and the files have been read to the end."""
    offsets: dict[str, int] = {}
    partial: dict[str, bytes] = {}
    while True:
        final = is_final()
        for name, data in sorted(_read_new(runner, job_dir, offsets).items(), key=lambda kv: _order(kv[0])):
            buf = partial.get(name, b"") + data
            *complete, partial[name] = buf.split(b"\n")
            for line in complete:
                yield f"{label(name)} {line.decode('utf-8', 'replace')}"
        if final:
            for name, rest in sorted(partial.items(), key=lambda kv: _order(kv[0])):
                if rest:
                    yield f"{label(name)} {rest.decode('utf-8', 'replace')}"
            return
        time.sleep(poll_interval)
