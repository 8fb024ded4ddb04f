"""What a run was trained with: code version, packages, device, host and corpus.

:func:`run_provenance` returns plain strings, which :class:`scaling.sweeps.tracking.RunLogger`
logs as ``scaling.*`` tags (docs/architecture.md, "MLflow keys"). Nothing here fails a run:
a value that cannot be found (no git, not a repository, no GPU) is left out.
"""

from __future__ import annotations

import os
import socket
import subprocess
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from scaling.config.run import RunSpec

__all__ = ["GIT_TIMEOUT_S", "git_state", "package_versions", "device_info", "run_provenance"]

GIT_TIMEOUT_S = 3.0
_PACKAGES = ("scaling", "torch", "mlflow", "optuna")


def _git(args: list[str], cwd: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=GIT_TIMEOUT_S,
            check=False,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):  # no git, or it hangs (a network mount)
        return None
    return done.stdout if done.returncode == 0 else None


def git_state(directory: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The commit of the git work tree holding ``directory`` (default: the working
    directory) and whether tracked files differ from it.

    Returns
    -------
    dict
        ``git_commit`` (40 hex digits) and ``git_dirty`` (``"true"``/``"false"``); empty when
        the directory is not in a repository or git is missing.
    """
    cwd = str(directory or os.getcwd())
    commit = _git(["rev-parse", "--verify", "HEAD"], cwd)
    if not commit:
        return {}
    changes = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    state = {"git_commit": commit.strip()}
    if changes is not None:
        state["git_dirty"] = "true" if changes.strip() else "false"
    return state


def package_versions() -> dict[str, str]:
    """Installed versions of scaling, torch, mlflow and optuna, and torch's CUDA version.

    Returns
    -------
    dict
        ``version_<package>`` for each installed package, and ``version_cuda`` when torch
        was built with CUDA.
    """
    versions = {}
    for package in _PACKAGES:
        try:
            versions[f"version_{package}"] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    try:
        import torch

        if torch.version.cuda:
            versions["version_cuda"] = str(torch.version.cuda)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return versions


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "cpu"


def device_info(device: str = "auto") -> dict[str, str]:
    """The device a run with ``train.device = device`` trains on, and how many there are.

    Returns
    -------
    dict
        ``device`` (the GPU's name, or ``cpu: <processor>``) and ``device_count`` (visible
        GPUs on a GPU run, logical CPUs on a CPU run).
    """
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wants_gpu = device.startswith("cuda") or (device == "auto" and gpus > 0)
    if wants_gpu and gpus:
        index = int(device.partition(":")[2] or 0) if device.startswith("cuda:") else 0
        name = torch.cuda.get_device_name(min(index, gpus - 1))
        return {"device": name, "device_count": str(gpus)}
    return {"device": f"cpu: {_cpu_name()}", "device_count": str(os.cpu_count() or 1)}


def run_provenance(spec: RunSpec) -> dict[str, str]:
    """Everything :func:`git_state`, :func:`package_versions` and :func:`device_info` know,
    with the host and, when the data config has one, the corpus content hash.

    Parameters
    ----------
    spec : RunSpec
        The run about to be trained.

    Returns
    -------
    dict of str to str
        Keys ``git_commit``, ``git_dirty``, ``version_*``, ``device``, ``device_count``,
        ``host`` and ``corpus_hash``, each only when known.
    """
    found = {**git_state(), **package_versions(), **device_info(spec.train.device)}
    found["host"] = socket.gethostname()
    corpus = getattr(spec.data, "content_hash", None)
    if corpus:
        found["corpus_hash"] = str(corpus)
    return found
