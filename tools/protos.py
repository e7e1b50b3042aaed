"""Generate, check and lint the protobuf code.

python tools/protos.py gen      regenerate clients/python from protos/
python tools/protos.py check    fail when clients/python differs from what protos/ generates
python tools/protos.py deps     link google/api protos from googleapis-common-protos for buf
"""

from __future__ import annotations

import filecmp
import importlib.resources
import os
import shutil
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
CLIENT_PACKAGE = ROOT / "clients" / "python"
GENERATED = CLIENT_PACKAGE / "cpod"
DEPS = ROOT / "build" / "proto-deps"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi", ".binpb")


def googleapis_include() -> Path:
    # googleapis-common-protos installs google/api/*.proto next to its generated modules.
    import google.api

    return Path(google.api.__path__[0]).parent.parent


def wkt_include() -> Path:
    return Path(str(importlib.resources.files("grpc_tools") / "_proto"))


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # protoc finds the mypy-protobuf plugins on PATH; they sit next to this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{googleapis_include()}",
        f"-I{wkt_include()}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *[str(p.relative_to(PROTOS)) for p in proto_files()],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    # With source info (comments), for the gateway's OpenAPI and manifest. No --include_imports: the
    # file would then depend on the installed googleapis version.
    descriptor_args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{googleapis_include()}",
        f"-I{wkt_include()}",
        "--include_source_info",
        f"--descriptor_set_out={out / 'cpod' / 'integration' / 'v1' / 'descriptor_set.binpb'}",
        *[str(p.relative_to(PROTOS)) for p in proto_files()],
    ]
    if protoc.main(descriptor_args) != 0:
        raise SystemExit("protoc failed writing the descriptor set")
    for package_dir in [d for d in out.rglob("*") if d.is_dir()]:
        (package_dir / "__init__.py").touch()
    # The stubs package is typed.
    (out / "cpod" / "py.typed").touch()


def generated_files(root: Path) -> dict[str, Path]:
    return {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and (p.name.endswith(GENERATED_SUFFIXES) or p.name in ("__init__.py", "py.typed"))
    }


def drift() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        fresh_root = Path(tmp)
        generate(fresh_root)
        fresh = generated_files(fresh_root / "cpod")
        committed = generated_files(GENERATED)
        problems = [f"missing: cpod/{name}" for name in sorted(fresh.keys() - committed.keys())]
        problems += [f"stale: cpod/{name}" for name in sorted(committed.keys() - fresh.keys())]
        problems += [
            f"differs: cpod/{name}"
            for name in sorted(fresh.keys() & committed.keys())
            if not filecmp.cmp(fresh[name], committed[name], shallow=False)
        ]
        return problems


def link_deps() -> None:
    target = DEPS / "google" / "api"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in ("annotations.proto", "http.proto", "field_behavior.proto", "resource.proto"):
        shutil.copy(googleapis_include() / "google" / "api" / name, target / name)


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "gen"
    if command == "gen":
        if GENERATED.exists():
            shutil.rmtree(GENERATED)
        generate(CLIENT_PACKAGE)
    elif command == "check":
        problems = drift()
        if problems:
            print("clients/python drifted from protos/ (run `make protos`):", *problems, sep="\n  ")
            raise SystemExit(1)
        print("clients/python matches protos/")
    elif command == "deps":
        link_deps()
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
