"""The exact accountant of what fedsyn releases (rounded Irwin-Hall noise on integer grids)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedsyn import accounting as acc
from fedsyn.errors import ConfigError
from fedsyn.noise import GridNoise


def dp_accounting_bracket(sigma: float, tables: int, delta: float, interval: float = 1e-4):
    """Google's PLD library on the same distributions: (optimistic, pessimistic) epsilon."""
    pldm = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")
    ks, p = GridNoise(sigma).pmf()
    lower = {int(k): float(v) for k, v in zip(ks, np.log(p))}
    upper = {int(k) + 1: float(v) for k, v in zip(ks, np.log(p))}
    out = []
    for pessimistic in (False, True):
        pld = pldm.from_two_probability_mass_functions(
            lower, upper, pessimistic_estimate=pessimistic, value_discretization_interval=interval)
        out.append(pld.self_compose(tables).get_epsilon_for_delta(delta))
    return tuple(out)


@pytest.mark.parametrize("sigma,tables", [(5.0, 5), (10.6, 401), (1.95, 41)])
def test_epsilon_agrees_with_dp_accounting(sigma, tables):
    ours = acc.epsilon_spent([acc.ReleaseFamily("counts", tables, 1, sigma)], 1e-5)
    optimistic, pessimistic = dp_accounting_bracket(sigma, tables, 1e-5)
    assert optimistic <= ours  # an upper bound can never be below the optimistic estimate
    assert ours <= pessimistic * 1.005 + 1e-3  # and it is as tight as dp-accounting's pessimistic one


def test_epsilon_decreases_with_sigma_and_composes():
    eps = [acc.epsilon_spent([acc.ReleaseFamily("c", 401, 1, s)], 1e-5) for s in (5.0, 8.0, 12.0, 20.0)]
    assert eps == sorted(eps, reverse=True)
    one = acc.epsilon_spent([acc.ReleaseFamily("c", 200, 1, 8.0)], 1e-5)
    two = acc.epsilon_spent([acc.ReleaseFamily("a", 100, 1, 8.0), acc.ReleaseFamily("b", 100, 1, 8.0)], 1e-5)
    assert two == pytest.approx(one, rel=2e-3)  # two families of the same noise = one of their tables


def test_a_larger_shift_costs_like_proportionally_less_noise():
    # shift m with noise m * sigma is close to shift 1 with sigma (the grid just got finer)
    a = acc.epsilon_spent([acc.ReleaseFamily("c", 101, 1, 6.0)], 1e-5)
    b = acc.epsilon_spent([acc.ReleaseFamily("s", 101, 16, 96.0)], 1e-5)
    assert b == pytest.approx(a, rel=0.05)


@pytest.mark.parametrize("sigma", [3.0, 12.0])
def test_the_full_shift_is_the_worst_case_of_any_smaller_shift(sigma):
    """Bin sums move by any amount up to their shift: the full shift must dominate (hockey-stick at every eps)."""
    ks, p = GridNoise(sigma * 16).pmf()

    def hockey(t: int, e: float) -> float:
        shifted = np.zeros_like(p)
        shifted[t:] = p[:-t]
        return float(np.maximum(p - np.exp(e) * shifted, 0).sum())

    for e in (0.0, 0.05, 0.2, 0.5):
        curve = [hockey(t, e) for t in range(1, 17)]
        assert all(x <= y + 1e-15 for x, y in zip(curve, curve[1:])), e


def test_calibration_meets_the_budget_tightly():
    fams = acc.calibrate([acc.FamilyTemplate("counts", 41, 1)], 2.0, 1e-5)
    spent = acc.epsilon_spent(fams, 1e-5, target=2.0)
    assert 0.995 * 2.0 <= spent <= 2.0


def test_plan_at_the_paper_size_needs_less_noise_than_the_gaussian_rdp_bound():
    from fedsyn import gaussian_rdp

    plan = acc.plan_privacy(10, 1e-5, n_genes=978, n_labels=5)
    counts = plan.family("counts")
    assert counts.tables == 2 * 978 + 1 and counts.shift == 1
    assert plan.epsilon_spent <= 10.0
    rdp = gaussian_rdp.calibrate_sigma(10, 1e-5) * math.sqrt(2 * 978 + 1)
    assert 0.9 * rdp < counts.sigma < rdp  # 22.2 vs 23.4: the exact loss is below the RDP bound


def test_strict_profile_releases_histograms_counts_and_bin_sums():
    from fedsyn.params import SUM_SHIFT

    plan = acc.plan_privacy(5, 1e-5, n_genes=20, n_labels=3, profile="strict")
    assert [(f.name, f.tables, f.shift) for f in plan.families] == [
        ("histogram", 20, 1), ("counts", 21, 1), ("bin_sums", 20, SUM_SHIFT)]
    assert plan.epsilon_spent <= 5 and [x.split(":")[0] for x in plan.not_covered] == ["shapes"]
    # the budget split sets the relative noise: more share, less noise
    a = acc.release_templates(n_genes=20, n_labels=3, profile="strict",
                              shares={"histogram": 0.5, "counts": 0.25, "bin_sums": 0.25})
    assert a[0].scale < 1.0
    with pytest.raises(ConfigError, match="positive"):
        acc.release_templates(n_genes=20, n_labels=3, profile="strict", shares={"counts": 1.0})


def test_check_budget_refuses_a_plan_that_spends_more_than_it_says():
    plan = acc.plan_privacy(2, 1e-5, n_genes=10, n_labels=2)
    assert acc.check_budget(plan) <= 2.0
    from dataclasses import replace

    lying = replace(plan, epsilon=1.0)
    with pytest.raises(ConfigError, match="spends epsilon"):
        acc.check_budget(lying)
    weaker = replace(plan, families=tuple(replace(f, sigma=f.sigma / 2) for f in plan.families))
    with pytest.raises(ConfigError, match="spends epsilon"):
        acc.check_budget(weaker)


def test_plan_round_trips_and_states_what_it_does_not_cover():
    plan = acc.plan_privacy(3, 1e-6, n_genes=8, n_labels=4, not_covered=acc.not_covered_for("paper"))
    back = acc.PrivacyPlan.from_dict(plan.to_dict())
    assert back == plan and back.digest() == plan.digest()
    assert any(item.startswith("bin means") for item in plan.not_covered)
    assert not any(item.startswith("bin means") for item in acc.not_covered_for("dp"))
    sentence = acc.privacy_sentence(plan)
    assert "differentially private" in sentence and "add/remove" in sentence and "bin means" in sentence
    assert acc.privacy_block(None)["epsilon"] is None


@pytest.mark.parametrize("eps,delta", [(0, 1e-5), (-1, 1e-5), (1, 0), (1, 1), (math.inf, 1e-5)])
def test_bad_budgets(eps, delta):
    with pytest.raises(ConfigError):
        acc.plan_privacy(eps, delta, n_genes=3, n_labels=2)


def test_plan_for_given_sigmas_passes_the_servers_budget_check():
    """plan_for_params states an epsilon the servers' recomputation (its own target) does not exceed.

    One re-evaluation was not a fixed point here (stated 20.0489, recomputed 20.0490: the servers refused the
    benchmark's strict run at 2,910 genes)."""
    from fedsyn.params import DEFAULT_VALUE_RANGE, ProtocolParams

    p = ProtocolParams(n_labels=5, sigma=21.17, hist_sigma=31.38, sum_sigma=561.32, profile="strict",
                       value_range=DEFAULT_VALUE_RANGE, n_genes=2910)
    plan = acc.plan_for_params(p, n_genes=2910)
    assert acc.check_budget(plan) <= plan.epsilon
