"""Denormals flushed on every intra-op thread; thread counts set and restored."""

import json
import os
import subprocess
import sys

import pytest
import torch

from advmanifold.science import compute

# A fresh process at two threads whose OpenMP team exists before any flush; Adam on
# Linear(2048, 2048), large enough that its update runs on both threads, with the loss
# 1e-31 · Σ out at step 1 and 0 · Σ out after it: exp_avg ← 0.9 exp_avg decays from
# about 1e-32 into the denormal range (below 1.2e-38) within about 150 steps.
SCRIPT = """
import json, sys, torch
from advmanifold.science import compute
torch.set_num_threads(2)
torch.manual_seed(0)
(torch.ones(1 << 22) * 2).sum()  # the OpenMP team exists now
layer = torch.nn.Linear(2048, 2048)
before = compute.denormals_flushed()
if sys.argv[1] == "main":
    torch.set_flush_denormal(True)  # the calling thread only
else:
    compute.flush_denormals()
after = compute.denormals_flushed()
opt = torch.optim.Adam(layer.parameters(), lr=1e-3, weight_decay=0.0)
x = torch.randn(16, 2048)
for step in range(200):
    out = layer(x)
    loss = (1e-31 if step == 0 else 0.0) * out.sum()
    opt.zero_grad()
    loss.backward()
    opt.step()
state = [v for s in opt.state.values() for v in s.values()]
print(json.dumps({"before": before, "after": after,
                  "denormals": compute.count_denormals(state)}))
"""


def _start(setting):
    # idle OpenMP threads sleep instead of spinning: the two processes run at once,
    # and a spinning team on shared cores runs many times slower; which threads exist
    # does not change
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, setting],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(process):
    out, err = process.communicate()
    assert process.returncode == 0, err
    return json.loads(out)


def test_two_thread_adam_holds_no_denormals_only_when_every_thread_flushes():
    started = _start("main"), _start("every")
    main_only, every = map(_result, started)  # the flag on the calling thread only
    assert main_only["before"] is False and every["before"] is False
    assert main_only["after"] is False  # the worker thread still keeps denormals
    assert main_only["denormals"] > 0  # so the test can fail
    assert every["after"] is True  # denormals_flushed flipped from False to True
    assert every["denormals"] == 0


def test_count_denormals_counts_only_subnormal_floats_whatever_the_flush():
    bits = [1, 2, 0x007FFFFF, 0, 0x3F800000, -0x7FFFFFFF]  # 2^-149 ×1, ×2, the largest
    values = torch.tensor(bits, dtype=torch.int32).view(torch.float32)  # denormal, 0, 1
    doubles = torch.tensor([1, 0], dtype=torch.int64).view(torch.float64)
    before = compute.denormals_flushed()
    try:
        for flush in (False, True):  # a flushing thread must still count them
            torch.set_flush_denormal(flush)
            counted = compute.count_denormals(
                [values, doubles, torch.zeros(3, dtype=torch.int64)]
            )
            assert counted == 4 + 1  # bits 0x80000001 (−2^-149) are a denormal too
    finally:
        torch.set_flush_denormal(before)


def test_threads_sets_and_restores_the_thread_count():
    before = torch.get_num_threads()
    other = before + 1  # never the count in force, so a missing restore shows
    with compute.threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with compute.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with compute.threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        compute.set_threads(0)
    assert compute.cores() >= 1
