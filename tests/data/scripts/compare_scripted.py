"""Prints the largest parameter change between two TorchScript files (initial vs trained)."""
import sys
import torch

a, b = torch.jit.load(sys.argv[1]), torch.jit.load(sys.argv[2])
pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
assert pa.keys() == pb.keys(), (pa.keys(), pb.keys())
print(max((pa[k] - pb[k]).abs().max().item() for k in pa))
