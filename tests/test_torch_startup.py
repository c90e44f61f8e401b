"""sandbox/harness/torch_startup.py: torch's once-per-process imports skipped, and nothing else changed.

Each case runs in a fresh interpreter (the patches apply as torch is imported), with and without the
patches, and compares what torch computed bit for bit."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

HARNESS = Path(__file__).resolve().parents[1] / "sandbox" / "harness"

pytest.importorskip("torch")

# Trains a small model with Adam (and SGD with momentum), runs multi-head attention with a padding mask
# (torch's argument checks), compares with assert_close both ways, notes what it imported; then fails a
# check, switches dynamo on with torch.compile and trains again; prints what it computed.
WORKLOAD = """
import json, sys
sys.path.insert(0, HARNESS)
if PATCHED:
    import torch_startup
    torch_startup.install()
import torch

def train(optimizer_class, **options):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = optimizer_class(model.parameters(), **options)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    for _ in range(5):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
    return [p.detach().flatten().tolist() for p in model.parameters()]

out = {"adam": train(torch.optim.Adam, lr=0.01), "sgd": train(torch.optim.SGD, lr=0.1, momentum=0.9)}
torch.manual_seed(0)
attention = torch.nn.MultiheadAttention(8, 2, batch_first=True)
x, padding = torch.randn(2, 3, 8), torch.tensor([[False, False, True], [False, False, False]])
out["attention"] = attention(x, x, x, key_padding_mask=padding)[0].flatten().tolist()
torch.testing.assert_close(torch.ones(3), torch.ones(3))
try:
    torch.testing.assert_close(torch.ones(3), torch.tensor([1.0, 1.0, 1.5]))
except AssertionError as exc:
    out["message"] = str(exc)
heavy = ("sympy", "torch._dynamo", "torch.distributed.tensor")
out["imported"] = sorted(m for m in heavy if m in sys.modules)
try:
    torch._check(1 == 2, lambda: "a failing check keeps torch's message (and imports sympy)")
except RuntimeError as exc:
    out["check"] = str(exc)
compiled = torch.compile(lambda t: t * 2, backend="eager")
out["compiled"] = compiled(torch.ones(2)).tolist()
out["adam_after_compile"] = train(torch.optim.Adam, lr=0.01)
print(json.dumps(out))
"""


def run(patched: bool) -> dict:
    code = f"HARNESS = {str(HARNESS)!r}\nPATCHED = {patched}\n" + WORKLOAD
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_same_numbers_and_messages_without_importing_dynamo_dtensor_or_sympy():
    plain, patched = run(patched=False), run(patched=True)
    # Without the patches torch imports all three; with them none, until torch.compile.
    assert plain["imported"] == ["sympy", "torch._dynamo", "torch.distributed.tensor"]
    assert patched["imported"] == []
    for key in ("adam", "sgd", "attention", "check", "message", "compiled", "adam_after_compile"):
        assert patched[key] == plain[key], key
    assert "Mismatched elements: 1 / 3" in patched["message"]


def test_an_unknown_torch_is_left_as_it_is():
    sys.path.insert(0, str(HARNESS))
    try:
        import torch_startup
    finally:
        sys.path.remove(str(HARNESS))

    def _use_grad_for_differentiable(func):  # not torch 2.13's source
        return func

    module = types.SimpleNamespace(_use_grad_for_differentiable=_use_grad_for_differentiable)
    torch_startup._lazy_graph_breaks(module)
    assert module._use_grad_for_differentiable is _use_grad_for_differentiable
    empty = types.SimpleNamespace()
    for patch in torch_startup.PATCHES.values():
        patch(empty)  # names missing (another version): nothing to patch, no error
    assert vars(empty) == {}
