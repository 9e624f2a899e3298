"""A Microgrid API client from another protobuf code generator and another gRPC library.

gridloop and its simulator both use Google's ``protobuf`` runtime and ``grpcio``; a
client built on the same two could hide a server that only they accept. This client
shares neither: its messages are generated at test time by **betterproto2** (plain
dataclasses with their own wire codec) and it talks over **grpclib** (pure-Python
HTTP/2 on asyncio, no gRPC C core). Nothing generated is committed.

The ``.proto`` sources are not in the ``frequenz-api-*`` wheels, so the schema is
rebuilt from the installed ``_pb2`` modules: each module's
``DESCRIPTOR.serialized_pb`` and those of its transitive dependencies (the
``frequenz.api.common`` files, ``google/protobuf/timestamp.proto``, ``empty.proto``,
``google/api/annotations.proto`` …) form a ``FileDescriptorSet`` that ``protoc``
(``grpc_tools.protoc``) reads with ``--descriptor_set_in`` and hands to the
``betterproto2-compiler`` plugin (``client_generation=async``: grpclib stubs).

* `VERSIONS`: the API versions this client speaks (``v1``, ``v1alpha18``, ``v1alpha19``).
* `descriptor_set`: the ``FileDescriptorSet`` of one version's service file.
* `generate`: generate and import one version's package into a directory.
* `ForeignApi`: the generated modules of one version (service, metrics, components)
  and `ForeignApi.connect`, a grpclib channel with the generated ``MicrogridStub``;
  `ForeignFactory`: the type of a version -> `ForeignApi` lookup.

One thing betterproto2-compiler 0.10 cannot take as protoc hands it: a file without
``source_code_info`` (it reads every element's comments from it and fails with
"Can't unwrap a None value"). The serialized descriptors in ``_pb2`` modules carry no
source info, so `descriptor_set` gives each file one empty location: the generated
code is the same, only without the ``.proto`` comments.

Google's protobuf runtime is still imported here, to read the installed descriptors
before generation, and by grpclib to decode rich error details
(``grpc-status-details-bin``) if a server sends them (the simulator does not); it
never encodes or decodes a request or response of this client.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FileDescriptor
from grpclib.client import Channel

__all__ = [
    "VERSIONS",
    "ForeignApi",
    "ForeignFactory",
    "GenerationError",
    "descriptor_set",
    "generate",
]

VERSIONS: tuple[str, ...] = ("v1", "v1alpha18", "v1alpha19")
"""The ``frequenz.api.microgrid`` versions this client can be generated for."""

_COMMON = {"v1": "v1", "v1alpha18": "v1alpha8", "v1alpha19": "v1alpha8"}
"""The ``frequenz.api.common`` version each Microgrid API version is built on."""

_COMPONENTS = {
    "v1": "microgrid.components",
    "v1alpha18": "microgrid.electrical_components",
    "v1alpha19": "microgrid.electrical_components",
}
"""Where, below the common package, each version's component messages live."""


class GenerationError(RuntimeError):
    """protoc or the betterproto2 plugin failed; the message carries protoc's output."""


def _check_version(version: str) -> None:
    if version not in VERSIONS:
        raise ValueError(f"version: {version!r} is not one of {', '.join(VERSIONS)}")


def _service_descriptor(version: str) -> FileDescriptor:
    """The installed ``frequenz.api.microgrid.<version>.microgrid_pb2`` file descriptor."""
    _check_version(version)
    module = importlib.import_module(f"frequenz.api.microgrid.{version}.microgrid_pb2")
    descriptor: FileDescriptor = module.DESCRIPTOR
    return descriptor


def descriptor_set(version: str) -> descriptor_pb2.FileDescriptorSet:
    """The schema of one version's ``Microgrid`` service, from the installed ``_pb2`` modules.

    Files come dependencies first (each once), as protoc would list them. Each file
    gets one empty ``source_code_info`` location (see the module docstring: the
    betterproto2 plugin requires the field, ``serialized_pb`` leaves it out).

    Args:
        version: One of `VERSIONS`.

    Raises:
        ValueError: ``version`` is not one of `VERSIONS`.
    """
    ordered: dict[str, descriptor_pb2.FileDescriptorProto] = {}

    def add(fd: FileDescriptor) -> None:
        if fd.name in ordered:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto.FromString(fd.serialized_pb)
        proto.source_code_info.location.add()
        ordered[fd.name] = proto

    add(_service_descriptor(version))
    return descriptor_pb2.FileDescriptorSet(file=list(ordered.values()))


