"""unijob adapter for Slurm (entry point ``slurm``): sbatch + srun, locally or over SSH."""
