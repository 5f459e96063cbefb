"""The ClientApp's view of this site for one run: its data, and the privacy it trains with.

The site (client/site_identity.py) is resolved from the node config; its data from the node
config (deployment: `dataset` + `dataset-site`, or `data-path` + `data-format`) or the run
config (simulation: a partition of the run's dataset). The privacy settings are the site's
decision: `SitePolicy.admit` takes the run's request and returns what the site will train
with (its own epsilon, delta, accountant, max-grad-norm), or a refusal (a mode the site does
not allow, or a synthesis run where it allows none), which the site reports instead of training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from client.privacy.policy import SitePolicy
from client.site_identity import site_identity
from common.config import DataConfig, PrivacyConfig, RunConfig
from common.datasets.contract import FederatedDataset, SiteData, normalise_with_site_stats
from common.datasets.selection import load_run_dataset
from common.errors import SitePolicyRefusal
from common.node_config import NodeKey


@dataclass(frozen=True)
class SiteRun:
    """The ClientApp's resolved view of this site for one run (node config + run config).

    Not the daemon's `SiteConfig` (site.toml, which outlives runs): this is rebuilt per run.
    """

    name: str
    data: DataConfig
    site_in_dataset: str | int  # site name or partition index inside the dataset
    state_dir: Path
    device: str
    privacy: PrivacyConfig  # what this site trains with (admitted by its policy)
    policy: SitePolicy
    refusal: str = ""  # why the site refuses this run ("" = it takes part)
    # Simulation only: the run's seed, so a simulated federation is reproducible (DP noise
    # included). None at a deployed site, whose noise must stay unpredictable.
    seed: int | None = None


def site_run(cfg: RunConfig, node_config: Mapping[str, Any], run_id: int) -> SiteRun:
    """Resolve this node's site, its data and its privacy for run `run_id`."""
    identity = site_identity(cfg, node_config, run_id)
    device = str(node_config.get(NodeKey.DEVICE, "auto"))
    try:
        identity.policy.check_task(cfg.synthesis.task)
        identity.policy.check_class_balance(cfg.training.class_balance)
        privacy, refusal = identity.policy.admit(cfg.privacy), ""
    except SitePolicyRefusal as err:
        privacy, refusal = cfg.privacy, err.problem  # nothing trains with it: the site refuses the run
    if identity.simulated:
        return SiteRun(identity.name, cfg.data, identity.name, identity.state_dir, device, privacy,
                       identity.policy, refusal, seed=cfg.data.seed)
    data = cfg.data
    site_in_dataset: str | int = identity.name
    if node_config.get(NodeKey.DATA_PATH):
        data = dataclasses.replace(
            data,
            dataset="",
            data_path=str(node_config[NodeKey.DATA_PATH]),
            data_format=str(node_config.get(NodeKey.DATA_FORMAT, "")),
            # How the site's own table is read is the site's (site.toml [data]); absent, the run's.
            label_column=str(node_config.get(NodeKey.LABEL_COLUMN, data.label_column)),
            text_column=str(node_config.get(NodeKey.TEXT_COLUMN, data.text_column)),
            num_sites=1,
            partition="natural",
        )
        site_in_dataset = 0
    elif node_config.get(NodeKey.DATASET):
        data = dataclasses.replace(data, dataset=str(node_config[NodeKey.DATASET]), data_path="", partition="natural")
        site_in_dataset = str(node_config.get(NodeKey.DATASET_SITE, identity.name))
    return SiteRun(identity.name, data, site_in_dataset, identity.state_dir, device, privacy, identity.policy, refusal)


def load_site_data(
    settings: SiteRun, data_dir: str | None = None, *, normalise: bool = True
) -> tuple[FederatedDataset, SiteData]:
    """The site's data, normalised with statistics of its own training split (`normalise=False`:
    raw values, for a synthesis run, whose encoding comes from the public schema instead)."""
    dataset = load_run_dataset(settings.data, data_dir)
    site = dataset.site(settings.site_in_dataset)
    return dataset, normalise_with_site_stats(site, dataset.modality) if normalise else site
