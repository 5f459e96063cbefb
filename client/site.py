"""Who this site is and what it holds, from Flower's node config.

Two ways a site is described:
  * simulation: Flower sets `partition-id` (and `num-partitions`); the site is that partition of
    the run's dataset, and its state lives under the run's output folder;
  * deployment: the daemon passes the site's own settings (`site`, `dataset` or `data-path` +
    `data-format`, `state-dir`, `device`, and the site's privacy budget) with `--node-config`.
    The site's budget is the site's decision: it overrides whatever the server's run asks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from common.config import DataConfig, PrivacyConfig, RunConfig
from common.datasets.contract import FederatedDataset, SiteData, normalise_with_site_stats
from common.datasets.selection import load_run_dataset
from common.errors import ConfigError
from common.node_config import NodeKey
from common.runs import run_out_dir


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
    privacy: PrivacyConfig
    # Simulation only: the run's seed, so a simulated federation is reproducible (DP noise
    # included). None at a deployed site, whose noise must stay unpredictable.
    seed: int | None = None


def site_run(cfg: RunConfig, node_config: Mapping[str, Any], run_id: int) -> SiteRun:
    """Resolve this node's site from its node config and the run config."""
    if NodeKey.PARTITION_ID in node_config and NodeKey.SITE not in node_config:  # simulation
        index = int(node_config[NodeKey.PARTITION_ID])
        dataset = load_run_dataset(cfg.data)
        names = dataset.site_names()
        if index >= len(names):
            raise ConfigError(
                f"Simulation node {index} has no site: the dataset has {len(names)} sites.",
                f"run with at most {len(names)} simulated hospitals.",
            )
        name = names[index]
        state_dir = run_out_dir(cfg, run_id) / "sites" / name
        return SiteRun(name, cfg.data, name, state_dir, str(node_config.get(NodeKey.DEVICE, "auto")), cfg.privacy,
                            seed=cfg.data.seed)

    if NodeKey.SITE not in node_config:
        raise ConfigError(
            "This node has no `site` in its node config.",
            "start it with `medfed client start --site-config site.toml` (it sets the node config).",
        )
    name = str(node_config[NodeKey.SITE])
    data = cfg.data
    site_in_dataset: str | int = name
    if node_config.get(NodeKey.DATA_PATH):
        data = dataclasses.replace(
            data,
            dataset="",
            data_path=str(node_config[NodeKey.DATA_PATH]),
            data_format=str(node_config.get(NodeKey.DATA_FORMAT, "")),
            num_sites=1,
            partition="natural",
        )
        site_in_dataset = 0
    elif node_config.get(NodeKey.DATASET):
        data = dataclasses.replace(data, dataset=str(node_config[NodeKey.DATASET]), data_path="", partition="natural")
        site_in_dataset = str(node_config.get(NodeKey.DATASET_SITE, name))
    privacy = cfg.privacy
    overrides = {
        NodeKey.EPSILON: ("epsilon", float),
        NodeKey.DELTA: ("delta", float),
        NodeKey.MAX_GRAD_NORM: ("max_grad_norm", float),
    }
    changes = {attr: typ(node_config[key]) for key, (attr, typ) in overrides.items() if key in node_config}
    if changes:
        privacy = dataclasses.replace(privacy, **changes)
        problems = privacy.problems()
        if problems:
            raise ConfigError("Invalid site privacy settings: " + " ".join(problems), "fix the [privacy] table of site.toml.")
    state_dir = Path(str(node_config.get(NodeKey.STATE_DIR, "."))).expanduser()
    return SiteRun(name, data, site_in_dataset, state_dir, str(node_config.get(NodeKey.DEVICE, "auto")), privacy)


def load_site_data(settings: SiteRun, data_dir: str | None = None) -> tuple[FederatedDataset, SiteData]:
    """The site's data, normalised with statistics of its own training split."""
    dataset = load_run_dataset(settings.data, data_dir)
    site = dataset.site(settings.site_in_dataset)
    return dataset, normalise_with_site_stats(site, dataset.modality)
