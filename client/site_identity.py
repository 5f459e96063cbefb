"""Who this site is, where its state lives, and its privacy policy: what every message needs.

Kept apart from client/site.py (which loads the site's data) because the mods consult it for
every message, and a deployed ClientApp is a fresh process per message: this module imports no
torch, so SecAgg+'s key-exchange messages stay cheap. The policy is the site's own:
  * deployment: the daemon passes site.toml's [privacy] table in the node config;
  * simulation: the researcher configures the virtual hospitals through the run config
    (`site-policy`), and by default each allows the run's own mode and budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from client.privacy.policy import SitePolicy
from common.config import RunConfig
from common.errors import ConfigError
from common.node_config import AUDIT_LOG_FILE, PRIVACY_LEDGER_FILE, NodeKey
from common.runs import run_out_dir


@dataclass(frozen=True)
class SiteIdentity:
    name: str
    state_dir: Path
    policy: SitePolicy
    simulated: bool

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / PRIVACY_LEDGER_FILE

    @property
    def audit_log_path(self) -> Path:
        return self.state_dir / AUDIT_LOG_FILE


def is_simulated(node_config: Mapping[str, Any]) -> bool:
    return NodeKey.PARTITION_ID in node_config and NodeKey.SITE not in node_config


def site_identity(cfg: RunConfig, node_config: Mapping[str, Any], run_id: int) -> SiteIdentity:
    """This node's site for run `run_id` (its name, state folder and policy)."""
    if is_simulated(node_config):
        from common.datasets.selection import load_run_dataset  # simulation only: Ray workers are long-lived

        index = int(node_config[NodeKey.PARTITION_ID])
        names = load_run_dataset(cfg.data).site_names()
        if index >= len(names):
            raise ConfigError(
                f"Simulation node {index} has no site: the dataset has {len(names)} sites.",
                f"run with at most {len(names)} simulated hospitals.",
            )
        name = names[index]
        return SiteIdentity(name, run_out_dir(cfg, run_id) / "sites" / name,
                            SitePolicy.for_simulated_site(cfg, name), simulated=True)
    if NodeKey.SITE not in node_config:
        raise ConfigError(
            "This node has no `site` in its node config.",
            "start it with `medfed client start --site-config site.toml` (it sets the node config).",
        )
    state_dir = Path(str(node_config.get(NodeKey.STATE_DIR, "."))).expanduser()
    return SiteIdentity(str(node_config[NodeKey.SITE]), state_dir, SitePolicy.from_node_config(node_config),
                        simulated=False)
