"""Client mods: what wraps the ClientApp on its way in and out.

Order (outermost first), as `client_mods(run_config)` gives them to `ClientApp(mods=...)`:
  0. `site_policy_mod`        — the site's policy and audit log around every message: it refuses
     a SecAgg+ setup whose cohort or threshold cannot hide the site's update, and training
     without SecAgg+ when the site requires it; and it appends one hash-chained record per
     request to the site's audit log (what was asked, what was decided and why, the epsilon
     before and after, and a digest of what left). A broken audit log stops the site from
     answering at all, before anything is trained or released.
  1. `secure_aggregation_mod` — SecAgg+ masking (Flower's `secaggplus_mod`) when the server runs
     the protocol.
  2. `update_encoding_mod`    — turns weights into a bounded update (see common/updates.py).
  3. `client_dp_clipping_mod` — client-level DP only: clips the update norm (Flower's
     `fixedclipping_mod`), active when the server's DP wrapper sends a clipping norm.

Flower's SecAgg+ lives only on the legacy-compat API; this module and
`server/secure_aggregation.py` are the only two places that know about it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.clientapp.typing import Mod
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from client.privacy.audit import AuditLog, release_digest
from client.privacy.ledger import PrivacyLedger
from client.privacy.policy import SitePolicy
from client.site_identity import SiteIdentity, site_identity
from common.config import RunConfig
from common.errors import SitePolicyRefusal
from common.operating_point import EVAL_PHASE_KEY, VALIDATION_PHASE
from common.privacy import privacy_mode
from common.runs import run_name
from common.updates import UPDATE_BOUND_KEY, encode_update


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN


def secure_aggregation_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run Flower's SecAgg+ client protocol for SecAgg+ messages (the site's policy has already
    decided, in `site_policy_mod`, whether this site takes part)."""
    if _is_train(msg) and RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    return call_next(msg, ctxt)


def update_encoding_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Replace the weights a site returns by `weights - global`, bounded by the server's
    `medfed-update-bound` (sent in every fit config); report whether the bound bit."""
    if not _is_train(msg) or "fitins.config" not in msg.content.config_records:
        return call_next(msg, ctxt)
    fit_ins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    if UPDATE_BOUND_KEY not in fit_ins.config:
        return call_next(msg, ctxt)
    bound = float(fit_ins.config[UPDATE_BOUND_KEY])
    global_weights = parameters_to_ndarrays(fit_ins.parameters)

    out_msg = call_next(msg, ctxt)
    if out_msg.has_error():
        return out_msg
    fit_res = compat.recorddict_to_fitres(out_msg.content, keep_input=True)
    encoded = encode_update(parameters_to_ndarrays(fit_res.parameters), global_weights, bound)
    fit_res.parameters = ndarrays_to_parameters(encoded.delta)
    fit_res.metrics["update_scaled"] = int(encoded.scaled)
    fit_res.metrics["update_inf_norm"] = float(encoded.inf_norm)
    out_msg.content = compat.fitres_to_recorddict(fit_res, keep_input=True)
    return out_msg


def client_dp_clipping_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Flower's `fixedclipping_mod`, only when the server's client-level DP wrapper is in use."""
    if not _is_train(msg) or "fitins.config" not in msg.content.config_records:
        return call_next(msg, ctxt)
    if KEY_CLIPPING_NORM not in msg.content.config_records["fitins.config"]:
        return call_next(msg, ctxt)
    return fixedclipping_mod(msg, ctxt, call_next)


def site_policy_mod_for(run_config: Mapping[str, Any] | None) -> Mod:
    """`site_policy_mod` reading the run config bound in advance (`medfed simulate`) or, when
    None, the one Flower hands the app (`flwr run .`, deployment)."""

    def site_policy_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
        cfg = RunConfig.from_flower(run_config if run_config is not None else ctxt.run_config)
        site = site_identity(cfg, ctxt.node_config, ctxt.run_id)
        request = _Request.of(msg, run_name(cfg, ctxt.run_id))
        audit = AuditLog(site.audit_log_path)
        audit.check_tail()  # a broken log: answer nothing (DataError), so nothing leaves unrecorded
        before = _spent(site, request.run)
        try:
            _check_policy(site.policy, msg, request)
        except SitePolicyRefusal as err:
            audit.append(**request.fields(), decision="refused", reason=err.problem, **_epsilons(before, before))
            raise
        reply = call_next(msg, ctxt)
        decision, reason, released = _outcome(request, reply)
        audit.append(**request.fields(), decision=decision, reason=reason, released=released,
                     **_epsilons(before, _spent(site, request.run)))
        return reply

    return site_policy_mod


