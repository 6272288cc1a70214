"""One container of a rendered pod, run here as the kubelet would lay it out, in a bubblewrap
sandbox (Debian's `bubblewrap`).

The container's command and environment are the rendered ones. Its volumes are at their
mountPaths: a ConfigMap or Secret from the rendered object's data (an optional Secret that is not
there as an empty folder), an emptyDir as an empty folder. The rest of the root is this machine's,
read-only as with readOnlyRootFilesystem; this machine's Python with the project's packages stands
in for the image's (`python` on PATH). The user is not switched to runAsUser.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

Manifest = dict[str, Any]


class VolumeMissing(Exception):
    """A volume the kubelet would wait for: the pod would never start."""


def binary() -> str | None:
    return shutil.which("bwrap")


def _write(directory: Path, files: dict[str, bytes]) -> None:
    directory.mkdir(parents=True)
    for key, content in files.items():
        (directory / key).write_bytes(content)


def _volume(volume: Manifest, objects: dict[tuple[str, str], Manifest], directory: Path) -> None:
    if "configMap" in volume:
        source = volume["configMap"]
        found = objects.get(("ConfigMap", source["name"]))
        data = {} if found is None else {k: v.encode() for k, v in (found.get("data") or {}).items()}
    elif "secret" in volume:
        source = volume["secret"]
        found = objects.get(("Secret", source["secretName"]))
        data = {} if found is None else {k: base64.b64decode(v) for k, v in (found.get("data") or {}).items()}
    elif "emptyDir" in volume:
        directory.mkdir(parents=True)
        return
    else:
        raise NotImplementedError(f"volume {volume['name']}: only configMap, secret, emptyDir")
    if found is None and not source.get("optional"):
        raise VolumeMissing(f"volume {volume['name']}: no such object, and not optional")
    if "items" in source:
        raise NotImplementedError(f"volume {volume['name']}: items")
    _write(directory, data)


def _environment(container: Manifest) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp"}
    for entry in container.get("env") or []:
        if "value" not in entry:
            raise NotImplementedError(f"env {entry['name']}: only value")
        env[entry["name"]] = str(entry["value"])
    return env


def run(
    pod: Manifest,
    objects: list[Manifest],
    *,
    directory: Path,
    container: str | None = None,
    timeout: float = 120.0,
) -> subprocess.CompletedProcess[str]:
    """Run one container (`container`, else the first) of `pod` (a PodSpec) to its end; `objects`
    are the rendered ConfigMaps and Secrets its volumes name."""
    bwrap = binary()
    if bwrap is None:
        raise RuntimeError("bubblewrap (bwrap) is not installed")
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in objects}
    spec = next(c for c in pod["containers"] if container in (None, c["name"]))
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts: list[tuple[str, Path, bool]] = []
    for index, mount in enumerate(spec.get("volumeMounts") or []):
        source = directory / f"volume-{index}-{mount['name']}"
        _volume(volumes[mount["name"]], by_name, source)
        mounts.append((mount["mountPath"], source, bool(mount.get("readOnly"))))
    tops = {Path(path).parts[1] for path, _, _ in mounts}
    args = [bwrap, "--die-with-parent", "--unshare-pid", "--proc", "/proc", "--dev", "/dev"]
    for entry in sorted(os.listdir("/")):
        if entry in {"proc", "dev", "sys"} or entry in tops:
            continue
        path = f"/{entry}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    for path, source, read_only in sorted(mounts, key=lambda m: len(Path(m[0]).parts)):
        args += ["--ro-bind" if read_only else "--bind", str(source), path]
    # The stand-in image's Python stays where it is, even under a pod's mount (a venv in /tmp).
    for prefix in sorted({sys.prefix, sys.base_prefix}):
        if any(Path(prefix).is_relative_to(path) for path, _, _ in mounts):
            args += ["--ro-bind", prefix, prefix]
    args += ["--remount-ro", "/", "--chdir", "/", "--clearenv"]
    for key, value in _environment(spec).items():
        args += ["--setenv", key, value]
    command = [*(spec.get("command") or []), *(spec.get("args") or [])]
    return subprocess.run(
        [*args, "--", *command], capture_output=True, text=True, timeout=timeout, check=False
    )
