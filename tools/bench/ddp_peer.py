#!/usr/bin/python3
"""The PyTorch peer of train_bench: the same models, batch sizes and optimizer in PyTorch
DistributedDataParallel (gloo), launched by mpirun, one torch thread per rank.

    mpirun -np 2 /usr/bin/python3 tools/bench/ddp_peer.py --model mlp --steps 60 --warmup 10
Prints "RESULT ddp model=... ranks=... step_ms=... samples_s=..." on rank 0."""
import argparse
import math
import os
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.head = torch.nn.Linear(784, 1024), torch.nn.Linear(1024, 1024), torch.nn.Linear(1024, 10)

    def forward(self, x):
        return self.head(torch.relu(self.l2(torch.relu(self.l1(x)))))


class Block(torch.nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc, self.out = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, 2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.h)
        s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        y = (torch.softmax(s, -1) @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class Gpt(torch.nn.Module):
    def __init__(self, vocab=256, seq=128, d=256, layers=4, heads=4):
        super().__init__()
        self.wte, self.wpe = torch.nn.Embedding(vocab, d), torch.nn.Embedding(seq, d)
        self.blocks = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(d)

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.ln_f(x) @ self.wte.weight.t()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--port", default="29517")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rank, world = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0)), int(os.environ.get("OMPI_COMM_WORLD_SIZE", 1))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", a.port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    if a.model == "mlp":
        model, per = Mlp(), 128
        x, y = torch.randn(per, 784), torch.randint(0, 10, (per,))
    else:
        model, per = Gpt(), 8
        x = torch.randint(0, 256, (per, 128))
        y = torch.randint(0, 256, (per, 128))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-3, weight_decay=0)
    for step in range(a.steps):
        if step == a.warmup:
            dist.barrier()
            t0 = time.perf_counter()
        out = ddp(x)
        loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    dt = (time.perf_counter() - t0) / (a.steps - a.warmup)
    if rank == 0:
        print(f"RESULT ddp model={a.model} ranks={world} step_ms={dt * 1e3:.3f} samples_s={per * world / dt:.1f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
