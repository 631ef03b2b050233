"""PyTorch DistributedDataParallel on CPU (gloo), wired by unijob.runtime.context().

Every rank learns the same line ``y = 3x - 2`` from its own shard of a synthetic data set
(``DistributedSampler``); DDP all-reduces the gradients so the replicas stay identical. The script:

1. joins the gang: ``init_process_group("gloo")`` at ``MASTER_ADDR:MASTER_PORT`` with the rank
   and world size from :func:`unijob.runtime.context` (set by torchrun, the local target, SageMaker,
   Vertex, Databricks or Kubernetes alike);
2. checks the wiring with an all-reduce (the sum of ``rank + 1`` over all ranks);
3. resumes from the latest checkpoint (rank 0 loads it; DDP broadcasts rank 0's weights, and the
   epoch to start from is broadcast explicitly);
4. trains, checkpointing after every epoch through :class:`unijob.runtime.Checkpointer` (only rank
   0 writes); on a preemption notice on any rank, every rank stops after the current epoch;
5. checks that every replica ends with the same weights and prints them.

Needs ``torch`` in the job's Python (``pip install torch``); nothing else.
"""

from __future__ import annotations

import io
import os
import sys
from datetime import timedelta

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset  # noqa: E402

from unijob.runtime import Checkpointer, context, preempted  # noqa: E402

DEFAULTS = {"epochs": 5, "lr": 0.1, "seed": 0, "samples": 4096, "batch_size": 64}


def checkpoint_location(ctx):
    """One checkpoint root per job (see examples/quickstart/train.py)."""
    base = ctx.checkpoint_dir or ctx.checkpoint_uri
    if base is None:
        return None
    return f"{str(base).rstrip('/')}/{ctx.job_id}" if ctx.job_id else str(base)


def main() -> int:
    ctx = context()
    hp = {**DEFAULTS, **ctx.hyperparameters}
    dist.init_process_group("gloo", init_method=f"tcp://{ctx.master_addr}:{ctx.master_port}",
                            rank=ctx.rank, world_size=ctx.world_size, timeout=timedelta(seconds=120))
    try:
        code = train(ctx, hp)
        if code == 0:
            dist.barrier()  # no rank leaves (closing its gloo connections) while a peer is still in a collective
        return code
    finally:
        dist.destroy_process_group()


def train(ctx, hp) -> int:
    tag = f"[rank {ctx.rank}/{ctx.world_size} node {ctx.node_rank} local {ctx.local_rank}]"

    # 1. the wiring: every rank contributes rank + 1
    total = torch.tensor([float(ctx.rank + 1)])
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    expected = ctx.world_size * (ctx.world_size + 1) / 2
    if total.item() != expected:
        print(f"{tag} all-reduce gave {total.item()}, expected {expected}", flush=True)
        return 1
    print(f"{tag} all-reduce ok: {total.item():g} (master {ctx.master_addr}:{ctx.master_port})", flush=True)

    # 2. data and model (same seed on every rank: same data set, same initial weights)
    torch.manual_seed(int(hp["seed"]))
    x = torch.rand(int(hp["samples"]), 1) * 4 - 2
    y = 3 * x - 2 + 0.05 * torch.randn_like(x)
    data = TensorDataset(x, y)
    sampler = DistributedSampler(data, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=int(hp["seed"]))
    loader = DataLoader(data, batch_size=int(hp["batch_size"]), sampler=sampler)
    net = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(net.parameters(), lr=float(hp["lr"]))

    # 3. resume: rank 0 reads the checkpoint; the start epoch and the weights are broadcast
    ckpt = Checkpointer(checkpoint_location(ctx), keep=2)
    start = torch.zeros(1, dtype=torch.int64)
    if ctx.is_main and ckpt.latest() is not None:
        state = torch.load(io.BytesIO(ckpt.load()), weights_only=True)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start[0] = int(state["epoch"]) + 1
        print(f"{tag} resumed from checkpoint: epoch {int(start)} done (restart {ctx.restart_count})", flush=True)
    dist.broadcast(start, src=0)
    # (plain SGD keeps no optimizer state, so the other ranks need only the weights)
    model = DDP(net)  # broadcasts rank 0's parameters to every rank

    epochs = int(hp["epochs"])
    loss_fn = torch.nn.MSELoss()
    for epoch in range(int(start), epochs):
        sampler.set_epoch(epoch)
        for xb, yb in loader:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        if ctx.is_main:
            w, b = net.weight.item(), net.bias.item()
            print(f"epoch {epoch + 1}/{epochs} loss {loss.item():.5f} w {w:.4f} b {b:.4f}", flush=True)
            buf = io.BytesIO()
            torch.save({"epoch": epoch, "model": net.state_dict(), "optimizer": opt.state_dict()}, buf)
            ckpt.save(buf.getvalue(), step=epoch)  # rank 0 only (all_ranks=False)
        stop = torch.tensor([1.0 if preempted() else 0.0])
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)  # one rank's notice stops the whole gang
        if stop.item():
            print(f"{tag} preempted after epoch {epoch + 1}; exiting", flush=True)
            return 143

    # 5. every replica must hold the same weights
    mine = torch.cat([p.detach().flatten() for p in net.parameters()])
    gathered = [torch.zeros_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    if any(not torch.equal(g, gathered[0]) for g in gathered):
        print(f"{tag} replicas diverged: {[g.tolist() for g in gathered]}", flush=True)
        return 1
    if ctx.is_main:
        print(f"final: w {net.weight.item():.3f} b {net.bias.item():.3f} (true 3, -2); replicas identical", flush=True)
        ctx.model_dir.mkdir(parents=True, exist_ok=True)
        torch.save(net.state_dict(), ctx.model_dir / "model.pt")
    return 0


if __name__ == "__main__":
    code = main()
    # torch 2.13 (CPU build, gloo) sometimes aborts at interpreter exit, after destroy_process_group and
    # with everything done ("terminate called without an active exception", SIGABRT: about 1 gang in 5
    # here), which fails the job. Leave without running C++ static destructors once output is flushed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
