"""The run's key service as a Ray actor (``veil run --ray`` / ``--address``): made once per run on the driver's
node, asked once per worker process for its sub-keys. Ray is imported only inside these functions."""

from __future__ import annotations

import threading
from typing import Any

from veil.errors import KeyError_
from veil.keys import KeyedFunctions
from veil.keys.custodian import CustodianPublicKey
from veil.keys.service import KeyService, functions_from_worker_keys

__all__ = ["get_or_create_actor", "worker_functions"]


def get_or_create_actor(
    key_material: bytes,
    pseudonym_pattern: str | None,
    shift_range: tuple[int, int] | None,
    name: str = "veil-keys",
    namespace: str = "veil",
    *,
    seal_to: CustodianPublicKey | None = None,
) -> Any:
    """The run's named key-service actor, created on the driver's node if it does not exist yet.

    The actor owns no CPU, lives as long as its owner (not detached), is never restarted, and is pinned to
    this node so ``write_reid_table(path)`` writes on the machine that asked. The key goes to it by a method
    call, not in its creation record. An actor of that name made with another key or other parameters is
    refused (``KeyError_``), as is one sealing to another custodian (``seal_to``: custodian mode, see
    :class:`~veil.keys.service.KeyService`).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected = KeyService(key_material, pseudonym_pattern, shift_range).describe()  # validates locally first
    actor: Any = (
        ray.remote(KeyService)
        .options(
            name=name,
            namespace=namespace,
            get_if_exists=True,
            lifetime="non_detached",
            num_cpus=0,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=False
            ),
        )
        .remote(None, pseudonym_pattern, shift_range, seal_to=seal_to)
    )
    ray.get(actor.load_key.remote(key_material))
    found = ray.get(actor.describe.remote())
    if tuple(found) != expected:
        raise KeyError_(
            f"key service {namespace}/{name} was made for key {found[0]}, pattern {found[1]!r}, shift range "
            f"{found[2]}; this run has key {expected[0]}, pattern {expected[1]!r}, shift range {expected[2]}"
        )
    custodian = ray.get(actor.custodian.remote())
    wanted = seal_to.key_id if seal_to is not None else None
    if custodian != wanted:
        raise KeyError_(f"key service {namespace}/{name} seals to custodian key {custodian}; this run to {wanted}")
    return actor


_worker_cache: dict[str, KeyedFunctions] = {}
_worker_cache_lock = threading.Lock()


def worker_functions(actor: Any) -> KeyedFunctions:
    """This process's ``KeyedFunctions``, asked of the key-service actor once per process and cached.

    Cached by actor id rather than name: a new actor under the same name (another run, another key) is asked
    again. A plain :class:`KeyService` (in-process runs, tests) is accepted and asked directly.
    """
    if isinstance(actor, KeyService):
        return functions_from_worker_keys(actor.worker_keys())
    import ray

    cache_key = actor._actor_id.hex()  # ActorHandle hashes and compares by this id too
    with _worker_cache_lock:
        functions = _worker_cache.get(cache_key)
        if functions is None:
            functions = _worker_cache[cache_key] = functions_from_worker_keys(
                ray.get(actor.worker_keys.remote())
            )
        return functions
