"""Every AP estimator converges to the exact AP as its resolution grows, and its default
is within the stated bound (0.01 mean absolute bias) of scikit-learn's AP on S2R2's
rankings; ``fastap`` is the documented exception (a bias no number of bins removes).

The problems are S2R2's: B images x V views, each view a query ranking the other
N - 1 views by cosine similarity. Two score distributions: spread (dim 32) and
concentrated (dim 128, many items per histogram bin), the harder case for the binned
estimators and the sigmoid (benchmarks/bench_ap_bias.py measures N up to 4,096).
"""

import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import average_precision_score

from rankssl.losses import S2R2Loss
from rankssl.ops import AP_ESTIMATORS, average_precision, exact_average_precision
from rankssl.ops.average_precision import FASTAP_WARNING

BOUND = 0.01


def _s2r2_problem(batch, views, dim, sigma, num_queries, seed=0):
    generator = torch.Generator().manual_seed(seed)
    base = torch.randn(batch, dim, generator=generator)
    x = F.normalize(
        torch.cat([base + sigma * torch.randn(batch, dim, generator=generator) for _ in range(views)]), dim=1
    )
    image = torch.arange(batch).repeat(views)
    queries = torch.randperm(batch * views, generator=generator)[:num_queries]
    valid = torch.ones(num_queries, batch * views, dtype=torch.bool)
    valid[torch.arange(num_queries), queries] = False
    relevance = (image[queries][:, None] == image[None, :]) & valid
    return x[queries] @ x.T, relevance, valid


def _sklearn_ap(scores, relevance, valid):
    return torch.tensor(
        [average_precision_score(r[v].numpy(), s[v].numpy()) for s, r, v in zip(scores, relevance, valid)],
        dtype=torch.float32,
    )


PROBLEMS = {"spread": dict(dim=32, sigma=1.0), "concentrated": dict(dim=128, sigma=1.5)}


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem(request):
    scores, relevance, valid = _s2r2_problem(32, 8, num_queries=48, **PROBLEMS[request.param])  # N = 256
    exact = _sklearn_ap(scores, relevance, valid)
    torch.testing.assert_close(exact_average_precision(scores, relevance, valid), exact)
    return scores, relevance, valid, exact


def _bias(problem, estimator, **settings):
    scores, relevance, valid, exact = problem
    return float((average_precision(scores, relevance, valid, estimator, **settings) - exact).mean())


@pytest.mark.parametrize(
    "estimator, setting, resolutions",
    [
        ("binned", "num_bins", [20, 80, 320, 1280]),
        ("sigmoid", "temperature", [0.03, 0.01, 0.0025, 0.0005]),
        ("sorting", "steepness", [1e2, 1e3, 1e4, 1e5]),
    ],
)
def test_estimate_approaches_exact_ap_as_resolution_grows(problem, estimator, setting, resolutions):
    errors = [abs(_bias(problem, estimator, **{setting: value})) for value in resolutions]
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < coarse or fine < 1e-3, errors
    assert errors[0] > 5 * errors[-1], errors
    assert errors[-1] < 0.005, errors


@pytest.mark.parametrize("estimator", ["binned", "sigmoid", "sorting"])
def test_default_is_within_the_bound_and_tracks_exact_ap(problem, estimator):
    scores, relevance, valid, exact = problem
    estimate = average_precision(scores, relevance, valid, estimator)
    assert abs(float((estimate - exact).mean())) < BOUND
    # Per query, too: the estimate orders the queries as the exact AP does.
    assert float(torch.corrcoef(torch.stack((estimate, exact)))[0, 1]) > 0.95
    assert float((estimate - exact).abs().max()) < 5 * BOUND


def test_former_defaults_were_not_ap_estimates(problem):
    """Why the defaults moved (2026-11): 20 bins, T = 0.01 and a Cauchy network at
    steepness 100 underestimate AP by more than the bound on at least one distribution."""
    assert _bias(problem, "binned", num_bins=20) < -BOUND
    assert _bias(problem, "sorting", steepness=100.0, distribution="cauchy") < -0.1


def test_fastap_keeps_a_bias_that_more_bins_do_not_remove(problem):
    with pytest.warns(UserWarning, match="not an estimate of average precision"):
        at_default = _bias(problem, "fastap")
    with pytest.warns(UserWarning):
        fine = [_bias(problem, "fastap", num_bins=b) for b in (640, 5120)]
    binned_fine = _bias(problem, "binned", num_bins=5120)
    assert at_default < -0.05
    # Its error shrinks with bins but levels off far above the binned estimator's.
    assert fine[1] < 0 and abs(fine[1]) > 5 * abs(binned_fine), (fine, binned_fine)
    assert "fastap" in FASTAP_WARNING


def test_losses_take_the_estimators_defaults():
    loss = S2R2Loss("sorting")
    assert loss.estimator_settings == AP_ESTIMATORS["sorting"]
    assert S2R2Loss().estimator_settings["num_bins"] == AP_ESTIMATORS["binned"]["num_bins"]
    assert S2R2Loss("sigmoid", temperature=0.01).estimator_settings["temperature"] == 0.01
