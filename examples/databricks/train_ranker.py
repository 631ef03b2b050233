"""A pairwise ranker trained with PyTorch DDP, one rank per GPU, as TorchDistributor starts it.

Reads the torchrun env (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR...) that TorchDistributor sets,
checkpoints every epoch to UNIJOB_CHECKPOINT_DIR (``/dbfs/...`` on Databricks) and resumes from it.
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    use_cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if use_cuda else "cpu")
    torch.manual_seed(0)
    w_true = torch.randn(32)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    if world > 1:
        model = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    ckpt_dir = os.environ.get("UNIJOB_CHECKPOINT_DIR")
    ckpt = os.path.join(ckpt_dir, "ranker.pt") if ckpt_dir else None
    start = 0
    if ckpt and os.path.exists(ckpt):
        state = torch.load(ckpt, map_location=device)
        model.load_state_dict(state["model"]), opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
    gen = torch.Generator().manual_seed(1000 + rank)
    for epoch in range(start, args.epochs):
        a, b = torch.randn(4096, 32, generator=gen), torch.randn(4096, 32, generator=gen)
        y = ((a - b) @ w_true > 0).float().to(device)
        logits = (model(a.to(device)) - model(b.to(device))).squeeze(1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad(), loss.backward(), opt.step()
        if rank == 0:
            print(f"epoch {epoch} loss {loss.item():.4f}", flush=True)
            if ckpt:
                os.makedirs(ckpt_dir, exist_ok=True)
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch}, ckpt + ".tmp")
                os.replace(ckpt + ".tmp", ckpt)
    if world > 1:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
