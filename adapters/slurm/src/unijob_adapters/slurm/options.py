"""The ``targets.slurm`` block of a spec: where the cluster is and which of its partitions, QoS,
account and GRES names a job uses.

Example::

    targets:
      slurm:
        login: alice@login.hpc.example.org     # omit to run Slurm's commands on this machine
        staging_dir: /shared/alice/unijob      # a directory every node sees
        python: /shared/envs/ml/bin/python
        partition: gpu
        spot_partition: preempt                # spot policies run here (PreemptMode=REQUEUE)
        account: ml-team
        gres: {A100-80GB: a100_80g}
"""

from __future__ import annotations

from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field

#: Slurm names (partition, QoS, account, GRES type): letters, digits and ``_.-+`` (no spaces, commas
#: or colons, which separate lists and GRES fields in Slurm's own syntax).
SLURM_NAME = r"^[A-Za-z0-9_.+-]+$"


class SlurmOptions(BaseModel):
    """Options of the ``slurm`` target (``targets.slurm`` in a spec).

    Attributes:
        login: ``user@host`` (or ``host``) of a login node, reached with the system ``ssh`` client
            and key authentication (``BatchMode=yes``: never a password prompt); ``None`` runs
            ``sbatch``/``squeue``/``sacct``/``scancel`` on this machine.
        ssh_port / ssh_identity / ssh_options: ``ssh -p``, ``ssh -i`` and extra ``-o KEY=VALUE``
            options (e.g. ``UserKnownHostsFile=...``).
        staging_dir: a directory on a filesystem every node of the cluster sees (``$HOME`` on most
            clusters), where a job's source, the runtime, the batch script and the output files
            go. ``~`` is the cluster user's home. Default ``~/.unijob/slurm``.
        python: the job's Python on the nodes (a path or a name on ``PATH``). unijob's runtime is
            put beside it, not into it (see :mod:`unijob_adapters.slurm.plan`).
        partition / qos / account: ``--partition`` / ``--qos`` / ``--account`` of on-demand jobs
            (Slurm's defaults when unset).
        spot_partition / spot_qos: where ``spot`` and ``spot_with_fallback`` jobs run: a
            preemptible partition (``PreemptMode=REQUEUE``) or QoS. A spot policy needs one of them.
        gres: canonical accelerator (``A100-80GB``) -> the cluster's GRES type name
            (``a100_80g``), for ``--gpus-per-node=TYPE:COUNT``; an accelerator without an entry
            uses its canonical name in lower case (``l4``, ``h100``).
        cpus_per_task: ``--cpus-per-task`` (default: ``resources.cpus`` / processes per node,
            rounded down, at least 1).
        grace_seconds: seconds between the preemption notice (SIGTERM to the batch script, which
            forwards it to every rank) and the kill: ``--signal=B:TERM@<grace>``. Match the
            partition's ``GraceTime``.
        master_port_base: rank 0's rendezvous port is ``base + job id mod 10000``, so two jobs
            sharing a node do not collide.
        modules: ``module load`` lines run before the job (environment modules / Lmod).
        setup: shell lines run in the batch script before the gang starts (e.g. ``source
            /shared/envs/ml/bin/activate``).
        sbatch_args: extra ``#SBATCH`` options, verbatim (e.g. ``--constraint=a100``).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)  # completed by modelcache below

    login: Optional[str] = Field(default=None, pattern=r"^([A-Za-z0-9._-]+@)?[A-Za-z0-9.:_-]+$")
    ssh_port: Optional[int] = Field(default=None, ge=1, le=65535)
    ssh_identity: Optional[str] = None
    ssh_options: list[str] = Field(default_factory=list)
    staging_dir: str = Field(default="~/.unijob/slurm", pattern=r"^(~|/)[^\s'\"$`\\]*$")
    python: str = Field(default="python3", pattern=r"^[^\s'\"$`\\]+$")
    partition: Optional[str] = Field(default=None, pattern=SLURM_NAME)
    qos: Optional[str] = Field(default=None, pattern=SLURM_NAME)
    account: Optional[str] = Field(default=None, pattern=SLURM_NAME)
    spot_partition: Optional[str] = Field(default=None, pattern=SLURM_NAME)
    spot_qos: Optional[str] = Field(default=None, pattern=SLURM_NAME)
    gres: dict[str, Annotated[str, Field(pattern=SLURM_NAME)]] = Field(default_factory=dict)
    cpus_per_task: Optional[int] = Field(default=None, ge=1)
    grace_seconds: int = Field(default=60, ge=1, le=3600)
    master_port_base: int = Field(default=20000, ge=1024, le=55535)
    modules: list[str] = Field(default_factory=list)
    setup: list[str] = Field(default_factory=list)
    sbatch_args: list[str] = Field(default_factory=list)

    def gres_name(self, accelerator: str) -> str:
        """The cluster's GRES type for a canonical accelerator name."""
        return self.gres.get(accelerator) or accelerator.lower()


# Completed from the validators an earlier process built (keyed by the installed versions and the
# source files), else built by pydantic now: see unijob.modelcache.
from unijob import modelcache  # noqa: E402

modelcache.install_module(__name__)
