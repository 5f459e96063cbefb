"""The site's privacy policy decides, whatever the run asks: the mode, the budget, the
accountant, the SecAgg+ cohort; it travels through the node config and, in simulation,
through the run config's site-policy."""

from __future__ import annotations

import json

import pytest

from client.privacy import policy as policy_module
from client.privacy.policy import SitePolicy, min_reconstruction_threshold
from common.config import SITE_POLICY_KEYS, PrivacyConfig, RunConfig
from common.errors import ConfigError, SitePolicyRefusal


def test_defaults_fail_closed() -> None:
    policy = SitePolicy(epsilon=5.0, delta=1e-4)
    assert policy.mode == "sample-dp" and policy.allowed_modes == ("sample-dp",)
    assert policy.total_epsilon == 5.0  # one run's worth over the site's lifetime
    assert policy.min_cohort == 3 and policy.require_secagg and policy.release_evaluation
    assert policy.accountant == "rdp" and policy.problems() == []


def test_problems_are_reported_all_at_once() -> None:
    policy = SitePolicy(epsilon=-1.0, delta=2.0, total_epsilon=0.0, mode="client-dp",
                        allowed_modes=("sample-dp", "bogus"), accountant="moments", min_cohort=1)
    text = "\n".join(policy.problems())
    for expected in ("'bogus'", "mode='client-dp' is not in allow-modes", "epsilon=-1.0 must be a positive",
                     "delta=2.0 must be in (0, 1)", "total-epsilon=0.0", "accountant='moments'", "min-cohort=1"):
        assert expected in text
    with pytest.raises(ConfigError, match="Invalid the site's privacy policy"):
        policy.validate()


def test_a_mode_the_site_does_not_allow_is_refused_with_the_sites_reason() -> None:
    policy = SitePolicy(epsilon=5.0, delta=1e-4)
    for mode in ("client-dp", "none"):
        with pytest.raises(SitePolicyRefusal) as info:
            policy.admit(PrivacyConfig(mode=mode))
        assert info.value.exit_code == 9
        assert f"does not allow privacy-mode={mode!r}" in info.value.problem and "sample-dp" in info.value.problem
        assert "resubmit" in info.value.fix and "allow-modes" in info.value.fix


def test_a_site_decides_whether_synthetic_data_is_made_from_its_rows() -> None:
    default = SitePolicy(epsilon=5.0, delta=1e-4)
    assert default.allow_synthesis  # same DP-SGD, ledger and budgets as training (docs/PRIVACY.md section 10)
    default.check_task("synthesize")
    closed = SitePolicy(epsilon=5.0, delta=1e-4, allow_synthesis=False)
    closed.check_task("classify")  # training runs are not affected
    with pytest.raises(SitePolicyRefusal) as info:
        closed.check_task("synthesize")
    assert "allow-synthesis = false" in info.value.problem and "allow-synthesis = true" in info.value.fix


def test_the_site_refuses_a_synthesis_run_it_does_not_allow_and_still_trains(tmp_path) -> None:
    from client.site import site_run

    cfg = RunConfig.from_flower({"dataset": "heart-disease", "partition": "natural", "task": "synthesize"})
    node = {"site": "cleveland", "state-dir": str(tmp_path), "dataset": "heart-disease", "dataset-site": "cleveland",
            **SitePolicy(epsilon=5.0, delta=1e-4, allow_synthesis=False).to_node_config()}
    assert "allow-synthesis = false" in site_run(cfg, node, run_id=1).refusal
    training = RunConfig.from_flower({"dataset": "heart-disease", "partition": "natural"})
    assert site_run(training, node, run_id=1).refusal == ""


