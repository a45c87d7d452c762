"""DDP with 2 CPU processes (gloo) gives the gradients of one process on the global batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from attnlab.models import build_model, preset
from attnlab.models.training import TrainConfig, Trainer, lm_batches

VOCAB, BLOCK, GLOBAL_BATCH = 40, 16, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make(seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(preset("tiny", vocab_size=VOCAB, d_model=32, max_positions=BLOCK))
    ids = torch.randint(0, VOCAB, (2000,), generator=torch.Generator().manual_seed(1))
    return model, lm_batches(ids, BLOCK, GLOBAL_BATCH, "clm", seed=0)


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model, batches = make()
    trainer = Trainer(model, TrainConfig(steps=10, warmup=1, progress=False), batches, device="cpu")
    assert trainer.ddp is not None and dist.get_backend() == "gloo"
    local = trainer.local_batch(0)
    assert local["ids"].shape[0] == GLOBAL_BATCH // world
    trainer.forward_backward(local)
    if rank == 0:
        torch.save({n: p.grad for n, p in model.named_parameters()}, out)
    dist.barrier()
    dist.destroy_process_group()


@pytest.mark.timeout(300)
def test_ddp_two_processes_match_single_process_gradients(tmp_path):
    out = str(tmp_path / "grads.pt")
    mp.start_processes(worker, args=(2, free_port(), out), nprocs=2, join=True, start_method="spawn")
    ddp_grads = torch.load(out)

    torch.set_num_threads(1)
    model, batches = make()
    model.train()
    model(**batches(0)).loss.backward()  # one process, the whole global batch
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-4, atol=1e-6, msg=name)
