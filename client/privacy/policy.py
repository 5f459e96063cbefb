"""The site's privacy policy: what this hospital allows, whatever a run asks.

The server chooses a run's config, so nothing in it may weaken a hospital's guarantee. A
`SitePolicy` comes from the hospital's own site.toml [privacy] (via the SuperNode's node
config) or, in simulation, from the researcher who plays every hospital; the site checks
every request against it (`admit`, `check_secagg`) and refuses with `SitePolicyRefusal`
(exit 9), whose sentence reaches the operator.

Which values the site fixes, and why (a run's own values for these are ignored):
  * mode: only a mode in `allowed_modes` (default: just `mode`, i.e. sample-dp). Switching
    a hospital to client-dp or none changes who it must trust, so it needs the hospital's word.
  * epsilon, delta: the site's, not a floor or a cap: the budget is the hospital's promise.
  * total_epsilon: the lifetime budget over all runs (client/privacy/lifetime.py). Absent, it
    defaults to `epsilon`: one run's worth over the site's lifetime until the data owner
    raises it (fail closed: a new run name never brings fresh budget).
  * accountant: the site's (default rdp). RDP and PRV report different epsilons for the same
    noise, so the accountant is part of what "epsilon" means at this site.
  * max_grad_norm: the site's when it sets one. Under DP-SGD the noise scales with the norm,
    so epsilon does not depend on it, but under client-dp it bounds what one site's update can
    move the aggregate; a site that sets it fixes it, else the run's value is used.
  * allow_synthesis: whether the site takes part in a synthesis run (task = synthesize, a
    DP-trained generator whose synthetic table the server writes). Default true: such a run is
    DP-SGD on the same rows with the same accountant, charged to the same per-run and lifetime
    budgets, and the table is post-processing of DP outputs (docs/PRIVACY.md section 10), so it
    releases nothing a training run would not. A hospital whose governance does not allow
    synthetic data to be made from its records at all sets it false: the site then refuses the
    run, with its reason, before any gradient, and its audit log records the refusal.
  * allow_class_balance: whether the site trains with a class-balanced loss when a run asks
    (`class-balance`, client/class_balance.py). Default false: that loss is corrected by the
    site's own class counts, which epsilon does not cover (docs/PRIVACY.md, "Class-balanced
    loss"), so only a site that accepts releasing that much unaccounted information sets it true;
    otherwise the site refuses such a run before any gradient, and its audit log says why.
What a run may still choose: `clipping` (flat or ghost: the same mechanism, only memory and
speed differ) and `client_noise_multiplier` (client-dp's server-side noise: it protects the
site only against what the server publishes, not against the server itself, which is why
client-dp must be named in `allow-modes`).

SecAgg+ (`check_secagg`): a masked update hides a site only among the others summed with it.
With 2 sampled sites each learns the other's update (sum minus own), so the site refuses a
setup of fewer than `min_cohort` sampled sites (default 3). The reconstruction threshold is
the number of share holders who can rebuild a site's secrets: the site requires
threshold >= 2 and threshold > num_shares / 2 (a strict majority of its share holders, the
honest-majority condition of Bell et al.'s SecAgg+), so the server cannot gather enough
shares from a minority to unmask one site. A setup the site cannot observe (no cohort or no
share count given) is refused: fail closed.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from common.config import PrivacyConfig, site_policy_overrides
from common.errors import ConfigError, SitePolicyRefusal
from common.node_config import NodeKey
from common.privacy import PRIVACY_MODES
from common.privacy.mode import ACCOUNTANTS, dp_budget_problems
from common.privacy.sample_dp import SAMPLE_DP

if TYPE_CHECKING:
    from common.config import RunConfig

DEFAULT_MIN_COHORT = 3

# node-config key -> SITE_POLICY_KEYS name (node config says privacy-mode: `mode` alone is ambiguous there).
_NODE_KEYS = {
    NodeKey.PRIVACY_MODE: "mode", NodeKey.ALLOW_MODES: "allow-modes", NodeKey.EPSILON: "epsilon",
    NodeKey.TOTAL_EPSILON: "total-epsilon", NodeKey.DELTA: "delta", NodeKey.MAX_GRAD_NORM: "max-grad-norm",
    NodeKey.ACCOUNTANT: "accountant", NodeKey.MIN_COHORT: "min-cohort", NodeKey.REQUIRE_SECAGG: "require-secagg",
    NodeKey.RELEASE_EVALUATION: "release-evaluation", NodeKey.ALLOW_SYNTHESIS: "allow-synthesis",
    NodeKey.ALLOW_CLASS_BALANCE: "allow-class-balance",
}  # fmt: skip


def min_reconstruction_threshold(num_shares: int) -> int:
    """The smallest SecAgg+ threshold a site accepts for `num_shares` share holders."""
    return max(2, num_shares // 2 + 1)


@dataclass(frozen=True)
class SitePolicy:
    """One site's privacy policy (see the module docstring for each field's rule)."""

    epsilon: float
    delta: float
    total_epsilon: float | None = None  # None: fail closed, equal to epsilon
    mode: str = SAMPLE_DP.name
    allowed_modes: tuple[str, ...] = ()  # empty: just `mode`
    max_grad_norm: float | None = None
    accountant: str = "rdp"
    min_cohort: int = DEFAULT_MIN_COHORT
    require_secagg: bool = True
    release_evaluation: bool = True  # evaluation metrics on the site's test split are a non-DP release
    allow_synthesis: bool = True  # take part in task = synthesize runs (see the module docstring)
    allow_class_balance: bool = False  # a loss corrected by the site's class counts (not covered by epsilon)

    def __post_init__(self) -> None:
        if self.total_epsilon is None:
            object.__setattr__(self, "total_epsilon", self.epsilon)
        if not self.allowed_modes:
            object.__setattr__(self, "allowed_modes", (self.mode,))
        object.__setattr__(self, "allowed_modes", tuple(self.allowed_modes))

    # ------------------------------------------------------------------ validation

    def problems(self) -> list[str]:
        """Every problem at once, in site.toml's key names."""
        out: list[str] = []
        for name in dict.fromkeys((self.mode, *self.allowed_modes)):
            if (problem := PRIVACY_MODES.problem(name)) is not None:
                out.append(problem)
        if self.mode not in self.allowed_modes:
            out.append(f"mode={self.mode!r} is not in allow-modes={list(self.allowed_modes)}; add it there.")
        budget = PrivacyConfig(mode=SAMPLE_DP.name, epsilon=self.epsilon, delta=self.delta,
                               max_grad_norm=1.0 if self.max_grad_norm is None else self.max_grad_norm)
        out += [p for p in dp_budget_problems(budget) if not p.startswith(("accountant=", "clipping="))]
        total = self.total_epsilon
        if not isinstance(total, (int, float)) or not math.isfinite(total) or total <= 0:
            out.append(f"total-epsilon={total} must be a positive number (the site's budget over all runs).")
        if self.accountant not in ACCOUNTANTS:
            out.append(f"accountant={self.accountant!r} is unknown; use {' or '.join(map(repr, ACCOUNTANTS))}.")
        if isinstance(self.min_cohort, bool) or not isinstance(self.min_cohort, int) or self.min_cohort < 2:
            out.append(f"min-cohort={self.min_cohort} must be a whole number >= 2 (with 1 the 'sum' is the "
                       "site's own update; with 2 the other site learns it; 3 or more is advised).")
        return out

    def validate(self, where: str = "the site's privacy policy") -> "SitePolicy":
        problems = self.problems()
        if problems:
            raise ConfigError(
                f"Invalid {where}:\n  - " + "\n  - ".join(problems),
                "fix these values (site.toml [privacy], or the run config's site-policy in simulation); "
                "deploy/examples/site.toml explains every key.",
            )
        return self

    # ------------------------------------------------------------------ decisions

    def check_task(self, task: str) -> None:
        """Refuse a synthesis run when the site does not allow synthetic data from its rows."""
        if task == "synthesize" and not self.allow_synthesis:
            raise SitePolicyRefusal(
                "This site's policy does not allow synthesis runs (allow-synthesis = false): no synthetic data "
                "is made from its records; the site refused the run.",
                "run the synthesis without this site, or ask the hospital to set allow-synthesis = true in its "
                "site.toml [privacy].",
            )

    def check_class_balance(self, class_balance: str) -> None:
        """Refuse a class-balanced loss (its class counts are outside epsilon) unless the site allows it."""
        if class_balance != "none" and not self.allow_class_balance:
            raise SitePolicyRefusal(
                f"This site's policy does not allow class-balance={class_balance!r} (allow-class-balance = false): "
                "that loss uses the site's class counts, which its epsilon does not cover; the site refused the run.",
                "resubmit the run with class-balance = \"none\", or ask the hospital to set allow-class-balance = "
                "true in its site.toml [privacy].",
            )

    def admit(self, run: PrivacyConfig) -> PrivacyConfig:
        """The privacy settings this site trains with for a run asking `run`.

        Refuses a mode the site does not allow; otherwise the site's epsilon, delta,
        accountant (and max-grad-norm, if it sets one) replace the run's."""
        if run.mode not in self.allowed_modes:
            raise SitePolicyRefusal(
                f"This site's policy does not allow privacy-mode={run.mode!r} (it allows: "
                f"{', '.join(self.allowed_modes)}); the site refused the run.",
                f"resubmit the run with privacy-mode set to one of {', '.join(self.allowed_modes)}, or ask "
                "the hospital to add the mode to allow-modes in its site.toml [privacy].",
            )
        return dataclasses.replace(
            run,
            epsilon=self.epsilon,
            delta=self.delta,
            accountant=self.accountant,
            max_grad_norm=run.max_grad_norm if self.max_grad_norm is None else self.max_grad_norm,
        )

    def check_secagg(self, *, secagg_on: bool, num_shares: int | None, threshold: int | None,
                     cohort: int | None) -> None:
        """Refuse to send a masked update the setup cannot hide (or any update without SecAgg+
        when the site requires it). `cohort` is the number of sites sampled for the round."""
        if not secagg_on:
            if self.require_secagg:
                raise SitePolicyRefusal(
                    "This site requires secure aggregation (SecAgg+) and the run has it off; the site refused "
                    "to send its update in the clear.",
                    "resubmit with secagg = true, or ask the hospital to set require-secagg = false in site.toml.",
                )
            return
        if cohort is None or num_shares is None or threshold is None:
            raise SitePolicyRefusal(
                "The SecAgg+ setup did not say how many sites are sampled, or its share count or threshold; the "
                "site cannot check that its masked update is hidden among enough others, so it refused.",
                "use medfed's server (it sends the full SecAgg+ setup), or check the server's SecAgg+ workflow.",
            )
        if cohort < self.min_cohort:
            raise SitePolicyRefusal(
                f"This site's policy needs at least min-cohort={self.min_cohort} sites in a SecAgg+ round; this "
                f"round sampled {cohort}, too few to hide its update (with 2, each site learns the other's).",
                f"run with at least {self.min_cohort} sites per round (min-sites, wait-for-sites), or ask the "
                "hospital to lower min-cohort in its site.toml [privacy].",
            )
        needed = min_reconstruction_threshold(num_shares)
        if threshold < needed:
            raise SitePolicyRefusal(
                f"The SecAgg+ reconstruction threshold {threshold} is too low for {num_shares} shares: this site "
                f"needs at least {needed} (a strict majority, and >= 2), so that a minority of share holders "
                "cannot rebuild its secrets.",
                f"resubmit with secagg-threshold >= {needed} (or fewer secagg-num-shares).",
            )

    # ------------------------------------------------------------------ wire and construction

    def to_node_config(self) -> dict[str, Any]:
        """The policy as node-config scalars (read back by `from_node_config`)."""
        out: dict[str, Any] = {
            NodeKey.PRIVACY_MODE: self.mode,
            NodeKey.ALLOW_MODES: ",".join(self.allowed_modes),
            NodeKey.EPSILON: self.epsilon,
            NodeKey.TOTAL_EPSILON: self.total_epsilon,
            NodeKey.DELTA: self.delta,
            NodeKey.ACCOUNTANT: self.accountant,
            NodeKey.MIN_COHORT: self.min_cohort,
            NodeKey.REQUIRE_SECAGG: self.require_secagg,
            NodeKey.RELEASE_EVALUATION: self.release_evaluation,
            NodeKey.ALLOW_SYNTHESIS: self.allow_synthesis,
            NodeKey.ALLOW_CLASS_BALANCE: self.allow_class_balance,
        }
        if self.max_grad_norm is not None:
            out[NodeKey.MAX_GRAD_NORM] = self.max_grad_norm
        return out

    @classmethod
    def from_node_config(cls, node_config: Mapping[str, Any]) -> "SitePolicy":
        """The policy a site's daemon put in the node config. epsilon and delta are required (a
        SuperNode without them was not started by `medfed client start`); every other key
        missing takes its fail-closed default."""
        missing = [k for k in (NodeKey.EPSILON, NodeKey.DELTA) if k not in node_config]
        if missing:
            raise ConfigError(
                f"The node config has no {' or '.join(missing)}: this SuperNode has no privacy policy of its own.",
                "start the site with `medfed client start --site-config site.toml`, which passes its [privacy] table.",
            )
        values = {name: node_config[key] for key, name in _NODE_KEYS.items() if key in node_config}
        return cls.from_values(values, where="privacy policy in the node config")

    @classmethod
    def from_values(cls, values: Mapping[str, Any], *, where: str) -> "SitePolicy":
        """Build from SITE_POLICY_KEYS names (values may be strings, as node config and JSON give
        them); all type and range problems are raised at once as one ConfigError."""
        fields: dict[str, Any] = {}
        errors: list[str] = []
        for key, raw in values.items():
            attr, kind = _FIELDS[key]
            try:
                fields[attr] = _parse(raw, kind)
            except (TypeError, ValueError):
                errors.append(f"{key}={raw!r} is not {_KIND_WORDS[kind]}.")
        if errors:
            raise ConfigError(f"Invalid {where}:\n  - " + "\n  - ".join(errors),
                              "fix the types above; deploy/examples/site.toml explains every key.")
        return cls(**fields).validate(where)

    @classmethod
    def for_simulated_site(cls, cfg: RunConfig, site: str,
                           overrides: Mapping[str, Mapping[str, Any]] | None = None) -> "SitePolicy":
        """A simulated hospital's policy. The researcher configures the virtual hospitals, so by
        default a site allows the run's own mode (and its class-balance) and uses the run's epsilon, delta,
        max-grad-norm and accountant, with total-epsilon = epsilon and require-secagg = the
        run's secagg (default results are unchanged). `overrides` (default: the run config's
        parsed `site-policy`) apply "*" first, then the site's own entry."""
        if overrides is None:
            overrides = site_policy_overrides(cfg.site_policy)
        p = cfg.privacy
        values: dict[str, Any] = {
            "mode": p.mode, "epsilon": p.epsilon, "delta": p.delta, "max-grad-norm": p.max_grad_norm,
            "accountant": p.accountant, "require-secagg": cfg.secagg.enabled,
            "allow-class-balance": cfg.training.class_balance != "none",
        }  # fmt: skip
        chosen = {**overrides.get("*", {}), **overrides.get(site, {})}
        values.update(chosen)
        if "total-epsilon" not in chosen:
            values["total-epsilon"] = values["epsilon"]
        return cls.from_values(values, where=f"site-policy for simulated site {site!r}")


