"""The shared L∞ attacks: constraints, early stop, restarts, determinism, references."""

import pytest
import torch
import torch.nn.functional as F

from advmanifold.science import attacks, models, training, verification

TOL = 1e-6


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    x = torch.rand(200, 1, 28, 28)
    y = (x.flatten(1) @ torch.randn(784, 10)).argmax(1)
    model = models.MLP((784, 64, 10))
    training.train(model, x, y, epochs=5, batch_size=50, progress=False)
    model.eval()
    return model, x, y


def reference_pgd(model, x, y, eps, steps, step_size, start):
    """Plain full-length sign PGD from a given start: iterates and per-step
    predictions."""
    v, flipped = start.clone(), torch.zeros(len(x), dtype=torch.bool)
    for _ in range(steps):
        v.requires_grad_(True)
        logits = model(v)
        flipped |= logits.argmax(1) != y
        (g,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), v)
        v = torch.min(
            torch.max(v.detach() + step_size * g.sign(), x - eps), x + eps
        ).clamp(0, 1)
    with torch.no_grad():
        flipped |= model(v).argmax(1) != y
    return v, flipped


@pytest.mark.parametrize("mode", attacks.MODES)
@pytest.mark.parametrize("box", [(0.0, 1.0), (None, None)])
def test_pgd_respects_ball_and_box(problem, mode, box):
    model, x, y = problem
    result = attacks.pgd(
        model,
        x,
        y,
        eps=0.1,
        steps=10,
        restarts=2,
        lower=box[0],
        upper=box[1],
        mode=mode,
    )
    delta = (result.adversarial - x).abs().flatten(1).amax(1)
    assert (delta <= 0.1 + TOL).all()
    if box[0] is not None:
        assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(result.adversarial).argmax(1) != y, result.success)


def test_early_stop_finds_exactly_the_examples_a_full_run_flips(problem):
    model, x, y = problem
    first = attacks.pgd(
        model, x, y, eps=0.05, steps=8, step_size=0.01, random_start=False, mode="first"
    )
    _, flipped = reference_pgd(model, x, y, 0.05, 8, 0.01, x)
    assert torch.equal(first.success, flipped)
    assert 0 < first.success.float().mean() < 1  # the case is not trivial
    assert (first.steps[first.success] <= 8).all() and (
        first.steps[~first.success] == 8
    ).all()
    assert (
        first.steps[first.success].float().mean() < 8
    )  # fooled examples stopped early


def test_best_mode_is_at_least_as_strong_as_the_last_iterate(problem):
    model, x, y = problem
    best = attacks.pgd(
        model, x, y, eps=0.05, steps=8, step_size=0.01, random_start=False, mode="best"
    )
    last, _ = reference_pgd(model, x, y, 0.05, 8, 0.01, x)
    with torch.no_grad():
        loss_best = F.cross_entropy(model(best.adversarial), y, reduction="none")
        loss_last = F.cross_entropy(model(last), y, reduction="none")
    assert (loss_best >= loss_last - 1e-5).all()


def test_restarts_only_add_successes_and_seed_makes_runs_identical(problem):
    model, x, y = problem
    one = attacks.pgd(model, x, y, eps=0.03, steps=5, restarts=1, seed=3)
    again = attacks.pgd(model, x, y, eps=0.03, steps=5, restarts=1, seed=3)
    more = attacks.pgd(model, x, y, eps=0.03, steps=5, restarts=4, seed=3)
    assert torch.equal(one.adversarial, again.adversarial) and torch.equal(
        one.success, again.success
    )
    assert (more.success | ~one.success).all()  # everything fooled once stays fooled
    assert more.success.sum() >= one.success.sum()



