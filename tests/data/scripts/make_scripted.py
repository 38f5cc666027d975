"""Scripts two modules with PyTorch for the TorchScript tests: an MLP and a small CNN over 8x8
inputs with 10 classes (a dropout and a buffer included), saved to DIR/mlp.pt and DIR/cnn.pt.
  make_scripted.py DIR [HIDDEN]   HIDDEN: the MLP's hidden width (32)"""
import sys
import torch

HIDDEN = int(sys.argv[2]) if len(sys.argv) > 2 else 32


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, HIDDEN)
        self.drop = torch.nn.Dropout(0.1)
        self.fc2 = torch.nn.Linear(HIDDEN, 10)
        self.register_buffer("scale", torch.tensor(1.0))

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1) * self.scale))))


class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.head = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x.unsqueeze(1))).flatten(1))


torch.manual_seed(0)
torch.jit.script(Mlp()).save(sys.argv[1] + "/mlp.pt")
torch.jit.script(Cnn()).save(sys.argv[1] + "/cnn.pt")