def _tool_path() -> str:
    """``PATH`` for protoc: this interpreter's scripts and ruff first.

    The betterproto2 plugin formats what it generates by running ``ruff`` from ``PATH``.
    """
    from ruff.__main__ import find_ruff_bin

    dirs = [str(Path(sys.executable).parent), str(Path(find_ruff_bin()).parent)]
    return os.pathsep.join([*dict.fromkeys(dirs), os.environ.get("PATH", "")])


def _import_root(name: str, root: Path) -> ModuleType:
    """Import the generated package at ``root`` as ``name`` (without touching sys.path)."""
    spec = importlib.util.spec_from_file_location(
        name, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class ForeignApi:
    """One version's betterproto2-generated modules and a grpclib connection to a server."""

    version: str
    """The Microgrid API version (one of `VERSIONS`)."""
    microgrid: ModuleType
    """``frequenz.api.microgrid.<version>``: the requests, responses and ``MicrogridStub``."""
    metrics: ModuleType
    """``frequenz.api.common.<common>.metrics``: ``Metric``, ``Bounds``, ``MetricSample``."""
    components: ModuleType
    """The common component messages: categories, ``Component``/``ElectricalComponent``."""

    @asynccontextmanager
    async def connect(self, address: str) -> AsyncIterator[Any]:
        """A ``MicrogridStub`` on a plaintext grpclib channel to ``HOST:PORT``; closed on exit.

        ``HOST`` may be an IPv6 literal in brackets (``[::1]:50051``).
        """
        host, _, port = address.rpartition(":")
        channel = Channel(host.strip("[]"), int(port))
        try:
            yield self.microgrid.MicrogridStub(channel)
        finally:
            channel.close()


ForeignFactory = Callable[[str], ForeignApi]
"""What the tests' ``foreign`` fixture is: a version in, its (cached) client out."""


def generate(version: str, out_dir: Path) -> ForeignApi:
    """Generate one version's client into ``out_dir`` and import it.

    The package is imported as ``foreign_<version>`` (its own message pool, no clash
    with the real ``frequenz`` packages nor between versions), so call this once per
    version and process (the tests cache it per session).

    Args:
        version: One of `VERSIONS`.
        out_dir: An empty directory to write the descriptor set and the package into.

    Raises:
        ValueError: ``version`` is not one of `VERSIONS`.
        GenerationError: protoc or the plugin failed (its output in the message).
    """
    fds = descriptor_set(version)
    fds_path = out_dir / f"{version}.fds"
    fds_path.write_bytes(fds.SerializeToString())
    package = f"foreign_{version}"
    root = out_dir / package
    root.mkdir(parents=True)
    service_file = _service_descriptor(version).name
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--descriptor_set_in={fds_path}",
            f"--plugin=protoc-gen-python_betterproto2={_plugin(out_dir)}",
            f"--python_betterproto2_out=client_generation=async:{root}",
            service_file,
        ],
        cwd=out_dir,  # the plugin writes invalid-generated-code.py to its cwd on failure
        env={**os.environ, "PATH": _tool_path()},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise GenerationError(
            f"protoc with betterproto2 failed for {service_file} (status {done.returncode}):"
            f" {done.stderr.strip()}"
        )
    _import_root(package, root)
    common = f"{package}.frequenz.api.common.{_COMMON[version]}"
    return ForeignApi(
        version=version,
        microgrid=importlib.import_module(f"{package}.frequenz.api.microgrid.{version}"),
        metrics=importlib.import_module(f"{common}.metrics"),
        components=importlib.import_module(f"{common}.{_COMPONENTS[version]}"),
    )


def _plugin(out_dir: Path) -> Path:
    """An executable that runs the betterproto2 plugin with this interpreter.

    Not the ``protoc-gen-python_betterproto2`` console script: where scripts are
    installed depends on the environment, the interpreter running the tests does not.
    """
    path = out_dir / "protoc-gen-python_betterproto2"
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m betterproto2_compiler.plugin "$@"\n')
    path.chmod(0o755)
    return path