def test_a_deployed_site_refuses_a_class_balanced_loss_unless_its_own_policy_allows_it(tmp_path) -> None:
    """The class counts behind class-balance are outside epsilon (docs/PRIVACY.md): a run may ask,
    the site decides (default: refuse); a simulated site allows what the researcher asks."""
    from client.site import site_run

    asking = RunConfig.from_flower({"dataset": "heart-disease", "partition": "natural", "class-balance": "logit-adjust"})
    node = {"site": "cleveland", "state-dir": str(tmp_path), "dataset": "heart-disease", "dataset-site": "cleveland",
            **SitePolicy(epsilon=5.0, delta=1e-4).to_node_config()}
    refusal = site_run(asking, node, run_id=1).refusal
    assert "class-balance='logit-adjust'" in refusal and "allow-class-balance = false" in refusal
    allowing = {**node, **SitePolicy(epsilon=5.0, delta=1e-4, allow_class_balance=True).to_node_config()}
    assert site_run(asking, allowing, run_id=1).refusal == ""
    plain = RunConfig.from_flower({"dataset": "heart-disease", "partition": "natural"})
    assert site_run(plain, node, run_id=1).refusal == ""
    assert SitePolicy.for_simulated_site(asking, "cleveland").allow_class_balance
    assert not SitePolicy.for_simulated_site(plain, "cleveland").allow_class_balance


def test_the_sites_budget_and_accountant_win_and_the_run_keeps_only_what_does_not_change_the_guarantee() -> None:
    run = PrivacyConfig(mode="client-dp", epsilon=100.0, delta=0.1, max_grad_norm=7.0, accountant="prv",
                        clipping="flat", client_noise_multiplier=1.3)
    policy = SitePolicy(epsilon=3.0, delta=1e-5, mode="sample-dp", allowed_modes=("sample-dp", "client-dp"))
    admitted = policy.admit(run)
    assert (admitted.mode, admitted.epsilon, admitted.delta, admitted.accountant) == ("client-dp", 3.0, 1e-5, "rdp")
    assert (admitted.max_grad_norm, admitted.clipping, admitted.client_noise_multiplier) == (7.0, "flat", 1.3)
    fixed_norm = SitePolicy(epsilon=3.0, delta=1e-5, max_grad_norm=1.0)
    assert fixed_norm.admit(PrivacyConfig(max_grad_norm=7.0)).max_grad_norm == 1.0


@pytest.mark.parametrize(
    ("kwargs", "refused"),
    [
        (dict(secagg_on=False, num_shares=None, threshold=None, cohort=None), "requires secure aggregation"),
        (dict(secagg_on=True, num_shares=3, threshold=2, cohort=2), "min-cohort=3"),
        (dict(secagg_on=True, num_shares=None, threshold=2, cohort=4), "did not say"),
        (dict(secagg_on=True, num_shares=3, threshold=2, cohort=None), "did not say"),
        (dict(secagg_on=True, num_shares=6, threshold=3, cohort=6), "threshold 3 is too low for 6 shares"),
        (dict(secagg_on=True, num_shares=3, threshold=1, cohort=3), "threshold 1 is too low"),
        (dict(secagg_on=True, num_shares=3, threshold=2, cohort=3), None),  # medfed's defaults pass
        (dict(secagg_on=True, num_shares=6, threshold=4, cohort=10), None),
    ],
)
def test_check_secagg(kwargs, refused) -> None:
    policy = SitePolicy(epsilon=5.0, delta=1e-4)
    if refused is None:
        policy.check_secagg(**kwargs)
    else:
        with pytest.raises(SitePolicyRefusal, match=refused):
            policy.check_secagg(**kwargs)


def test_secagg_off_is_accepted_only_when_the_site_does_not_require_it() -> None:
    SitePolicy(epsilon=5.0, delta=1e-4, require_secagg=False).check_secagg(
        secagg_on=False, num_shares=None, threshold=None, cohort=None)
    assert [min_reconstruction_threshold(n) for n in (3, 4, 5, 6)] == [2, 3, 3, 4]


