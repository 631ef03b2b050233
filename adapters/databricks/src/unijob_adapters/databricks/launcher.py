"""unijob's launcher on a Databricks cluster (uploaded as ``_unijob_launcher.py``; stdlib + pyspark).

It is the ``spark_python_task`` of every unijob run and takes::

    --mode direct|local|distributed --num-processes N --use-gpu true|false -- SCRIPT [ARGS...]
    --exec -- COMMAND [ARGS...]

``direct``: runs SCRIPT in this process (one rank, on the driver). ``local``: PyTorch's
``TorchDistributor(num_processes=N, local_mode=True, use_gpu=...)`` starts N ranks on the driver of
a single-node cluster. ``distributed``: ``TorchDistributor(..., local_mode=False)`` starts N ranks
across the workers, as Databricks documents for distributed PyTorch
(https://docs.databricks.com/aws/en/machine-learning/train-model/distributed-training/spark-pytorch-distributor).
TorchDistributor launches each rank with torchrun, which sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR... ``--exec``: runs COMMAND (a container job's entrypoint) and exits with its code.
A non-zero exit fails the task, so Databricks reports the run FAILED.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys


def parse(argv: list[str]) -> dict:
    """Split the launcher's argv into options and the program after ``--``.

    Raises:
        SystemExit: malformed arguments (code 2).
    """
    if "--" not in argv:
        sys.exit("unijob launcher: expected '--' before the program")
    i = argv.index("--")
    head, program = argv[:i], argv[i + 1:]
    if not program:
        sys.exit("unijob launcher: no program after '--'")
    opts = {"mode": "direct", "num_processes": 1, "use_gpu": False, "exec": False}
    it = iter(head)
    for a in it:
        if a == "--exec":
            opts["exec"] = True
        elif a == "--mode":
            opts["mode"] = next(it, "")
        elif a == "--num-processes":
            opts["num_processes"] = int(next(it, "1"))
        elif a == "--use-gpu":
            opts["use_gpu"] = next(it, "false") == "true"
        else:
            sys.exit(f"unijob launcher: unknown option {a!r}")
    if opts["mode"] not in ("direct", "local", "distributed"):
        sys.exit(f"unijob launcher: unknown mode {opts['mode']!r}")
    opts["program"] = program
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(list(sys.argv[1:] if argv is None else argv))
    program = opts["program"]
    if opts["exec"]:
        return subprocess.call(program)
    script, args = program[0], program[1:]
    if opts["mode"] == "direct":
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        sys.argv = [script, *args]
        runpy.run_path(script, run_name="__main__")
        return 0
    from pyspark.ml.torch.distributor import TorchDistributor  # present on Databricks ML runtimes
    from pyspark.sql import SparkSession

    # TorchDistributor takes SparkSession.active(), and a Python file task has no session until it
    # asks for one (pyspark >= 3.5 raises NO_ACTIVE_OR_DEFAULT_SESSION otherwise).
    SparkSession.builder.getOrCreate()

    TorchDistributor(num_processes=opts["num_processes"], local_mode=opts["mode"] == "local",
                     use_gpu=opts["use_gpu"]).run(script, *args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