def client_mods(run_config: Mapping[str, Any] | None = None) -> list[Mod]:
    """The ClientApp's mods, outermost first (see the module docstring)."""
    return [site_policy_mod_for(run_config), *PROTOCOL_MODS]


# The protocol alone (SecAgg+, update encoding, client-level clipping), without the site's
# policy and audit log: for tests and benchmarks of the aggregation itself.
PROTOCOL_MODS: list[Mod] = [secure_aggregation_mod, update_encoding_mod, client_dp_clipping_mod]


# --------------------------------------------------------------------------- site policy helpers


@dataclass(frozen=True)
class _Request:
    run: str
    round: int | None
    kind: str  # "train", "evaluate", "query"
    stage: str  # SecAgg+ stage, "validation" for the validation counts, "" for a plain request

    @classmethod
    def of(cls, msg: Message, run: str) -> "_Request":
        group = msg.metadata.group_id
        configs = msg.content.config_records.get(RECORD_KEY_CONFIGS) if _is_train(msg) else None
        stage = str(configs.get(Key.STAGE, "")) if configs is not None else ""
        if msg.metadata.message_type == MessageType.EVALUATE:  # the federated operating point's counts
            ins = msg.content.config_records.get("evaluateins.config")
            stage = VALIDATION_PHASE if ins is not None and ins.get(EVAL_PHASE_KEY) == VALIDATION_PHASE else ""
        return cls(run, int(group) if group.isdigit() else None, str(msg.metadata.message_type), stage)

    @property
    def message_type(self) -> str:
        return f"{self.kind}:{self.stage}" if self.stage else self.kind

    @property
    def trains(self) -> bool:
        """The request that runs local training: a plain train message or SecAgg+'s masking stage."""
        return self.kind == MessageType.TRAIN and self.stage in ("", Stage.COLLECT_MASKED_VECTORS)

    def fields(self) -> dict[str, Any]:
        return {"run": self.run, "round": self.round, "message_type": self.message_type}


def _check_policy(policy: SitePolicy, msg: Message, request: _Request) -> None:
    """The site's SecAgg+ rules: checked on the setup it receives, before it takes part."""
    if request.kind != MessageType.TRAIN:
        return
    if not request.stage:
        policy.check_secagg(secagg_on=False, num_shares=None, threshold=None, cohort=None)
    elif request.stage == Stage.SETUP:
        configs = msg.content.config_records[RECORD_KEY_CONFIGS]
        policy.check_secagg(secagg_on=True, num_shares=_int(configs.get(Key.SHARE_NUMBER)),
                            threshold=_int(configs.get(Key.THRESHOLD)), cohort=_int(configs.get(Key.SAMPLE_NUMBER)))


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _spent(site: SiteIdentity, run: str) -> tuple[float | None, float | None]:
    """(this run's epsilon, the site's composed lifetime epsilon) from its ledger, if it keeps one."""
    if not site.ledger_path.exists():  # nothing spent yet; None where the site keeps no DP-SGD ledger at all
        return (0.0, 0.0) if privacy_mode(site.policy.mode).sample_level else (None, None)
    return PrivacyLedger(site.ledger_path).spending(run)


def _epsilons(before: tuple[float | None, float | None], after: tuple[float | None, float | None]) -> dict:
    return {"epsilon_run_before": before[0], "epsilon_run_after": after[0],
            "epsilon_total_before": before[1], "epsilon_total_after": after[1]}


def _outcome(request: _Request, reply: Message) -> tuple[str, str, dict | None]:
    """(decision, reason, what was released) for the audit record of `reply`."""
    if reply.has_error():
        return "refused", f"error: {reply.error.reason}", None
    metrics = _reply_metrics(reply.content)
    released = release_digest(_reply_arrays(reply.content), _plain(metrics))
    if request.trains:
        refused = metrics.get("fitres.metrics.refused")
        return ("refused", str(refused), released) if refused else ("trained", "", released)
    if request.kind == MessageType.EVALUATE:
        withheld = metrics.get("evaluateres.metrics.withheld")
        return ("withheld", str(withheld), released) if withheld else ("evaluated", "", released)
    return "answered", "", released


def _reply_arrays(content: Any) -> list[np.ndarray]:
    return [array.numpy() for record in content.array_records.values() for array in record.values()]


def _reply_metrics(content: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for records in (content.metric_records, content.config_records):
        for name, record in records.items():
            for key, value in record.items():
                out[f"{name}.{key}"] = value
    return out


def _plain(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able values for the digest: bytes (SecAgg+ keys, shares, masked vectors) by their sha256."""

    def plain(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"sha256": hashlib.sha256(value).hexdigest(), "bytes": len(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {key: plain(value) for key, value in metrics.items()}