def test_node_config_round_trip_and_string_values() -> None:
    policy = SitePolicy(epsilon=4.0, delta=1e-5, total_epsilon=12.0, mode="sample-dp",
                        allowed_modes=("sample-dp", "client-dp"), max_grad_norm=0.5, accountant="prv",
                        min_cohort=4, require_secagg=False, release_evaluation=False, allow_synthesis=False,
                        allow_class_balance=True)
    node = policy.to_node_config()
    assert node["allow-modes"] == "sample-dp,client-dp"
    assert all(isinstance(v, (str, int, float, bool)) for v in node.values())  # node-config scalars
    assert SitePolicy.from_node_config(node) == policy
    as_text = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in node.items()}
    assert SitePolicy.from_node_config(as_text) == policy


def test_node_config_without_a_budget_or_with_bad_values_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no epsilon or delta"):
        SitePolicy.from_node_config({"site": "x"})
    with pytest.raises(ConfigError, match=r"min-cohort='many' is not a whole number(.|\n)*release-evaluation"):
        SitePolicy.from_node_config({"epsilon": 1.0, "delta": 1e-5, "min-cohort": "many",
                                     "release-evaluation": "maybe"})
    assert SitePolicy.from_node_config({"epsilon": 1.0, "delta": 1e-5}) == SitePolicy(epsilon=1.0, delta=1e-5)


def test_every_policy_key_has_a_field_and_a_node_config_key() -> None:
    assert set(policy_module._FIELDS) == set(SITE_POLICY_KEYS)
    assert set(policy_module._NODE_KEYS.values()) == set(SITE_POLICY_KEYS)


def test_a_simulated_site_follows_the_run_by_default() -> None:
    cfg = RunConfig.from_flower({"privacy-mode": "client-dp", "epsilon": 6.0, "delta": 1e-5, "accountant": "prv"})
    policy = SitePolicy.for_simulated_site(cfg, "site-0")
    assert policy.allowed_modes == ("client-dp",) and policy.total_epsilon == 6.0
    assert policy.admit(cfg.privacy) == cfg.privacy  # default results unchanged
    assert policy.require_secagg == cfg.secagg.enabled


def test_site_policy_overrides_apply_star_then_the_site() -> None:
    overrides = {"*": {"total-epsilon": 20.0, "min-cohort": 4}, "site-1": {"mode": "sample-dp", "epsilon": 2.0}}
    cfg = RunConfig.from_flower({"privacy-mode": "client-dp", "site-policy": json.dumps(overrides)})
    other = SitePolicy.for_simulated_site(cfg, "site-0")
    assert (other.total_epsilon, other.min_cohort, other.allowed_modes) == (20.0, 4, ("client-dp",))
    strict = SitePolicy.for_simulated_site(cfg, "site-1")
    assert (strict.epsilon, strict.total_epsilon, strict.allowed_modes) == (2.0, 20.0, ("sample-dp",))
    with pytest.raises(SitePolicyRefusal, match="client-dp"):
        strict.admit(cfg.privacy)
    alone = SitePolicy.for_simulated_site(cfg, "site-2", {"site-2": {"epsilon": 1.5}})
    assert alone.total_epsilon == 1.5  # fail closed also in simulation


@pytest.mark.parametrize(
    ("text", "message"),
    [("{not json", "not valid JSON"), ('["a"]', "JSON object of objects"),
     ('{"*": {"epsilon": 1, "epsilonn": 2}}', "unknown key.*epsilonn")],
)
def test_a_bad_site_policy_is_a_config_problem(text, message) -> None:
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flower({"site-policy": text})


def test_bad_override_values_name_the_simulated_site() -> None:
    cfg = RunConfig.from_flower({"site-policy": '{"site-3": {"min-cohort": 1}}'})
    with pytest.raises(ConfigError, match="simulated site 'site-3'(.|\n)*min-cohort=1"):
        SitePolicy.for_simulated_site(cfg, "site-3")
