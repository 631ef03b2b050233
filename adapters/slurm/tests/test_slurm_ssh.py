"""The same adapter through a login node: a real sshd on 127.0.0.1 with a throwaway key."""

from __future__ import annotations

import re
from pathlib import Path

from unijob.contract import JobState
from unijob_adapters.slurm.adapter import SlurmAdapter
from unijob_adapters.slurm.testing import spec_with, wait_final

PORTABLE = Path(__file__).resolve().parents[3] / "examples" / "portable" / "job.yaml"


def test_portable_example_over_ssh(sshd, slurm_opts):
    adapter = SlurmAdapter(poll_interval=0.5)  # no SLURM_CONF here: the login node's sessions carry it
    spec = spec_with(PORTABLE, {**slurm_opts, **sshd, "staging_dir": slurm_opts["staging_dir"] + "-ssh"})
    assert adapter.check(spec).ready, adapter.check(spec).problems
    plan = adapter.plan(spec, "over-ssh")
    h = adapter.submit(plan)
    assert adapter.submit(plan).native_id == h.native_id
    lines = list(adapter.logs(h, follow=True))
    st = wait_final(adapter, h)
    assert st.state is JobState.SUCCEEDED, (st, lines)
    worlds = {m.group(1) for line in lines if (m := re.search(r"rank \d/(\d) on node", line))}
    assert worlds == {"2"} and sum(line.startswith("[rank") for line in lines) == 2, lines


def test_unreachable_login_is_a_readiness_problem(sshd, slurm_opts):
    from unijob_adapters.slurm.testing import free_port

    spec = spec_with(PORTABLE, {**slurm_opts, **sshd, "ssh_port": free_port()})
    r = SlurmAdapter().check(spec)
    assert not r.ready and "cannot reach the Slurm login node root@127.0.0.1" in r.problems[0]