def _parse(raw: Any, kind: str) -> Any:
    if kind == "modes":
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, (list, tuple)) or not all(isinstance(m, str) for m in items):
            raise TypeError(raw)
        return tuple(m.strip() for m in items if m.strip())
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise TypeError(raw)
    if isinstance(raw, bool):
        raise TypeError(raw)
    if kind == "int":
        if isinstance(raw, float) and not raw.is_integer():
            raise ValueError(raw)
        return int(raw)
    if kind == "float":
        value = float(raw)
        if not math.isfinite(value):
            raise ValueError(raw)
        return value
    if not isinstance(raw, str):
        raise TypeError(raw)
    return raw


_KIND_WORDS = {"modes": "a list of mode names", "bool": "true or false", "int": "a whole number",
               "float": "a finite number", "str": "a text value"}

# SITE_POLICY_KEYS name -> (SitePolicy field, kind)
_FIELDS: dict[str, tuple[str, str]] = {
    "mode": ("mode", "str"), "allow-modes": ("allowed_modes", "modes"), "epsilon": ("epsilon", "float"),
    "total-epsilon": ("total_epsilon", "float"), "delta": ("delta", "float"),
    "max-grad-norm": ("max_grad_norm", "float"), "accountant": ("accountant", "str"),
    "min-cohort": ("min_cohort", "int"), "require-secagg": ("require_secagg", "bool"),
    "release-evaluation": ("release_evaluation", "bool"), "allow-synthesis": ("allow_synthesis", "bool"),
    "allow-class-balance": ("allow_class_balance", "bool"),
}  # fmt: skip
