"""An ordinary PyTorch DDP training script for the SageMaker example.

Inside SageMaker the training toolkit starts it under torchrun on every node (torch_distributed),
so RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR are set; unijob.runtime.context() also reads the
SageMaker channels (SM_CHANNEL_TRAIN, SM_CHANNEL_VAL) and the checkpoint dir (/opt/ml/checkpoints,
synced by SageMaker to s3://my-bucket/ckpts), so a spot interruption resumes from the last epoch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)  # SageMaker passes hyperparameters as --name value
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    rank, local_rank = dist.get_rank(), int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)

    ckpt_dir = Path(os.environ.get("UNIJOB_CHECKPOINT_DIR", "/opt/ml/checkpoints"))
    ckpt = ckpt_dir / "last.pt"
    model = nn.Linear(32, 1).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    start = 0
    if ckpt.exists():  # resume after a spot interruption
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
    ddp = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 32, generator=g)
    y = x.sum(dim=1, keepdim=True)
    shard = slice(rank, None, dist.get_world_size())
    xs, ys = x[shard].to(device), y[shard].to(device)
    for epoch in range(start, args.epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(ddp(xs), ys)
        loss.backward()
        opt.step()
        if rank == 0:
            print(f"epoch {epoch} loss {loss.item():.4f}", flush=True)
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, tmp)
            tmp.replace(ckpt)
    if rank == 0:
        model_dir = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
        model_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), model_dir / "model.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
