"""Client mods: what wraps the ClientApp on its way in and out.

Order (outermost first), as given to `ClientApp(mods=...)`:
  1. `secure_aggregation_mod` — SecAgg+ masking (Flower's `secaggplus_mod`) when the server runs
     the protocol; a site whose node config says `require-secagg=true` refuses to train for a
     server that does not (it would otherwise send an unmasked update).
  2. `update_encoding_mod`    — turns weights into a bounded update (see common/updates.py).
  3. `client_dp_clipping_mod` — client-level DP only: clips the update norm (Flower's
     `fixedclipping_mod`), active when the server's DP wrapper sends a clipping norm.

Flower's SecAgg+ lives only on the legacy-compat API; this module and
`server/secure_aggregation.py` are the only two places that know about it.
"""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.app.message_type import MessageType
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS
from flwr.compat.common import recorddict_compat as compat
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from common.errors import SecurityError
from common.node_config import NodeKey
from common.updates import UPDATE_BOUND_KEY, encode_update


def _is_train(msg: Message) -> bool:
    return msg.metadata.message_type == MessageType.TRAIN


def secure_aggregation_mod(msg: Message, ctxt: Context, call_next: ClientAppCallable) -> Message:
    """Run Flower's SecAgg+ client protocol for SecAgg+ messages; enforce the site's policy for
    plain training requests."""
    if not _is_train(msg):
        return call_next(msg, ctxt)
    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, ctxt, call_next)
    if str(ctxt.node_config.get(NodeKey.REQUIRE_SECAGG, "false")).lower() == "true":
        raise SecurityError(
            "The server asked this site to train without secure aggregation, which the site's policy forbids.",
            "ask the operator to run with SecAgg+ on, or set require-secagg=false in the site config.",
        )
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


CLIENT_MODS = [secure_aggregation_mod, update_encoding_mod, client_dp_clipping_mod]