def test_keyed_starts_make_chunks_equal_one_call(problem):
    """With ``ids`` every example draws its own starts: chunks of examples (or other
    batch sizes) give the rows of one call over all; without them they do not."""
    model, x, y = problem
    kw = dict(eps=0.03, steps=5, restarts=2, seed=3)
    ids = torch.arange(len(x)) + 500  # e.g. indices in a test set
    whole = attacks.pgd(model, x, y, ids=ids, **kw)
    assert 0 < whole.success.float().mean() < 1
    cuts = (slice(0, 70), slice(70, 130), slice(130, 200))
    parts = [attacks.pgd(model, x[c], y[c], ids=ids[c], **kw) for c in cuts]
    batched = attacks.pgd(model, x, y, ids=ids, batch_size=32, **kw)
    for field in ("adversarial", "success", "steps"):
        joined = torch.cat([getattr(p, field) for p in parts])
        assert torch.equal(joined, getattr(whole, field)), field
        assert torch.equal(getattr(batched, field), getattr(whole, field)), field
    plain = [attacks.pgd(model, x[c], y[c], **kw).adversarial for c in cuts]
    assert not torch.equal(torch.cat(plain), attacks.pgd(model, x, y, **kw).adversarial)
    other = attacks.pgd(model, x, y, ids=ids + 1, **kw)
    assert not torch.equal(other.adversarial, whole.adversarial)
    with pytest.raises(ValueError, match="ids"):
        attacks.pgd(model, x, y, ids=ids[:-1], **kw)

def test_fgsm_is_one_pgd_step_without_random_start(problem):
    model, x, y = problem
    f = attacks.fgsm(model, x, y, eps=0.1)
    p = attacks.pgd(
        model, x, y, eps=0.1, steps=1, step_size=0.1, random_start=False, mode="best"
    )
    assert torch.equal(f.adversarial, p.adversarial) and torch.equal(
        f.success, p.success
    )


def test_attack_on_a_non_image_variable_with_per_coordinate_box():
    """θ-space use: a 2-d variable with per-coordinate bounds narrower than ε."""
    w = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
    forward = lambda v: v @ w  # noqa: E731
    v0, y = torch.tensor([[0.2, 0.0], [0.0, 0.1]]), torch.tensor([0, 1])
    lower, upper = torch.tensor([-0.1, -0.5]), torch.tensor([0.5, 0.05])
    r = attacks.pgd(
        forward, v0, y, eps=0.3, steps=20, lower=lower, upper=upper, mode="best"
    )
    assert ((r.adversarial - v0).abs() <= 0.3 + TOL).all()
    assert (r.adversarial >= lower - TOL).all() and (r.adversarial <= upper + TOL).all()


@pytest.mark.skipif(
    not verification.torchattacks_available(), reason="torchattacks not installed"
)
def test_as_strong_as_torchattacks_pgd(problem):
    import torchattacks

    model, x, y = problem
    ours = attacks.pgd(
        model, x, y, eps=0.05, steps=20, step_size=0.005, mode="first", seed=0
    )
    torch.manual_seed(0)
    theirs = torchattacks.PGD(
        model, eps=0.05, alpha=0.005, steps=20, random_start=True
    )(x, y)
    with torch.no_grad():
        theirs_success = model(theirs).argmax(1) != y
    assert ours.success.float().mean() >= theirs_success.float().mean() - 0.02


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        (dict(eps=0.0), "eps"),
        (dict(eps=0.1, steps=0), "steps"),
        (dict(eps=0.1, restarts=0), "restarts"),
        (dict(eps=0.1, mode="last"), "mode"),
        (dict(eps=0.1, step_size=-1.0), "step_size"),
    ],
)
def test_bad_arguments_name_the_parameter(problem, kwargs, word):
    model, x, y = problem
    # whole words: "eps" alone would also match a message about "steps"
    with pytest.raises(ValueError, match=rf"\b{word}\b"):
        attacks.pgd(model, x, y, **kwargs)


# --- the original protocol (Stutz et al.): Adam, random ball start, attempts ----------


