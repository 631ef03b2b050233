"""A gang that meets at rank 0 and reports the world it sees: the same file on every target."""

from unijob import runtime

ctx = runtime.context()
print(f"rank {ctx.rank}/{ctx.world_size} on node {ctx.node_rank}; master {ctx.master_addr}:{ctx.master_port}; "
      f"hyperparameters {ctx.hyperparameters}", flush=True)
