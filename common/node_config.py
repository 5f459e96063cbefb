"""The node-config keys: the wire between a site's daemon and the ClientApp it serves.

`medfed client start` turns site.toml into `flower-supernode --node-config` (client/daemon/site_config.py),
the ClientApp reads the same keys back from `context.node_config` (client/site.py, client/mods.py).
A key spelt differently on the two sides would be silently ignored, and a site's privacy budget
with it, so both sides use these names.
"""

from __future__ import annotations

from typing import Final


class NodeKey:
    """Every key medfed puts in a SuperNode's node config."""

    SITE: Final = "site"
    STATE_DIR: Final = "state-dir"
    DEVICE: Final = "device"
    DATASET: Final = "dataset"
    DATASET_SITE: Final = "dataset-site"
    DATA_PATH: Final = "data-path"
    DATA_FORMAT: Final = "data-format"
    EPSILON: Final = "epsilon"
    DELTA: Final = "delta"
    MAX_GRAD_NORM: Final = "max-grad-norm"
    REQUIRE_SECAGG: Final = "require-secagg"
    # The rest of the site's privacy policy (client/privacy/policy.py, site.toml [privacy]).
    PRIVACY_MODE: Final = "privacy-mode"
    ALLOW_MODES: Final = "allow-modes"  # comma-separated: node-config values are scalars
    TOTAL_EPSILON: Final = "total-epsilon"
    ACCOUNTANT: Final = "accountant"
    MIN_COHORT: Final = "min-cohort"
    RELEASE_EVALUATION: Final = "release-evaluation"
    ALLOW_SYNTHESIS: Final = "allow-synthesis"
    ALLOW_CLASS_BALANCE: Final = "allow-class-balance"
    # How the site reads its own table (data-path with format table or text-table).
    LABEL_COLUMN: Final = "label-column"
    TEXT_COLUMN: Final = "text-column"
    #: Set by Flower's simulation engine, not by medfed: a simulated node has no `site`.
    PARTITION_ID: Final = "partition-id"


#: The site's privacy ledger, in its state-dir: written by the ClientApp, read by `medfed client status`.
PRIVACY_LEDGER_FILE: Final = "privacy-ledger.json"
#: The site's audit log, in its state-dir: one hash-chained JSON line per request the site answers
#: (client/privacy/audit.py), read by `medfed client audit`.
AUDIT_LOG_FILE: Final = "audit.jsonl"
#: The last record's seq and hash, rewritten atomically after each append: it tells a log whose
#: last records were cut off from a log that simply ends there.
AUDIT_HEAD_FILE: Final = "audit.head.json"