def _reference_adam(forward, x, y, start, eps, steps, lr):
    """The original's loop with torch.optim.Adam on δ for every row (no early stop):
    project, check the label, step; the first iterate whose label differs."""
    delta = torch.nn.Parameter((start - x).clone())
    opt = torch.optim.Adam([delta], lr=lr)
    first = torch.full((len(x),), -1)
    for i in range(steps + 1):
        opt.zero_grad()
        with torch.no_grad():
            delta.data = torch.clamp(x + delta.data, 0, 1) - x
            delta.data = delta.data.clamp(-eps, eps)
        logits = forward(x + delta)
        wrong = (logits.argmax(1) != y) & (first < 0)
        first[wrong] = i
        if i == steps:
            break
        (-F.cross_entropy(logits, y, reduction="sum")).backward()
        opt.step()
    return first


def test_adam_attack_matches_a_torch_adam_reference():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(40, 1, 4, 4), torch.randint(3, (40,))
    eps, steps, lr, attempts = 0.1, 15, 0.01, 3
    got = attacks.adam_attack(
        model, x, y, eps=eps, steps=steps, lr=lr, attempts=attempts, seed=3
    )
    # the same random starts: the generator's first draws, rows of all attempts
    g = torch.Generator().manual_seed(3)
    rep = lambda t: t.repeat(attempts, *(1,) * (t.ndim - 1))  # noqa: E731
    lo, hi = attacks.threats.bounds(rep(x), eps, 0.0, 1.0)
    start = attacks.adam.ball_start(rep(x), lo, hi, eps, g)
    want = _reference_adam(model, rep(x), rep(y), start, eps, steps, lr)
    assert torch.equal(got.iteration.flatten(), want)
    assert 0 < got.success.float().mean() < 1  # the case is not trivial


def test_adam_attack_stays_in_the_ball_and_the_box_and_is_deterministic():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    x, y = torch.rand(30, 1, 4, 4), torch.randint(3, (30,))
    kwargs = dict(eps=0.2, steps=10, lr=0.05, attempts=4, seed=5, batch_size=7)
    a = attacks.adam_attack(model, x, y, **kwargs)
    b = attacks.adam_attack(model, x, y, **kwargs)
    assert a.adversarial.shape == (4, *x.shape) and a.success.shape == (4, 30)
    assert (a.adversarial - x).abs().max() <= 0.2 + 1e-6
    assert a.adversarial.min() >= 0 and a.adversarial.max() <= 1
    assert torch.equal(a.adversarial, b.adversarial)
    assert torch.equal(a.iteration, b.iteration)
    # a success is a changed label at the kept iterate
    with torch.no_grad():
        pred = model(a.adversarial.flatten(0, 1)).argmax(1).view(4, 30)
    assert torch.equal(a.success, pred != y)


def test_per_attempt_success_is_the_originals_raw_success():
    # example 0 fooled in 2 of 5 attempts, example 1 never, example 2 misclassified
    success = torch.zeros(5, 3, dtype=torch.bool)
    success[[1, 3], 0] = True
    success[:, 2] = True
    result = attacks.AttemptsResult(torch.zeros(5, 3), success, success.long() - 1)
    correct = torch.tensor([True, False, False])
    assert result.per_attempt_success(correct) == pytest.approx(0.4)
    correct = torch.tensor([True, True, False])
    assert result.per_attempt_success(correct) == pytest.approx(0.2)


def test_adam_attack_rejects_bad_arguments():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    x, y = torch.rand(2, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="restarts|attempts"):
        attacks.adam_attack(model, x, y, eps=0.1, attempts=0)
    with pytest.raises(ValueError, match=r"\beps\b"):
        attacks.adam_attack(model, x, y, eps=0.0)



def test_the_package_exports_its_functions_not_its_files():
    """A file of the package named like an exported function would shadow it (the
    import of the file sets the package's attribute): here the margin loss, whose
    gradient for a linear model is w_y − w_j (j the best other class)."""
    import inspect

    from advmanifold.science import implicit_bias

    assert attacks.__all__
    for name in attacks.__all__:
        assert not inspect.ismodule(getattr(attacks, name)), name
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    x, y = torch.rand(5, 3), torch.randint(4, (5,))
    g = implicit_bias.margin_gradients(model, x, y)
    other = model(x).scatter(1, y[:, None], -torch.inf).argmax(1)
    w = model.weight.detach()
    assert torch.allclose(g, w[y] - w[other], atol=1e-6)
