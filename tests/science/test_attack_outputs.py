"""Same-seed outputs of every attack entry point, pinned before the attacks moved to
one home (:mod:`advmanifold.science.attacks`, issue 28).

Each case runs one entry point on small fixed inputs (seeded models and data) and
its outputs are compared with ``tests/data/attack_outputs.json``, written by the code
*before* the move: a SHA-256 of every output tensor, and the success masks, step
counts and first-success iterations in clear (so a failure shows which examples
changed). The reorganisation must leave every digest as it was.

Every case runs twice, with torch's default dtype float64 and float32 (the
production setting; models, data and random starts follow the default dtype):

- float64: each tensor is rounded to float32 before it is hashed. Another CPU or
  BLAS changes a float64 result in its last bits (about 1e-16 relative), which moves
  the float32 rounding only for a value within that distance of a rounding boundary
  (about 1e-9 per value); so these digests hold on any machine, while any change of
  arithmetic in the attacks (order of operations, random draws, steps) changes them.
- float32: hashed as they are; bit-exact only on the machine that wrote them (its
  CPU, torch version and instruction set, stored as ``platform``), so they are
  checked there and skipped elsewhere.

Entry points are looked up in their home after the move first, then in the one
before it (:func:`entry`): the file pins behaviour, not places, and stays unchanged
across the move. ``python tests/science/test_attack_outputs.py --write`` rewrites the
digests; do that only for a deliberate change of an attack's results, and say so in
the commit.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import platform
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

DIGESTS = Path(__file__).parents[1] / "data" / "attack_outputs.json"
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def this_platform() -> str:
    """CPU model, instruction set and torch version: what float32 bits depend on."""
    model = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    capability = torch.backends.cpu.get_cpu_capability()
    return f"{model} | {platform.machine()} {capability} | torch {torch.__version__}"


def entry(*homes: str):
    """The first of ``"module:attribute"`` that exists (the new home first)."""
    for home in homes:
        module, _, name = home.partition(":")
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            found = None
        if found is not None:
            return found
    raise LookupError(f"none of {homes} exists")


def digest(t: torch.Tensor) -> str:
    """SHA-256 of the shape and the float32-rounded values (integers as they are)."""
    t = t.detach().cpu()
    if t.is_floating_point():
        t = t.to(torch.float32)
    h = hashlib.sha256(str(tuple(t.shape)).encode() + str(t.dtype).encode())
    h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def summary(**outputs) -> dict:
    """Tensors → digests; bool/int tensors also in clear; numbers rounded to float32."""
    out = {}
    for name, value in outputs.items():
        if isinstance(value, torch.Tensor):
            out[name] = digest(value)
            if not value.is_floating_point():
                out[f"{name}_values"] = value.detach().cpu().long().flatten().tolist()
        elif isinstance(value, dict):
            for key, item in sorted(value.items()):
                out.update(summary(**{f"{name}.{key}": item}))
        else:
            out[name] = float(torch.tensor(float(value), dtype=torch.float32))
    return out


def result_summary(result, **extra) -> dict:
    """Outputs of an AttackResult (adversarial, success, steps) or AttemptsResult."""
    fields = {"adversarial": result.adversarial, "success": result.success}
    for name in ("steps", "iteration"):
        if hasattr(result, name):
            fields[name] = getattr(result, name)
    return summary(**fields, **extra)


# --- fixed inputs ---------------------------------------------------------------------


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(sizes=(64, 32, 10), seed: int = 0):
    from advmanifold.science import models

    torch.manual_seed(seed)
    return models.MLP(sizes).eval()


def convnet(seed: int = 0, n_classes: int = 10):
    from advmanifold.science import models

    torch.manual_seed(seed)
    return models.ConvNet(n_classes).eval()


def images(n: int, side: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 1, side, side, generator=_generator(seed))


def labels_of(model, x: torch.Tensor, wrong: int = 2) -> torch.Tensor:
    """The model's own predictions with the first ``wrong`` labels changed (those are
    misclassified before any step)."""
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:wrong] = (y[:wrong] + 1) % 10
    return y


def small_problem():
    model = mlp()
    x = images(12, 8, seed=1)
    return model, x, labels_of(model, x)


def decoder(n_fonts: int = 3):
    from advmanifold.science.decoders import FontDecoder

    g = _generator(5)
    blobs = torch.rand(n_fonts, 10, 7, 7, generator=g)
    protos = torch.nn.functional.interpolate(blobs, size=(28, 28), mode="bilinear")
    return FontDecoder(protos).to(torch.get_default_dtype())


def codes(n: int, n_fonts: int = 3, seed: int = 6):
    from advmanifold.science import decoders

    g = _generator(seed)
    font = torch.randint(n_fonts, (n,), generator=g)
    letter = torch.randint(10, (n,), generator=g)
    theta = decoders.sample_theta(n, "hard", g)
    return font, letter, theta


# --- the cases ------------------------------------------------------------------------

ATTACKS = "advmanifold.science.attacks"
THETA = (f"{ATTACKS}:attack_theta", "advmanifold.science.decoders:attack_theta")


def case_pgd_first():
    pgd = entry(f"{ATTACKS}:pgd")
    model, x, y = small_problem()
    return result_summary(pgd(model, x, y, eps=0.08, steps=6, seed=3))


def case_pgd_first_restarts_chunks():
    pgd = entry(f"{ATTACKS}:pgd")
    model, x, y = small_problem()
    result = pgd(model, x, y, eps=0.05, steps=5, restarts=3, batch_size=5, seed=4)
    return result_summary(result)


def case_pgd_first_no_start_no_box():
    pgd = entry(f"{ATTACKS}:pgd")
    model, x, y = small_problem()
    result = pgd(
        model, x, y, eps=0.07, steps=4, random_start=False, lower=None, upper=None
    )
    return result_summary(result)


def case_pgd_best_restarts():
    pgd = entry(f"{ATTACKS}:pgd")
    model, x, y = small_problem()
    result = pgd(
        model, x, y, eps=0.06, steps=5, restarts=2, mode="best", batch_size=7, seed=5
    )
    return result_summary(result)


def case_pgd_tensor_bounds_step_size():
    pgd = entry(f"{ATTACKS}:pgd")
    model, x, y = small_problem()
    lower = torch.full((1, 8, 8), 0.1)
    result = pgd(
        model, x, y, eps=0.1, steps=4, step_size=0.03, lower=lower, upper=0.9, seed=6
    )
    return result_summary(result)


def case_fgsm():
    fgsm = entry(f"{ATTACKS}:fgsm")
    robust_accuracy = entry(f"{ATTACKS}:robust_accuracy")
    model, x, y = small_problem()
    result = fgsm(model, x, y, eps=0.08)
    return result_summary(result, robust=robust_accuracy(model, x, y, result))


def case_adam_attack():
    adam_attack = entry(f"{ATTACKS}:adam_attack")
    model, x, y = small_problem()
    result = adam_attack(
        model, x, y, eps=0.06, steps=6, lr=0.01, attempts=3, batch_size=5, seed=7
    )
    correct = model(x).argmax(1) == y
    return result_summary(result, per_attempt=result.per_attempt_success(correct))


def _theta_problem():
    dec = decoder()
    font, letter, theta = codes(8)
    classifier = mlp((784, 32, 10), seed=8)
    return classifier, dec, font, letter, theta


def case_attack_theta_pgd():
    attack_theta = entry(*THETA)
    classifier, dec, font, letter, theta = _theta_problem()
    result, x = attack_theta(
        classifier, dec, font, letter, theta, eps=0.3, steps=5, restarts=2, seed=9
    )
    return result_summary(result, images=x)


def case_attack_theta_pgd_best():
    attack_theta = entry(*THETA)
    classifier, dec, font, letter, theta = _theta_problem()
    result, x = attack_theta(
        classifier, dec, font, letter, theta, eps=0.2, steps=4, mode="best", seed=10
    )
    return result_summary(result, images=x)


def case_attack_theta_adam():
    attack_theta = entry(*THETA)
    adam_attack = entry(f"{ATTACKS}:adam_attack")
    classifier, dec, font, letter, theta = _theta_problem()
    result, x = attack_theta(
        classifier, dec, font, letter, theta, eps=0.3, attack=adam_attack, steps=5,
        lr=0.02, attempts=2, seed=11,
    )
    return result_summary(result, images=x)


def case_training_adversarial_examples():
    examples = entry(
        f"{ATTACKS}:adversarial_examples",
        "advmanifold.science.training:adversarial_examples",
    )
    model, x, y = small_problem()
    return summary(adversarial=examples(model, x, y, eps=0.05, steps=4, seed=12))


def _fonts_convnet_problem(n: int = 6):
    dec = decoder()
    font, letter, theta = codes(n, seed=13)
    with torch.no_grad():
        x = dec(font, letter, theta)
    return convnet(seed=14), dec, font, letter, theta, x


def case_onmanifold_examples():
    onmanifold_examples = entry(
        f"{ATTACKS}:onmanifold_examples",
        "advmanifold.chapters.generalization:onmanifold_examples",
    )
    model, dec, font, letter, theta, _ = _fonts_convnet_problem()
    out = onmanifold_examples(
        model, dec, font, letter, theta, eps=0.3, steps=3, seed=15
    )
    return summary(theta=out)


def case_stn_examples():
    stn_examples = entry(
        f"{ATTACKS}:stn_examples", "advmanifold.chapters.generalization:stn_examples"
    )
    model, _, _, letter, _, x = _fonts_convnet_problem()
    return summary(images=stn_examples(model, x, letter, eps=0.3, steps=3, seed=16))


def _generalization_settings():
    return SimpleNamespace(
        eps=0.3, train_steps=2, alpha=0.1, penalty="rejection_share", n_test=8,
        n_attack=6, attack_steps=3, restarts=2, eps_small=0.03, n_align=4,
        attempts=2, original_steps=3, adam_lr=0.005, n_original_on=5,
        n_original_off=4,
    )


def _test_split(dec):
    from advmanifold.chapters import generalization as G

    return G.split(dec, 8, stream="test", seed=0)


def case_generalization_evaluate():
    from advmanifold.chapters import generalization as G

    dec = decoder()
    model = convnet(seed=17)
    s = _generalization_settings()
    test = _test_split(dec)
    return summary(
        ours=G.evaluate(model, dec, test, s, seed=18),
        original=G.evaluate_original(model, dec, test, s, seed=19),
    )


@pytest.mark.parametrize("method", ["OffAdvTrain", "OnAdvTrain", "STNAdvTrain"])
def case_generalization_objective(method):
    from advmanifold.chapters import generalization as G

    dec = decoder()
    data = G.split(dec, 8, stream="train", seed=1)
    model = convnet(seed=20).train()
    loss_fn = G.objective(method, data, dec, _generalization_settings(), seed=2)
    first = loss_fn(model, torch.arange(8), data.y)
    second = loss_fn(model, torch.arange(8).flip(0), data.y)
    return summary(first=first.item(), second=second.item())


def _vaegans():
    from advmanifold.science import generative

    torch.manual_seed(21)
    return generative.VAEGANs(2, 3).eval()


def case_generative_onmanifold_attack():
    """Two classes' VAE-GANs (untrained), a linear classifier of high gain centred on
    the class-0 decodings: some of them are fooled within η."""
    from advmanifold.science import generative

    model = _vaegans()
    x = images(6, 28, seed=23)
    y = torch.tensor([0, 0, 0, 0, 1, 1])
    z0 = generative.encode_by_class(model, x, y)
    decoded = generative.decode_by_class(model, z0, y).flatten(1)
    torch.manual_seed(22)
    linear = torch.nn.Linear(784, 2)
    with torch.no_grad():
        linear.weight.mul_(1e4)
        linear.bias.copy_(-(decoded[:4] @ linear.weight.T).mean(0))
    classifier = torch.nn.Sequential(torch.nn.Flatten(), linear).eval()
    result = generative.onmanifold_attack(
        classifier, model, x, y, box=generative.latent_box(z0), eta=0.5, bound=3.0,
        steps=4, attempts=2, seed=24, progress=False,
    )
    return summary(
        z=result.z, fooled=result.fooled, steps=result.steps, attacked=result.attacked
    )


def case_verification_margin_pgd():
    margin_pgd = entry(
        f"{ATTACKS}:margin_pgd", "advmanifold.science.verification:margin_pgd"
    )
    model, x, y = small_problem()
    result = margin_pgd(model, x, y, eps=0.05, steps=5, restarts=2, seed=25)
    return result_summary(result)


def case_verification_verify():
    from advmanifold.science import verification

    model, x, y = small_problem()
    found = verification.verify(
        model, x, y, 0.05, steps=4, strong_steps=5, restarts=2, seed=26,
        third_party=False,
    )
    return summary(clean=found.clean, successes=found.successes)


def case_pmnist_targeted_pgd():
    from advmanifold.chapters import pmnist

    model, x, _ = small_problem()
    result = pmnist.targeted_pgd(model, x, 3, eps=5.0, steps=5, seed=27)
    return result_summary(result)


def _pgd_l2():
    return entry(f"{ATTACKS}:pgd_l2", "advmanifold.science.l2_attacks:pgd_l2")


def case_l2_first():
    model, x, y = small_problem()
    return result_summary(_pgd_l2()(model, x, y, eps=0.4, steps=5, seed=28))


def case_l2_first_chunks_no_box():
    model, x, y = small_problem()
    result = _pgd_l2()(
        model, x, y, eps=0.5, steps=4, lower=None, upper=None, batch_size=5, seed=29
    )
    return result_summary(result)


def case_l2_best_no_start():
    model, x, y = small_problem()
    result = _pgd_l2()(
        model, x, y, eps=0.5, steps=4, mode="best", random_start=False, step_size=0.2
    )
    return result_summary(result)


def _subspace(d: int = 64, k: int = 6):
    basis, _ = torch.linalg.qr(torch.randn(d, k, generator=_generator(30)))

    def inside(v):
        flat = v.reshape(len(v), -1)
        return ((flat @ basis) @ basis.T).view_as(v)

    def outside(v):
        return v - inside(v)

    return SimpleNamespace(mode="global", project_vectors=inside, residual=outside)


def case_implicit_bias_restricted():
    from advmanifold.science import implicit_bias

    l2_pgd = entry(
        f"{ATTACKS}:restricted_l2_pgd", "advmanifold.science.implicit_bias:l2_pgd"
    )
    model, x, y = small_problem()
    manifold = _subspace()
    out = {}
    for where in implicit_bias.WHERE:
        restrict = implicit_bias.restriction(manifold, where)
        eps = torch.linspace(0.2, 1.2, len(x))
        result = l2_pgd(
            model, x, y, eps=eps, steps=5, restrict=restrict, batch_size=5, seed=31
        )
        out[where] = dict(
            adversarial=result.adversarial, success=result.success, steps=result.steps
        )
    no_start = l2_pgd(model, x, y, eps=0.8, steps=4, random_start=False)
    survival = implicit_bias.restricted_robustness(
        model, x, y, manifold, [0.3, 0.9], steps=4, seed=32
    )
    return summary(
        **out,
        no_start=dict(adversarial=no_start.adversarial, success=no_start.success),
        survival=survival,
    )


def case_dimples_measure():
    from advmanifold.science import dimples
    from advmanifold.science.tangent import TangentSpace

    model, dec, font, letter, theta, x = _fonts_convnet_problem()
    space = TangentSpace.of(dec, font, letter, theta)
    s = SimpleNamespace(
        l2_eps=1.5, linf_eps=0.1, attack_steps=4, t_min=0.05, t_max=20.0, grid=6,
        iterations=5,
    )
    return summary(**dimples.measure(model, x, letter, space, s))


CASES = {
    name[len("case_"):]: fn
    for name, fn in sorted(globals().items())
    if name.startswith("case_") and callable(fn)
}


def _params(fn) -> list:
    for mark in getattr(fn, "pytestmark", []):
        if mark.name == "parametrize":
            return [(mark.args[0], v) for v in mark.args[1]]
    return [(None, None)]


def case_ids() -> list[tuple[str, str | None, object]]:
    """(stored name, parameter name, parameter value) of every case and dtype."""
    out = []
    for dtype in DTYPES:
        for name, fn in CASES.items():
            for arg, value in _params(fn):
                case = name if arg is None else f"{name}[{value}]"
                out.append((f"{dtype}/{case}", arg, value))
    return out


def compute(name: str, arg, value) -> dict:
    dtype, _, case = name.partition("/")
    fn = CASES[case.split("[")[0]]
    before = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(DTYPES[dtype])
    torch.set_num_threads(1)  # a sum's order can depend on the threads
    try:
        torch.manual_seed(0)
        return fn(**({arg: value} if arg else {}))
    finally:
        torch.set_default_dtype(before[0])
        torch.set_num_threads(before[1])


@pytest.fixture(scope="module")
def stored() -> dict:
    return json.loads(DIGESTS.read_text())


def test_every_case_is_stored(stored):
    assert sorted(stored["cases"]) == sorted(name for name, _, _ in case_ids())


@pytest.mark.parametrize(
    ("name", "arg", "value"), case_ids(), ids=[c[0] for c in case_ids()]
)
def test_attack_outputs_are_the_pinned_ones(stored, name, arg, value):
    if name.startswith("float32/") and stored["platform"] != this_platform():
        pytest.skip(f"float32 digests are bit-exact on {stored['platform']} only")
    assert compute(name, arg, value) == stored["cases"][name]


def test_the_cases_are_not_trivial(stored):
    """Each attack fools some examples and spares others, so the digests pin both
    paths of the early stop."""
    cases = stored["cases"]
    for name in ("pgd_first", "pgd_best_restarts", "l2_first", "adam_attack",
                 "attack_theta_pgd", "verification_margin_pgd"):
        for dtype in DTYPES:
            mask = cases[f"{dtype}/{name}"]["success_values"]
            assert 0 < sum(mask) < len(mask), (dtype, name)


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/science/test_attack_outputs.py --write")
    cases = {n: compute(n, a, v) for n, a, v in case_ids()}
    text = json.dumps({"platform": this_platform(), "cases": cases}, indent=1)
    one_line = lambda m: f"[{' '.join(m[1].split())}]"  # noqa: E731 (lists)
    text = re.sub(r"\[\s+([^\[\]]*?)\s+\]", one_line, text)
    DIGESTS.write_text(text + "\n")
    print(f"wrote {DIGESTS}")
