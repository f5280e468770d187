"""``emort enhance --ray ADDRESS``: the batch's edits on a Ray cluster, one model load per worker.

:class:`RayPool` is a ``compute`` for :func:`emort.runtime.batch.enhance_files`: a pool of Ray
actors, each loading the Enhancer once and editing the clips sent to it. Only the edits run on
the workers. The driver (the process running ``enhance_files``) finds and reads the inputs,
sends the samples, and writes each output, the marker and the report, so the outputs are the
bytes a local run writes and resume works as it does locally. The workers need emort
installed (the same version; the pool checks that they load the driver's bundle) and, with
``--bundle``, the bundle at the same path; they need not see the input or output folders.

Ray is imported only here, and this module only with ``--ray``: ``emort enhance`` without it
starts as fast as before. Ray lives in the ``cluster`` extra (``pip install 'emort[cluster]'``).
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from emort.runtime.batch import EditRequest
from emort.runtime.errors import EmortError

#: Requests in flight per worker: one running, one queued, so no worker waits for the driver.
IN_FLIGHT_PER_WORKER = 2
#: How long the pool waits for its workers to load the models before giving up, seconds.
START_TIMEOUT_S = 300.0

_loads = 0  # Enhancer loads in this worker process (reported by ``info``: one per worker)


def import_ray():
    """The ``ray`` module, or EmortError (one line) with the install command."""
    try:
        import ray
    except ImportError:
        raise EmortError("--ray needs Ray: pip install 'emort[cluster]'") from None
    return ray


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """For ``HOST:PORT`` and ``ray://HOST:PORT`` addresses: EmortError (one line) when nothing accepts a
    connection there; ``ray.init`` itself keeps retrying an unreachable head for minutes."""
    m = re.fullmatch(r"(?:ray://)?\[?([^\[\]]+?)\]?:(\d+)", address.strip())
    if m is None:
        return  # local, auto: Ray answers at once
    host, port = m[1], int(m[2])
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise EmortError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e}); is the Ray head running there?") from None


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__  # Ray puts the cause's message last



def bundle_identity(bundle) -> str:
    """What a worker's bundle must share with the driver's: its graph files (``content_hash``) and
    what an edit reads of the manifest (``edit_hash``: centroids, normalisation, mel settings,
    schedule). Before 0.24 only the graphs were compared, so a worker with other centroids edited
    and the driver recorded its outputs under its own settings."""
    return f"{bundle.content_hash}/{bundle.edit_hash}"

class _Worker:
    """One Ray actor: the Enhancer loaded once, then one edit per call."""

    def __init__(self, bundle: str | None, device: str, threads: int, precision: str = "fp32"):
        global _loads
        from emort.runtime.enhancer import Enhancer

        self.enhancer = Enhancer.load(bundle, device=device, threads=threads, precision=precision)
        _loads += 1
        self.edits = 0

    def info(self) -> dict:
        import ray

        from emort import __version__

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "emort": __version__, "bundle": bundle_identity(self.enhancer.bundle),
                "prosody_table": self.enhancer.bundle.prosody_hash, "prosody_renderers": _prosody_renderers(),
                "edit_basis": self.enhancer.bundle.basis_hash(),
                "device": self.enhancer.device, "precision": self.enhancer.precision, "loads": _loads, "edits": self.edits}

    def enhance(self, req: EditRequest) -> Any:
        """The ``Enhanced`` result without its mels (not used by the batch: less to send back), or the exception."""
        self.edits += 1
        try:
            res = req.run(self.enhancer)
        except Exception as e:  # returned, not raised: the driver records it as a local run does
            try:
                pickle.dumps(e)
                return e
            except Exception:
                return RuntimeError(f"{type(e).__name__}: {e}")
        empty = np.zeros((0, 0), np.float32)
        return replace(res, source_mel=empty, mel=empty)


def _prosody_renderers() -> list[str]:
    """The prosody renderers this process can run (the ``[prosody]`` extra installed or not)."""
    from emort.runtime.errors import EmortError
    from emort.runtime.prosody import RENDERERS, check_available

    ok = []
    for r in RENDERERS:
        try:
            check_available(r)
            ok.append(r)
        except EmortError:
            pass
    return ok


def one_precision(infos: list[dict], address: str) -> str:
    """The denoiser precision all workers (their :meth:`_Worker.info`) run, or EmortError naming
    a node that differs: ``--precision auto`` on nodes of different CPUs would mix arithmetics."""
    kinds = sorted({i.get("precision", "fp32") for i in infos})
    if len(kinds) > 1:
        odd = next(i for i in infos if i.get("precision", "fp32") != infos[0].get("precision", "fp32"))
        raise EmortError(f"--ray {address}: workers run the denoiser in {' and '.join(kinds)} (node {odd['node'][:12]}: "
                         f"{odd.get('precision', 'fp32')}); pass --precision fp32 so that every node runs one")
    return kinds[0] if kinds else "fp32"


class RayPool:
    """A pool of Ray actors running :class:`~emort.runtime.enhancer.Enhancer` edits.

    ``address``: as ``ray.init`` takes it: ``local`` (start a Ray instance on this machine),
    ``auto`` (the cluster this machine belongs to), ``ray://head:10001`` (Ray Client) or
    ``head:6379``; a Ray already initialised in this process is used as it is.
    ``bundle``: the bundle folder (None: each worker loads the one shipped with emort);
    ``bundle_hash``: the driver's bundle hash, which every worker must load (else
    EmortError); ``prosody_hash``: likewise for the prosody table, and ``prosody_renderer`` a
    renderer every worker must be able to run (``--prosody`` runs); ``basis_hash``: likewise for
    the edit basis (``--subspace`` runs). ``workers``: actors to start (default: one per CPU of the cluster, or one
    per GPU with ``device`` cuda or tensorrt, each actor then holding one GPU);
    ``cpus_per_worker``: CPUs each actor holds, and its onnxruntime threads. ``precision``: the
    denoiser's (``Enhancer.load``); every worker must resolve it alike (``auto`` on nodes of
    different CPUs is refused), and :attr:`precision` holds it.
    Raises EmortError (one line) when Ray cannot start or be reached, or a worker cannot
    load the models within :data:`START_TIMEOUT_S`. Use as a context manager (or call
    :meth:`close`): the actors are ended, and a Ray instance this pool started is shut down.
    """

    def __init__(self, address: str, bundle: str | Path | None = None, device: str = "cpu", workers: int | None = None, precision: str = "fp32",
                 cpus_per_worker: int = 1, bundle_hash: str | None = None, start_timeout_s: float = START_TIMEOUT_S,
                 prosody_hash: str | None = None, prosody_renderer: str | None = None, basis_hash: str | None = None):
        ray = import_ray()
        self.address = address
        self.actors: list = []
        self.workers = 0
        self._owner = not ray.is_initialized()
        if self._owner:
            check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            except Exception as e:  # ConnectionError, ValueError (bad address), RuntimeError, ...
                raise EmortError(f"--ray {address}: cannot start or reach Ray ({_first_line(e)})") from None
        try:
            gpu = device in ("cuda", "tensorrt")
            unit = "GPU" if gpu else "CPU"
            have = float(ray.cluster_resources().get(unit, 0))
            n = workers or max(1, int(have if gpu else have // cpus_per_worker))
            actor = ray.remote(_Worker).options(num_cpus=cpus_per_worker, num_gpus=1 if gpu else 0)
            self.actors = [actor.remote(None if bundle is None else str(bundle), device, cpus_per_worker, precision) for _ in range(n)]
            self.workers = n  #: actors started (kept after close, for reports)
            try:
                self.infos = ray.get([a.info.remote() for a in self.actors], timeout=start_timeout_s)
            except ray.exceptions.GetTimeoutError:
                raise EmortError(f"--ray {address}: {n} worker(s) did not start within {start_timeout_s:g} s "
                                 f"(the cluster has {have:g} {unit}s; see --ray-workers)") from None
            except ray.exceptions.RayError as e:
                why = _first_line(e)
                if "from 'emort' (unknown location)" in why or "'emort' has no attribute" in why:  # the clone's folder on the workers' path
                    why += ("; a folder named emort in the current folder shadows the installed package for the workers: run from "
                            "another folder (README: Where you clone)")
                raise EmortError(f"--ray {address}: a worker could not load the models ({why})") from None
            from emort import __version__

            # an older emort unpickles options it does not know (0.22's part) and ignores them
            other = [i for i in self.infos if i.get("emort") != __version__]
            if other:
                raise EmortError(f"--ray {address}: a worker on node {other[0]['node'][:12]} runs emort "
                                 f"{other[0].get('emort') or 'older than 0.22'}, this machine {__version__}; install the same emort on every node")
            other = [i for i in self.infos if bundle_hash is not None and i["bundle"] != bundle_hash]
            if other:
                raise EmortError(f"--ray {address}: a worker on node {other[0]['node'][:12]} loads bundle {other[0]['bundle']}, "
                                 f"this machine {bundle_hash}; install the same emort (and --bundle) on every node")
            lacking = [i for i in self.infos if prosody_renderer is not None and prosody_renderer not in i.get("prosody_renderers", [])]
            if lacking:
                raise EmortError(f"--ray {address}: a worker on node {lacking[0]['node'][:12]} cannot run the {prosody_renderer} "
                                 "prosody renderer; pip install 'emort[prosody]' on every node")
            other = [i for i in self.infos if prosody_hash is not None and i.get("prosody_table") != prosody_hash]
            if other:  # the table lives in the manifest, outside the weights' hash
                raise EmortError(f"--ray {address}: a worker on node {other[0]['node'][:12]} has prosody table "
                                 f"{other[0].get('prosody_table')}, this machine {prosody_hash}; use the same bundle on every node")
            #: the denoiser's precision on every worker (checked equal)
            self.precision = one_precision(self.infos, address)
            other = [i for i in self.infos if basis_hash is not None and i.get("edit_basis") != basis_hash]
            if other:  # the basis lives in the manifest too
                raise EmortError(f"--ray {address}: a worker on node {other[0]['node'][:12]} has edit basis "
                                 f"{other[0].get('edit_basis')}, this machine {basis_hash}; use the same bundle on every node")
        except BaseException:
            self.close()
            raise


    def stats(self) -> list[dict]:
        """Per worker: pid, node, bundle hash, device, model loads in its process, edits done."""
        ray = import_ray()
        return ray.get([a.info.remote() for a in self.actors])

    def compute(self, requests: Iterator[EditRequest | None]) -> Iterator[Any]:
        """The ``compute`` of ``enhance_files``: outcomes in the order of ``requests``, with up to
        :data:`IN_FLIGHT_PER_WORKER` edits per worker in flight, each sent to the least busy live worker.
        A worker that dies (out of memory, node lost) fails the edit it was running; the edits queued
        on it go to the others, and it gets no more (before 0.24 it kept its share: about 1/N of the
        remaining files failed). When every worker has died, the rest fail with that reason."""
        ray = import_ray()
        window = IN_FLIGHT_PER_WORKER * len(self.actors)
        queue: deque = deque()  # per request in order: None, or (object ref, worker, request)
        busy = [0] * len(self.actors)
        dead: set[int] = set()
        in_flight = 0
        more = True
        it = iter(requests)

        def least_busy() -> int | None:
            live = [i for i in range(len(busy)) if i not in dead]
            return min(live, key=busy.__getitem__) if live else None

        def resend(req: EditRequest) -> Any:  # an edit queued on a worker that had died already
            while (k2 := least_busy()) is not None:
                try:
                    return ray.get(self.actors[k2].enhance.remote(req))
                except ray.exceptions.RayActorError:
                    dead.add(k2)
                except ray.exceptions.RayError as e:
                    return EmortError(f"{req.path}: the Ray worker failed ({_first_line(e)})")
            return EmortError(f"{req.path}: every Ray worker has died")

        try:
            while True:
                while more and in_flight < window and len(queue) < 8 * window:  # bounded read-ahead
                    try:
                        req = next(it)
                    except StopIteration:
                        more = False
                        break
                    if req is None:
                        queue.append(None)
                        continue
                    k = least_busy()
                    if k is None:
                        queue.append(("dead", None, req))
                        continue
                    queue.append((self.actors[k].enhance.remote(req), k, req))
                    busy[k] += 1
                    in_flight += 1
                if not queue:
                    return
                item = queue.popleft()
                if item is None:
                    yield None
                    continue
                ref, k, req = item
                if k is None:  # no live worker when it was read
                    yield EmortError(f"{req.path}: every Ray worker has died")
                    continue
                was_dead = k in dead
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayActorError as e:  # the worker died: the edit it ran fails, those queued behind it move
                    dead.add(k)
                    out = resend(req) if was_dead else EmortError(f"{req.path}: the Ray worker failed ({_first_line(e)})")
                except ray.exceptions.RayError as e:
                    out = EmortError(f"{req.path}: the Ray worker failed ({_first_line(e)})")
                busy[k] -= 1
                in_flight -= 1
                yield out
        finally:
            for item in queue:  # stopped early: drop the edits still queued
                if item is not None and item[1] is not None:
                    try:
                        ray.cancel(item[0])
                    except Exception:
                        pass

    def close(self) -> None:
        """End the actors, and the Ray instance when this pool started it."""
        ray = import_ray()
        for a in self.actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self.actors = []
        if self._owner and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
