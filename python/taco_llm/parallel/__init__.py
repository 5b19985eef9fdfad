"""Tensor parallelism: the ranks' processes (local processes or Ray actors) and their
torch.distributed process group. The engine itself (scheduler, shards, collectives) is C++;
this package only starts the ranks and connects them."""
